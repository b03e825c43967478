#include "aggregator/diagnosis/engine.h"

#include <algorithm>
#include <cctype>
#include <iterator>

namespace meshprobe::aggregator {

namespace v1 = meshprobe::v1;

DiagnosisEngine::DiagnosisEngine(const Clock& clock, const ClusterState& state, DiagnosisOptions options,
                                 const kube::KubeView* kube)
    : clock_(clock), state_(state), options_(std::move(options)), kube_(kube), tracker_(options_.lifecycle) {}

namespace {

std::chrono::system_clock::time_point toTimePoint(const google::protobuf::Timestamp& t) {
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::seconds(t.seconds()) +
                                                                      std::chrono::nanoseconds(t.nanos())));
}

PodCaptureEvidence captureEvidence(const v1::PodNetnsCapture& capture) {
  PodCaptureEvidence e;
  e.ips.assign(capture.ips().begin(), capture.ips().end());
  e.captured = capture.state() == v1::PodNetnsCapture::CAPTURED;
  std::string state = v1::PodNetnsCapture::State_Name(capture.state());
  std::transform(state.begin(), state.end(), state.begin(), [](unsigned char c) { return std::tolower(c); });
  e.state = std::move(state);
  e.reason = capture.reason();
  return e;
}

}  // namespace

KubeRuleInput kubeRuleInput(const StateSnapshot& snap, std::shared_ptr<const kube::KubeObjects> objects,
                            const std::vector<Candidate>& matrix, std::chrono::system_clock::time_point now) {
  KubeRuleInput in;
  in.objects = std::move(objects);
  in.now = now;
  in.agents.reserve(snap.size());
  for (uint32_t i = 0; i < snap.size(); ++i) {
    const NodeInfo& info = *snap.nodes[i];
    KubeAgentNode agent;
    agent.name = snap.name(i);
    agent.up = snap.up[i] != 0;
    agent.ever_reported = info.has_report;
    if (info.has_report) agent.last_report = toTimePoint(info.report_time);
    agent.istiod = i < snap.istiod.size() ? snap.istiod[i] : v1::Cell::UNKNOWN;
    if (info.pod_netns) {
      for (const auto& capture : info.pod_netns->entries()) agent.captures.push_back(captureEvidence(capture));
    }
    in.agents.push_back(std::move(agent));
  }
  // The matrix rules' overlay/underlay blame (the first, most specific finding per node).
  for (const Candidate& c : matrix) {
    const v1::Layer layer = c.finding.layer();
    if (layer != v1::OVERLAY && layer != v1::UNDERLAY) continue;
    for (const std::string& node : c.finding.nodes()) in.path_blamed.emplace(node, c.finding.id());
  }
  return in;
}

bool DiagnosisEngine::reuseIfUnchanged(uint64_t generation) {
  std::lock_guard lock(mu_);
  if (generation == 0 || generation != last_generation_) return false;
  tracker_.update(last_candidates_, clock_.monotonicNow(), clock_.wallNow());
  ++evaluations_;
  ++skipped_passes_;
  return true;
}

template <typename Rules>
bool DiagnosisEngine::pass(uint64_t generation, Rules rules) {
  if (reuseIfUnchanged(generation)) return false;
  std::vector<Candidate> candidates = rules();
  std::lock_guard lock(mu_);
  tracker_.update(candidates, clock_.monotonicNow(), clock_.wallNow());
  ++evaluations_;
  ++rule_passes_;
  last_generation_ = generation;
  last_candidates_ = std::move(candidates);
  return true;
}

void DiagnosisEngine::observeRulePass(std::chrono::steady_clock::time_point started) {
  rule_pass_seconds_.observe(std::chrono::duration<double>(clock_.monotonicNow() - started).count());
}

void DiagnosisEngine::evaluate() {
  const auto started = clock_.monotonicNow();
  if (evaluateOnce()) observeRulePass(started);
}

bool DiagnosisEngine::evaluateOnce() {
  // The snapshot's generation first: an unchanged cluster costs neither the rules nor the
  // input (one NodeEvidence per member).
  auto snap = state_.snapshot();
  if (kube_ == nullptr) {
    if (reuseIfUnchanged(snap->generation)) return false;
    const DiagnosisInput input = state_.diagnosisInput();
    return pass(input.generation, [&] { return diagnose(input, options_.rules); });
  }
  std::vector<Candidate> matrix;
  bool reused = false;
  uint64_t generation = snap->generation;
  {
    std::lock_guard lock(mu_);
    if (generation != 0 && generation == last_generation_) {
      matrix = last_candidates_;
      reused = true;
    }
  }
  if (!reused) {
    DiagnosisInput input = state_.diagnosisInput();
    generation = input.generation;
    matrix = diagnose(input, options_.rules);
  }
  std::shared_ptr<const kube::KubeObjects> objects = kube_->objects();
  std::vector<Candidate> all = matrix;
  addPodsToRemedies(all, objects.get(), options_.kube);  // the reused candidates stay without them
  std::vector<Candidate> kube = diagnoseKube(kubeRuleInput(*snap, objects, matrix, clock_.wallNow()), options_.kube);
  all.insert(all.end(), std::make_move_iterator(kube.begin()), std::make_move_iterator(kube.end()));
  std::lock_guard lock(mu_);
  tracker_.update(all, clock_.monotonicNow(), clock_.wallNow());
  ++evaluations_;
  if (reused) {
    ++skipped_passes_;
  } else {
    ++rule_passes_;
    last_generation_ = generation;
    last_candidates_ = std::move(matrix);
  }
  return !reused;
}

void DiagnosisEngine::evaluate(const DiagnosisInput& input) {
  const auto started = clock_.monotonicNow();
  if (pass(input.generation, [&] { return diagnose(input, options_.rules); })) observeRulePass(started);
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
