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

PackedCell cellWithLoss(uint8_t loss) {
  PackedCell c;
  c.bits = PackedCell::kPresent | static_cast<uint8_t>(v1::Cell::OK);
  c.loss = loss;
  return c;
}

// Three chunks' worth of slots, one cell written in each chunk.
constexpr uint32_t kWide = 2 * CellChunk::kCells + 10;

TEST(RowTest, CellsOutsideTheRowOrNeverWrittenAreAbsent) {
  Row row;
  row.clear(kWide);
  EXPECT_EQ(row.size(), kWide);
  row.mutableAt(CellChunk::kCells + 3) = cellWithLoss(7);
  EXPECT_EQ(row.at(CellChunk::kCells + 3).loss, 7);
  EXPECT_FALSE(row.at(0).present());                    // a chunk never written
  EXPECT_FALSE(row.at(CellChunk::kCells + 4).present());  // the same chunk, another cell
  EXPECT_FALSE(row.at(kWide).present());                // past the row
  EXPECT_FALSE(row.at(UINT32_MAX).present());
}

TEST(RowTest, WritingACopyLeavesTheOriginalAsItWas) {
  auto original = std::make_shared<Row>();
  original->clear(kWide);
  for (uint32_t chunk = 0; chunk < 3; ++chunk) original->mutableAt(chunk * CellChunk::kCells + 1) = cellWithLoss(1);
  const auto held = original;  // what a snapshot holds

  Row copy = *original;
  copy.mutableAt(CellChunk::kCells + 1) = cellWithLoss(2);  // the middle chunk
  copy.mutableAt(5) = cellWithLoss(3);                      // the first one, another cell
  EXPECT_EQ(copy.at(CellChunk::kCells + 1).loss, 2);
  EXPECT_EQ(copy.at(5).loss, 3);
  EXPECT_EQ(copy.at(1).loss, 1);                          // kept beside the written cell
  EXPECT_EQ(copy.at(2 * CellChunk::kCells + 1).loss, 1);  // a chunk still shared
  for (uint32_t chunk = 0; chunk < 3; ++chunk) EXPECT_EQ(held->at(chunk * CellChunk::kCells + 1).loss, 1);
  EXPECT_FALSE(held->at(5).present());

  // Clearing the copy does not clear what it shares with the original either.
  copy.clear(kWide);
  EXPECT_FALSE(copy.at(2 * CellChunk::kCells + 1).present());
  EXPECT_EQ(held->at(2 * CellChunk::kCells + 1).loss, 1);
}

TEST(RowTest, GrowKeepsTheCellsAndAddsAbsentOnes) {
  Row row;
  row.clear(kWide);
  row.mutableAt(kWide - 1) = cellWithLoss(9);
  row.clear(10);  // a smaller cluster: the cells beyond are gone, not hidden
  row.mutableAt(3) = cellWithLoss(4);
  row.grow(kWide + CellChunk::kCells);
  EXPECT_EQ(row.size(), kWide + CellChunk::kCells);
  EXPECT_EQ(row.at(3).loss, 4);
  EXPECT_FALSE(row.at(kWide - 1).present());
  EXPECT_FALSE(row.at(kWide + 5).present());
  row.grow(4);  // never shrinks
  EXPECT_EQ(row.size(), kWide + CellChunk::kCells);
}

}  // namespace
}  // namespace meshprobe::aggregator
