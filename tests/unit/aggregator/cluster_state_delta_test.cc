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

// Report.results_follow: a whole report whose other results come in the deltas after it
// (an agent with more results than a message should carry). It replaces the checks, but the
// cells it leaves out keep what they had; on a member with no report yet it is the row.
TEST_F(ClusterStateDeltaTest, AWholeReportWhoseResultsFollowKeepsTheCellsItLeavesOut) {
  EXPECT_TRUE(state_.peerList().accepts_results_follow());
  ASSERT_EQ(state_.applyReport("node1", whole(1)), ReportOutcome::kAccepted);
  v1::Report w;  // node2's overlay cell failing, node4's left out
  w.set_sequence(2);
  w.set_results_follow(true);
  *w.add_probes() = makeProbe("node2", v1::OVERLAY, 10, 0);
  *w.add_checks() = makeCheck("vxlan_device", v1::CheckResult::FAIL);
  ASSERT_EQ(state_.applyReport("node1", w), ReportOutcome::kAccepted);
  EXPECT_EQ(cell(v1::OVERLAY, "node1", "node2").state(), v1::Cell::FAIL);
  EXPECT_EQ(cell(v1::OVERLAY, "node1", "node4").state(), v1::Cell::OK);
  EXPECT_EQ(cell(v1::UNDERLAY, "node1", "node3").state(), v1::Cell::OK);
  EXPECT_EQ(state_.matrixSummary(v1::OVERLAY)->reachable[0], 2u);
  // The checks are the report's: istiod, not in it, is gone.
  auto node = state_.getNode("node1");
  ASSERT_TRUE(node.ok());
  ASSERT_EQ(node->checks_size(), 1);
  EXPECT_EQ(node->checks(0).name(), "vxlan_device");
  EXPECT_EQ(node->checks(0).status(), v1::CheckResult::FAIL);

  // node2's first report: only what it carries.
  v1::Report first;
  first.set_sequence(1);
  first.set_results_follow(true);
  *first.add_probes() = makeProbe("node1", v1::UNDERLAY, 10, 10);
  ASSERT_EQ(state_.applyReport("node2", first), ReportOutcome::kAccepted);
  EXPECT_EQ(cell(v1::UNDERLAY, "node2", "node1").state(), v1::Cell::OK);
  EXPECT_EQ(cell(v1::UNDERLAY, "node2", "node3").state(), v1::Cell::UNKNOWN);
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

// The digest re-sends results that did not change: only their probe time moves, in place.
TEST_F(ClusterStateDeltaTest, AResultResentUnchangedMovesOnlyItsProbeTimeAndCopiesNoRow) {
  using google::protobuf::util::TimeUtil;
  v1::Report w = whole(1);
  for (auto& p : *w.mutable_probes()) *p.mutable_last_probe() = TimeUtil::SecondsToTimestamp(1000);
  ASSERT_EQ(state_.applyReport("node1", w), ReportOutcome::kAccepted);
  const auto before = state_.snapshot();
  v1::Report d = delta(2);
  *d.add_probes() = makeProbe("node3", v1::OVERLAY, 10, 10);
  *d.mutable_probes(0)->mutable_last_probe() = TimeUtil::SecondsToTimestamp(1060);
  ASSERT_EQ(state_.applyReport("node1", d), ReportOutcome::kAccepted);

  const auto after = state_.snapshot();
  ASSERT_NE(after, before);
  const auto i1 = after->indexOf("node1");
  ASSERT_TRUE(i1);
  EXPECT_EQ(after->rows[kOverlayRows][*i1], before->rows[kOverlayRows][*i1]) << "the row was copied";
  auto lastProbe = [&](const char* dst, v1::Layer layer) {
    auto node = state_.getNode("node1");
    EXPECT_TRUE(node.ok());
    for (const auto& p : node->probes()) {
      if (p.dst() == dst && p.layer() == layer) return p.last_probe().seconds();
    }
    ADD_FAILURE() << dst << " not among node1's probes";
    return int64_t{0};
  };
  EXPECT_EQ(lastProbe("node3", v1::OVERLAY), 1060);
  EXPECT_EQ(lastProbe("node2", v1::OVERLAY), 1000);
  EXPECT_EQ(lastProbe("node3", v1::UNDERLAY), 1000);
  EXPECT_EQ(cell(v1::OVERLAY, "node1", "node3").state(), v1::Cell::OK);
  EXPECT_EQ(state_.matrixSummary(v1::OVERLAY)->reachable[0], 3u);

  // A result whose RTT step moved is written to a copy; the earlier snapshot keeps its numbers.
  v1::Report slower = delta(3);
  *slower.add_probes() = makeProbe("node3", v1::OVERLAY, 10, 10, std::chrono::microseconds(900));
  *slower.mutable_probes(0)->mutable_last_probe() = TimeUtil::SecondsToTimestamp(1070);
  ASSERT_EQ(state_.applyReport("node1", slower), ReportOutcome::kAccepted);
  EXPECT_NEAR(cell(v1::OVERLAY, "node1", "node3").rtt().nanos(), 900'000, 900'000 * 0.013);
  const auto i3 = before->indexOf("node3");
  ASSERT_TRUE(i3);
  EXPECT_NEAR(before->rows[kOverlayRows][*i1]->at(before->slots[*i3]).rttP50().count(), 200'000, 200'000 * 0.013);
}

// A cell kept whole (failing, or with an error) is rewritten by its resent result, never
// just refreshed: its counts and reasons are the news.
TEST_F(ClusterStateDeltaTest, AResentResultOfACellKeptWholeReplacesItsDetail) {
  v1::Report w = whole(1);
  for (auto& p : *w.mutable_probes()) {
    if (p.dst() == "node2" && p.layer() == v1::UNDERLAY) p = makeProbe("node2", v1::UNDERLAY, 10, 0);
    if (p.dst() == "node2" && p.layer() == v1::UNDERLAY) p.set_consecutive_failures(3);
    if (p.dst() == "node4" && p.layer() == v1::OVERLAY) p.set_error("ICMP fragmentation needed");
  }
  ASSERT_EQ(state_.applyReport("node1", w), ReportOutcome::kAccepted);
  const auto before = state_.snapshot();
  v1::Report d = delta(2);
  *d.add_probes() = makeProbe("node2", v1::UNDERLAY, 10, 0);
  d.mutable_probes(0)->set_consecutive_failures(5);
  *d.add_probes() = makeProbe("node4", v1::OVERLAY, 10, 10);
  ASSERT_EQ(state_.applyReport("node1", d), ReportOutcome::kAccepted);
  v1::Report alone = delta(3);  // alone, so that no other change rewrites its row anyway
  *alone.add_probes() = makeProbe("node3", v1::UNDERLAY, 10, 10);  // still OK, now with an error
  alone.mutable_probes(0)->set_error("connection refused");
  ASSERT_EQ(state_.applyReport("node1", alone), ReportOutcome::kAccepted);

  auto node = state_.getNode("node1");
  ASSERT_TRUE(node.ok());
  for (const auto& p : node->probes()) {
    if (p.dst() == "node2" && p.layer() == v1::UNDERLAY) {
      EXPECT_EQ(p.consecutive_failures(), 5u);
    }
    if (p.dst() == "node4" && p.layer() == v1::OVERLAY) {
      EXPECT_EQ(p.error(), "");
    }
    if (p.dst() == "node3" && p.layer() == v1::UNDERLAY) {
      EXPECT_EQ(p.error(), "connection refused");
    }
  }
  EXPECT_EQ(state_.matrixSummary(v1::UNDERLAY)->failed.size(), 1u);
  EXPECT_EQ(state_.matrixSummary(v1::OVERLAY)->reachable[0], 3u);
}

}  // namespace
}  // namespace meshprobe::aggregator
