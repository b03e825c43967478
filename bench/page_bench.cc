// The matrix page's documents at scale, over a synthetic cluster (no agents, no gRPC):
// N nodes, `--broken K` nodes whose OVERLAY row and column FAIL, `--degraded M` DEGRADED
// UNDERLAY pairs, `--down D` stale nodes. Prints the bytes and build time of
// /api/v1/state (default and, with --old, the pre-heatmap document with every cell) and
// of one layer's compact heatmap. With --serve ADDR it then serves the real page routes
// (web::handlePageRequest) over that cluster until --serve-seconds pass, for
// bench/page_load.sh to load in headless Chromium.
//
//   meshprobe-page-bench --nodes 1000 [--broken 1] [--degraded 5] [--down 2] [--repeat 5]
//                        [--old] [--serve 127.0.0.1:0 --serve-seconds 120]

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "aggregator/web/page_data.h"
#include "aggregator/web/page_routes.h"
#include "common/http_server.h"

namespace {

namespace v1 = meshprobe::v1;
using google::protobuf::util::TimeUtil;
using meshprobe::aggregator::CellPair;
using meshprobe::aggregator::DiagnosisInput;
using meshprobe::aggregator::LayerView;
using meshprobe::aggregator::NodeEvidence;
using State = v1::Cell::State;

// A dense layer: one state per cell, plus the FAIL list and a probe result behind every
// cell that is not OK (what the cluster state's views keep).
class DenseView final : public LayerView {
 public:
  DenseView(uint32_t n, v1::Layer layer) : n_(n), layer_(layer), states_(static_cast<size_t>(n) * n, v1::Cell::OK) {
    for (uint32_t i = 0; i < n; ++i) states_[at(i, i)] = v1::Cell::UNKNOWN;
  }
  void set(uint32_t s, uint32_t d, State st) { states_[at(s, d)] = st; }
  void finish(const std::vector<std::string>& names) {
    for (uint32_t s = 0; s < n_; ++s) {
      for (uint32_t d = 0; d < n_; ++d) {
        const State st = states_[at(s, d)];
        if (st == v1::Cell::FAIL) failing_.emplace_back(s, d);
        if (s != d && st != v1::Cell::OK && st != v1::Cell::UNKNOWN) {
          detailed_.emplace_back(s, d);
          details_.emplace(key(s, d), probe(names[d], st));
        }
      }
    }
  }
  v1::ProbeResult probe(const std::string& dst, State st) const {
    v1::ProbeResult p;
    p.set_dst(dst);
    p.set_layer(layer_);
    p.set_sent(10);
    p.set_received(st == v1::Cell::FAIL ? 0 : st == v1::Cell::DEGRADED ? 8 : 10);
    p.set_loss(1.0 - p.received() / 10.0);
    if (st == v1::Cell::FAIL) p.set_consecutive_failures(3);
    if (st != v1::Cell::FAIL) *p.mutable_rtt_p50() = TimeUtil::MicrosecondsToDuration(450);
    *p.mutable_rtt_p99() = TimeUtil::MicrosecondsToDuration(st == v1::Cell::FAIL ? 0 : 900);
    return p;
  }

  uint32_t size() const override { return n_; }
  State state(uint32_t s, uint32_t d) const override { return states_[at(s, d)]; }
  const std::vector<CellPair>& failing() const override { return failing_; }
  uint32_t measuredPeers(uint32_t) const override { return n_ - 1; }
  const v1::ProbeResult* detail(uint32_t s, uint32_t d) const override {
    auto it = details_.find(key(s, d));
    return it == details_.end() ? nullptr : &it->second;
  }
  const std::vector<CellPair>& detailed() const override { return detailed_; }

