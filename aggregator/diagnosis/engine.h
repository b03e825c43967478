#pragma once
// The findings engine: joins the cluster's probe matrices with every node's
// own check results and says which node is broken, on which layer, and why.
//
//   ClusterState ──input──▶ rules (blame over the layer views + node evidence)
//                                   │ candidate findings, each with a stable id
//                                   │ (an input of the same generation as the last pass's:
//                                   │  the last pass's candidates, the rules do not run)
//                                   ▼
//                             FindingTracker (onset/clear times, hysteresis, history)
//                                   │
//                        active() ◀─┘  Diagnose, /metrics, the matrix page
//
// With a KubeView, the Kubernetes rules (kube_rules.h) add their candidates to every pass,
// joined with the snapshot's agents and the matrix rules' overlay/underlay blame, and the
// remedies of OVERLAY_FDB_STALE, ZTUNNEL_NOT_CONNECTED and CNI_AGENT_DOWN name the pod to act
// on (addPodsToRemedies).
//
// evaluate() is called periodically (AggregatorServer's diagnosis thread) and by tests
// with a FakeClock; everything else is a read of the tracker's state. Thread-safe.

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "aggregator/cluster_state.h"
#include "aggregator/diagnosis/kube_rules.h"
#include "aggregator/diagnosis/lifecycle.h"
#include "aggregator/kube/objects.h"
#include "aggregator/diagnosis/rules.h"
#include "common/clock.h"
#include "common/metrics.h"
#include "meshprobe/v1/types.pb.h"

namespace meshprobe::aggregator {

struct DiagnosisOptions {
  RuleOptions rules;
  LifecycleOptions lifecycle;
  KubeRuleOptions kube;  // used when the engine has a KubeView
};

// What the Kubernetes rules see of the agents: each member of `snap` (up, reported, its
// ISTIOD cell, its pod netns list) and the nodes the matrix candidates blame for their
// overlay or underlay. Exposed for tests.
KubeRuleInput kubeRuleInput(const StateSnapshot& snap, std::shared_ptr<const kube::KubeObjects> objects,
                            const std::vector<Candidate>& matrix, std::chrono::system_clock::time_point now);

class DiagnosisEngine {
 public:
  // With a `kube` view (not owned; outlives the engine), every evaluate() pass also runs
  // the Kubernetes rules (diagnoseKube) over its latest objects and the cluster snapshot:
  // they depend on time (an agent missing for forget_after) and on the API's objects, so
  // they run even when the matrix rules' candidates are reused.
  DiagnosisEngine(const Clock& clock, const ClusterState& state, DiagnosisOptions options = {},
                  const kube::KubeView* kube = nullptr);

  // One pass: take the cluster's input, run the rules, update lifecycles. An unchanged
  // snapshot generation skips building the input as well as the rules.
  void evaluate();
  // One pass over `input`. When input.generation is not 0 and equals the previous pass's,
  // the content is the same: the previous pass's candidates are reused and the rules do
  // not run. The tracker is updated either way (onset and clear are timed by the clock).
  // Generation 0 means unversioned: the rules always run.
  void evaluate(const DiagnosisInput& input);

  // Active findings, most severe first (then by code, then by id). With a non-empty
  // `node`, only findings that blame it or that it reported.
  std::vector<meshprobe::v1::Finding> active(const std::string& node = "") const;
  // Findings cleared within LifecycleOptions::keep_cleared, newest first.
  std::vector<meshprobe::v1::Finding> recentlyCleared() const;
  // Number of evaluate() passes so far (readiness, tests).
  uint64_t evaluations() const;
  // Of those, the passes that ran the rules and the ones that reused the previous
  // candidates (unchanged generation); evaluations() == rulePasses() + skippedPasses().
  uint64_t rulePasses() const;
  uint64_t skippedPasses() const;
  // How long the passes that ran the rules took (on the clock), from reading the cluster's
  // snapshot to the findings updated; reused passes cost next to nothing and are left out.
  HistogramSnapshot rulePassDuration() const { return rule_pass_seconds_.snapshot(); }

 private:
  const Clock& clock_;
  const ClusterState& state_;
  const DiagnosisOptions options_;
  const kube::KubeView* const kube_;
  mutable std::mutex mu_;
  // When `generation` (non-zero) is the last pass's: updates the tracker with the last
  // pass's candidates, counts a skipped pass and returns true.
  bool reuseIfUnchanged(uint64_t generation);
  // Runs `rules` unless `generation` (non-zero) is the last pass's, then updates the tracker.
  // True when the rules ran.
  template <typename Rules>
  bool pass(uint64_t generation, Rules rules);
  // evaluate() without the timing; true when the rules ran.
  bool evaluateOnce();
  void observeRulePass(std::chrono::steady_clock::time_point started);

  FindingTracker tracker_;
  uint64_t evaluations_ = 0;
  uint64_t rule_passes_ = 0;
  uint64_t skipped_passes_ = 0;
  uint64_t last_generation_ = 0;  // 0: none (or the last pass was unversioned)
  std::vector<Candidate> last_candidates_;
  Histogram rule_pass_seconds_{Histogram::latencyBounds()};
};

}  // namespace meshprobe::aggregator
