// Diagnosis pass cost at 1,000 and 5,000 nodes (Google Benchmark).
//
//   BM_Diagnose          diagnose(DiagnosisInput) over dense synthetic layer views (what the
//                        cluster state publishes): case 0 healthy, 1 one node broken on the
//                        overlay (its row and column FAIL), 2 one broken overlay pair.
//   BM_EngineNoChange    DiagnosisEngine::evaluate() with the previous pass's generation: the
//                        rules are skipped, the finding tracker still updates.
//   BM_FailingWalk       same-run floor: a loop over both layers' failing() lists.
//   BM_DiagnoseSnapshot  same-run baseline at 1,000 nodes: the protobuf path
//                        diagnose(ClusterSnapshot) (both matrices as GetMatrixResponse, every
//                        cell a message; probe lists hold the failing cells' results only), which
//                        builds ProtoLayerViews over the matrices first, as the rules did before
//                        the views (N×N grids).
//
// main() prints each pass against its target: a pass over 5,000 nodes with a broken node
// <= 50 ms, an unchanged pass in microseconds.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "aggregator/cluster_state.h"
#include "aggregator/diagnosis/engine.h"
#include "aggregator/diagnosis/proto_layer_view.h"
#include "aggregator/diagnosis/rules.h"
#include "aggregator/state/layer_view.h"
#include "common/clock.h"

namespace meshprobe::aggregator {
namespace {

namespace v1 = meshprobe::v1;
using State = v1::Cell::State;

std::string nameOf(uint32_t i) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "node-%05u", i);
  return buf;
}

// A dense layer: N×N states, a probe result behind each failing cell.
class DenseView final : public LayerView {
 public:
  DenseView(v1::Layer layer, uint32_t n) : n_(n), state_(static_cast<size_t>(n) * n, v1::Cell::OK) { (void)layer; }
  void fail(uint32_t s, uint32_t d) { state_[static_cast<size_t>(s) * n_ + d] = v1::Cell::FAIL; }
  void seal() {
    for (uint32_t s = 0; s < n_; ++s) {
      for (uint32_t d = 0; d < n_; ++d) {
        if (s != d && state(s, d) == v1::Cell::FAIL) failing_.emplace_back(s, d);
      }
    }
    detailed_ = failing_;
    details_.resize(detailed_.size());
    for (size_t i = 0; i < detailed_.size(); ++i) {
      auto& p = details_[i];
      p.set_dst(nameOf(detailed_[i].second));
      p.set_sent(10);
      p.set_loss(1.0);
      p.set_consecutive_failures(4);
      p.set_error("timeout after 800ms");
    }
  }
  uint32_t size() const override { return n_; }
  State state(uint32_t s, uint32_t d) const override {
    if (s >= n_ || d >= n_ || s == d) return v1::Cell::UNKNOWN;
    return static_cast<State>(state_[static_cast<size_t>(s) * n_ + d]);
  }
  const std::vector<CellPair>& failing() const override { return failing_; }
  // As the cluster state's view answers it: a walk over the node's row and column.
  uint32_t measuredPeers(uint32_t x) const override {
    uint32_t count = 0;
    for (uint32_t y = 0; y < n_; ++y) {
      if (y != x && (state(x, y) != v1::Cell::UNKNOWN || state(y, x) != v1::Cell::UNKNOWN)) ++count;
    }
    return count;
  }
  const v1::ProbeResult* detail(uint32_t s, uint32_t d) const override {
    auto it = std::lower_bound(detailed_.begin(), detailed_.end(), CellPair{s, d});
    return it == detailed_.end() || *it != CellPair{s, d} ? nullptr : &details_[it - detailed_.begin()];
  }
  const std::vector<CellPair>& detailed() const override { return detailed_; }

 private:
  uint32_t n_;
  std::vector<uint8_t> state_;
  std::vector<CellPair> failing_, detailed_;
  std::vector<v1::ProbeResult> details_;
};

enum Case : int { kHealthy = 0, kBrokenNode = 1, kBrokenPair = 2 };

std::shared_ptr<const DiagnosisInput> makeInput(uint32_t n, int c) {
  auto in = std::make_shared<DiagnosisInput>();
  in->nodes.resize(n);
  for (uint32_t i = 0; i < n; ++i) {
    in->nodes[i].summary.set_name(nameOf(i));
    in->nodes[i].summary.set_up(true);
    in->nodes[i].summary.set_vxlan_mtu(1450);
    in->nodes[i].has_report = true;
  }
  auto underlay = std::make_shared<DenseView>(v1::UNDERLAY, n);
  auto overlay = std::make_shared<DenseView>(v1::OVERLAY, n);
  if (c == kBrokenNode) {
    const uint32_t x = n / 3;
    for (uint32_t y = 0; y < n; ++y) {
      if (y == x) continue;
      overlay->fail(x, y);
      overlay->fail(y, x);
    }
  } else if (c == kBrokenPair) {
    overlay->fail(10, 20);
    overlay->fail(20, 10);
  }
  underlay->seal();
  overlay->seal();
  in->underlay = underlay;
  in->overlay = overlay;
  in->istiod.assign(n, v1::Cell::OK);
  in->generation = 1;
  return in;
}

