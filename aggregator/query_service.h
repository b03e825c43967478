#pragma once
// meshprobe.v1.Query: ListNodes, GetMatrix, GetNode, Diagnose over the
// ClusterState. Unary callback handlers; no exception crosses them (INTERNAL instead).
//
// Diagnose returns the diagnosis engine's active findings, most severe first.

#include <grpcpp/grpcpp.h>

#include <array>
#include <string_view>

#include "aggregator/cluster_state.h"
#include "aggregator/diagnosis/engine.h"
#include "common/metrics.h"
#include "meshprobe/v1/query.grpc.pb.h"

namespace meshprobe::aggregator {

enum class QueryMethod : size_t { kListNodes, kGetMatrix, kGetNode, kDiagnose, kCount };
std::string_view queryMethodName(QueryMethod m);  // "ListNodes", ... (the metrics label)

class QueryService final : public meshprobe::v1::Query::CallbackService {
 public:
  QueryService(const ClusterState& state, const DiagnosisEngine& engine) : state_(state), engine_(engine) {}

  // Time spent handling each method, errors included (meshprobe_aggregator_query_duration_seconds).
  HistogramSnapshot latency(QueryMethod m) const { return latency_[static_cast<size_t>(m)].snapshot(); }

  grpc::ServerUnaryReactor* ListNodes(grpc::CallbackServerContext* ctx, const meshprobe::v1::ListNodesRequest* req,
                                      meshprobe::v1::ListNodesResponse* resp) override;
  // LAYER_UNSPECIFIED (or a layer without a matrix) -> INVALID_ARGUMENT naming it. Filters
  // and paging (aggregator/matrix_query.h): unknown `nodes` -> NOT_FOUND naming them, a bad
  // state or page token -> INVALID_ARGUMENT saying what is wrong.
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
  const DiagnosisEngine& engine_;
  std::array<Histogram, static_cast<size_t>(QueryMethod::kCount)> latency_{
      Histogram(Histogram::latencyBounds()), Histogram(Histogram::latencyBounds()),
      Histogram(Histogram::latencyBounds()), Histogram(Histogram::latencyBounds())};
};

}  // namespace meshprobe::aggregator
