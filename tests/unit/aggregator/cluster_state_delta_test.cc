// ClusterState applying delta reports (Report.delta): only the carried cells, checks and
// pod netns list change; everything else stays as the earlier reports left it.
#include <gmock/gmock.h>
#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>

#include "aggregator/cluster_state.h"
#include "tests/unit/aggregator/test_util.h"

namespace meshprobe::aggregator {
namespace {

using std::chrono::seconds;
using ::testing::ElementsAre;
using testing::findCell;
using testing::makeCheck;
using testing::makeHello;
using testing::makeProbe;

class ClusterStateDeltaTest : public ::testing::Test {
 protected:
  ClusterStateDeltaTest() : state_(clock_, options()) {
    for (int n = 1; n <= 4; ++n) state_.applyHello(makeHello("node" + std::to_string(n), n), true);
  }
  static ClusterOptions options() {
    ClusterOptions o;
    o.stale_after = seconds(10);
    o.forget_after = seconds(30);
    return o;
  }
  // node1's whole report: every peer OK on both layers.
  v1::Report whole(uint64_t seq) {
    v1::Report r;
    r.set_sequence(seq);
    for (const char* dst : {"node2", "node3", "node4"}) {
      for (v1::Layer l : {v1::UNDERLAY, v1::OVERLAY}) *r.add_probes() = makeProbe(dst, l, 10, 10);
    }
    *r.add_checks() = makeCheck("vxlan_device", v1::CheckResult::OK);
    *r.add_checks() = makeCheck("istiod", v1::CheckResult::OK);
    return r;
  }
  static v1::Report delta(uint64_t seq) {
    v1::Report r;
    r.set_sequence(seq);
    r.set_delta(true);
    return r;
  }
  // node4 goes silent and is forgotten; node5 takes its slot.
  void node5TakesForgottenNode4sSlot() {
    for (int i = 0; i < 4; ++i) {
      clock_.advance(seconds(8));
      for (const char* n : {"node1", "node2", "node3"}) state_.applyHello(makeHello(n, n[4] - '0'), false);
    }
    EXPECT_THAT(state_.sweep().removed, ElementsAre("node4"));
    state_.applyHello(makeHello("node5", 5), true);
  }
  v1::Cell cell(v1::Layer layer, const std::string& src, const std::string& dst) {
    auto m = state_.matrix(layer);
    EXPECT_TRUE(m.ok());
    const v1::Cell* c = findCell(*m, src, dst);
    EXPECT_NE(c, nullptr) << src << "->" << dst;
    return c ? *c : v1::Cell{};
  }