const DiagnosisInput& inputFor(uint32_t n, int c) {
  static std::map<std::pair<uint32_t, int>, std::shared_ptr<const DiagnosisInput>> cache;
  auto& slot = cache[{n, c}];
  if (!slot) slot = makeInput(n, c);
  return *slot;
}

void BM_Diagnose(benchmark::State& state) {
  const DiagnosisInput& in = inputFor(static_cast<uint32_t>(state.range(0)), static_cast<int>(state.range(1)));
  size_t findings = 0;
  for (auto _ : state) {
    auto cs = diagnose(in);
    findings = cs.size();
    benchmark::DoNotOptimize(cs);
  }
  state.counters["findings"] = static_cast<double>(findings);
  state.counters["failing_cells"] = static_cast<double>(in.overlay->failing().size());
}

void BM_FailingWalk(benchmark::State& state) {
  const DiagnosisInput& in = inputFor(static_cast<uint32_t>(state.range(0)), static_cast<int>(state.range(1)));
  for (auto _ : state) {
    uint64_t sum = 0;
    for (const auto* v : {in.underlay.get(), in.overlay.get()}) {
      for (const auto& [s, d] : v->failing()) sum += s ^ d;
    }
    benchmark::DoNotOptimize(sum);
  }
}

void BM_EngineNoChange(benchmark::State& state) {
  const DiagnosisInput& in = inputFor(static_cast<uint32_t>(state.range(0)), static_cast<int>(state.range(1)));
  SystemClock clock;
  ClusterState cluster(clock, ClusterOptions{});
  DiagnosisEngine engine(clock, cluster);
  engine.evaluate(in);  // the pass that runs the rules
  for (auto _ : state) engine.evaluate(in);
  state.counters["rule_passes"] = static_cast<double>(engine.rulePasses());
  if (engine.rulePasses() != 1) state.SkipWithError("an unchanged generation ran the rules");
}

void BM_DiagnoseSnapshot(benchmark::State& state) {
  const ClusterSnapshot snap =
      snapshotOfInput(inputFor(static_cast<uint32_t>(state.range(0)), static_cast<int>(state.range(1))));
  for (auto _ : state) {
    auto cs = diagnose(snap);
    benchmark::DoNotOptimize(cs);
  }
}

BENCHMARK(BM_Diagnose)
    ->ArgNames({"n", "case"})
    ->ArgsProduct({{1000, 5000}, {kHealthy, kBrokenNode, kBrokenPair}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_FailingWalk)
    ->ArgNames({"n", "case"})
    ->ArgsProduct({{1000, 5000}, {kBrokenNode}})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK(BM_EngineNoChange)
    ->ArgNames({"n", "case"})
    ->ArgsProduct({{1000, 5000}, {kHealthy, kBrokenNode}})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK(BM_DiagnoseSnapshot)
    ->ArgNames({"n", "case"})
    ->ArgsProduct({{1000}, {kHealthy, kBrokenNode}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Records each run's real time in seconds for the summary.
class RecordingReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const auto& r : runs) {
      if (r.error_occurred) continue;
      seconds[r.benchmark_name()] = r.GetAdjustedRealTime() / benchmark::GetTimeUnitMultiplier(r.time_unit);
    }
    ConsoleReporter::ReportRuns(runs);
  }
  std::map<std::string, double> seconds;
};

}  // namespace
}  // namespace meshprobe::aggregator

int main(int argc, char** argv) {
  using meshprobe::aggregator::RecordingReporter;
  benchmark::Initialize(&argc, argv);
  RecordingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  auto get = [&](const std::string& name) {
    auto it = reporter.seconds.find(name + "/real_time");
    return it == reporter.seconds.end() ? -1.0 : it->second;
  };
  const double node5k = get("BM_Diagnose/n:5000/case:1");
  if (node5k >= 0) {
    std::printf("pass over 5,000 nodes, one broken node: %.2f ms (target <= 50 ms: %s)\n", node5k * 1e3,
                node5k <= 0.050 ? "met" : "MISSED");
  }
  for (const char* n : {"1000", "5000"}) {
    const double same = get(std::string("BM_EngineNoChange/n:") + n + "/case:1");
    if (same >= 0) std::printf("unchanged pass at %s nodes (broken node active): %.2f us\n", n, same * 1e6);
  }
  for (const char* c : {"0", "1"}) {
    const double view = get(std::string("BM_Diagnose/n:1000/case:") + c);
    const double proto = get(std::string("BM_DiagnoseSnapshot/n:1000/case:") + c);
    if (view > 0 && proto > 0) {
      std::printf("1,000 nodes, case %s: views %.3f ms, protobuf snapshot path %.1f ms: %.0fx\n", c, view * 1e3,
                  proto * 1e3, proto / view);
    }
  }
  return 0;
}
