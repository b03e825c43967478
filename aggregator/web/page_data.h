#pragma once
// The matrix page's data (aggregator/web/matrix_page.html), as pure functions over the
// diagnosis rules' input (DiagnosisInput: the nodes and one LayerView per probe layer) and
// the diagnosis engine's active findings. The field lists are at the top of page_data.cc.
//
//   pageState         /api/v1/state: nodes with their health, FAIL/DEGRADED cells, findings.
//                     O(nodes + failing/detailed cells + findings): never walks N² cells.
//   withFullCells     the same document with every cell of each layer (the old shape, for
//                     small clusters and scripts that want the whole matrix).
//   compactMatrixJson /api/v1/matrix: one layer's whole matrix as run-length rows of one
//                     letter per cell, what the page's heatmap draws. O(N²) letters, but a
//                     healthy row is a few bytes.
//   cellJson          /api/v1/cell: one cell's numbers (from its source's latest probes).

#include <chrono>
#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "aggregator/diagnosis/rules.h"
#include "aggregator/matrix.h"
#include "common/result.h"
#include "meshprobe/v1/query.pb.h"
#include "meshprobe/v1/types.pb.h"

namespace meshprobe::aggregator::web {

// At most this many FAIL/DEGRADED cells per layer are listed in pageState (worst first:
// FAIL before DEGRADED, then (src, dst) order); `counts` stays exact and the layer says
// `cellsTruncated`. The heatmap shows every cell.
inline constexpr size_t kMaxListedCells = 5000;
// /api/v1/state?cells=auto includes every cell while the cluster has at most this many
// nodes (the page then draws HTML tables, as before; above it, a canvas heatmap).
inline constexpr size_t kFullCellsMaxNodes = 64;

// The /api/v1/state document (version 2) without the full cells.
nlohmann::json pageState(const DiagnosisInput& input, const std::vector<meshprobe::v1::Finding>& findings,
                         std::chrono::system_clock::time_point now, size_t max_listed_cells = kMaxListedCells);

// Replaces each layer's `cells` in a pageState document by every cell of `matrices`
// (UNDERLAY, OVERLAY, ISTIOD as ClusterState::matrix() builds them; a matrix that is an
// error leaves the layer's `error`), with `nodes`, `destinations` and the four counts.
void withFullCells(nlohmann::json& page, const std::vector<Result<meshprobe::v1::GetMatrixResponse>>& matrices);

// One layer's whole matrix for the heatmap (UNDERLAY, OVERLAY or ISTIOD; any other layer is
// an error naming it).
Result<std::string> compactMatrixJson(const DiagnosisInput& input, meshprobe::v1::Layer layer,
                                      std::chrono::system_clock::time_point now);

// One cell (src -> dst on `layer`) from the source's GetNode answer: state as the matrix
// classifies it, RTT, loss, when the source's report arrived, plus the source's probe
// counters.
nlohmann::json cellJson(const meshprobe::v1::GetNodeResponse& src, meshprobe::v1::Layer layer, const std::string& dst,
                        const MatrixOptions& options);

// JSON text of a document (invalid UTF-8 replaced, so a remedy never breaks the page).
std::string dumpJson(const nlohmann::json& j);

// The document's "missingAgents" array: ListNodes' missing_agents (Kubernetes Nodes from
// which no agent has said Hello), each {"name", "ready", "agentPod", "podState", "reason",
// "findingId"}.
nlohmann::json missingAgentsJson(const std::vector<meshprobe::v1::MissingAgentNode>& missing);

// One finding as it appears in the document's "findings" array.
nlohmann::json findingJson(const meshprobe::v1::Finding& finding);

// "OK", "DEGRADED", "FAIL", "UNKNOWN" (STATE_UNSPECIFIED is UNKNOWN).
std::string stateName(meshprobe::v1::Cell::State state);

}  // namespace meshprobe::aggregator::web
