#include "aggregator/state/packed_cell.h"

#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>

#include "aggregator/matrix.h"
#include "tests/unit/aggregator/test_util.h"

namespace meshprobe::aggregator {
namespace {

namespace v1 = meshprobe::v1;
using google::protobuf::util::TimeUtil;
using testing::makeProbe;

TEST(PackedCellTest, QuantisesLossRttAndLastProbe) {
  auto p = makeProbe("b", v1::OVERLAY, 10, 8, std::chrono::microseconds(1234));
  *p.mutable_last_probe() = TimeUtil::SecondsToTimestamp(1'900'000'000);
  const PackedCell c = packProbe(p, v1::Cell::DEGRADED);
  EXPECT_TRUE(c.present());
  EXPECT_EQ(c.state(), v1::Cell::DEGRADED);
  EXPECT_EQ(c.loss, 51);                 // 0.2 × 255
  EXPECT_EQ(c.rtt_p50, 123);             // 1,234 µs in 10 µs units (rounded)
  EXPECT_EQ(c.last_probe, 1'900'000'000u);
  EXPECT_FALSE(PackedCell{}.present());
  EXPECT_EQ(PackedCell{}.state(), v1::Cell::UNKNOWN);
}

TEST(PackedCellTest, RttSaturatesInsteadOfWrapping) {
  auto p = makeProbe("b", v1::UNDERLAY, 10, 10, std::chrono::seconds(3));
  EXPECT_EQ(packProbe(p, v1::Cell::OK).rtt_p50, UINT16_MAX);
}

TEST(PackedCellTest, OnlyCellsThatNeedExplainingKeepTheirDetail) {
  const MatrixOptions opts;
  auto healthy = makeProbe("b", v1::OVERLAY, 10, 10);
  healthy.mutable_path_mtu()->set_size(1450);
  healthy.mutable_path_mtu()->set_sent(5);
  healthy.mutable_path_mtu()->set_received(5);
  EXPECT_FALSE(needsDetail(healthy, classifyProbe(healthy, opts)));

  auto missed = healthy;
  missed.set_consecutive_failures(1);  // still OK, but a miss in a row
  EXPECT_TRUE(needsDetail(missed, classifyProbe(missed, opts)));
  auto err = healthy;
  err.set_error("timeout after 500ms");
  EXPECT_TRUE(needsDetail(err, v1::Cell::OK));
  auto reason = healthy;
  reason.set_tcp_failure(v1::PROBE_FAILURE_REFUSED);
  EXPECT_TRUE(needsDetail(reason, v1::Cell::OK));
  auto mtu = healthy;
  mtu.mutable_path_mtu()->set_received(4);  // a DF probe lost
  EXPECT_TRUE(needsDetail(mtu, v1::Cell::OK));
  auto slow = makeProbe("b", v1::OVERLAY, 10, 10, std::chrono::milliseconds(1), std::chrono::milliseconds(300));
  EXPECT_EQ(classifyProbe(slow, opts), v1::Cell::DEGRADED);  // p99 over 200 ms
  EXPECT_TRUE(needsDetail(slow, classifyProbe(slow, opts)));
}

TEST(PackedCellTest, AHealthyCellUnpacksToItsReducedProbe) {
  auto p = makeProbe("b", v1::UNDERLAY, 10, 10, std::chrono::microseconds(250));
  *p.mutable_last_probe() = TimeUtil::SecondsToTimestamp(1'900'000'000);
  const v1::ProbeResult r = unpackProbe(packProbe(p, v1::Cell::OK), "b", v1::UNDERLAY);
  EXPECT_EQ(r.dst(), "b");
  EXPECT_EQ(r.layer(), v1::UNDERLAY);
  EXPECT_EQ(r.sent(), 1u);
  EXPECT_EQ(r.received(), 1u);
  EXPECT_EQ(r.loss(), 0.0);
  EXPECT_EQ(TimeUtil::DurationToMicroseconds(r.rtt_p50()), 250);
  EXPECT_EQ(TimeUtil::TimestampToSeconds(r.last_probe()), 1'900'000'000);
  EXPECT_EQ(TimeUtil::TimestampToSeconds(r.last_success()), 1'900'000'000);
  EXPECT_FALSE(r.has_rtt_p99());
  EXPECT_EQ(classifyProbe(r, MatrixOptions{}), v1::Cell::OK);  // reads as what it was
}

}  // namespace
}  // namespace meshprobe::aggregator