  FakeClock clock_;
  ClusterState state_;
};

TEST_F(ClusterStateDeltaTest, PeerListsSayTheAggregatorAppliesDeltas) {
  EXPECT_TRUE(state_.peerList().accepts_report_deltas());
}

TEST_F(ClusterStateDeltaTest, ADeltaChangesOnlyItsCellsAndKeepsTheRest) {
  ASSERT_EQ(state_.applyReport("node1", whole(1)), ReportOutcome::kAccepted);
  auto before = state_.snapshot();  // holds the rows: the delta must change copies
  v1::Report d = delta(2);
  *d.add_probes() = makeProbe("node3", v1::OVERLAY, 10, 0);
  ASSERT_EQ(state_.applyReport("node1", d), ReportOutcome::kAccepted);
  EXPECT_EQ(state_.deltasApplied(), 1u);

  EXPECT_EQ(cell(v1::OVERLAY, "node1", "node3").state(), v1::Cell::FAIL);
  EXPECT_EQ(cell(v1::OVERLAY, "node1", "node2").state(), v1::Cell::OK);
  EXPECT_EQ(cell(v1::OVERLAY, "node1", "node4").state(), v1::Cell::OK);
  EXPECT_EQ(cell(v1::UNDERLAY, "node1", "node3").state(), v1::Cell::OK);
  auto summary = state_.matrixSummary(v1::OVERLAY);
  ASSERT_TRUE(summary.ok());
  EXPECT_EQ(summary->reachable[0], 2u);
  ASSERT_EQ(summary->failed.size(), 1u);
  EXPECT_EQ(summary->failed[0], std::make_pair(std::string("node1"), std::string("node3")));
  // The earlier snapshot still shows what it showed.
  const auto i1 = before->indexOf("node1"), i3 = before->indexOf("node3");
  ASSERT_TRUE(i1 && i3);
  EXPECT_EQ(before->state(kOverlayRows, *i1, *i3), v1::Cell::OK);
  // Checks and the istiod cell are kept.
  auto node = state_.getNode("node1");
  ASSERT_TRUE(node.ok());
  EXPECT_EQ(node->checks_size(), 2);
  EXPECT_EQ(cell(v1::ISTIOD, "node1", "istiod").state(), v1::Cell::OK);
}

TEST_F(ClusterStateDeltaTest, AHealedCellLosesItsDetailAndLeavesTheFailingList) {
  ASSERT_EQ(state_.applyReport("node1", whole(1)), ReportOutcome::kAccepted);
  v1::Report fail = delta(2);
  *fail.add_probes() = makeProbe("node2", v1::UNDERLAY, 10, 0);
  ASSERT_EQ(state_.applyReport("node1", fail), ReportOutcome::kAccepted);
  auto input = state_.diagnosisInput();
  EXPECT_EQ(state_.matrixSummary(v1::UNDERLAY)->failed.size(), 1u);
  v1::Report heal = delta(3);
  *heal.add_probes() = makeProbe("node2", v1::UNDERLAY, 10, 10);
  ASSERT_EQ(state_.applyReport("node1", heal), ReportOutcome::kAccepted);
  EXPECT_TRUE(state_.matrixSummary(v1::UNDERLAY)->failed.empty());
  EXPECT_EQ(state_.matrixSummary(v1::UNDERLAY)->reachable[0], 3u);
  auto node = state_.getNode("node1");
  ASSERT_TRUE(node.ok());
  for (const auto& p : node->probes()) {
    EXPECT_EQ(p.received(), p.sent()) << p.dst();  // no failing detail left behind
  }
}

TEST_F(ClusterStateDeltaTest, ChecksMergeByNameAndPodNetnsUnsetIsUnchanged) {
  v1::Report w = whole(1);
  w.mutable_pod_netns()->set_total(3);
  ASSERT_EQ(state_.applyReport("node1", w), ReportOutcome::kAccepted);
  v1::Report d = delta(2);
  *d.add_checks() = makeCheck("istiod", v1::CheckResult::FAIL);
  ASSERT_EQ(state_.applyReport("node1", d), ReportOutcome::kAccepted);
  auto node = state_.getNode("node1");
  ASSERT_TRUE(node.ok());
  ASSERT_EQ(node->checks_size(), 2);
  EXPECT_EQ(node->checks(0).name(), "vxlan_device");
  EXPECT_EQ(node->checks(1).status(), v1::CheckResult::FAIL);
  EXPECT_EQ(cell(v1::ISTIOD, "node1", "istiod").state(), v1::Cell::FAIL);
  auto pods = state_.snapshot()->podNetnsByNode();
  ASSERT_EQ(pods.size(), 1u);
  EXPECT_EQ(pods[0].captures->total(), 3u);
}

TEST_F(ClusterStateDeltaTest, AWholeReportAfterDeltasReplacesEverything) {
  ASSERT_EQ(state_.applyReport("node1", whole(1)), ReportOutcome::kAccepted);
  v1::Report d = delta(2);
  *d.add_probes() = makeProbe("node4", v1::OVERLAY, 10, 0);
  ASSERT_EQ(state_.applyReport("node1", d), ReportOutcome::kAccepted);
  v1::Report w;  // whole, without node4's overlay cell: the cell is gone, not kept
  w.set_sequence(3);
  *w.add_probes() = makeProbe("node2", v1::OVERLAY, 10, 10);
  ASSERT_EQ(state_.applyReport("node1", w), ReportOutcome::kAccepted);
  EXPECT_EQ(cell(v1::OVERLAY, "node1", "node4").state(), v1::Cell::UNKNOWN);
  EXPECT_EQ(cell(v1::OVERLAY, "node1", "node2").state(), v1::Cell::OK);
  EXPECT_EQ(cell(v1::UNDERLAY, "node1", "node2").state(), v1::Cell::UNKNOWN);
}

TEST_F(ClusterStateDeltaTest, ANewMemberInAForgottenSlotGetsNoneOfTheOldCellsThroughADelta) {
  ASSERT_EQ(state_.applyReport("node1", whole(1)), ReportOutcome::kAccepted);
  node5TakesForgottenNode4sSlot();
  v1::Report d = delta(2);
  *d.add_probes() = makeProbe("node2", v1::OVERLAY, 10, 10);
  ASSERT_EQ(state_.applyReport("node1", d), ReportOutcome::kAccepted);
  const v1::Cell c = cell(v1::OVERLAY, "node1", "node5");
  EXPECT_EQ(c.state(), v1::Cell::UNKNOWN);
  EXPECT_FALSE(c.has_last_update());
  EXPECT_EQ(state_.matrixSummary(v1::OVERLAY)->reachable[0], 2u);  // node2, node3
}

TEST_F(ClusterStateDeltaTest, AnEmptyDeltaAfterASlotChangeShowsNoneOfTheOldOccupantsCells) {
  ASSERT_EQ(state_.applyReport("node1", whole(1)), ReportOutcome::kAccepted);
  node5TakesForgottenNode4sSlot();
  ASSERT_EQ(state_.applyReport("node1", delta(2)), ReportOutcome::kAccepted);
  for (v1::Layer l : {v1::UNDERLAY, v1::OVERLAY}) {
    const v1::Cell c = cell(l, "node1", "node5");
    EXPECT_EQ(c.state(), v1::Cell::UNKNOWN) << l;
    EXPECT_FALSE(c.has_last_update()) << l;
    EXPECT_EQ(cell(l, "node1", "node2").state(), v1::Cell::OK) << l;
    EXPECT_EQ(state_.matrixSummary(l)->reachable[0], 2u) << l;  // node2, node3
  }
}

}  // namespace
}  // namespace meshprobe::aggregator
