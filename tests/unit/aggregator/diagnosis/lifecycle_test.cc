// Finding lifecycle with explicit time points: onset delay, hysteresis against flapping,
// clear times, history, and a fault that comes back.
#include "aggregator/diagnosis/lifecycle.h"

#include <gmock/gmock.h>
#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>

namespace meshprobe::aggregator {
namespace {

namespace v1 = meshprobe::v1;
using google::protobuf::util::TimeUtil;
using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::IsEmpty;
using ::testing::SizeIs;

Candidate candidate(const std::string& id, std::chrono::nanoseconds onset = {}) {
  Candidate c;
  c.finding.set_id(id);
  c.finding.set_code(id.substr(0, id.find('/')));
  c.finding.set_summary("summary of " + id);
  c.onset_after = onset;
  return c;
}

class LifecycleTest : public ::testing::Test {
 protected:
  LifecycleTest() : tracker_(LifecycleOptions{.clear_after = seconds(5), .keep_cleared = seconds(60), .history = 4}) {}

  void at(std::chrono::milliseconds t, const std::vector<Candidate>& cs) {
    tracker_.update(cs, mono0_ + t, wall0_ + t);
  }
  int64_t wallMs(const google::protobuf::Timestamp& ts) const {
    return TimeUtil::TimestampToMilliseconds(ts) -
           std::chrono::duration_cast<milliseconds>(wall0_.time_since_epoch()).count();
  }

