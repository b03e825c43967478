// The aggregator's per-node pod netns list (Report.pod_netns): stored from the reports that
// carry the ambient_redirection check, kept across reports without it, unknown when the
// check comes without the list, and published in every snapshot.
#include <google/protobuf/util/message_differencer.h>
#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>

#include "aggregator/cluster_state.h"
#include "tests/unit/aggregator/test_util.h"

namespace meshprobe::aggregator {
namespace {

using google::protobuf::util::MessageDifferencer;
using google::protobuf::util::TimeUtil;
using std::chrono::seconds;
using testing::makeCheck;
using testing::makeHello;

v1::PodNetnsCaptures captures(const std::vector<std::pair<std::string, v1::PodNetnsCapture::State>>& pods) {
  v1::PodNetnsCaptures c;
  for (const auto& [ip, state] : pods) {
    auto* e = c.add_entries();
    e->set_netns("cni-" + ip);
    e->add_ips(ip);
    e->set_state(state);
    e->set_reason("reason for " + ip);
  }
  c.set_total(static_cast<uint32_t>(pods.size()));
  return c;
}

class PodNetnsStateTest : public ::testing::Test {
 protected:
  PodNetnsStateTest() : state_(clock_, options()) {
    state_.applyHello(makeHello("n1", 1), true);
    state_.applyHello(makeHello("n2", 2), true);
  }
  static ClusterOptions options() {
    ClusterOptions o;
    o.stale_after = seconds(10);
    return o;
  }
  // A report with (or without) the ambient_redirection check and (or without) the list.
  v1::Report report(uint64_t seq, bool ambient_check, const std::optional<v1::PodNetnsCaptures>& list,
                    int64_t time_s = 1000) {
    v1::Report r;
    r.set_sequence(seq);
    *r.mutable_time() = TimeUtil::SecondsToTimestamp(time_s);
    *r.add_checks() = makeCheck("vxlan_device", v1::CheckResult::OK);
    if (ambient_check) *r.add_checks() = makeCheck("ambient_redirection", v1::CheckResult::OK);
    if (list) *r.mutable_pod_netns() = *list;
    return r;
  }
  const v1::PodNetnsCaptures* of(const std::shared_ptr<const StateSnapshot>& s, const std::string& node) {
    auto i = s->indexOf(node);
    EXPECT_TRUE(i.has_value()) << node;
    return i ? s->podNetns(*i) : nullptr;
  }

  FakeClock clock_;
  ClusterState state_;
};

TEST_F(PodNetnsStateTest, UnknownUntilAReportCarriesTheList) {
  auto s = state_.snapshot();
  EXPECT_EQ(of(s, "n1"), nullptr);
  EXPECT_TRUE(s->podNetnsByNode().empty());

  const auto list =
      captures({{"10.244.1.7", v1::PodNetnsCapture::CAPTURED}, {"10.244.1.8", v1::PodNetnsCapture::UNCAPTURED}});
  ASSERT_EQ(state_.applyReport("n1", report(1, true, list, 1234)), ReportOutcome::kAccepted);
  s = state_.snapshot();
  const v1::PodNetnsCaptures* got = of(s, "n1");
  ASSERT_NE(got, nullptr);
  EXPECT_TRUE(MessageDifferencer::Equals(*got, list));
  EXPECT_EQ(of(s, "n2"), nullptr) << "n2 sent nothing: unknown, not empty";

  auto all = s->podNetnsByNode();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].node, "n1");
  EXPECT_TRUE(all[0].up);
  EXPECT_EQ(all[0].time, TimeUtil::SecondsToTimestamp(1234));
  ASSERT_NE(all[0].captures, nullptr);
  EXPECT_EQ(all[0].captures->entries(1).state(), v1::PodNetnsCapture::UNCAPTURED);
}

TEST_F(PodNetnsStateTest, AnEmptyListIsKnownAndEmpty) {
  ASSERT_EQ(state_.applyReport("n1", report(1, true, v1::PodNetnsCaptures{})), ReportOutcome::kAccepted);
  auto s = state_.snapshot();
  ASSERT_NE(of(s, "n1"), nullptr);
  EXPECT_EQ(of(s, "n1")->entries_size(), 0);
  EXPECT_EQ(s->podNetnsByNode().size(), 1u);
}

TEST_F(PodNetnsStateTest, ReplacedByTheNextListKeptWithoutTheCheckUnknownWithTheCheckAlone) {
  const auto first = captures({{"10.244.1.7", v1::PodNetnsCapture::CAPTURED}});
  const auto second = captures({{"10.244.1.9", v1::PodNetnsCapture::LISTENERS_WITHOUT_RULES}});
  ASSERT_EQ(state_.applyReport("n1", report(1, true, first, 1000)), ReportOutcome::kAccepted);
  const uint64_t g1 = state_.snapshot()->generation;

  // A newer list replaces the old one, and the snapshot changes generation.
  ASSERT_EQ(state_.applyReport("n1", report(2, true, second, 1001)), ReportOutcome::kAccepted);
  auto s = state_.snapshot();
  EXPECT_NE(s->generation, g1);
  ASSERT_NE(of(s, "n1"), nullptr);
  EXPECT_TRUE(MessageDifferencer::Equals(*of(s, "n1"), second));

  // A report without the ambient_redirection check (its first run not finished after a
  // restart) keeps the last list and its time.
  ASSERT_EQ(state_.applyReport("n1", report(3, false, std::nullopt, 1002)), ReportOutcome::kAccepted);
  s = state_.snapshot();
  ASSERT_NE(of(s, "n1"), nullptr);
  EXPECT_TRUE(MessageDifferencer::Equals(*of(s, "n1"), second));
  EXPECT_EQ(s->podNetnsByNode().at(0).time, TimeUtil::SecondsToTimestamp(1001));

  // A Hello (same stream, facts changed) keeps it too.
  state_.applyHello(makeHello("n1", 1, 7), false);
  ASSERT_NE(of(state_.snapshot(), "n1"), nullptr);

  // The check without the list (an agent that predates the field): unknown, not "no pods".
  ASSERT_EQ(state_.applyReport("n1", report(4, true, std::nullopt, 1003)), ReportOutcome::kAccepted);
  s = state_.snapshot();
  EXPECT_EQ(of(s, "n1"), nullptr);
  EXPECT_TRUE(s->podNetnsByNode().empty());
}

TEST_F(PodNetnsStateTest, AnOlderSnapshotKeepsTheListItWasPublishedWith) {
  const auto first = captures({{"10.244.1.7", v1::PodNetnsCapture::CAPTURED}});
  ASSERT_EQ(state_.applyReport("n1", report(1, true, first)), ReportOutcome::kAccepted);
  auto old = state_.snapshot();
  ASSERT_EQ(state_.applyReport("n1", report(2, true, captures({}))), ReportOutcome::kAccepted);
  ASSERT_NE(of(old, "n1"), nullptr);
  EXPECT_TRUE(MessageDifferencer::Equals(*of(old, "n1"), first));
  EXPECT_EQ(of(state_.snapshot(), "n1")->entries_size(), 0);
}

TEST_F(PodNetnsStateTest, ADownNodesListIsListedAsDown) {
  ASSERT_EQ(state_.applyReport("n1", report(1, true, captures({{"10.244.1.7", v1::PodNetnsCapture::CAPTURED}}))),
            ReportOutcome::kAccepted);
  clock_.advance(seconds(11));  // silent for more than stale_after
  auto all = state_.snapshot()->podNetnsByNode();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].node, "n1");
  EXPECT_FALSE(all[0].up);
}

}  // namespace
}  // namespace meshprobe::aggregator
