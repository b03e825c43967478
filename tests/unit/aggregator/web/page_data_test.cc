// The page's documents: pageState / compactMatrixJson / cellJson as pure functions over a
// DiagnosisInput with a fake LayerView, and the same over a real ClusterState
// (diagnosisInput(), withFullCells), plus the sizes and build times at 1,000 nodes.
#include "aggregator/web/page_data.h"

#include <gmock/gmock.h>
#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <regex>

#include "aggregator/diagnosis/engine.h"
#include "aggregator/web/page_routes.h"
#include "tests/unit/aggregator/test_util.h"

namespace meshprobe::aggregator::web {
namespace {

using google::protobuf::util::TimeUtil;
using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::makeCheck;
using testing::makeHello;
using testing::makeProbe;
using State = v1::Cell::State;

// 2030-03-17T17:46:40Z: what the tests pass as "now".
const std::chrono::system_clock::time_point kNow{seconds(1'900'000'000)};

// A dense N×N view: every cell OK (the diagonal UNKNOWN) unless set. failing() and
// detailed() are the FAIL cells and the not-OK cells with a probe result, as the real
// views keep them. Counts state() calls, so a test can tell O(N²) work from O(failing).
class FakeView final : public LayerView {
 public:
  explicit FakeView(uint32_t n) : n_(n), states_(static_cast<size_t>(n) * n, v1::Cell::OK) {
    for (uint32_t i = 0; i < n; ++i) states_[static_cast<size_t>(i) * n + i] = v1::Cell::UNKNOWN;
  }
  void set(uint32_t s, uint32_t d, State st, double loss = -1) {
    states_[static_cast<size_t>(s) * n_ + d] = st;
    if (st != v1::Cell::OK && st != v1::Cell::UNKNOWN) {
      v1::ProbeResult p = makeProbe("n" + std::to_string(d), v1::OVERLAY, 10, 10, milliseconds(3));
      if (loss >= 0) p.set_loss(loss);
      details_[{s, d}] = p;
    }
  }
  void finish() {
    failing_.clear();
    detailed_.clear();
    for (uint32_t s = 0; s < n_; ++s) {
      for (uint32_t d = 0; d < n_; ++d) {
        if (states_[static_cast<size_t>(s) * n_ + d] == v1::Cell::FAIL) failing_.emplace_back(s, d);
      }
    }
    for (const auto& [k, p] : details_) detailed_.push_back(k);
  }
  uint32_t size() const override { return n_; }
  State state(uint32_t s, uint32_t d) const override {
    ++state_calls;
    return states_[static_cast<size_t>(s) * n_ + d];
  }
  const std::vector<CellPair>& failing() const override { return failing_; }
  uint32_t measuredPeers(uint32_t) const override { return n_ - 1; }
  const v1::ProbeResult* detail(uint32_t s, uint32_t d) const override {
    auto it = details_.find({s, d});
    return it == details_.end() ? nullptr : &it->second;
  }
  const std::vector<CellPair>& detailed() const override { return detailed_; }

  mutable size_t state_calls = 0;

 private:
  uint32_t n_;
  std::vector<State> states_;
  std::map<CellPair, v1::ProbeResult> details_;
  std::vector<CellPair> failing_, detailed_;
};

struct FakeCluster {
  DiagnosisInput input;
  std::shared_ptr<FakeView> underlay, overlay;
};

// n0..n{N-1}, all up and reported; every cell OK, istiod OK.
FakeCluster fakeCluster(uint32_t n) {
  FakeCluster c;
  c.underlay = std::make_shared<FakeView>(n);
  c.overlay = std::make_shared<FakeView>(n);
  for (uint32_t i = 0; i < n; ++i) {
    NodeEvidence e;
    e.summary.set_name("n" + std::to_string(i));
    e.summary.set_up(true);
    *e.summary.mutable_last_report() = TimeUtil::SecondsToTimestamp(1'899'999'999);
    e.has_report = true;
    c.input.nodes.push_back(e);
    c.input.istiod.push_back(v1::Cell::OK);
  }
  c.input.underlay = c.underlay;
  c.input.overlay = c.overlay;
  return c;
}

// Node x's OVERLAY row and column FAIL.
void breakNode(FakeView& v, uint32_t x) {
  for (uint32_t y = 0; y < v.size(); ++y) {
    if (y == x) continue;
    v.set(x, y, v1::Cell::FAIL, 1.0);
    v.set(y, x, v1::Cell::FAIL, 1.0);
  }
}

v1::Finding finding(const std::string& code, std::vector<std::string> nodes) {
  v1::Finding f;
  f.set_code(code);
  f.set_id(code + "/" + (nodes.empty() ? "" : nodes[0]));
  f.set_severity(v1::CRITICAL);
  for (auto& n : nodes) f.add_nodes(n);
  return f;
}

const json& layerOf(const json& page, const std::string& name) {
  for (const auto& l : page["layers"]) {
    if (l["layer"] == name) return l;
  }
  static const json none;
  ADD_FAILURE() << "no layer " << name;
  return none;
}

// Expands one run-length row ("O3-F2") into one letter per cell.
std::string expand(const std::string& row) {
  std::string out;
  static const std::regex run("([OFDU-])([0-9]*)");
  size_t consumed = 0;
  for (auto it = std::sregex_iterator(row.begin(), row.end(), run); it != std::sregex_iterator(); ++it) {
    EXPECT_EQ(static_cast<size_t>(it->position()), consumed) << "junk in row " << row;
    consumed += it->length();
    const size_t len = (*it)[2].length() ? std::stoul((*it)[2].str()) : 1;
    out.append(len, (*it)[1].str()[0]);
  }
  EXPECT_EQ(consumed, row.size()) << row;
  return out;
}

// ---- pure functions over a fake view ----

TEST(PageStateTest, NodesCarryPerLayerHealthAndTheFindingsThatBlameThem) {
  auto c = fakeCluster(6);
  breakNode(*c.overlay, 2);                        // n2 fails with 5 peers on OVERLAY
  c.underlay->set(4, 5, v1::Cell::DEGRADED, 0.2);  // one degraded UNDERLAY pair
  c.overlay->finish();
  c.underlay->finish();
  c.input.istiod[3] = v1::Cell::FAIL;
  c.input.nodes[5].summary.set_up(false);
  const std::vector<v1::Finding> findings = {finding("VXLAN_PORT_FILTERED", {"n2"}), finding("ISTIOD_UNREACHABLE", {}),
                                             finding("OVERLAY_PARTITION", {"n2", "n0"})};
  const json p = pageState(c.input, findings, kNow);
  EXPECT_EQ(p["version"], 2);
  EXPECT_EQ(p["generatedAt"], "2030-03-17T17:46:40Z");
  ASSERT_EQ(p["nodes"].size(), 6u);
  const json& n2 = p["nodes"][2];
  EXPECT_EQ(n2["name"], "n2");
  EXPECT_EQ(n2["failing"], json({{"UNDERLAY", 0}, {"OVERLAY", 5}}));
  EXPECT_EQ(n2["degraded"], json({{"UNDERLAY", 0}, {"OVERLAY", 0}}));
  EXPECT_EQ(n2["measured"], json({{"UNDERLAY", 5}, {"OVERLAY", 5}}));
  EXPECT_EQ(n2["findings"], json::array({"VXLAN_PORT_FILTERED", "OVERLAY_PARTITION"}));
  // Every other node fails with exactly one peer (n2), in either direction.
  EXPECT_EQ(p["nodes"][0]["failing"]["OVERLAY"], 1);
  EXPECT_EQ(p["nodes"][0]["findings"], json::array({"OVERLAY_PARTITION"}));
  EXPECT_EQ(p["nodes"][1]["findings"], json::array());
  EXPECT_EQ(p["nodes"][4]["degraded"]["UNDERLAY"], 1);
  EXPECT_EQ(p["nodes"][5]["degraded"]["UNDERLAY"], 1);
  EXPECT_EQ(p["nodes"][3]["istiod"], "FAIL");
  EXPECT_EQ(p["nodes"][0]["istiod"], "OK");
  EXPECT_EQ(p["nodes"][5]["up"], false);
  EXPECT_EQ(p["nodes"][5]["lastReport"], "2030-03-17T17:46:39Z");
  ASSERT_EQ(p["findings"].size(), 3u);
  EXPECT_EQ(p["findings"][1], findingJson(findings[1]));
}

TEST(PageStateTest, LayersListOnlyFailThenDegradedCells) {
  auto c = fakeCluster(5);
  c.overlay->set(3, 1, v1::Cell::DEGRADED, 0.2);
  c.overlay->set(0, 4, v1::Cell::FAIL, 1.0);
  c.overlay->set(4, 0, v1::Cell::FAIL, 1.0);
  c.overlay->finish();
  c.underlay->finish();
  c.input.istiod[1] = v1::Cell::DEGRADED;
  c.input.istiod[2] = v1::Cell::UNKNOWN;
  const json p = pageState(c.input, {}, kNow);
  ASSERT_EQ(p["layers"].size(), 3u);
  EXPECT_EQ(p["layers"][0]["layer"], "UNDERLAY");
  EXPECT_EQ(p["layers"][2]["layer"], "ISTIOD");
  const json& overlay = layerOf(p, "OVERLAY");
  EXPECT_EQ(overlay["size"], 5);
  EXPECT_EQ(overlay["cellsIncluded"], "broken");
  EXPECT_EQ(overlay["cellsTruncated"], false);
  EXPECT_EQ(overlay["counts"], json({{"FAIL", 2}, {"DEGRADED", 1}}));
  EXPECT_FALSE(overlay.contains("nodes")) << "the rows are the top-level nodes";
  ASSERT_EQ(overlay["cells"].size(), 3u);
  EXPECT_EQ(overlay["cells"][0]["src"], "n0");
  EXPECT_EQ(overlay["cells"][0]["dst"], "n4");
  EXPECT_EQ(overlay["cells"][0]["state"], "FAIL");
  EXPECT_DOUBLE_EQ(overlay["cells"][0]["loss"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(overlay["cells"][0]["rttMs"].get<double>(), 3.0);
  EXPECT_EQ(overlay["cells"][0]["lastUpdate"], "2030-03-17T17:46:39Z");
  EXPECT_EQ(overlay["cells"][1]["src"], "n4");
  EXPECT_EQ(overlay["cells"][2]["state"], "DEGRADED");
  EXPECT_EQ(overlay["cells"][2]["src"], "n3");
  EXPECT_TRUE(layerOf(p, "UNDERLAY")["cells"].empty());
  const json& istiod = layerOf(p, "ISTIOD");
  EXPECT_EQ(istiod["counts"], json({{"OK", 3}, {"DEGRADED", 1}, {"FAIL", 0}, {"UNKNOWN", 1}}));
  ASSERT_EQ(istiod["cells"].size(), 1u);
  EXPECT_EQ(istiod["cells"][0]["src"], "n1");
  EXPECT_EQ(istiod["cells"][0]["dst"], "istiod");
}

TEST(PageStateTest, CostsFailingCellsNotNSquared) {
  auto c = fakeCluster(300);
  breakNode(*c.overlay, 7);
  c.overlay->finish();
  c.underlay->finish();
  c.overlay->state_calls = c.underlay->state_calls = 0;
  const json p = pageState(c.input, {}, kNow);
  EXPECT_EQ(layerOf(p, "OVERLAY")["counts"]["FAIL"], 2 * 299);
  // One state() per failing/detailed cell (598), not 300² = 90,000.
  EXPECT_LE(c.overlay->state_calls, 600u);
  EXPECT_EQ(c.underlay->state_calls, 0u);
}

TEST(PageStateTest, ListedCellsAreCappedWithExactCounts) {
  auto c = fakeCluster(20);
  breakNode(*c.overlay, 0);
  c.overlay->set(5, 6, v1::Cell::DEGRADED, 0.1);
  c.overlay->finish();
  c.underlay->finish();
  const json p = pageState(c.input, {}, kNow, /*max_listed_cells=*/10);
  const json& overlay = layerOf(p, "OVERLAY");
  EXPECT_EQ(overlay["counts"], json({{"FAIL", 38}, {"DEGRADED", 1}}));
  EXPECT_EQ(overlay["cells"].size(), 10u);
  EXPECT_EQ(overlay["cellsTruncated"], true);
  for (const auto& cell : overlay["cells"]) EXPECT_EQ(cell["state"], "FAIL") << "FAIL cells come first";
}

TEST(PageStateTest, MissingOrMismatchedViewIsALayerError) {
  auto c = fakeCluster(3);
  c.input.underlay = nullptr;
  c.input.overlay = std::make_shared<FakeView>(4);
  const json p = pageState(c.input, {}, kNow);
  EXPECT_EQ(layerOf(p, "UNDERLAY")["error"], "no UNDERLAY matrix yet");
  EXPECT_EQ(layerOf(p, "OVERLAY")["error"], "OVERLAY matrix has 4 nodes, the members 3");
  EXPECT_EQ(p["nodes"][0]["failing"]["OVERLAY"], 0);
}

TEST(CompactMatrixTest, RowsRunLengthEncodeEveryCell) {
  auto c = fakeCluster(5);
  c.overlay->set(0, 3, v1::Cell::FAIL, 1.0);
  c.overlay->set(2, 1, v1::Cell::DEGRADED, 0.2);
  c.overlay->set(4, 0, v1::Cell::UNKNOWN);
  c.overlay->finish();
  auto text = compactMatrixJson(c.input, v1::OVERLAY, kNow);
  ASSERT_TRUE(text.ok()) << text.error().message;
  const json m = json::parse(*text);
  EXPECT_EQ(m["layer"], "OVERLAY");
  EXPECT_EQ(m["encoding"], "rle");
  EXPECT_EQ(m["nodes"], json::array({"n0", "n1", "n2", "n3", "n4"}));
  EXPECT_FALSE(m.contains("destinations"));
  EXPECT_EQ(m["counts"], json({{"OK", 17}, {"DEGRADED", 1}, {"FAIL", 1}, {"UNKNOWN", 1}}));
  ASSERT_EQ(m["rows"].size(), 5u);
  EXPECT_EQ(m["rows"][0], "-O2FO");
  EXPECT_EQ(m["rows"][1], "O-O3");
  EXPECT_EQ(m["rows"][2], "OD-O2");
  EXPECT_EQ(m["rows"][4], "UO3-");
  for (size_t s = 0; s < 5; ++s) {
    const std::string cells = expand(m["rows"][s]);
    ASSERT_EQ(cells.size(), 5u);
    for (uint32_t d = 0; d < 5; ++d) {
      const char want = s == d ? '-' : "?ODFU"[c.overlay->state(static_cast<uint32_t>(s), d)];
      EXPECT_EQ(cells[d], want) << s << "->" << d;
    }
  }
}

TEST(CompactMatrixTest, IstiodIsOneColumnAndOtherLayersAreErrors) {
  auto c = fakeCluster(3);
  c.input.istiod = {v1::Cell::OK, v1::Cell::FAIL, v1::Cell::UNKNOWN};
  const json m = json::parse(*compactMatrixJson(c.input, v1::ISTIOD, kNow));
  EXPECT_EQ(m["destinations"], json::array({"istiod"}));
  EXPECT_EQ(m["rows"], json::array({"O", "F", "U"}));
  EXPECT_EQ(m["counts"], json({{"OK", 1}, {"DEGRADED", 0}, {"FAIL", 1}, {"UNKNOWN", 1}}));
  auto bad = compactMatrixJson(c.input, v1::AMBIENT, kNow);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().message, "layer AMBIENT has no matrix; ask for UNDERLAY, OVERLAY or ISTIOD");
}

TEST(CellJsonTest, ClassifiesTheSourcesProbeLikeTheMatrix) {
  v1::GetNodeResponse n;
  n.mutable_node()->set_name("a");
  n.mutable_node()->set_up(true);
  *n.mutable_node()->mutable_last_report() = TimeUtil::SecondsToTimestamp(1'900'000'000);
  *n.add_probes() = makeProbe("b", v1::OVERLAY, 10, 0, milliseconds(0));
  *n.add_probes() = makeProbe("b", v1::UNDERLAY, 10, 10, milliseconds(2), milliseconds(3));
  *n.add_checks() = makeCheck("istiod", v1::CheckResult::WARN);
  const MatrixOptions o;
  json fail = cellJson(n, v1::OVERLAY, "b", o);
  EXPECT_EQ(fail["state"], "FAIL");
  EXPECT_DOUBLE_EQ(fail["loss"].get<double>(), 1.0);
  EXPECT_TRUE(fail["rttMs"].is_null());
  EXPECT_EQ(fail["sent"], 10);
  EXPECT_EQ(fail["received"], 0);
  EXPECT_EQ(fail["lastUpdate"], "2030-03-17T17:46:40Z");
  json ok = cellJson(n, v1::UNDERLAY, "b", o);
  EXPECT_EQ(ok["state"], "OK");
  EXPECT_DOUBLE_EQ(ok["rttMs"].get<double>(), 2.0);
  EXPECT_DOUBLE_EQ(ok["rttP99Ms"].get<double>(), 3.0);
  EXPECT_EQ(cellJson(n, v1::ISTIOD, "istiod", o)["state"], "DEGRADED");
  json none = cellJson(n, v1::OVERLAY, "c", o);
  EXPECT_EQ(none["state"], "UNKNOWN");
  EXPECT_EQ(none["measured"], false);
  EXPECT_EQ(cellJson(n, v1::OVERLAY, "a", o)["state"], "UNKNOWN");  // self
  n.mutable_node()->set_up(false);
  json stale = cellJson(n, v1::UNDERLAY, "b", o);
  EXPECT_EQ(stale["state"], "UNKNOWN") << "a silent source's last OK never shows";
  EXPECT_EQ(stale["srcUp"], false);
  EXPECT_DOUBLE_EQ(stale["rttMs"].get<double>(), 2.0);
}

// At 1,000 nodes with one broken node: what the page fetches every 2 s stays small and
// cheap; the heatmap is fetched on demand.
TEST(PageScaleTest, ThousandNodesStateAndHeatmapSizes) {
  auto c = fakeCluster(1000);
  breakNode(*c.overlay, 17);
  c.overlay->set(40, 41, v1::Cell::DEGRADED, 0.1);
  c.overlay->finish();
  c.underlay->finish();
  const std::vector<v1::Finding> findings = {finding("VXLAN_PORT_FILTERED", {"n17"})};
  const auto t0 = std::chrono::steady_clock::now();
  const std::string state = dumpJson(pageState(c.input, findings, kNow));
  const auto t1 = std::chrono::steady_clock::now();
  auto heatmap = compactMatrixJson(c.input, v1::OVERLAY, kNow);
  const auto t2 = std::chrono::steady_clock::now();
  ASSERT_TRUE(heatmap.ok());
  const auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
  std::cout << "1000 nodes, 1 broken node: /api/v1/state " << state.size() << " bytes in " << ms(t1 - t0)
            << " ms; /api/v1/matrix OVERLAY " << heatmap->size() << " bytes in " << ms(t2 - t1) << " ms" << std::endl;
  // The old document (every cell as an object) was ~100 bytes per cell: ~200 MB here.
  EXPECT_LT(state.size(), 800'000u);
  EXPECT_LT(heatmap->size(), 60'000u);
  const json m = json::parse(*heatmap);
  EXPECT_EQ(m["counts"]["FAIL"], 2 * 999);
  EXPECT_EQ(expand(m["rows"][17]), std::string(17, 'F') + "-" + std::string(982, 'F'));
}

// ---- over a real ClusterState (diagnosisInput(): the aggregator's production path) ----

class PageDataTest : public ::testing::Test {
 protected:
  PageDataTest() : state_(clock_, options()), engine_(clock_, state_) {}

  static ClusterOptions options() {
    ClusterOptions o;
    o.stale_after = seconds(10);
    return o;
  }

  json page(bool all_cells = true) {
    json p = pageState(state_.diagnosisInput(), engine_.active(), kNow);
    if (all_cells) {
      withFullCells(p, {state_.matrix(v1::UNDERLAY), state_.matrix(v1::OVERLAY), state_.matrix(v1::ISTIOD)});
    }
    const std::string text = dumpJson(p);
    json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(j.is_discarded()) << text;
    return j;
  }

  static const json* cell(const json& layer, const std::string& src, const std::string& dst) {
    const json* found = nullptr;
    for (const auto& c : layer["cells"]) {
      if (c["src"] == src && c["dst"] == dst) {
        EXPECT_EQ(found, nullptr) << "duplicate cell " << src << "->" << dst;
        found = &c;
      }
    }
    return found;
  }

  // nodeN probes every other node on UNDERLAY (all fine) and OVERLAY (failing to/from `broken`).
  void reportAll(int nodes, int broken, uint64_t seq) {
    for (int s = 1; s <= nodes; ++s) {
      v1::Report r;
      r.set_sequence(seq);
      *r.mutable_time() = TimeUtil::SecondsToTimestamp(1'899'999'990 + s);
      for (int d = 1; d <= nodes; ++d) {
        if (s == d) continue;
        const std::string dst = "node" + std::to_string(d);
        *r.add_probes() = makeProbe(dst, v1::UNDERLAY, 10, 10, milliseconds(1));
        const bool fails = s == broken || d == broken;
        *r.add_probes() = makeProbe(dst, v1::OVERLAY, 10, fails ? 0 : 10, milliseconds(2));
      }
      *r.add_checks() = makeCheck("istiod", s == 2 ? v1::CheckResult::FAIL : v1::CheckResult::OK);
      ASSERT_EQ(state_.applyReport("node" + std::to_string(s), r), ReportOutcome::kAccepted);
    }
  }

  FakeClock clock_;
  ClusterState state_;
  DiagnosisEngine engine_;
};

TEST_F(PageDataTest, EmptyClusterHasEveryLayerAndNoCells) {
  json p = page();
  EXPECT_EQ(p["version"], 2);
  EXPECT_TRUE(p["nodes"].is_array());
  EXPECT_TRUE(p["nodes"].empty());
  EXPECT_TRUE(p["findings"].empty());
  ASSERT_EQ(p["layers"].size(), 3u);
  for (const auto& l : p["layers"]) {
    EXPECT_TRUE(l["cells"].empty()) << l.dump();
    EXPECT_EQ(l["counts"], json({{"OK", 0}, {"DEGRADED", 0}, {"FAIL", 0}, {"UNKNOWN", 0}}));
    EXPECT_FALSE(l.contains("error")) << l.dump();
  }
  EXPECT_EQ(p["layers"][2]["destinations"], json::array({"istiod"}));
}

TEST_F(PageDataTest, NodesCarryHelloFactsAndReportTime) {
  state_.applyHello(makeHello("node2", 2), true);
  state_.applyHello(makeHello("node1", 1), true);
  v1::Report r;
  r.set_sequence(1);
  ASSERT_EQ(state_.applyReport("node1", r), ReportOutcome::kAccepted);
  json p = page(false);
  ASSERT_EQ(p["nodes"].size(), 2u);
  const json& n1 = p["nodes"][0];
  EXPECT_EQ(n1["name"], "node1");  // sorted by name
  EXPECT_EQ(p["nodes"][1]["name"], "node2");
  EXPECT_EQ(n1["up"], true);
  EXPECT_EQ(n1["nodeIp"], "198.51.100.1");
  EXPECT_EQ(n1["overlayIp"], "10.244.1.0");
  EXPECT_EQ(n1["vtepMac"], "02:00:00:00:00:01");
  EXPECT_EQ(n1["vxlanVni"], 1);
  EXPECT_EQ(n1["vxlanPort"], 4789);
  EXPECT_EQ(n1["vxlanMtu"], 1450);
  EXPECT_EQ(n1["podCidr"], "10.244.1.0/24");
  EXPECT_EQ(n1["agentVersion"], "0.1.0");
  // The FakeClock's wall time when the report was received (no time in the report).
  EXPECT_EQ(n1["lastReport"], "2027-01-15T08:00:00Z");
  EXPECT_TRUE(p["nodes"][1]["lastReport"].is_null());  // node2 never reported
}

TEST_F(PageDataTest, OverlayRowAndColumnOfABrokenNodeFail) {
  for (int n = 1; n <= 4; ++n) state_.applyHello(makeHello("node" + std::to_string(n), n), true);
  reportAll(4, /*broken=*/3, 1);

  // The default document: node3 fails with its three peers, the others with one.
  json broken = page(false);
  EXPECT_EQ(broken["nodes"][2]["failing"], json({{"UNDERLAY", 0}, {"OVERLAY", 3}}));
  EXPECT_EQ(broken["nodes"][0]["failing"]["OVERLAY"], 1);
  EXPECT_EQ(broken["nodes"][1]["istiod"], "FAIL");
  EXPECT_EQ(broken["nodes"][0]["measured"]["UNDERLAY"], 3);
  EXPECT_EQ(broken["layers"][1]["counts"], json({{"FAIL", 6}, {"DEGRADED", 0}}));
  ASSERT_EQ(broken["layers"][1]["cells"].size(), 6u);
  for (const auto& c : broken["layers"][1]["cells"]) {
    EXPECT_TRUE(c["src"] == "node3" || c["dst"] == "node3") << c.dump();
    EXPECT_DOUBLE_EQ(c["loss"].get<double>(), 1.0);
  }

  // Every cell (cells=all).
  json p = page();
  const json& overlay = p["layers"][1];
  EXPECT_EQ(overlay["cellsIncluded"], "all");
  EXPECT_EQ(overlay["nodes"], json::array({"node1", "node2", "node3", "node4"}));
  EXPECT_EQ(overlay["destinations"], overlay["nodes"]);
  ASSERT_EQ(overlay["cells"].size(), 12u);
  for (int s = 1; s <= 4; ++s) {
    for (int d = 1; d <= 4; ++d) {
      if (s == d) continue;
      const std::string src = "node" + std::to_string(s), dst = "node" + std::to_string(d);
      const json* c = cell(overlay, src, dst);
      ASSERT_NE(c, nullptr) << src << "->" << dst;
      const bool fails = s == 3 || d == 3;
      EXPECT_EQ((*c)["state"], fails ? "FAIL" : "OK") << c->dump();
      EXPECT_DOUBLE_EQ((*c)["loss"].get<double>(), fails ? 1.0 : 0.0) << c->dump();
      EXPECT_EQ((*c)["lastUpdate"], TimeUtil::ToString(TimeUtil::SecondsToTimestamp(1'899'999'990 + s)));
      EXPECT_DOUBLE_EQ((*c)["rttMs"].get<double>(), 2.0) << c->dump();
    }
  }
  EXPECT_EQ(overlay["counts"], json({{"OK", 6}, {"DEGRADED", 0}, {"FAIL", 6}, {"UNKNOWN", 0}}));
  const json& underlay = p["layers"][0];
  EXPECT_EQ(underlay["counts"], json({{"OK", 12}, {"DEGRADED", 0}, {"FAIL", 0}, {"UNKNOWN", 0}}));
  EXPECT_DOUBLE_EQ((*cell(underlay, "node1", "node2"))["rttMs"].get<double>(), 1.0);
  const json& istiod = p["layers"][2];
  EXPECT_EQ(istiod["destinations"], json::array({"istiod"}));
  ASSERT_EQ(istiod["cells"].size(), 4u);
  const json* i2 = cell(istiod, "node2", "istiod");
  ASSERT_NE(i2, nullptr);
  EXPECT_EQ((*i2)["state"], "FAIL");
  EXPECT_TRUE((*i2)["rttMs"].is_null()) << i2->dump();
  EXPECT_TRUE((*i2)["loss"].is_null()) << i2->dump();
  EXPECT_FALSE((*i2)["lastUpdate"].is_null()) << i2->dump();

  // The heatmap over the same state.
  const json m = json::parse(*compactMatrixJson(state_.diagnosisInput(), v1::OVERLAY, kNow));
  EXPECT_EQ(m["rows"], json::array({"-OFO", "O-FO", "F2-F", "O2F-"}));
  // And one cell, from node1's latest probes.
  auto n1 = state_.getNode("node1");
  ASSERT_TRUE(n1.ok());
  EXPECT_EQ(cellJson(*n1, v1::OVERLAY, "node3", state_.options().matrix)["state"], "FAIL");
}

TEST_F(PageDataTest, StaleNodeIsDownAndItsCellsUnknown) {
  for (int n = 1; n <= 3; ++n) state_.applyHello(makeHello("node" + std::to_string(n), n), true);
  reportAll(3, /*broken=*/0, 1);
  clock_.advance(seconds(8));
  for (int s = 1; s <= 2; ++s) {
    v1::Report r;
    r.set_sequence(2);
    for (const char* dst : {"node1", "node2", "node3"}) {
      if (dst != "node" + std::to_string(s)) *r.add_probes() = makeProbe(dst, v1::OVERLAY, 10, 10);
    }
    ASSERT_EQ(state_.applyReport("node" + std::to_string(s), r), ReportOutcome::kAccepted);
  }
  clock_.advance(seconds(4));
  json p = page();
  ASSERT_EQ(p["nodes"].size(), 3u);
  EXPECT_EQ(p["nodes"][0]["up"], true);
  EXPECT_EQ(p["nodes"][2]["name"], "node3");
  EXPECT_EQ(p["nodes"][2]["up"], false);
  EXPECT_EQ(p["nodes"][2]["istiod"], "UNKNOWN");
  const json& overlay = p["layers"][1];
  EXPECT_EQ((*cell(overlay, "node3", "node1"))["state"], "UNKNOWN");  // never a lingering OK
  EXPECT_EQ((*cell(overlay, "node1", "node3"))["state"], "OK");
  const json m = json::parse(*compactMatrixJson(state_.diagnosisInput(), v1::OVERLAY, kNow));
  EXPECT_EQ(m["rows"][2], "U2-");
}

TEST_F(PageDataTest, ActiveFindingsAreListedAndBlameNodes) {
  for (int n = 1; n <= 4; ++n) state_.applyHello(makeHello("node" + std::to_string(n), n), true);
  uint64_t seq = 0;
  for (int round = 0; round < 8; ++round) {
    reportAll(4, /*broken=*/3, ++seq);
    engine_.evaluate();
    clock_.advance(seconds(1));
  }
  engine_.evaluate();
  const auto active = engine_.active();
  json p = page(false);
  ASSERT_EQ(p["findings"].size(), active.size());
  for (size_t i = 0; i < active.size(); ++i) EXPECT_EQ(p["findings"][i], findingJson(active[i]));
  ASSERT_FALSE(active.empty()) << "node3's overlay row and column fail: the rules name it";
  EXPECT_FALSE(p["nodes"][2]["findings"].empty()) << p["nodes"][2].dump();
}

TEST_F(PageDataTest, FindingJsonHasEveryField) {
  v1::Finding f;
  f.set_id("OVERLAY_PARTITION/node3");
  f.set_code("OVERLAY_PARTITION");
  f.set_severity(v1::CRITICAL);
  f.set_layer(v1::OVERLAY);
  f.add_nodes("node3");
  f.set_summary("overlay to and from node3 fails while the underlay works");
  f.add_evidence("node1->node3 OVERLAY loss 100%");
  f.set_remedy("remove the rule");
  *f.mutable_onset_time() = TimeUtil::SecondsToTimestamp(1'900'000'000);
  json j = findingJson(f);
  EXPECT_EQ(j["id"], "OVERLAY_PARTITION/node3");
  EXPECT_EQ(j["severity"], "CRITICAL");
  EXPECT_EQ(j["layer"], "OVERLAY");
  EXPECT_EQ(j["nodes"], json::array({"node3"}));
  EXPECT_EQ(j["evidence"], json::array({"node1->node3 OVERLAY loss 100%"}));
  EXPECT_EQ(j["remedy"], "remove the rule");
  EXPECT_EQ(j["onsetTime"], "2030-03-17T17:46:40Z");
  v1::Finding bare;
  bare.set_code("ISTIOD_UNREACHABLE");
  json b = findingJson(bare);
  EXPECT_EQ(b["nodes"], json::array());
  EXPECT_EQ(b["severity"], "INFO");
  EXPECT_EQ(b["layer"], "");
  EXPECT_TRUE(b["onsetTime"].is_null());
}

TEST_F(PageDataTest, InvalidUtf8DoesNotBreakTheDocument) {
  auto hello = makeHello("node1", 1);
  hello.set_agent_version("0.1\xff");
  state_.applyHello(hello, true);
  const std::string text = dumpJson(pageState(state_.diagnosisInput(), {}, kNow));
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(j.is_discarded()) << text;
  EXPECT_EQ(j["nodes"][0]["agentVersion"], "0.1\xEF\xBF\xBD");  // U+FFFD
}

}  // namespace
}  // namespace meshprobe::aggregator::web
