#include "aggregator/cluster_state.h"

#include <gmock/gmock.h>
#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>

#include "tests/unit/aggregator/test_util.h"

namespace meshprobe::aggregator {
namespace {

using google::protobuf::util::TimeUtil;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;
using ::testing::ElementsAre;
using testing::findCell;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using testing::makeCheck;
using testing::makeHello;
using testing::makeProbe;

class ClusterStateTest : public ::testing::Test {
 protected:
  ClusterStateTest() : state_(clock_, options()) {}

  static ClusterOptions options() {
    ClusterOptions o;
    o.stale_after = seconds(10);
    return o;
  }

  // A report from `src` with one probe per (dst, layer) given; all delivered unless listed in `lossy`.
  v1::Report report(uint64_t seq, const std::vector<std::pair<std::string, v1::Layer>>& ok_pairs,
                    const std::vector<std::pair<std::string, v1::Layer>>& failed_pairs = {}) {
    v1::Report r;
    r.set_sequence(seq);
    for (const auto& [dst, layer] : ok_pairs) *r.add_probes() = makeProbe(dst, layer, 10, 10);
    for (const auto& [dst, layer] : failed_pairs) *r.add_probes() = makeProbe(dst, layer, 10, 0);
    return r;
  }

  v1::Cell::State cellState(v1::Layer layer, const std::string& src, const std::string& dst) {
    auto m = state_.matrix(layer);
    EXPECT_TRUE(m.ok());
    const v1::Cell* c = findCell(*m, src, dst);
    EXPECT_NE(c, nullptr) << src << "->" << dst;
    return c ? c->state() : v1::Cell::STATE_UNSPECIFIED;
  }

