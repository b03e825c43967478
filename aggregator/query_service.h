#pragma once
// meshprobe.v1.Query (DESIGN §4): ListNodes, GetMatrix, GetNode, Diagnose over the
// ClusterState. Unary callback handlers; no exception crosses them (INTERNAL instead).
//
// Diagnose, for now, returns the findings the agents put in their latest Reports
// (filtered by node); the cluster-wide diagnosis engine replaces it in the next issue.

#include <grpcpp/grpcpp.h>

#include "aggregator/cluster_state.h"
#include "meshprobe/v1/query.grpc.pb.h"

namespace meshprobe::aggregator {

class QueryService final : public meshprobe::v1::Query::CallbackService {
 public:
  explicit QueryService(const ClusterState& state) : state_(state) {}

  grpc::ServerUnaryReactor* ListNodes(grpc::CallbackServerContext* ctx, const meshprobe::v1::ListNodesRequest* req,
                                      meshprobe::v1::ListNodesResponse* resp) override;
  // LAYER_UNSPECIFIED (or a layer without a matrix) -> INVALID_ARGUMENT naming it.
  grpc::ServerUnaryReactor* GetMatrix(grpc::CallbackServerContext* ctx, const meshprobe::v1::GetMatrixRequest* req,
                                      meshprobe::v1::GetMatrixResponse* resp) override;
  // Unknown name -> NOT_FOUND naming it.
  grpc::ServerUnaryReactor* GetNode(grpc::CallbackServerContext* ctx, const meshprobe::v1::GetNodeRequest* req,
                                    meshprobe::v1::GetNodeResponse* resp) override;
  // Unknown node filter -> NOT_FOUND naming it.
  grpc::ServerUnaryReactor* Diagnose(grpc::CallbackServerContext* ctx, const meshprobe::v1::DiagnoseRequest* req,
                                     meshprobe::v1::DiagnoseResponse* resp) override;

 private:
  const ClusterState& state_;
};

}  // namespace meshprobe::aggregator
