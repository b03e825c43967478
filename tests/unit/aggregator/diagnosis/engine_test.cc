// The engine over a real ClusterState with a fake clock: reports in, findings out, most
// severe first, node filter, staleness and lifecycle through evaluate().
#include "aggregator/diagnosis/engine.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/finding.h"
#include "tests/unit/aggregator/diagnosis/dense_view.h"
#include "tests/unit/aggregator/test_util.h"

namespace meshprobe::aggregator {
namespace {

namespace v1 = meshprobe::v1;
using std::chrono::milliseconds;
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

// An input of 4 nodes m0..m3 with m2's overlay cut off (or healthy), at `generation`.
DiagnosisInput viewInput(uint64_t generation, bool broken) {
  testing::DenseView underlay(v1::UNDERLAY, 4), overlay(v1::OVERLAY, 4);
  if (broken) overlay.failNode(2);
  DiagnosisInput in;
  for (int i = 0; i < 4; ++i) {
    NodeEvidence e;
    e.summary.set_name("m" + std::to_string(i));
    e.summary.set_up(true);
    e.has_report = true;
    in.nodes.push_back(e);
  }
  in.underlay = underlay.seal();
  in.overlay = overlay.seal();
  in.istiod.assign(4, v1::Cell::OK);
  in.generation = generation;
  return in;
}

TEST_F(EngineTest, UnchangedGenerationSkipsTheRulesButKeepsExactTiming) {
  // Defaults: OVERLAY_PARTITION's onset is 900 ms, a finding clears 5 s after last seen.
  const DiagnosisInput broken = viewInput(7, true);
  engine_.evaluate(broken);
  EXPECT_EQ(engine_.rulePasses(), 1u);
  EXPECT_THAT(engine_.active(), IsEmpty());
  clock_.advance(milliseconds(899));
  engine_.evaluate(broken);
  EXPECT_THAT(engine_.active(), IsEmpty());
  clock_.advance(milliseconds(1));
  engine_.evaluate(broken);
  EXPECT_THAT(codesOf(engine_.active()), ElementsAre("OVERLAY_PARTITION[m2]"));
  EXPECT_EQ(engine_.rulePasses(), 1u);
  EXPECT_EQ(engine_.skippedPasses(), 2u);

  // Same generation, so the same content by contract: the last candidates are reused (a
  // rules pass over this healthy input would have found nothing).
  clock_.advance(milliseconds(100));  // t = 1.0 s: the finding's last sighting
  engine_.evaluate(viewInput(7, false));
  EXPECT_EQ(engine_.skippedPasses(), 3u);

  // A new generation runs the rules: healthy, the finding clears 5 s after last seen.
  clock_.advance(milliseconds(100));
  const DiagnosisInput healthy = viewInput(8, false);
  engine_.evaluate(healthy);
  EXPECT_EQ(engine_.rulePasses(), 2u);
  clock_.advance(milliseconds(4899));  // t = 5.999 s
  engine_.evaluate(healthy);
  EXPECT_THAT(codesOf(engine_.active()), ElementsAre("OVERLAY_PARTITION[m2]"));
  EXPECT_THAT(engine_.recentlyCleared(), IsEmpty());
  clock_.advance(milliseconds(1));  // t = 6.0 s
  engine_.evaluate(healthy);
  EXPECT_THAT(engine_.active(), IsEmpty());
  ASSERT_EQ(engine_.recentlyCleared().size(), 1u);
  EXPECT_EQ(engine_.recentlyCleared()[0].code(), "OVERLAY_PARTITION");
  EXPECT_EQ(engine_.rulePasses(), 2u);
  EXPECT_EQ(engine_.skippedPasses(), 5u);
  EXPECT_EQ(engine_.evaluations(), 7u);
}

TEST_F(EngineTest, GenerationZeroAlwaysRunsTheRules) {
  engine_.evaluate(viewInput(0, true));
  engine_.evaluate(viewInput(0, true));
  EXPECT_EQ(engine_.rulePasses(), 2u);
  EXPECT_EQ(engine_.skippedPasses(), 0u);
}

TEST_F(EngineTest, TheClusterStatesInputIsSkippedUntilSomethingChanges) {
  for (int i = 1; i <= 3; ++i) report(i);
  engine_.evaluate();
  engine_.evaluate();
  EXPECT_EQ(engine_.rulePasses(), 1u);
  EXPECT_EQ(engine_.skippedPasses(), 1u);
  report(2, {local(codes::kCniAgentDown, v1::CRITICAL, v1::AMBIENT)});
  engine_.evaluate();
  EXPECT_EQ(engine_.rulePasses(), 2u);
  EXPECT_THAT(codesOf(engine_.active()), ElementsAre("CNI_AGENT_DOWN[n2]"));
}

}  // namespace
}  // namespace meshprobe::aggregator