 private:
  size_t at(uint32_t s, uint32_t d) const { return static_cast<size_t>(s) * n_ + d; }
  static uint64_t key(uint32_t s, uint32_t d) { return (static_cast<uint64_t>(s) << 32) | d; }
  uint32_t n_;
  v1::Layer layer_;
  std::vector<State> states_;
  std::vector<CellPair> failing_, detailed_;
  std::map<uint64_t, v1::ProbeResult> details_;
};

struct Synthetic {
  DiagnosisInput input;
  std::vector<std::string> names;
  std::shared_ptr<DenseView> underlay, overlay;
  std::vector<v1::Finding> findings;
};

Synthetic synthesize(uint32_t n, uint32_t broken, uint32_t degraded, uint32_t down) {
  Synthetic s;
  const auto now = TimeUtil::GetCurrentTime();
  for (uint32_t i = 0; i < n; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "node-%05u", i);
    s.names.push_back(name);
    NodeEvidence e;
    auto& sum = e.summary;
    sum.set_name(name);
    sum.set_up(i + down < n);  // the last `down` nodes are stale
    sum.set_node_ip("10." + std::to_string(i / 65536) + "." + std::to_string(i / 256 % 256) + "." +
                    std::to_string(i % 256));
    sum.set_overlay_ip("10.244." + std::to_string(i % 256) + ".0");
    sum.set_vtep_mac("02:00:00:00:" + std::to_string(i / 256 % 100) + ":" + std::to_string(i % 100));
    sum.set_vxlan_vni(1);
    sum.set_vxlan_port(4789);
    sum.set_vxlan_mtu(1450);
    sum.set_pod_cidr("10.244." + std::to_string(i % 256) + ".0/24");
    sum.set_agent_version("0.1.0");
    *sum.mutable_last_report() = now;
    e.has_report = true;
    s.input.nodes.push_back(std::move(e));
    s.input.istiod.push_back(sum.up() ? v1::Cell::OK : v1::Cell::UNKNOWN);
  }
  s.underlay = std::make_shared<DenseView>(n, v1::UNDERLAY);
  s.overlay = std::make_shared<DenseView>(n, v1::OVERLAY);
  // Broken nodes: spread over the name order (node 7, then every n/broken).
  for (uint32_t b = 0; b < broken && n > 1; ++b) {
    const uint32_t x = (7 + b * (n / std::max(1u, broken))) % n;
    for (uint32_t y = 0; y < n; ++y) {
      if (y == x) continue;
      s.overlay->set(x, y, v1::Cell::FAIL);
      s.overlay->set(y, x, v1::Cell::FAIL);
    }
    v1::Finding f;
    f.set_code("VXLAN_PORT_FILTERED");
    f.set_id("VXLAN_PORT_FILTERED/" + s.names[x]);
    f.set_severity(v1::CRITICAL);
    f.set_layer(v1::OVERLAY);
    f.add_nodes(s.names[x]);
    f.set_summary(s.names[x] + " drops VXLAN (udp/4789) in its INPUT chain");
    f.set_remedy("remove the DROP rule for udp/4789 on " + s.names[x]);
    s.findings.push_back(f);
  }
  for (uint32_t d = 0; d < degraded && n > 1; ++d)
    s.underlay->set((3 * d + 1) % n, (5 * d + 2) % n, v1::Cell::DEGRADED);
  for (uint32_t x = n - down; x < n; ++x) {
    for (uint32_t y = 0; y < n; ++y) {
      s.underlay->set(x, y, v1::Cell::UNKNOWN);
      s.overlay->set(x, y, v1::Cell::UNKNOWN);
    }
  }
  s.underlay->finish(s.names);
  s.overlay->finish(s.names);
  s.input.underlay = s.underlay;
  s.input.overlay = s.overlay;
  return s;
}

// The pre-heatmap document's matrices: every cell as a Cell proto.
meshprobe::Result<v1::GetMatrixResponse> fullMatrix(const Synthetic& s, v1::Layer layer) {
  v1::GetMatrixResponse m;
  m.set_layer(layer);
  const uint32_t n = static_cast<uint32_t>(s.names.size());
  for (const auto& name : s.names) m.add_nodes(name);
  const auto now = TimeUtil::GetCurrentTime();
  for (uint32_t i = 0; i < n; ++i) {
    if (layer == v1::ISTIOD) {
      auto* c = m.add_cells();
      c->set_src(s.names[i]);
      c->set_dst("istiod");
      c->set_state(s.input.istiod[i]);
      *c->mutable_last_update() = now;
      continue;
    }
    const auto& view = layer == v1::UNDERLAY ? *s.underlay : *s.overlay;
    for (uint32_t j = 0; j < n; ++j) {
      if (i == j) continue;
      auto* c = m.add_cells();
      c->set_src(s.names[i]);
      c->set_dst(s.names[j]);
      c->set_layer(layer);
      c->set_state(view.state(i, j));
      *c->mutable_rtt() = TimeUtil::MicrosecondsToDuration(450);
      c->set_loss(view.state(i, j) == v1::Cell::FAIL ? 1.0 : 0.0);
      *c->mutable_last_update() = now;
    }
  }
  return m;
}

double msSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

template <typename F>
std::pair<size_t, double> measure(int repeat, F&& build) {
  std::vector<double> times;
  size_t bytes = 0;
  for (int r = 0; r < repeat; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    bytes = build().size();
    times.push_back(msSince(t0));
  }
  std::sort(times.begin(), times.end());
  return {bytes, times[times.size() / 2]};
}

