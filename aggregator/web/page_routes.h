#pragma once
// The routes that serve the matrix page and its JSON, and where they read from in the
// aggregator: the live ClusterState's diagnosisInput() (the rules' input: nodes and a
// LayerView per probe layer) and the diagnosis engine's active findings.

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "aggregator/cluster_state.h"
#include "aggregator/diagnosis/rules.h"
#include "common/http_server.h"
#include "common/result.h"
#include "meshprobe/v1/query.pb.h"
#include "meshprobe/v1/types.pb.h"

namespace meshprobe::aggregator::web {

// What the page routes read. Every function is called per request.
struct PageSources {
  std::function<DiagnosisInput()> input;
  std::function<std::vector<meshprobe::v1::Finding>()> findings;  // active, most severe first
  // Whole matrices for /api/v1/state?cells=all (and cells=auto on small clusters).
  std::function<Result<meshprobe::v1::GetMatrixResponse>(meshprobe::v1::Layer)> matrix;
  // One node's latest report, for /api/v1/cell.
  std::function<Result<meshprobe::v1::GetNodeResponse>(const std::string&)> node;
  // Kubernetes Nodes without an agent (QueryService::missingAgentNodes); unset: none.
  std::function<std::vector<meshprobe::v1::MissingAgentNode>()> missing_agents;
  MatrixOptions matrix_options;
  std::function<std::chrono::system_clock::time_point()> now = [] { return std::chrono::system_clock::now(); };
};

// Sources reading a ClusterState and a findings function.
PageSources clusterPageSources(const ClusterState& state,
                               std::function<std::vector<meshprobe::v1::Finding>()> findings);

// "/" and "/index.html" (the page), "/api/v1/state", "/api/v1/matrix", "/api/v1/cell"
// (page_data.cc documents them); std::nullopt for any other path. Bad parameters are a
// 400 naming them, an unknown node in /api/v1/cell a 404.
std::optional<HttpResponse> handlePageRequest(const PageSources& sources, const HttpRequest& request);

}  // namespace meshprobe::aggregator::web