  std::chrono::steady_clock::time_point mono0_{seconds(1000)};
  std::chrono::system_clock::time_point wall0_{seconds(1'800'000'000)};
  FindingTracker tracker_;
};

TEST_F(LifecycleTest, ActiveOnlyAfterItsOnsetDelayWithOnsetAtFirstSight) {
  const auto c = candidate("OVERLAY_PARTITION/n2", milliseconds(900));
  at(milliseconds(0), {c});
  EXPECT_THAT(tracker_.active(), IsEmpty());
  at(milliseconds(500), {c});
  EXPECT_THAT(tracker_.active(), IsEmpty());
  at(milliseconds(1000), {c});
  auto active = tracker_.active();
  ASSERT_THAT(active, SizeIs(1));
  EXPECT_EQ(wallMs(active[0].onset_time()), 0);
  EXPECT_FALSE(active[0].has_clear_time());
  ASSERT_EQ(active[0].history_size(), 1);
  EXPECT_EQ(active[0].history(0).state(), "ACTIVE");
}

TEST_F(LifecycleTest, CandidateGoneBeforeOnsetNeverBecomesAFinding) {
  const auto c = candidate("PAIR_UNREACHABLE/n1,n3", seconds(4));
  at(milliseconds(0), {c});
  at(milliseconds(2000), {});
  at(milliseconds(3000), {c});  // seen again: its onset clock starts over
  at(milliseconds(6000), {c});
  EXPECT_THAT(tracker_.active(), IsEmpty());
  at(milliseconds(7000), {c});
  EXPECT_THAT(tracker_.active(), SizeIs(1));
  EXPECT_THAT(tracker_.recentlyCleared(), IsEmpty());
}

TEST_F(LifecycleTest, FlappingCandidateKeepsOneFinding) {
  const auto c = candidate("OVERLAY_PARTITION/n2");
  for (int t = 0; t < 30; ++t) {
    at(seconds(t), t % 3 == 2 ? std::vector<Candidate>{} : std::vector<Candidate>{c});
    ASSERT_THAT(tracker_.active(), SizeIs(1)) << "t=" << t;
  }
  auto f = tracker_.active()[0];
  EXPECT_EQ(wallMs(f.onset_time()), 0);
  EXPECT_EQ(f.history_size(), 1);
  EXPECT_THAT(tracker_.recentlyCleared(), IsEmpty());
}

TEST_F(LifecycleTest, ClearsAfterBeingAbsentForClearAfterWithClearTimeAtLastSight) {
  const auto c = candidate("VXLAN_DEVICE_MISSING/n3");
  at(seconds(0), {c});
  at(seconds(2), {c});
  at(seconds(3), {});
  at(seconds(6), {});
  EXPECT_THAT(tracker_.active(), SizeIs(1));  // absent 4 s < 5 s
  at(seconds(7), {});
  EXPECT_THAT(tracker_.active(), IsEmpty());
  auto cleared = tracker_.recentlyCleared();
  ASSERT_THAT(cleared, SizeIs(1));
  EXPECT_EQ(wallMs(cleared[0].onset_time()), 0);
  EXPECT_EQ(wallMs(cleared[0].clear_time()), 2000);
  ASSERT_EQ(cleared[0].history_size(), 2);
  EXPECT_EQ(cleared[0].history(1).state(), "CLEARED");
  at(seconds(70), {});
  EXPECT_THAT(tracker_.recentlyCleared(), IsEmpty());  // keep_cleared passed
}

TEST_F(LifecycleTest, FaultThatComesBackIsANewOccurrenceWithItsHistory) {
  const auto c = candidate("AGENT_STALE/n3");
  at(seconds(0), {c});
  at(seconds(10), {});
  ASSERT_THAT(tracker_.recentlyCleared(), SizeIs(1));
  at(seconds(20), {c});
  auto active = tracker_.active();
  ASSERT_THAT(active, SizeIs(1));
  EXPECT_EQ(wallMs(active[0].onset_time()), 20000);
  ASSERT_EQ(active[0].history_size(), 3);
  EXPECT_EQ(active[0].history(2).state(), "ACTIVE");
  EXPECT_THAT(tracker_.recentlyCleared(), IsEmpty());
}

TEST_F(LifecycleTest, HistoryIsCapped) {
  const auto c = candidate("CNI_AGENT_DOWN/n2");
  for (int i = 0; i < 6; ++i) {
    at(seconds(20 * i), {c});
    at(seconds(20 * i + 10), {});
  }
  at(seconds(200), {c});
  auto active = tracker_.active();
  ASSERT_THAT(active, SizeIs(1));
  EXPECT_EQ(active[0].history_size(), 4);
  EXPECT_EQ(active[0].history(3).state(), "ACTIVE");
}

TEST_F(LifecycleTest, SupersededGuessEndsAtOnceWithoutAClearedRecord) {
  const auto guess = candidate("OVERLAY_PARTITION/n2");
  at(seconds(0), {guess});
  ASSERT_THAT(tracker_.active(), SizeIs(1));
  auto cause = candidate("VXLAN_PORT_FILTERED/n2");
  cause.supersedes = {"OVERLAY_PARTITION/n2"};
  at(seconds(1), {cause});
  auto active = tracker_.active();
  ASSERT_THAT(active, SizeIs(1));
  EXPECT_EQ(active[0].id(), "VXLAN_PORT_FILTERED/n2");
  EXPECT_THAT(tracker_.recentlyCleared(), IsEmpty());
}

TEST_F(LifecycleTest, SupersededGuessWaitsOutTheQuarantineAfterItsCauseHeals) {
  auto cause = candidate("VXLAN_PORT_FILTERED/n2");
  cause.supersedes = {"OVERLAY_PARTITION/n2"};
  const auto lag = candidate("OVERLAY_PARTITION/n2", milliseconds(900));
  at(seconds(0), {cause});
  at(seconds(1), {lag});  // the rule is gone; the matrix still shows the old failures
  at(seconds(3), {lag});
  ASSERT_THAT(tracker_.active(), SizeIs(1));  // only the cause, clearing
  EXPECT_EQ(tracker_.active()[0].id(), "VXLAN_PORT_FILTERED/n2");
  at(seconds(5), {lag});
  EXPECT_THAT(tracker_.active(), IsEmpty());  // the cause cleared; the lag is still held back
  at(seconds(6), {});  // healed: the lagging guess never became a finding
  at(seconds(7), {});
  for (const auto& f : tracker_.active()) EXPECT_NE(f.id(), "OVERLAY_PARTITION/n2");
  // A real partition that outlasts the quarantine still becomes one.
  at(seconds(8), {lag});
  at(seconds(9), {lag});
  bool found = false;
  for (const auto& f : tracker_.active()) found = found || f.id() == "OVERLAY_PARTITION/n2";
  EXPECT_TRUE(found);
}

TEST_F(LifecycleTest, LatestContentWins) {
  auto c = candidate("OVERLAY_PARTITION/n2");
  at(seconds(0), {c});
  c.finding.set_summary("now with more peers");
  at(seconds(1), {c});
  EXPECT_EQ(tracker_.active()[0].summary(), "now with more peers");
}

}  // namespace
}  // namespace meshprobe::aggregator