uint32_t argU(int argc, char** argv, const char* flag, uint32_t def) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], flag) == 0) return static_cast<uint32_t>(std::strtoul(argv[i + 1], nullptr, 10));
  }
  return def;
}
std::string argS(int argc, char** argv, const char* flag, const std::string& def) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], flag) == 0) return argv[i + 1];
  }
  return def;
}
bool argB(int argc, char** argv, const char* flag) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], flag) == 0) return true;
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace meshprobe::aggregator;
  const uint32_t n = argU(argc, argv, "--nodes", 1000);
  const uint32_t broken = argU(argc, argv, "--broken", 1);
  const uint32_t degraded = argU(argc, argv, "--degraded", 5);
  const uint32_t down = std::min(n, argU(argc, argv, "--down", 2));
  const int repeat = static_cast<int>(std::max(1u, argU(argc, argv, "--repeat", 5)));
  const std::string serve = argS(argc, argv, "--serve", "");
  const uint32_t serve_seconds = argU(argc, argv, "--serve-seconds", 120);

  auto t0 = std::chrono::steady_clock::now();
  const Synthetic s = synthesize(n, broken, degraded, down);
  std::printf("nodes %u, broken nodes %u, degraded pairs %u, stale nodes %u (synthesised in %.0f ms)\n", n, broken,
              degraded, down, msSince(t0));
  const auto now = std::chrono::system_clock::now();

  auto [state_bytes, state_ms] =
      measure(repeat, [&] { return web::dumpJson(web::pageState(s.input, s.findings, now)); });
  std::printf("/api/v1/state (default)          %10zu bytes  %8.2f ms (median of %d)\n", state_bytes, state_ms, repeat);
  for (v1::Layer layer : {v1::OVERLAY, v1::UNDERLAY}) {
    auto [bytes, ms] = measure(repeat, [&] { return web::compactMatrixJson(s.input, layer, now).value(); });
    std::printf("/api/v1/matrix?layer=%-8s     %10zu bytes  %8.2f ms\n", v1::Layer_Name(layer).c_str(), bytes, ms);
  }
  if (argB(argc, argv, "--old")) {
    auto [bytes, ms] = measure(1, [&] {
      auto page = web::pageState(s.input, s.findings, now);
      web::withFullCells(page, {fullMatrix(s, v1::UNDERLAY), fullMatrix(s, v1::OVERLAY), fullMatrix(s, v1::ISTIOD)});
      return web::dumpJson(page);
    });
    std::printf("/api/v1/state?cells=all          %10zu bytes  %8.2f ms (every cell, as before the heatmap)\n", bytes,
                ms);
  }
  std::fflush(stdout);
  if (serve.empty()) return 0;

  web::PageSources src;
  src.input = [&s] { return s.input; };
  src.findings = [&s] { return s.findings; };
  src.matrix = [&s](v1::Layer layer) -> meshprobe::Result<v1::GetMatrixResponse> {
    if (s.names.size() > web::kFullCellsMaxNodes) return meshprobe::Error{"bench: full matrices only up to 64 nodes"};
    return fullMatrix(s, layer);
  };
  src.node = [&s](const std::string& name) -> meshprobe::Result<v1::GetNodeResponse> {
    auto it = std::lower_bound(s.names.begin(), s.names.end(), name);
    if (it == s.names.end() || *it != name) return meshprobe::Error{"no node named '" + name + "'"};
    const uint32_t i = static_cast<uint32_t>(it - s.names.begin());
    v1::GetNodeResponse r;
    *r.mutable_node() = s.input.nodes[i].summary;
    for (const auto* view : {s.underlay.get(), s.overlay.get()}) {
      for (uint32_t j = 0; j < s.names.size(); ++j) {
        if (j != i) *r.add_probes() = view->probe(s.names[j], view->state(i, j));
      }
    }
    return r;
  };
  meshprobe::HttpServer server([&src](const meshprobe::HttpRequest& req) {
    if (auto res = web::handlePageRequest(src, req)) return std::move(*res);
    return meshprobe::HttpResponse::notFound(req.path);
  });
  auto port = server.start(serve);
  if (!port.ok()) {
    std::fprintf(stderr, "%s\n", port.error().message.c_str());
    return 1;
  }
  std::printf("serving http://127.0.0.1:%u/ for %u s\n", static_cast<unsigned>(*port), serve_seconds);
  std::fflush(stdout);
  std::this_thread::sleep_for(std::chrono::seconds(serve_seconds));
  server.stop();
  return 0;
}
