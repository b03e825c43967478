// The aggregator's cluster state at 1,000 and 5,000 nodes: report ingest (cell updates per
// second, against a same-run baseline that only stores the same 8-byte cells into a flat
// array), memory per cell with every cell filled, snapshot publishing, and matrixSummary
// (what /metrics reads).
//
//   ninja -C <build> aggregator_state_bench && <build>/bench/aggregator_state_bench
//
// Counters: cells/s = probe results ingested per second (one core); B/cell = heap bytes
// of the live state (malloc in-use delta) per cell per layer, every cell of both layers
// filled, none or 1 % of them failing (a failing cell keeps its details).

#include <benchmark/benchmark.h>
#include <google/protobuf/util/time_util.h>
#include <malloc.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "aggregator/cluster_state.h"
#include "common/clock.h"

namespace {

namespace v1 = meshprobe::v1;
using meshprobe::FakeClock;
using meshprobe::aggregator::ClusterOptions;
using meshprobe::aggregator::ClusterState;
using meshprobe::aggregator::PackedCell;
using meshprobe::aggregator::packProbe;
using google::protobuf::util::TimeUtil;

std::string nodeName(int i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "node-%05d.cluster.local", i);
  return buf;
}

v1::Hello hello(int i) {
  v1::Hello h;
  h.set_node_name(nodeName(i));
  h.set_node_ip("10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1));
  h.set_overlay_ip("10.244." + std::to_string(i % 250) + ".0");
  h.set_vxlan_vni(1);
  h.set_vxlan_port(4789);
  h.set_vxlan_mtu(1450);
  return h;
}

v1::ProbeResult probe(const std::string& dst, v1::Layer layer, bool fail) {
  v1::ProbeResult p;
  p.set_dst(dst);
  p.set_layer(layer);
  p.set_sent(20);
  p.set_received(fail ? 0 : 20);
  p.set_loss(fail ? 1.0 : 0.0);
  p.set_recent_loss(fail ? 1.0 : 0.0);
  p.set_consecutive_failures(fail ? 4 : 0);
  if (fail) p.set_error("timeout after 500ms");
  *p.mutable_rtt_p50() = TimeUtil::MicrosecondsToDuration(180);
  *p.mutable_rtt_p99() = TimeUtil::MicrosecondsToDuration(420);
  *p.mutable_last_probe() = TimeUtil::SecondsToTimestamp(1'900'000'000);
  *p.mutable_last_success() = p.last_probe();
  return p;
}

// A cluster of n members. reportFor(s) is a report from source s with `per_layer` probes on
// each of UNDERLAY and OVERLAY (to the next members after s), 1 % failing.
struct Cluster {
  FakeClock clock;
  std::unique_ptr<ClusterState> state;
  int n = 0;
  uint64_t seq = 0;
  int fail_per_mille = 10;  // share of failing cells (which keep their details)

  explicit Cluster(int nodes) : n(nodes) {
    ClusterOptions o;
    o.stale_after = std::chrono::hours(1);
    state = std::make_unique<ClusterState>(clock, o);
    for (int i = 0; i < n; ++i) state->applyHello(hello(i), true);
  }

  v1::Report reportFor(int s, int per_layer) const {
    v1::Report r;
    for (v1::Layer layer : {v1::UNDERLAY, v1::OVERLAY}) {
      for (int k = 1; k <= per_layer; ++k) {
        const int d = (s + k) % n;
        *r.add_probes() = probe(nodeName(d), layer, (s * 31 + d) % 1000 < fail_per_mille);
      }
    }
    *r.mutable_time() = TimeUtil::SecondsToTimestamp(1'900'000'001);
    *r.mutable_coverage_period() = TimeUtil::SecondsToDuration(10);
    *r.mutable_probe_interval() = TimeUtil::SecondsToDuration(1);
    return r;
  }

  void fill() {  // every cell of both layers
    for (int s = 0; s < n; ++s) {
      v1::Report r = reportFor(s, n - 1);
      r.set_sequence(++seq);
      state->applyReport(nodeName(s), r);
    }
  }
};

// Per-layer probes of a report: the argument, at most every other member.
int perLayer(int n, int probes) { return std::min(probes / 2, n - 1); }

// Ingest: reports from 64 sources in turn. snapshot_every > 0 publishes a snapshot that
// often, so rows are shared and ingest must write new ones (copy-on-write).
void ingest(benchmark::State& st, int snapshot_every) {
  const int n = static_cast<int>(st.range(0));
  const int per_layer = perLayer(n, static_cast<int>(st.range(1)));
  Cluster c(n);
  std::vector<v1::Report> reports;
  std::vector<std::string> names;
  for (int s = 0; s < 64; ++s) {
    reports.push_back(c.reportFor(s, per_layer));
    names.push_back(nodeName(s));
  }
  size_t i = 0;
  int64_t cells = 0;
  for (auto _ : st) {
    v1::Report& r = reports[i % reports.size()];
    r.set_sequence(++c.seq);
    benchmark::DoNotOptimize(c.state->applyReport(names[i % names.size()], r));
    cells += r.probes_size();
    if (snapshot_every > 0 && ++i % static_cast<size_t>(snapshot_every) == 0) {
      benchmark::DoNotOptimize(c.state->snapshot());
    } else if (snapshot_every == 0) {
      ++i;
    }
  }
  st.counters["cells/s"] = benchmark::Counter(static_cast<double>(cells), benchmark::Counter::kIsRate);
}

void BM_Ingest(benchmark::State& st) { ingest(st, 0); }
void BM_IngestWithSnapshots(benchmark::State& st) { ingest(st, 8); }

// Baseline: the same probe results read and stored as 8-byte cells into a flat array at
// precomputed positions (no name lookup, no classification, no details, no rows).
void BM_BaselineArrayStore(benchmark::State& st) {
  const int n = static_cast<int>(st.range(0));
  const int per_layer = perLayer(n, static_cast<int>(st.range(1)));
  Cluster c(std::min(n, 2));  // only for reportFor's names; no state used
  c.n = n;
  std::vector<v1::Report> reports;
  std::vector<std::vector<uint32_t>> pos;
  for (int s = 0; s < 64; ++s) {
    reports.push_back(c.reportFor(s, per_layer));
    std::vector<uint32_t> p;
    for (int k = 0; k < reports.back().probes_size(); ++k) {
      const int layer = k < per_layer ? 0 : 1;
      p.push_back(static_cast<uint32_t>(layer * n + (s + k % per_layer + 1) % n));
    }
    pos.push_back(std::move(p));
  }
  std::vector<PackedCell> row(2 * static_cast<size_t>(n));
  size_t i = 0;
  int64_t cells = 0;
  for (auto _ : st) {
    const v1::Report& r = reports[i % reports.size()];
    const auto& p = pos[i % pos.size()];
    std::fill(row.begin(), row.end(), PackedCell{});  // a report replaces the row
    for (int k = 0; k < r.probes_size(); ++k) row[p[static_cast<size_t>(k)]] = packProbe(r.probes(k), v1::Cell::OK);
    benchmark::DoNotOptimize(row.data());
    benchmark::ClobberMemory();
    cells += r.probes_size();
    ++i;
  }
  st.counters["cells/s"] = benchmark::Counter(static_cast<double>(cells), benchmark::Counter::kIsRate);
}

// Memory: heap in use by the live state with every cell of both layers filled.
void BM_MemoryPerCell(benchmark::State& st) {
  const int n = static_cast<int>(st.range(0));
  double per_cell = 0, per_cell_rows_only = 0;
  for (auto _ : st) {
    st.PauseTiming();
    malloc_trim(0);
    const size_t before = mallinfo2().uordblks;
    {
      Cluster c(n);
      c.fail_per_mille = static_cast<int>(st.range(1));
      const size_t after_hellos = mallinfo2().uordblks;
      c.fill();
      const size_t after = mallinfo2().uordblks;
      const double cells = 2.0 * n * (n - 1);
      per_cell = static_cast<double>(after - before) / cells;
      per_cell_rows_only = static_cast<double>(after - after_hellos) / cells;
    }
    st.ResumeTiming();
  }
  st.counters["B/cell"] = per_cell;                    // everything, members included
  st.counters["B/cell_reports"] = per_cell_rows_only;  // what the reports added
}

// Publishing: one source's report, then a snapshot (rows of everyone else shared).
void BM_SnapshotPublish(benchmark::State& st) {
  const int n = static_cast<int>(st.range(0));
  Cluster c(n);
  c.fill();
  v1::Report r = c.reportFor(7, n - 1);
  const std::string name = nodeName(7);
  for (auto _ : st) {
    st.PauseTiming();
    r.set_sequence(++c.seq);
    c.state->applyReport(name, r);
    st.ResumeTiming();
    benchmark::DoNotOptimize(c.state->snapshot());
  }
}

// /metrics: matrixSummary over the published snapshot, every cell filled, 1 % failing.
void BM_MatrixSummary(benchmark::State& st) {
  const int n = static_cast<int>(st.range(0));
  Cluster c(n);
  c.fill();
  size_t failed = 0;
  for (auto _ : st) {
    auto s = c.state->matrixSummary(v1::OVERLAY);
    failed = s->failed.size();
    benchmark::DoNotOptimize(s);
  }
  st.counters["failing"] = static_cast<double>(failed);
}

void ingestArgs(benchmark::internal::Benchmark* b) {
  for (int n : {1000, 5000}) {
    for (int probes : {200, 5000}) b->Args({n, probes});
  }
}

BENCHMARK(BM_BaselineArrayStore)->Apply(ingestArgs);
BENCHMARK(BM_Ingest)->Apply(ingestArgs);
BENCHMARK(BM_IngestWithSnapshots)->Apply(ingestArgs);
BENCHMARK(BM_MemoryPerCell)->Args({1000, 0})->Args({1000, 10})->Args({5000, 0})->Args({5000, 10})->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_SnapshotPublish)->Arg(1000)->Arg(5000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_MatrixSummary)->Arg(1000)->Arg(5000)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
