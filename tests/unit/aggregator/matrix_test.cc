#include "aggregator/matrix.h"

#include <gtest/gtest.h>

#include "tests/unit/aggregator/test_util.h"

namespace meshprobe::aggregator {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;
using testing::makeCheck;
using testing::makeProbe;

TEST(ClassifyProbe, AllReceivedWithLowRttIsOk) {
  EXPECT_EQ(classifyProbe(makeProbe("b", v1::OVERLAY, 10, 10), {}), v1::Cell::OK);
}

TEST(ClassifyProbe, NothingSentYetIsUnknown) {
  EXPECT_EQ(classifyProbe(makeProbe("b", v1::OVERLAY, 0, 0), {}), v1::Cell::UNKNOWN);
}

TEST(ClassifyProbe, NothingReceivedIsFail) {
  EXPECT_EQ(classifyProbe(makeProbe("b", v1::OVERLAY, 3, 0), {}), v1::Cell::FAIL);
  // Even when the agent left `loss` at 0.
  auto p = makeProbe("b", v1::OVERLAY, 3, 0);
  p.set_loss(0);
  EXPECT_EQ(classifyProbe(p, {}), v1::Cell::FAIL);
}

TEST(ClassifyProbe, LossThresholdSeparatesDegradedFromFail) {
  EXPECT_EQ(classifyProbe(makeProbe("b", v1::OVERLAY, 10, 9), {}), v1::Cell::DEGRADED);  // 10 %
  EXPECT_EQ(classifyProbe(makeProbe("b", v1::OVERLAY, 10, 6), {}), v1::Cell::DEGRADED);  // 40 %
  EXPECT_EQ(classifyProbe(makeProbe("b", v1::OVERLAY, 10, 5), {}), v1::Cell::FAIL);      // 50 %: FAIL
  EXPECT_EQ(classifyProbe(makeProbe("b", v1::OVERLAY, 10, 1), {}), v1::Cell::FAIL);
}

TEST(ClassifyProbe, ConfirmedConsecutiveMissesFailBeforeTheWindowFills) {
  auto p = makeProbe("b", v1::OVERLAY, 30, 27);  // 10 % over the window: would be DEGRADED
  p.set_consecutive_failures(2);
  EXPECT_EQ(classifyProbe(p, {}), v1::Cell::DEGRADED);
  p.set_consecutive_failures(3);  // a probe and its two retries missed
  EXPECT_EQ(classifyProbe(p, {}), v1::Cell::FAIL);
}

TEST(ClassifyProbe, StateFollowsRecentLossWhenTheAgentSendsIt) {
  auto p = makeProbe("b", v1::OVERLAY, 30, 12);  // 60 % over the window (the fault just ended)
  p.set_recent_loss(0.0);                        // the last probes all came back
  EXPECT_EQ(classifyProbe(p, {}), v1::Cell::OK);
  p.set_recent_loss(0.2);
  EXPECT_EQ(classifyProbe(p, {}), v1::Cell::DEGRADED);
  p.set_recent_loss(0.6);
  EXPECT_EQ(classifyProbe(p, {}), v1::Cell::FAIL);
}

TEST(ClassifyProbe, HighP99IsDegraded) {
  // Absolute: p99 at the limit.
  EXPECT_EQ(classifyProbe(makeProbe("b", v1::UNDERLAY, 10, 10, milliseconds(150), milliseconds(200)), {}),
            v1::Cell::DEGRADED);
  EXPECT_EQ(classifyProbe(makeProbe("b", v1::UNDERLAY, 10, 10, milliseconds(150), milliseconds(199)), {}),
            v1::Cell::OK);
  // Spike: p99 >= 10 x p50 and above the 100 ms floor.
  EXPECT_EQ(classifyProbe(makeProbe("b", v1::UNDERLAY, 10, 10, milliseconds(12), milliseconds(150)), {}),
            v1::Cell::DEGRADED);
  // Sub-floor jitter is fine even at 100 x the median: a busy node's 20 ms scheduling
  // hiccup over a 0.2 ms path is not a network fault.
  EXPECT_EQ(classifyProbe(makeProbe("b", v1::UNDERLAY, 10, 10, microseconds(200), milliseconds(20)), {}),
            v1::Cell::OK);
}

TEST(ClassifyProbe, OptionsMoveTheThresholds) {
  MatrixOptions strict;
  strict.fail_loss = 0.2;
  EXPECT_EQ(classifyProbe(makeProbe("b", v1::OVERLAY, 10, 8), strict), v1::Cell::FAIL);
  EXPECT_EQ(classifyProbe(makeProbe("b", v1::OVERLAY, 10, 9), strict), v1::Cell::DEGRADED);
}

TEST(ClassifyIstiodCheck, MapsCheckStatuses) {
  auto ok = makeCheck("istiod", v1::CheckResult::OK);
  auto warn = makeCheck("istiod", v1::CheckResult::WARN);
  auto fail = makeCheck("istiod", v1::CheckResult::FAIL);
  auto skip = makeCheck("istiod", v1::CheckResult::SKIP);
  auto unset = makeCheck("istiod", v1::CheckResult::STATUS_UNSPECIFIED);
  EXPECT_EQ(classifyIstiodCheck(&ok), v1::Cell::OK);
  EXPECT_EQ(classifyIstiodCheck(&warn), v1::Cell::DEGRADED);
  EXPECT_EQ(classifyIstiodCheck(&fail), v1::Cell::FAIL);
  EXPECT_EQ(classifyIstiodCheck(&skip), v1::Cell::UNKNOWN);
  EXPECT_EQ(classifyIstiodCheck(&unset), v1::Cell::UNKNOWN);
  EXPECT_EQ(classifyIstiodCheck(nullptr), v1::Cell::UNKNOWN);
}

TEST(HasMatrix, OnlyProbeLayers) {
  EXPECT_TRUE(hasMatrix(v1::UNDERLAY));
  EXPECT_TRUE(hasMatrix(v1::OVERLAY));
  EXPECT_TRUE(hasMatrix(v1::ISTIOD));
  EXPECT_FALSE(hasMatrix(v1::AMBIENT));
  EXPECT_FALSE(hasMatrix(v1::LAYER_UNSPECIFIED));
}

}  // namespace
}  // namespace meshprobe::aggregator