  FakeClock clock_;
  ClusterState state_;
};

TEST_F(ClusterStateTest, HelloAddsMembersSortedByName) {
  EXPECT_THAT(state_.applyHello(makeHello("node2", 2), true).added, ElementsAre("node2"));
  EXPECT_THAT(state_.applyHello(makeHello("node1", 1), true).added, ElementsAre("node1"));
  auto peers = state_.peerList();
  ASSERT_EQ(peers.peers_size(), 2);
  EXPECT_EQ(peers.peers(0).node_name(), "node1");
  EXPECT_EQ(peers.peers(1).node_name(), "node2");
  EXPECT_EQ(peers.peers(1).node_ip(), "198.51.100.2");
  EXPECT_EQ(peers.peers(1).vxlan_mtu(), 1450u);
}

TEST_F(ClusterStateTest, SameHelloAgainIsNoChangeButNewFactsReplaceOld) {
  state_.applyHello(makeHello("node1", 1), true);
  EXPECT_TRUE(state_.applyHello(makeHello("node1", 1), true).empty());
  auto moved = makeHello("node1", 1);
  moved.set_vtep_mac("02:de:ad:be:ef:01");
  moved.set_agent_version("0.2.0");
  EXPECT_THAT(state_.applyHello(moved, false).changed, ElementsAre("node1"));
  auto node = state_.getNode("node1");
  ASSERT_TRUE(node.ok());
  EXPECT_EQ(node->node().vtep_mac(), "02:de:ad:be:ef:01");
  EXPECT_EQ(node->node().agent_version(), "0.2.0");
  EXPECT_EQ(state_.memberCount(), 1u);
}

TEST_F(ClusterStateTest, SummaryCarriesEveryHelloFact) {
  state_.applyHello(makeHello("node3", 3, 1, 8472), true);
  auto nodes = state_.listNodes();
  ASSERT_EQ(nodes.size(), 1u);
  const auto& n = nodes[0];
  EXPECT_EQ(n.name(), "node3");
  EXPECT_EQ(n.node_ip(), "198.51.100.3");
  EXPECT_EQ(n.overlay_ip(), "10.244.3.0");
  EXPECT_EQ(n.vtep_mac(), "02:00:00:00:00:03");
  EXPECT_EQ(n.vxlan_vni(), 1u);
  EXPECT_EQ(n.vxlan_port(), 8472u);
  EXPECT_EQ(n.pod_cidr(), "10.244.3.0/24");
  EXPECT_EQ(n.agent_version(), "0.1.0");
  EXPECT_EQ(n.vxlan_mtu(), 1450u);
  EXPECT_TRUE(n.up());
  EXPECT_FALSE(n.has_last_report());  // no Report yet
}

TEST_F(ClusterStateTest, ReportsFromUnknownNodesAreRefused) {
  EXPECT_EQ(state_.applyReport("ghost", report(1, {})), ReportOutcome::kUnknownNode);
}

TEST_F(ClusterStateTest, OlderAndDuplicateSequencesAreIgnored) {
  state_.applyHello(makeHello("a", 1), true);
  state_.applyHello(makeHello("b", 2), true);
  EXPECT_EQ(state_.applyReport("a", report(5, {{"b", v1::OVERLAY}})), ReportOutcome::kAccepted);
  EXPECT_EQ(state_.applyReport("a", report(5, {}, {{"b", v1::OVERLAY}})), ReportOutcome::kOldSequence);
  EXPECT_EQ(state_.applyReport("a", report(3, {}, {{"b", v1::OVERLAY}})), ReportOutcome::kOldSequence);
  EXPECT_EQ(cellState(v1::OVERLAY, "a", "b"), v1::Cell::OK);  // still report 5
  EXPECT_EQ(state_.applyReport("a", report(6, {}, {{"b", v1::OVERLAY}})), ReportOutcome::kAccepted);
  EXPECT_EQ(cellState(v1::OVERLAY, "a", "b"), v1::Cell::FAIL);
}

TEST_F(ClusterStateTest, ANewSessionRestartsSequenceNumbering) {
  state_.applyHello(makeHello("a", 1), true);
  state_.applyHello(makeHello("b", 2), true);
  EXPECT_EQ(state_.applyReport("a", report(40, {{"b", v1::OVERLAY}})), ReportOutcome::kAccepted);
  // The same stream re-sends Hello (facts changed): numbering continues.
  state_.applyHello(makeHello("a", 1), /*new_session=*/false);
  EXPECT_EQ(state_.applyReport("a", report(1, {})), ReportOutcome::kOldSequence);
  // The agent restarted and opened a new stream: it counts from 1 again.
  state_.applyHello(makeHello("a", 1), /*new_session=*/true);
  EXPECT_EQ(state_.applyReport("a", report(1, {}, {{"b", v1::OVERLAY}})), ReportOutcome::kAccepted);
  EXPECT_EQ(cellState(v1::OVERLAY, "a", "b"), v1::Cell::FAIL);
}

TEST_F(ClusterStateTest, MatrixHasEveryOrderedPairOnceInStableOrder) {
  for (int i : {3, 1, 2}) state_.applyHello(makeHello("node" + std::to_string(i), i), true);
  auto m = state_.matrix(v1::UNDERLAY);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->layer(), v1::UNDERLAY);
  EXPECT_THAT(m->nodes(), ElementsAre("node1", "node2", "node3"));
  ASSERT_EQ(m->cells_size(), 6);
  std::vector<std::string> pairs;
  for (const auto& c : m->cells()) {
    pairs.push_back(c.src() + ">" + c.dst());
    EXPECT_EQ(c.layer(), v1::UNDERLAY);
    EXPECT_EQ(c.state(), v1::Cell::UNKNOWN);  // nothing reported yet
    EXPECT_FALSE(c.has_last_update());
  }
  EXPECT_THAT(pairs,
              ElementsAre("node1>node2", "node1>node3", "node2>node1", "node2>node3", "node3>node1", "node3>node2"));
}

TEST_F(ClusterStateTest, CellsCarryRttLossAndReportTime) {
  state_.applyHello(makeHello("a", 1), true);
  state_.applyHello(makeHello("b", 2), true);
  v1::Report r;
  r.set_sequence(1);
  *r.mutable_time() = TimeUtil::SecondsToTimestamp(1'900'000'000);
  *r.add_probes() = makeProbe("b", v1::OVERLAY, 10, 8, milliseconds(3), milliseconds(5));
  *r.add_probes() = makeProbe("b", v1::UNDERLAY, 10, 10, milliseconds(1), milliseconds(2));
  ASSERT_EQ(state_.applyReport("a", r), ReportOutcome::kAccepted);

  auto overlay = state_.matrix(v1::OVERLAY);
  ASSERT_TRUE(overlay.ok());
  const v1::Cell* c = findCell(*overlay, "a", "b");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->state(), v1::Cell::DEGRADED);
  EXPECT_NEAR(c->loss(), 0.2, 1e-9);
  EXPECT_EQ(TimeUtil::DurationToMilliseconds(c->rtt()), 3);
  EXPECT_EQ(TimeUtil::TimestampToSeconds(c->last_update()), 1'900'000'000);
  EXPECT_EQ(cellState(v1::UNDERLAY, "a", "b"), v1::Cell::OK);
  EXPECT_EQ(cellState(v1::UNDERLAY, "b", "a"), v1::Cell::UNKNOWN);  // b has not reported
}

TEST_F(ClusterStateTest, ReportWithoutTimeIsStampedOnReceipt) {
  state_.applyHello(makeHello("a", 1), true);
  state_.applyHello(makeHello("b", 2), true);
  clock_.advance(seconds(3));
  ASSERT_EQ(state_.applyReport("a", report(1, {{"b", v1::UNDERLAY}})), ReportOutcome::kAccepted);
  auto m = state_.matrix(v1::UNDERLAY);
  const auto expected = std::chrono::duration_cast<seconds>(clock_.wallNow().time_since_epoch()).count();
  EXPECT_EQ(TimeUtil::TimestampToSeconds(findCell(*m, "a", "b")->last_update()), expected);
  EXPECT_EQ(TimeUtil::TimestampToSeconds(state_.listNodes()[0].last_report()), expected);
}

TEST_F(ClusterStateTest, StateTransitionsFollowTheLatestReport) {
  state_.applyHello(makeHello("a", 1), true);
  state_.applyHello(makeHello("b", 2), true);
  EXPECT_EQ(cellState(v1::OVERLAY, "a", "b"), v1::Cell::UNKNOWN);
  uint64_t seq = 0;
  auto send = [&](uint32_t sent, uint32_t received) {
    v1::Report r;
    r.set_sequence(++seq);
    *r.add_probes() = makeProbe("b", v1::OVERLAY, sent, received);
    ASSERT_EQ(state_.applyReport("a", r), ReportOutcome::kAccepted);
  };
  send(10, 10);
  EXPECT_EQ(cellState(v1::OVERLAY, "a", "b"), v1::Cell::OK);
  send(10, 8);
  EXPECT_EQ(cellState(v1::OVERLAY, "a", "b"), v1::Cell::DEGRADED);
  send(10, 0);
  EXPECT_EQ(cellState(v1::OVERLAY, "a", "b"), v1::Cell::FAIL);
  send(10, 10);
  EXPECT_EQ(cellState(v1::OVERLAY, "a", "b"), v1::Cell::OK);
  // A report without a probe for b leaves the cell UNKNOWN, not the old OK.
  v1::Report empty;
  empty.set_sequence(++seq);
  ASSERT_EQ(state_.applyReport("a", empty), ReportOutcome::kAccepted);
  EXPECT_EQ(cellState(v1::OVERLAY, "a", "b"), v1::Cell::UNKNOWN);
}

TEST_F(ClusterStateTest, CellsFromAStaleNodeTurnUnknownExactlyAtStaleAfter) {
  state_.applyHello(makeHello("a", 1), true);
  state_.applyHello(makeHello("b", 2), true);
  ASSERT_EQ(state_.applyReport("a", report(1, {{"b", v1::OVERLAY}, {"b", v1::UNDERLAY}})), ReportOutcome::kAccepted);
  ASSERT_EQ(state_.applyReport("b", report(1, {{"a", v1::OVERLAY}, {"a", v1::UNDERLAY}})), ReportOutcome::kAccepted);

  clock_.advance(seconds(9));
  // b keeps reporting; a goes silent.
  ASSERT_EQ(state_.applyReport("b", report(2, {{"a", v1::OVERLAY}, {"a", v1::UNDERLAY}})), ReportOutcome::kAccepted);
  clock_.advance(milliseconds(999));  // 9.999 s after a's report: still up
  EXPECT_TRUE(state_.isUp("a"));
  EXPECT_EQ(cellState(v1::OVERLAY, "a", "b"), v1::Cell::OK);
  EXPECT_EQ(cellState(v1::UNDERLAY, "a", "b"), v1::Cell::OK);

  clock_.advance(milliseconds(1));  // exactly 10 s: down
  EXPECT_FALSE(state_.isUp("a"));
  EXPECT_EQ(cellState(v1::OVERLAY, "a", "b"), v1::Cell::UNKNOWN);
  EXPECT_EQ(cellState(v1::UNDERLAY, "a", "b"), v1::Cell::UNKNOWN);
  // Cells TO the stale node keep what b reports.
  EXPECT_EQ(cellState(v1::OVERLAY, "b", "a"), v1::Cell::OK);
  auto nodes = state_.listNodes();
  EXPECT_FALSE(nodes[0].up());
  EXPECT_TRUE(nodes[1].up());
  // The stale cell keeps its last numbers and their time.
  auto m = state_.matrix(v1::OVERLAY);
  EXPECT_TRUE(findCell(*m, "a", "b")->has_last_update());

  // A fresh report brings it back.
  ASSERT_EQ(state_.applyReport("a", report(2, {{"b", v1::OVERLAY}})), ReportOutcome::kAccepted);
  EXPECT_TRUE(state_.isUp("a"));
  EXPECT_EQ(cellState(v1::OVERLAY, "a", "b"), v1::Cell::OK);
}

TEST_F(ClusterStateTest, ANodeThatOnlySaidHelloGoesStaleToo) {
  state_.applyHello(makeHello("a", 1), true);
  clock_.advance(seconds(10) - nanoseconds(1));
  EXPECT_TRUE(state_.isUp("a"));
  clock_.advance(nanoseconds(1));
  EXPECT_FALSE(state_.isUp("a"));
}

TEST_F(ClusterStateTest, OldSequenceDoesNotKeepANodeUp) {
  state_.applyHello(makeHello("a", 1), true);
  ASSERT_EQ(state_.applyReport("a", report(7, {})), ReportOutcome::kAccepted);
  clock_.advance(seconds(9));
  EXPECT_EQ(state_.applyReport("a", report(7, {})), ReportOutcome::kOldSequence);
  clock_.advance(seconds(1));
  EXPECT_FALSE(state_.isUp("a"));
}

TEST_F(ClusterStateTest, SilentNodesAreForgottenAfterTenTimesStaleAfter) {
  state_.applyHello(makeHello("a", 1), true);
  state_.applyHello(makeHello("b", 2), true);
  clock_.advance(seconds(50));
  ASSERT_EQ(state_.applyReport("b", report(1, {})), ReportOutcome::kAccepted);
  clock_.advance(seconds(50) - nanoseconds(1));
  EXPECT_TRUE(state_.sweep().empty());  // a: 99.999… s of silence; stale but still a member
  EXPECT_FALSE(state_.isUp("a"));
  clock_.advance(nanoseconds(1));
  EXPECT_THAT(state_.sweep().removed, ElementsAre("a"));
  EXPECT_EQ(state_.memberCount(), 1u);
  EXPECT_FALSE(state_.getNode("a").ok());
  EXPECT_TRUE(state_.sweep().empty());
}

TEST_F(ClusterStateTest, IstiodColumnPrefersProbeThenCheck) {
  for (int i = 1; i <= 4; ++i) state_.applyHello(makeHello("n" + std::to_string(i), i), true);
  v1::Report r1;  // probe result wins over the check
  r1.set_sequence(1);
  *r1.add_probes() = makeProbe("istiod", v1::ISTIOD, 5, 0);
  *r1.add_checks() = makeCheck("istiod", v1::CheckResult::OK);
  v1::Report r2;  // check only: OK
  r2.set_sequence(1);
  *r2.add_checks() = makeCheck("vxlan_device", v1::CheckResult::FAIL);
  *r2.add_checks() = makeCheck("istiod", v1::CheckResult::OK);
  v1::Report r3;  // check only: FAIL
  r3.set_sequence(1);
  *r3.add_checks() = makeCheck("istiod", v1::CheckResult::FAIL);
  v1::Report r4;  // SKIP
  r4.set_sequence(1);
  *r4.add_checks() = makeCheck("istiod", v1::CheckResult::SKIP);
  ASSERT_EQ(state_.applyReport("n1", r1), ReportOutcome::kAccepted);
  ASSERT_EQ(state_.applyReport("n2", r2), ReportOutcome::kAccepted);
  ASSERT_EQ(state_.applyReport("n3", r3), ReportOutcome::kAccepted);
  ASSERT_EQ(state_.applyReport("n4", r4), ReportOutcome::kAccepted);

  auto m = state_.matrix(v1::ISTIOD);
  ASSERT_TRUE(m.ok());
  ASSERT_EQ(m->cells_size(), 4);
  for (const auto& c : m->cells()) {
    EXPECT_EQ(c.dst(), "istiod");
    EXPECT_EQ(c.layer(), v1::ISTIOD);
  }
  EXPECT_EQ(findCell(*m, "n1", "istiod")->state(), v1::Cell::FAIL);
  EXPECT_EQ(findCell(*m, "n2", "istiod")->state(), v1::Cell::OK);
  EXPECT_EQ(findCell(*m, "n3", "istiod")->state(), v1::Cell::FAIL);
  EXPECT_EQ(findCell(*m, "n4", "istiod")->state(), v1::Cell::UNKNOWN);

  clock_.advance(seconds(10));  // everyone stale: the whole column UNKNOWN
  m = state_.matrix(v1::ISTIOD);
  for (const auto& c : m->cells()) EXPECT_EQ(c.state(), v1::Cell::UNKNOWN) << c.src();
}

TEST_F(ClusterStateTest, LayersWithoutAMatrixAreErrorsNamingTheLayer) {
  auto m = state_.matrix(v1::LAYER_UNSPECIFIED);
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(m.error().message, HasSubstr("LAYER_UNSPECIFIED"));
  EXPECT_THAT(m.error().message, HasSubstr("UNDERLAY, OVERLAY or ISTIOD"));
  EXPECT_FALSE(state_.matrix(v1::AMBIENT).ok());
}

TEST_F(ClusterStateTest, GetNodeReturnsTheLatestReport) {
  state_.applyHello(makeHello("a", 1), true);
  v1::Report r;
  r.set_sequence(1);
  *r.add_checks() = makeCheck("vxlan_socket", v1::CheckResult::FAIL);
  *r.add_probes() = makeProbe("b", v1::OVERLAY, 3, 0);
  auto* f = r.add_findings();
  f->set_code("VXLAN_SOCKET_MISSING");
  ASSERT_EQ(state_.applyReport("a", r), ReportOutcome::kAccepted);
  auto node = state_.getNode("a");
  ASSERT_TRUE(node.ok());
  EXPECT_EQ(node->node().name(), "a");
  ASSERT_EQ(node->checks_size(), 1);
  EXPECT_EQ(node->checks(0).name(), "vxlan_socket");
  ASSERT_EQ(node->probes_size(), 1);
  ASSERT_EQ(node->findings_size(), 1);
  EXPECT_EQ(node->findings(0).code(), "VXLAN_SOCKET_MISSING");
  auto missing = state_.getNode("zz");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.error().message, HasSubstr("'zz'"));
}

TEST_F(ClusterStateTest, DiagnosisSnapshotKeepsEvidenceOfUpNodesOnly) {
  for (int i = 1; i <= 3; ++i) state_.applyHello(makeHello("n" + std::to_string(i), i), true);
  v1::Report r1 = report(1, {{"n2", v1::OVERLAY}}, {{"n3", v1::OVERLAY}});
  r1.add_findings()->set_code("VXLAN_SOCKET_MISSING");
  *r1.add_checks() = makeCheck("vxlan_socket", v1::CheckResult::FAIL);
  ASSERT_EQ(state_.applyReport("n1", r1), ReportOutcome::kAccepted);
  v1::Report r2 = report(1, {{"n1", v1::OVERLAY}});
  r2.add_findings()->set_code("CNI_AGENT_DOWN");
  ASSERT_EQ(state_.applyReport("n2", r2), ReportOutcome::kAccepted);

  auto snap = state_.diagnosisSnapshot();
  ASSERT_EQ(snap.nodes.size(), 3u);
  EXPECT_EQ(snap.nodes[0].summary.name(), "n1");
  EXPECT_TRUE(snap.nodes[0].has_report);
  ASSERT_EQ(snap.nodes[0].findings.size(), 1u);
  EXPECT_EQ(snap.nodes[0].findings[0].code(), "VXLAN_SOCKET_MISSING");
  EXPECT_EQ(snap.nodes[0].checks.size(), 1u);
  EXPECT_EQ(snap.nodes[0].probes.size(), 2u);
  EXPECT_FALSE(snap.nodes[2].has_report);  // n3 never reported
  EXPECT_EQ(snap.overlay.cells_size(), 6);
  EXPECT_EQ(findCell(snap.overlay, "n1", "n3")->state(), v1::Cell::FAIL);
  EXPECT_EQ(snap.istiod.cells_size(), 3);

  // n2 goes silent: it stays a member (down) but its findings and probes are not evidence.
  clock_.advance(seconds(5));
  ASSERT_EQ(state_.applyReport("n1", report(2, {{"n2", v1::OVERLAY}})), ReportOutcome::kAccepted);
  clock_.advance(seconds(6));
  snap = state_.diagnosisSnapshot();
  EXPECT_FALSE(snap.nodes[1].summary.up());
  EXPECT_FALSE(snap.nodes[1].has_report);
  EXPECT_TRUE(snap.nodes[1].findings.empty());
  EXPECT_TRUE(snap.nodes[1].probes.empty());
  EXPECT_TRUE(snap.nodes[0].summary.up());
}

TEST_F(ClusterStateTest, VxlanMismatchesComeFromHellos) {
  state_.applyHello(makeHello("n1", 1), true);
  state_.applyHello(makeHello("n2", 2), true);
  state_.applyHello(makeHello("n3", 3, 1, 8472), true);
  auto mm = state_.vxlanMismatches();
  ASSERT_EQ(mm.size(), 1u);
  EXPECT_EQ(mm[0].node, "n3");
  EXPECT_TRUE(mm[0].port_differs);
  // The summaries carry the facts too.
  EXPECT_EQ(state_.listNodes()[2].vxlan_port(), 8472u);
}

}  // namespace
}  // namespace meshprobe::aggregator

