#include "aggregator/web/page_data.h"

#include <gmock/gmock.h>
#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/unit/aggregator/test_util.h"

namespace meshprobe::aggregator::web {
namespace {

using google::protobuf::util::TimeUtil;
using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::ElementsAre;
using testing::makeCheck;
using testing::makeHello;
using testing::makeProbe;

// 2030-03-17T17:46:40Z: what the tests pass as "now".
const std::chrono::system_clock::time_point kNow{seconds(1'900'000'000)};

class PageDataTest : public ::testing::Test {
 protected:
  PageDataTest() : state_(clock_, options()), engine_(clock_, state_) {}

  static ClusterOptions options() {
    ClusterOptions o;
    o.stale_after = seconds(10);
    return o;
  }

  json page() {
    const std::string text = pageStateJson(state_, engine_, kNow);
    json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(j.is_discarded()) << text;
    return j;
  }

  static const json* layer(const json& page, const std::string& name) {
    for (const auto& l : page["layers"]) {
      if (l["layer"] == name) return &l;
    }
    return nullptr;
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
  EXPECT_EQ(p["version"], 1);
  EXPECT_EQ(p["generatedAt"], "2030-03-17T17:46:40Z");
  EXPECT_TRUE(p["nodes"].is_array());
  EXPECT_TRUE(p["nodes"].empty());
  EXPECT_TRUE(p["findings"].is_array());
  EXPECT_TRUE(p["findings"].empty());
  ASSERT_EQ(p["layers"].size(), 3u);
  EXPECT_EQ(p["layers"][0]["layer"], "UNDERLAY");
  EXPECT_EQ(p["layers"][1]["layer"], "OVERLAY");
  EXPECT_EQ(p["layers"][2]["layer"], "ISTIOD");
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
  json p = page();
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
  json p = page();

  const json* overlay = layer(p, "OVERLAY");
  ASSERT_NE(overlay, nullptr);
  EXPECT_EQ((*overlay)["nodes"], json::array({"node1", "node2", "node3", "node4"}));
  EXPECT_EQ((*overlay)["destinations"], (*overlay)["nodes"]);
  ASSERT_EQ((*overlay)["cells"].size(), 12u);
  for (int s = 1; s <= 4; ++s) {
    for (int d = 1; d <= 4; ++d) {
      if (s == d) continue;
      const std::string src = "node" + std::to_string(s), dst = "node" + std::to_string(d);
      const json* c = cell(*overlay, src, dst);
      ASSERT_NE(c, nullptr) << src << "->" << dst;
      const bool fails = s == 3 || d == 3;
      EXPECT_EQ((*c)["state"], fails ? "FAIL" : "OK") << c->dump();
      EXPECT_DOUBLE_EQ((*c)["loss"].get<double>(), fails ? 1.0 : 0.0) << c->dump();
      EXPECT_EQ((*c)["lastUpdate"], TimeUtil::ToString(TimeUtil::SecondsToTimestamp(1'899'999'990 + s)));
      EXPECT_DOUBLE_EQ((*c)["rttMs"].get<double>(), 2.0) << c->dump();
    }
  }
  EXPECT_EQ((*overlay)["counts"], json({{"OK", 6}, {"DEGRADED", 0}, {"FAIL", 6}, {"UNKNOWN", 0}}));

  const json* underlay = layer(p, "UNDERLAY");
  ASSERT_NE(underlay, nullptr);
  EXPECT_EQ((*underlay)["counts"], json({{"OK", 12}, {"DEGRADED", 0}, {"FAIL", 0}, {"UNKNOWN", 0}}));
  EXPECT_DOUBLE_EQ((*cell(*underlay, "node1", "node2"))["rttMs"].get<double>(), 1.0);

  // ISTIOD: one column "istiod", from each node's istiod check (no probe: no RTT, no loss).
  const json* istiod = layer(p, "ISTIOD");
  ASSERT_NE(istiod, nullptr);
  EXPECT_EQ((*istiod)["destinations"], json::array({"istiod"}));
  ASSERT_EQ((*istiod)["cells"].size(), 4u);
  const json* i2 = cell(*istiod, "node2", "istiod");
  ASSERT_NE(i2, nullptr);
  EXPECT_EQ((*i2)["state"], "FAIL");
  EXPECT_TRUE((*i2)["rttMs"].is_null()) << i2->dump();
  EXPECT_TRUE((*i2)["loss"].is_null()) << i2->dump();
  EXPECT_FALSE((*i2)["lastUpdate"].is_null()) << i2->dump();
  EXPECT_EQ((*cell(*istiod, "node1", "istiod"))["state"], "OK");
  EXPECT_EQ((*istiod)["counts"], json({{"OK", 3}, {"DEGRADED", 0}, {"FAIL", 1}, {"UNKNOWN", 0}}));
}

TEST_F(PageDataTest, UnmeasuredCellsAreUnknownWithNullNumbers) {
  state_.applyHello(makeHello("a", 1), true);
  state_.applyHello(makeHello("b", 2), true);
  json p = page();
  const json* overlay = layer(p, "OVERLAY");
  ASSERT_NE(overlay, nullptr);
  const json* c = cell(*overlay, "a", "b");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ((*c)["state"], "UNKNOWN");
  EXPECT_TRUE((*c)["rttMs"].is_null());
  EXPECT_TRUE((*c)["loss"].is_null());
  EXPECT_TRUE((*c)["lastUpdate"].is_null());
  EXPECT_EQ((*overlay)["counts"]["UNKNOWN"], 2);
}

TEST_F(PageDataTest, StaleNodeIsDownAndItsCellsUnknown) {
  for (int n = 1; n <= 3; ++n) state_.applyHello(makeHello("node" + std::to_string(n), n), true);
  reportAll(3, /*broken=*/0, 1);
  clock_.advance(seconds(8));
  // node1 and node2 keep reporting; node3 falls silent past --stale-after (10 s).
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
  const json* overlay = layer(p, "OVERLAY");
  ASSERT_NE(overlay, nullptr);
  EXPECT_EQ((*cell(*overlay, "node3", "node1"))["state"], "UNKNOWN");  // never a lingering OK
  EXPECT_EQ((*cell(*overlay, "node3", "node2"))["state"], "UNKNOWN");
  EXPECT_EQ((*cell(*overlay, "node1", "node3"))["state"], "OK");
  EXPECT_EQ((*layer(p, "ISTIOD"))["counts"]["UNKNOWN"], 3);  // node3 stale; node1/2 sent no istiod check
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
  f.add_evidence("node3 firewall: DROP udp dpt:4789");
  f.set_remedy("remove the rule");
  *f.mutable_onset_time() = TimeUtil::SecondsToTimestamp(1'900'000'000);
  json j = findingJson(f);
  EXPECT_EQ(j["id"], "OVERLAY_PARTITION/node3");
  EXPECT_EQ(j["code"], "OVERLAY_PARTITION");
  EXPECT_EQ(j["severity"], "CRITICAL");
  EXPECT_EQ(j["layer"], "OVERLAY");
  EXPECT_EQ(j["nodes"], json::array({"node3"}));
  EXPECT_EQ(j["summary"], "overlay to and from node3 fails while the underlay works");
  EXPECT_EQ(j["evidence"], json::array({"node1->node3 OVERLAY loss 100%", "node3 firewall: DROP udp dpt:4789"}));
  EXPECT_EQ(j["remedy"], "remove the rule");
  EXPECT_EQ(j["onsetTime"], "2030-03-17T17:46:40Z");

  // A fault outside every node (istiod down): no nodes, arrays still arrays.
  v1::Finding bare;
  bare.set_code("ISTIOD_UNREACHABLE");
  json b = findingJson(bare);
  EXPECT_EQ(b["nodes"], json::array());
  EXPECT_EQ(b["evidence"], json::array());
  EXPECT_EQ(b["severity"], "INFO");
  EXPECT_EQ(b["layer"], "");
  EXPECT_TRUE(b["onsetTime"].is_null());
}

TEST_F(PageDataTest, ActiveFindingsAreListedWhenTheEngineHasThem) {
  for (int n = 1; n <= 4; ++n) state_.applyHello(makeHello("node" + std::to_string(n), n), true);
  // node3 drops VXLAN: its overlay row and column fail while the underlay is fine; its own
  // firewall check says so too.
  uint64_t seq = 0;
  for (int round = 0; round < 8; ++round) {
    reportAll(4, /*broken=*/3, ++seq);
    engine_.evaluate();
    clock_.advance(seconds(1));
  }
  engine_.evaluate();
  const auto active = engine_.active();
  json p = page();
  ASSERT_EQ(p["findings"].size(), active.size());
  for (size_t i = 0; i < active.size(); ++i) {
    EXPECT_EQ(p["findings"][i], findingJson(active[i])) << "order follows DiagnosisEngine::active()";
  }
  if (active.empty()) {
    GTEST_LOG_(INFO) << "the diagnosis rules reported nothing for this scenario yet; the findings list is empty";
    return;
  }
  bool names_node3 = false;
  for (const auto& f : p["findings"]) {
    for (const auto& n : f["nodes"]) names_node3 = names_node3 || n == "node3";
  }
  EXPECT_TRUE(names_node3) << p["findings"].dump(2);
}

TEST_F(PageDataTest, InvalidUtf8DoesNotBreakTheDocument) {
  auto hello = makeHello("node1", 1);
  hello.set_agent_version("0.1\xff");
  state_.applyHello(hello, true);
  const std::string text = pageStateJson(state_, engine_, kNow);
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(j.is_discarded()) << text;
  EXPECT_EQ(j["nodes"][0]["agentVersion"], "0.1\xEF\xBF\xBD");  // U+FFFD
}

TEST_F(PageDataTest, WallClockOverloadStampsNow) {
  json j = json::parse(pageStateJson(state_, engine_));
  ASSERT_TRUE(j["generatedAt"].is_string());
  google::protobuf::Timestamp t;
  ASSERT_TRUE(TimeUtil::FromString(j["generatedAt"].get<std::string>(), &t)) << j["generatedAt"];
  EXPECT_GT(TimeUtil::TimestampToSeconds(t), 1'700'000'000);
}

}  // namespace
}  // namespace meshprobe::aggregator::web
