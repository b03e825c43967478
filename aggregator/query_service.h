#pragma once
// meshprobe.v1.Query: ListNodes, GetMatrix, GetNode, Diagnose, ListNamespaces over the
// ClusterState. Unary callback handlers; no exception crosses them (INTERNAL instead).
//
// Diagnose returns the diagnosis engine's active findings, most severe first. With a
// KubeView, ListNodes adds the Kubernetes Nodes without an agent (missing_agents) and
// ListNamespaces answers; without one (or before its first list) ListNamespaces is
// FAILED_PRECONDITION saying so.

#include <grpcpp/grpcpp.h>

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "aggregator/cluster_state.h"
#include "aggregator/diagnosis/engine.h"
#include "common/metrics.h"
#include "meshprobe/v1/query.grpc.pb.h"

namespace meshprobe::aggregator {

enum class QueryMethod : size_t { kListNodes, kGetMatrix, kGetNode, kDiagnose, kListNamespaces, kCount };
std::string_view queryMethodName(QueryMethod m);  // "ListNodes", ... (the metrics label)

// ListNamespaces' answer (pure, for tests): every namespace of `objects` by name, with its
// dataplane-mode label, whether `expect_ambient` selects it, its running pods and how many of
// them the agents found captured (captureOf) or did not report, and the codes of the `active`
// findings about it.
meshprobe::v1::ListNamespacesResponse namespacesAnswer(const kube::KubeObjects& objects,
                                                       const std::vector<KubeAgentNode>& agents,
                                                       const kube::Selector& expect_ambient,
                                                       const std::vector<meshprobe::v1::Finding>& active);

// ListNodes' missing_agents (pure, for tests): the Nodes of `objects` not in `members`, each
// with the `agent` pod on it and the active AGENT_MISSING finding about it, if any.
std::vector<meshprobe::v1::MissingAgentNode> missingAgents(const kube::KubeObjects& objects,
                                                           const std::vector<std::string>& members,
                                                           const ComponentSelector& agent,
                                                           const std::vector<meshprobe::v1::Finding>& active);

class QueryService final : public meshprobe::v1::Query::CallbackService {
 public:
  // `kube` (not owned, may be null: no Kubernetes API) and `kube_options` (the
  // --expect-ambient selector, the agent pods' selector) as the diagnosis engine has them.
  QueryService(const ClusterState& state, const DiagnosisEngine& engine, const kube::KubeView* kube = nullptr,
               KubeRuleOptions kube_options = {})
      : state_(state), engine_(engine), kube_(kube), kube_options_(std::move(kube_options)) {}

  // ListNodes' missing_agents now: empty without the Kubernetes API or before its first list
  // (also what the matrix page lists).
  std::vector<meshprobe::v1::MissingAgentNode> missingAgentNodes() const;

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
  // Without the Kubernetes API, or before its first list -> FAILED_PRECONDITION saying which.
  grpc::ServerUnaryReactor* ListNamespaces(grpc::CallbackServerContext* ctx,
                                           const meshprobe::v1::ListNamespacesRequest* req,
                                           meshprobe::v1::ListNamespacesResponse* resp) override;

 private:
  const ClusterState& state_;
  const DiagnosisEngine& engine_;
  const kube::KubeView* const kube_;
  const KubeRuleOptions kube_options_;
  std::array<Histogram, static_cast<size_t>(QueryMethod::kCount)> latency_{
      Histogram(Histogram::latencyBounds()), Histogram(Histogram::latencyBounds()),
      Histogram(Histogram::latencyBounds()), Histogram(Histogram::latencyBounds()),
      Histogram(Histogram::latencyBounds())};
};

}  // namespace meshprobe::aggregator