namespace meshprobe::aggregator {
namespace {

class DiagnosisInputTest : public ClusterStateTest {};

TEST_F(DiagnosisInputTest, ViewsHoldFailingCellsDetailsAndMeasuredPeers) {
  for (int i : {1, 2, 3}) state_.applyHello(makeHello("n" + std::to_string(i), i), true);
  v1::Report r1 = report(1, {{"n2", v1::OVERLAY}}, {{"n3", v1::OVERLAY}});
  r1.mutable_probes(1)->set_consecutive_failures(4);
  r1.mutable_probes(1)->set_error("timeout after 500ms");
  ASSERT_EQ(state_.applyReport("n1", r1), ReportOutcome::kAccepted);
  ASSERT_EQ(state_.applyReport("n2", report(1, {{"n1", v1::OVERLAY}, {"n3", v1::OVERLAY}})), ReportOutcome::kAccepted);

  const DiagnosisInput in = state_.diagnosisInput();
  ASSERT_EQ(in.nodes.size(), 3u);
  EXPECT_EQ(in.nodes[0].summary.name(), "n1");
  EXPECT_TRUE(in.nodes[0].has_report);
  EXPECT_TRUE(in.nodes[0].probes.empty());  // probes are the view's details
  ASSERT_NE(in.overlay, nullptr);
  ASSERT_NE(in.underlay, nullptr);
  const LayerView& o = *in.overlay;
  EXPECT_EQ(o.size(), 3u);
  EXPECT_EQ(o.state(0, 1), v1::Cell::OK);
  EXPECT_EQ(o.state(0, 2), v1::Cell::FAIL);
  EXPECT_EQ(o.state(2, 0), v1::Cell::UNKNOWN);  // n3 never reported
  EXPECT_EQ(o.state(1, 1), v1::Cell::UNKNOWN);
  EXPECT_THAT(o.failing(), ElementsAre(CellPair{0, 2}));
  EXPECT_THAT(o.detailed(), ElementsAre(CellPair{0, 2}));
  ASSERT_NE(o.detail(0, 2), nullptr);
  EXPECT_EQ(o.detail(0, 2)->consecutive_failures(), 4u);
  EXPECT_EQ(o.detail(0, 2)->error(), "timeout after 500ms");
  EXPECT_EQ(o.detail(0, 1), nullptr);  // healthy: packed numbers only
  EXPECT_EQ(o.measuredPeers(0), 2u);   // n1->n2, n1->n3 (and n2->n1)
  EXPECT_EQ(o.measuredPeers(2), 2u);   // n1->n3 and n2->n3
  EXPECT_EQ(in.underlay->failing().size(), 0u);
  EXPECT_EQ(in.underlay->measuredPeers(0), 0u);
  ASSERT_EQ(in.istiod.size(), 3u);
  EXPECT_EQ(in.istiod[0], v1::Cell::UNKNOWN);  // no istiod check reported
}

TEST_F(DiagnosisInputTest, GenerationChangesWithReportsAndWhenANodeGoesStaleOnly) {
  state_.applyHello(makeHello("n1", 1), true);
  state_.applyHello(makeHello("n2", 2), true);
  const uint64_t g0 = state_.diagnosisInput().generation;
  EXPECT_EQ(state_.diagnosisInput().generation, g0);  // nothing changed
  ASSERT_EQ(state_.applyReport("n1", report(1, {{"n2", v1::OVERLAY}})), ReportOutcome::kAccepted);
  const uint64_t g1 = state_.diagnosisInput().generation;
  EXPECT_NE(g1, g0);
  clock_.advance(seconds(5));
  EXPECT_EQ(state_.diagnosisInput().generation, g1);  // both still up
  clock_.advance(seconds(6));                          // n2 silent for 11 s > stale_after, n1 for 11 s too
  const DiagnosisInput stale = state_.diagnosisInput();
  EXPECT_NE(stale.generation, g1);
  EXPECT_FALSE(stale.nodes[0].summary.up());
  EXPECT_FALSE(stale.nodes[0].has_report);  // a silent node's last words are not evidence
  EXPECT_EQ(stale.overlay->state(0, 1), v1::Cell::UNKNOWN);
}


TEST_F(DiagnosisInputTest, ACellOlderThanTheCoverageWindowIsUnknownNeverAStaleOk) {
  state_.applyHello(makeHello("a", 1), true);
  state_.applyHello(makeHello("b", 2), true);
  state_.applyHello(makeHello("c", 3), true);
  const int64_t now_s = std::chrono::duration_cast<seconds>(clock_.wallNow().time_since_epoch()).count();
  auto probedAgo = [&](const std::string& dst, int64_t ago_s) {
    auto p = makeProbe(dst, v1::OVERLAY, 10, 10);
    *p.mutable_last_probe() = TimeUtil::SecondsToTimestamp(now_s - ago_s);
    return p;
  };
  v1::Report r;  // no Report.time: stamped with the (fake) wall clock on receipt
  r.set_sequence(1);
  *r.mutable_coverage_period() = TimeUtil::SecondsToDuration(10);
  *r.mutable_probe_interval() = TimeUtil::SecondsToDuration(1);
  *r.add_probes() = probedAgo("b", 12);  // 10 s + 2 × 1 s: just within the window
  *r.add_probes() = probedAgo("c", 13);  // older: nobody probed it within its window
  ASSERT_EQ(state_.applyReport("a", r), ReportOutcome::kAccepted);
  EXPECT_EQ(cellState(v1::OVERLAY, "a", "b"), v1::Cell::OK);
  EXPECT_EQ(cellState(v1::OVERLAY, "a", "c"), v1::Cell::UNKNOWN);
  const auto in = state_.diagnosisInput();
  EXPECT_EQ(in.overlay->state(0, 2), v1::Cell::UNKNOWN);
  EXPECT_EQ(in.overlay->measuredPeers(0), 1u);  // only b is measured
  // The numbers stay visible on the UNKNOWN cell.
  auto m = state_.matrix(v1::OVERLAY);
  EXPECT_TRUE(findCell(*m, "a", "c")->has_last_update());

  // An older agent (no coverage_period): no age rule, as before.
  r.set_sequence(2);
  r.clear_coverage_period();
  r.clear_probe_interval();
  ASSERT_EQ(state_.applyReport("a", r), ReportOutcome::kAccepted);
  EXPECT_EQ(cellState(v1::OVERLAY, "a", "c"), v1::Cell::OK);
  // coverage_period without probe_interval: the interval is taken as the period (3 × 10 s).
  r.set_sequence(3);
  *r.mutable_coverage_period() = TimeUtil::SecondsToDuration(4);
  ASSERT_EQ(state_.applyReport("a", r), ReportOutcome::kAccepted);
  EXPECT_EQ(cellState(v1::OVERLAY, "a", "b"), v1::Cell::OK);       // 12 s <= 12 s
  EXPECT_EQ(cellState(v1::OVERLAY, "a", "c"), v1::Cell::UNKNOWN);  // 13 s > 12 s
}

TEST_F(DiagnosisInputTest, SnapshotsAreImmutableAndShareUntouchedRows) {
  for (int i : {1, 2, 3}) state_.applyHello(makeHello("n" + std::to_string(i), i), true);
  ASSERT_EQ(state_.applyReport("n1", report(1, {{"n2", v1::OVERLAY}})), ReportOutcome::kAccepted);
  ASSERT_EQ(state_.applyReport("n2", report(1, {{"n1", v1::OVERLAY}})), ReportOutcome::kAccepted);
  const auto s1 = state_.snapshot();
  EXPECT_EQ(state_.snapshot(), s1);  // nothing changed: the same snapshot
  ASSERT_EQ(state_.applyReport("n1", report(2, {}, {{"n2", v1::OVERLAY}})), ReportOutcome::kAccepted);
  const auto s2 = state_.snapshot();
  ASSERT_NE(s2, s1);
  EXPECT_GT(s2->generation, s1->generation);
  EXPECT_EQ(s1->state(kOverlayRows, 0, 1), v1::Cell::OK);  // the old snapshot did not move
  EXPECT_EQ(s2->state(kOverlayRows, 0, 1), v1::Cell::FAIL);
  EXPECT_NE(s2->rows[kOverlayRows][0], s1->rows[kOverlayRows][0]);  // copied on write
  EXPECT_EQ(s2->rows[kOverlayRows][1], s1->rows[kOverlayRows][1]);  // n2's row is shared
  EXPECT_EQ(s2->nodes[1], s1->nodes[1]);
}

TEST_F(DiagnosisInputTest, PublishingIsRateLimitedAndStalenessStillChangesTheGeneration) {
  ClusterOptions o = options();
  o.publish_interval = milliseconds(250);
  ClusterState st(clock_, o);
  st.applyHello(makeHello("n1", 1), true);
  st.applyHello(makeHello("n2", 2), true);
  const auto s0 = st.snapshot();
  ASSERT_EQ(st.applyReport("n1", report(1, {}, {{"n2", v1::OVERLAY}})), ReportOutcome::kAccepted);
  EXPECT_EQ(st.snapshot(), s0);  // changed, but the snapshot is younger than 250 ms
  EXPECT_EQ(st.matrixSummary(v1::OVERLAY)->failed.size(), 0u);
  clock_.advance(milliseconds(249));
  EXPECT_EQ(st.snapshot(), s0);
  clock_.advance(milliseconds(1));
  const auto s1 = st.snapshot();
  EXPECT_NE(s1, s0);
  EXPECT_NE(s1->generation, s0->generation);
  EXPECT_EQ(st.matrixSummary(v1::OVERLAY)->failed.size(), 1u);
  clock_.advance(seconds(5));
  EXPECT_EQ(st.snapshot()->generation, s1->generation);  // rebuilt? nothing changed: same generation
  clock_.advance(seconds(5));                             // n1 heard 10.25 s ago: down
  const auto s2 = st.snapshot();
  EXPECT_NE(s2->generation, s1->generation);
  EXPECT_FALSE(s2->up[0]);
  EXPECT_TRUE(st.matrixSummary(v1::OVERLAY)->failed.empty());  // a down source fails nothing
}

TEST_F(DiagnosisInputTest, AForgottenNodesSlotCarriesNoneOfItsCellsToTheNextNode) {
  ClusterOptions o = options();
  o.forget_after = seconds(5);
  ClusterState st(clock_, o);
  for (const char* n : {"a", "b", "c"}) st.applyHello(makeHello(n, 1), true);
  clock_.advance(seconds(4));
  st.applyHello(makeHello("b", 2), false);
  ASSERT_EQ(st.applyReport("a", report(1, {{"b", v1::OVERLAY}, {"c", v1::OVERLAY}})), ReportOutcome::kAccepted);
  EXPECT_EQ(st.matrixSummary(v1::OVERLAY)->reachable[0], 2u);
  clock_.advance(seconds(2));
  EXPECT_THAT(st.sweep().removed, ElementsAre("c"));
  EXPECT_EQ(st.matrixSummary(v1::OVERLAY)->reachable[0], 1u);  // recounted without c
  st.applyHello(makeHello("d", 4), true);                        // takes c's slot
  auto m = st.matrix(v1::OVERLAY);
  ASSERT_TRUE(m.ok());
  EXPECT_THAT(m->nodes(), ElementsAre("a", "b", "d"));
  const v1::Cell* ad = findCell(*m, "a", "d");
  ASSERT_NE(ad, nullptr);
  EXPECT_EQ(ad->state(), v1::Cell::UNKNOWN);
  EXPECT_FALSE(ad->has_last_update());  // not c's old numbers
  EXPECT_EQ(findCell(*m, "a", "b")->state(), v1::Cell::OK);
  EXPECT_EQ(st.matrixSummary(v1::OVERLAY)->reachable[0], 1u);
  auto node = st.getNode("a");
  ASSERT_TRUE(node.ok());
  ASSERT_EQ(node->probes_size(), 1);
  EXPECT_EQ(node->probes(0).dst(), "b");
}

TEST_F(DiagnosisInputTest, GetNodeGivesFullResultsForDetailedCellsAndReducedOnesForHealthy) {
  for (int i : {1, 2, 3}) state_.applyHello(makeHello("n" + std::to_string(i), i), true);
  v1::Report r = report(1, {{"n2", v1::UNDERLAY}}, {{"n3", v1::UNDERLAY}});
  r.mutable_probes(1)->set_error("timeout after 500ms");
  *r.add_probes() = makeProbe("istiod", v1::ISTIOD, 4, 4);
  ASSERT_EQ(state_.applyReport("n1", r), ReportOutcome::kAccepted);
  auto node = state_.getNode("n1");
  ASSERT_TRUE(node.ok());
  ASSERT_EQ(node->probes_size(), 3);
  const auto& healthy = node->probes(0);
  EXPECT_EQ(healthy.dst(), "n2");
  EXPECT_EQ(healthy.sent(), 1u);  // reduced: no counts, no p99
  EXPECT_FALSE(healthy.has_rtt_p99());
  EXPECT_EQ(TimeUtil::DurationToMicroseconds(healthy.rtt_p50()), 200);
  const auto& failed = node->probes(1);
  EXPECT_EQ(failed.dst(), "n3");
  EXPECT_EQ(failed.sent(), 10u);  // full
  EXPECT_EQ(failed.error(), "timeout after 500ms");
  EXPECT_TRUE(failed.has_rtt_p99());
  EXPECT_EQ(node->probes(2).layer(), v1::ISTIOD);
}

TEST_F(DiagnosisInputTest, SummaryAgreesWithTheMatrix) {
  for (int i = 1; i <= 5; ++i) state_.applyHello(makeHello("n" + std::to_string(i), i), true);
  ASSERT_EQ(state_.applyReport("n1", report(1, {{"n2", v1::OVERLAY}, {"n3", v1::OVERLAY}}, {{"n5", v1::OVERLAY}})),
            ReportOutcome::kAccepted);
  ASSERT_EQ(state_.applyReport("n4", report(1, {{"n5", v1::OVERLAY}}, {{"n1", v1::OVERLAY}, {"n2", v1::OVERLAY}})),
            ReportOutcome::kAccepted);
  auto m = state_.matrix(v1::OVERLAY);
  auto sum = state_.matrixSummary(v1::OVERLAY);
  ASSERT_TRUE(m.ok() && sum.ok());
  std::vector<uint32_t> reachable(5, 0);
  std::vector<std::pair<std::string, std::string>> failed;
  for (const auto& c : m->cells()) {
    const size_t i = static_cast<size_t>(c.src()[1] - '1');
    if (c.state() == v1::Cell::OK || c.state() == v1::Cell::DEGRADED) ++reachable[i];
    if (c.state() == v1::Cell::FAIL) failed.emplace_back(c.src(), c.dst());
  }
  EXPECT_EQ(sum->reachable, reachable);
  EXPECT_EQ(sum->failed, failed);
  EXPECT_THAT(sum->reachable, ElementsAre(2u, 0u, 0u, 1u, 0u));
}

TEST_F(DiagnosisInputTest, MatrixPagesFromTheSnapshotEqualPagesOfTheWholeMatrix) {
  for (int i = 1; i <= 7; ++i) state_.applyHello(makeHello("n" + std::to_string(i), i), true);
  uint64_t seq = 0;
  for (int s = 1; s <= 6; ++s) {
    std::vector<std::pair<std::string, v1::Layer>> ok, bad;
    for (int d = 1; d <= 7; ++d) {
      if (d == s || (s + d) % 5 == 0) continue;  // some cells never probed
      ((s * d) % 4 == 0 ? bad : ok).emplace_back("n" + std::to_string(d), v1::UNDERLAY);
    }
    ASSERT_EQ(state_.applyReport("n" + std::to_string(s), report(++seq, ok, bad)), ReportOutcome::kAccepted);
  }
  auto compare = [&](v1::GetMatrixRequest req) {
    for (int page = 0; page < 50; ++page) {
      v1::GetMatrixResponse want, got;
      auto full = state_.matrix(req.layer());
      ASSERT_TRUE(full.ok());
      const auto ws = queryMatrix(*full, req, &want);
      const auto gs = state_.matrixPage(req, &got);
      ASSERT_EQ(ws.error_code(), gs.error_code()) << req.ShortDebugString();
      ASSERT_EQ(ws.error_message(), gs.error_message());
      ASSERT_EQ(want.SerializeAsString(), got.SerializeAsString()) << req.ShortDebugString() << "\nwant "
                                                                   << want.ShortDebugString() << "\ngot  "
                                                                   << got.ShortDebugString();
      if (want.next_page_token().empty()) return;
      req.set_page_token(want.next_page_token());
    }
    FAIL() << "too many pages";
  };
  for (v1::Layer layer : {v1::UNDERLAY, v1::OVERLAY, v1::ISTIOD}) {
    v1::GetMatrixRequest req;
    req.set_layer(layer);
    compare(req);
    req.set_page_size(4);
    compare(req);
    req.add_nodes("n3");
    compare(req);
    req.add_states(v1::Cell::FAIL);
    compare(req);
    req.clear_nodes();
    compare(req);
    req.add_states(v1::Cell::UNKNOWN);
    req.set_page_size(3);
    compare(req);
    req.add_nodes("ghost");
    compare(req);
    req.clear_nodes();
    req.clear_states();
    req.set_page_token("zz");
    compare(req);
  }
}
}  // namespace
}  // namespace meshprobe::aggregator
