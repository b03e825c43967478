#include "aggregator/diagnosis/engine.h"

#include <algorithm>

namespace meshprobe::aggregator {

namespace v1 = meshprobe::v1;

DiagnosisEngine::DiagnosisEngine(const Clock& clock, const ClusterState& state, DiagnosisOptions options)
    : clock_(clock), state_(state), options_(options), tracker_(options.lifecycle) {}

bool DiagnosisEngine::reuseIfUnchanged(uint64_t generation) {
  std::lock_guard lock(mu_);
  if (generation == 0 || generation != last_generation_) return false;
  tracker_.update(last_candidates_, clock_.monotonicNow(), clock_.wallNow());
  ++evaluations_;
  ++skipped_passes_;
  return true;
}

template <typename Rules>
void DiagnosisEngine::pass(uint64_t generation, Rules rules) {
  if (reuseIfUnchanged(generation)) return;
  std::vector<Candidate> candidates = rules();
  std::lock_guard lock(mu_);
  tracker_.update(candidates, clock_.monotonicNow(), clock_.wallNow());
  ++evaluations_;
  ++rule_passes_;
  last_generation_ = generation;
  last_candidates_ = std::move(candidates);
}

void DiagnosisEngine::evaluate() {
  // The snapshot's generation first: an unchanged cluster costs neither the rules nor the
  // input (one NodeEvidence per member).
  auto snap = state_.snapshot();
  if (reuseIfUnchanged(snap->generation)) return;
  evaluate(state_.diagnosisInput());
}

void DiagnosisEngine::evaluate(const DiagnosisInput& input) {
  pass(input.generation, [&] { return diagnose(input, options_.rules); });
}

std::vector<v1::Finding> DiagnosisEngine::active(const std::string& node) const {
  std::vector<v1::Finding> out;
  {
    std::lock_guard lock(mu_);
    out = tracker_.active();
  }
  if (!node.empty()) {
    std::erase_if(out, [&](const v1::Finding& f) {
      return std::find(f.nodes().begin(), f.nodes().end(), node) == f.nodes().end();
    });
  }
  std::sort(out.begin(), out.end(), [](const v1::Finding& a, const v1::Finding& b) {
    if (a.severity() != b.severity()) return a.severity() > b.severity();
    if (a.code() != b.code()) return a.code() < b.code();
    return a.id() < b.id();
  });
  return out;
}

std::vector<v1::Finding> DiagnosisEngine::recentlyCleared() const {
  std::lock_guard lock(mu_);
  return tracker_.recentlyCleared();
}

uint64_t DiagnosisEngine::evaluations() const {
  std::lock_guard lock(mu_);
  return evaluations_;
}

uint64_t DiagnosisEngine::rulePasses() const {
  std::lock_guard lock(mu_);
  return rule_passes_;
}

uint64_t DiagnosisEngine::skippedPasses() const {
  std::lock_guard lock(mu_);
  return skipped_passes_;
}

}  // namespace meshprobe::aggregator
