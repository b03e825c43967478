#pragma once
// The findings engine: joins the cluster's probe matrices with every node's
// own check results and says which node is broken, on which layer, and why.
//
//   ClusterState ──snapshot──▶ rules (blame over the matrices + node evidence)
//                                   │ candidate findings, each with a stable id
//                                   ▼
//                             FindingTracker (onset/clear times, hysteresis, history)
//                                   │
//                        active() ◀─┘  Diagnose, /metrics, the matrix page
//
// evaluate() is called periodically (AggregatorServer's diagnosis thread) and by tests
// with a FakeClock; everything else is a read of the tracker's state. Thread-safe.

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "aggregator/cluster_state.h"
#include "aggregator/diagnosis/lifecycle.h"
#include "aggregator/diagnosis/rules.h"
#include "common/clock.h"
#include "meshprobe/v1/types.pb.h"

namespace meshprobe::aggregator {

struct DiagnosisOptions {
  RuleOptions rules;
  LifecycleOptions lifecycle;
};

class DiagnosisEngine {
 public:
  DiagnosisEngine(const Clock& clock, const ClusterState& state, DiagnosisOptions options = {});

  // One pass: snapshot the cluster, run the rules, update lifecycles.
  void evaluate();

  // Active findings, most severe first (then by code, then by id). With a non-empty
  // `node`, only findings that blame it or that it reported.
  std::vector<meshprobe::v1::Finding> active(const std::string& node = "") const;
  // Findings cleared within LifecycleOptions::keep_cleared, newest first.
  std::vector<meshprobe::v1::Finding> recentlyCleared() const;
  // Number of evaluate() passes so far (readiness, tests).
  uint64_t evaluations() const;

 private:
  const Clock& clock_;
  const ClusterState& state_;
  const DiagnosisOptions options_;
  mutable std::mutex mu_;
  FindingTracker tracker_;
  uint64_t evaluations_ = 0;
};

}  // namespace meshprobe::aggregator
