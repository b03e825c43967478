#pragma once
// The matrix page's data: one JSON document with the nodes, the three layers' cells and
// the active findings (with remedies), served by the aggregator at /api/v1/state and
// fetched by the page (aggregator/web/matrix_page.html) on every refresh.

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

#include "aggregator/cluster_state.h"
#include "aggregator/diagnosis/engine.h"

namespace meshprobe::aggregator::web {

// JSON text (the fields are documented at the top of page_data.cc). `generatedAt` is the
// wall clock now.
std::string pageStateJson(const ClusterState& state, const DiagnosisEngine& diagnosis);

// Same with an explicit `generatedAt` (tests pass a fixed time).
std::string pageStateJson(const ClusterState& state, const DiagnosisEngine& diagnosis,
                          std::chrono::system_clock::time_point now);

// One finding as it appears in the document's "findings" array.
nlohmann::json findingJson(const meshprobe::v1::Finding& finding);

}  // namespace meshprobe::aggregator::web
