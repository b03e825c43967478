// The engine over a real ClusterState with a fake clock: reports in, findings out, most
// severe first, node filter, staleness and lifecycle through evaluate().
#include "aggregator/diagnosis/engine.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/finding.h"
#include "tests/unit/aggregator/test_util.h"

namespace meshprobe::aggregator {
namespace {

namespace v1 = meshprobe::v1;
using std::chrono::seconds;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using testing::makeHello;
using testing::makeProbe;

std::vector<std::string> codesOf(const std::vector<v1::Finding>& fs) {
  std::vector<std::string> out;
  for (const auto& f : fs) out.push_back(f.code() + (f.nodes_size() ? "[" + f.nodes(0) + "]" : "[]"));
  return out;
}

class EngineTest : public ::testing::Test {
 protected:
  EngineTest() : state_(clock_, options()), engine_(clock_, state_) {
    for (int i = 1; i <= 3; ++i) state_.applyHello(makeHello("n" + std::to_string(i), i), true);
  }

  static ClusterOptions options() {
    ClusterOptions o;
    o.stale_after = seconds(10);
    return o;
  }

  void report(int i, std::vector<v1::Finding> findings = {}) {
    v1::Report r;
    r.set_sequence(++seq_[i]);
    for (int d = 1; d <= 3; ++d) {
      if (d == i) continue;
      for (auto layer : {v1::UNDERLAY, v1::OVERLAY}) *r.add_probes() = makeProbe("n" + std::to_string(d), layer, 10, 10);
    }
    for (auto& f : findings) *r.add_findings() = std::move(f);
    ASSERT_EQ(state_.applyReport("n" + std::to_string(i), r), ReportOutcome::kAccepted);
  }

  static v1::Finding local(std::string_view code, v1::Severity sev, v1::Layer layer) {
    v1::Finding f;
    f.set_code(std::string(code));
    f.set_severity(sev);
    f.set_layer(layer);
    f.set_summary("local");
    return f;
  }

  FakeClock clock_;
  ClusterState state_;
  DiagnosisEngine engine_;
  std::map<int, uint64_t> seq_;
};

TEST_F(EngineTest, HealthyReportsGiveNoFindings) {
  for (int i = 1; i <= 3; ++i) report(i);
  engine_.evaluate();
  EXPECT_THAT(engine_.active(), IsEmpty());
  EXPECT_EQ(engine_.evaluations(), 1u);
}

TEST_F(EngineTest, MostSevereFirstAndNodeFilter) {
  report(1, {local(codes::kMtuMismatch, v1::WARNING, v1::OVERLAY)});
  report(2, {local(codes::kCniAgentDown, v1::CRITICAL, v1::AMBIENT)});
  report(3);
  engine_.evaluate();
  EXPECT_THAT(codesOf(engine_.active()), ElementsAre("CNI_AGENT_DOWN[n2]", "MTU_MISMATCH[n1]"));
  EXPECT_THAT(codesOf(engine_.active("n1")), ElementsAre("MTU_MISMATCH[n1]"));
  EXPECT_THAT(engine_.active("n3"), IsEmpty());
}

TEST_F(EngineTest, SilentNodeBecomesAgentStaleAndItsOldFindingsClear) {
  for (int i = 1; i <= 3; ++i) report(i, i == 3 ? std::vector{local(codes::kCniAgentDown, v1::CRITICAL, v1::AMBIENT)}
                                                : std::vector<v1::Finding>{});
  engine_.evaluate();
  EXPECT_THAT(codesOf(engine_.active()), ElementsAre("CNI_AGENT_DOWN[n3]"));
  for (int t = 0; t < 16; ++t) {  // n1, n2 keep reporting; n3 is silent
    clock_.advance(seconds(1));
    report(1);
    report(2);
    engine_.evaluate();
  }
  EXPECT_THAT(codesOf(engine_.active()), ElementsAre("AGENT_STALE[n3]"));
  auto cleared = engine_.recentlyCleared();
  ASSERT_EQ(cleared.size(), 1u);
  EXPECT_EQ(cleared[0].code(), "CNI_AGENT_DOWN");
  EXPECT_TRUE(cleared[0].has_clear_time());
}

}  // namespace
}  // namespace meshprobe::aggregator
