#include "aggregator/diagnosis/engine.h"

#include <algorithm>

namespace meshprobe::aggregator {

namespace v1 = meshprobe::v1;

DiagnosisEngine::DiagnosisEngine(const Clock& clock, const ClusterState& state, DiagnosisOptions options)
    : clock_(clock), state_(state), options_(options), tracker_(options.lifecycle) {}

void DiagnosisEngine::evaluate() {
  const ClusterSnapshot snapshot = state_.diagnosisSnapshot();
  std::vector<Candidate> candidates = diagnose(snapshot, options_.rules);
  std::lock_guard lock(mu_);
  tracker_.update(candidates, clock_.monotonicNow(), clock_.wallNow());
  ++evaluations_;
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

}  // namespace meshprobe::aggregator
