#include "aggregator/state/packed_cell.h"

#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

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
  EXPECT_EQ(c.loss, 6);  // 0.2 × 31, rounded
  EXPECT_NEAR(c.lossRatio(), 0.2, 0.5 / PackedCell::kLossSteps);
  EXPECT_NEAR(static_cast<double>(c.rttP50().count()), 1'234'000.0, 1'234'000.0 * 0.013);
  EXPECT_EQ(c.last_probe, 1'900'000'000u);
  EXPECT_FALSE(PackedCell{}.present());
  EXPECT_EQ(PackedCell{}.state(), v1::Cell::UNKNOWN);
}

TEST(PackedCellTest, AnyLossReadsAsSomeLoss) {
  auto p = makeProbe("b", v1::OVERLAY, 100, 99);  // one probe lost in a window of 100
  EXPECT_EQ(packProbe(p, v1::Cell::OK).loss, 1);
  EXPECT_GT(packProbe(p, v1::Cell::OK).lossRatio(), 0.0);
  EXPECT_EQ(packProbe(makeProbe("b", v1::OVERLAY, 100, 100), v1::Cell::OK).loss, 0);
  EXPECT_EQ(packProbe(makeProbe("b", v1::OVERLAY, 30, 1), v1::Cell::OK).loss, 30);  // 29/30 × 31
  EXPECT_EQ(packProbe(makeProbe("b", v1::OVERLAY, 30, 0), v1::Cell::OK).loss, PackedCell::kLossSteps);
}

TEST(PackedCellTest, RttSaturatesInsteadOfWrapping) {
  auto p = makeProbe("b", v1::UNDERLAY, 10, 10, std::chrono::seconds(30));
  EXPECT_EQ(packProbe(p, v1::Cell::OK).rtt, PackedCell::kRttCodes - 1);
  EXPECT_EQ(packProbe(p, v1::Cell::OK).rttP50(), std::chrono::seconds(10));
  EXPECT_EQ(rttCode(300), 1);  // faster than the scale: 1 µs
  EXPECT_EQ(rttNanos(1), 1000);
  EXPECT_EQ(rttCode(0), 0);
  EXPECT_EQ(rttNanos(0), 0);
}

// Every time on the scale reads back within 1.3 % (half a step of 1.59 %, then three
// significant digits), and every code is its own nearest: the scale is monotonic.
TEST(PackedCellTest, RttCodesAreWithinHalfAStepOfTheMeasuredTime) {
  for (uint16_t k = 1; k < PackedCell::kRttCodes; ++k) {
    ASSERT_EQ(rttCode(rttNanos(k)), k);
    if (k > 1) {
      ASSERT_GT(rttNanos(k), rttNanos(k - 1));
    }
  }
  double worst = 0;
  for (int64_t ns = 1'000; ns <= 10'000'000'000; ns += ns / 997 + 1) {
    const double err = std::abs(static_cast<double>(rttNanos(rttCode(ns)) - ns)) / static_cast<double>(ns);
    worst = std::max(worst, err);
  }
  EXPECT_LE(worst, 0.013);
  EXPECT_GT(worst, 0.007);  // the steps are as wide as said, not finer
  EXPECT_EQ(rttNanos(rttCode(200'000)), 200'000);  // read back to three digits
  EXPECT_EQ(rttNanos(rttCode(2'000'000)), 2'000'000);
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
  EXPECT_NEAR(TimeUtil::DurationToNanoseconds(r.rtt_p50()), 250'000, 250'000 * 0.013);
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
  row.set(CellChunk::kCells + 3, cellWithLoss(7));
  EXPECT_EQ(row.at(CellChunk::kCells + 3).loss, 7);
  EXPECT_FALSE(row.at(0).present());                    // a chunk never written
  EXPECT_FALSE(row.at(CellChunk::kCells + 4).present());  // the same chunk, another cell
  EXPECT_FALSE(row.at(kWide).present());                // past the row
  EXPECT_FALSE(row.at(UINT32_MAX).present());
}

TEST(RowTest, WritingACopyLeavesTheOriginalAsItWas) {
  auto original = std::make_shared<Row>();
  original->clear(kWide);
  for (uint32_t chunk = 0; chunk < 3; ++chunk) original->set(chunk * CellChunk::kCells + 1, cellWithLoss(1));
  const auto held = original;  // what a snapshot holds

  Row copy = *original;
  copy.set(CellChunk::kCells + 1, cellWithLoss(2));  // the middle chunk
  copy.set(5, cellWithLoss(3));                      // the first one, another cell
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
  row.set(kWide - 1, cellWithLoss(9));
  row.clear(10);  // a smaller cluster: the cells beyond are gone, not hidden
  row.set(3, cellWithLoss(4));
  row.grow(kWide + CellChunk::kCells);
  EXPECT_EQ(row.size(), kWide + CellChunk::kCells);
  EXPECT_EQ(row.at(3).loss, 4);
  EXPECT_FALSE(row.at(kWide - 1).present());
  EXPECT_FALSE(row.at(kWide + 5).present());
  row.grow(4);  // never shrinks
  EXPECT_EQ(row.size(), kWide + CellChunk::kCells);
}

PackedCell cellAt(uint32_t last_probe, uint8_t loss = 0) {
  PackedCell c = cellWithLoss(loss);
  c.rtt = 300;
  c.last_probe = last_probe;
  return c;
}

// Counts what it allocates in a global: stateless, so allocate_shared lays out the control
// block exactly as make_shared does (a stateful allocator would be stored in it).
size_t g_allocated = 0;
template <class T>
struct CountingAllocator {
  using value_type = T;
  CountingAllocator() = default;
  template <class U>
  CountingAllocator(const CountingAllocator<U>&) {}  // NOLINT: rebinding
  T* allocate(size_t n) {
    g_allocated += n * sizeof(T);
    return std::allocator<T>{}.allocate(n);
  }
  void deallocate(T* p, size_t n) { std::allocator<T>{}.deallocate(p, n); }
  bool operator==(const CountingAllocator&) const { return true; }
};

TEST(RowTest, ACellIsOneWordAndAChunkOneAllocationOfAKibibyte) {
  g_allocated = 0;
  { auto chunk = std::allocate_shared<CellChunk>(CountingAllocator<CellChunk>{}); }
  EXPECT_EQ(g_allocated, CellChunk::kAllocBytes);
  EXPECT_EQ(sizeof(CellChunk::words[0]), 4u);
}

TEST(RowTest, ProbeTimesReadBackExactlyAcrossAMovedTimeBase) {
  constexpr uint32_t t0 = 1'900'000'000;
  Row row;
  row.clear(kWide);
  row.set(1, cellAt(t0, 3));
  row.set(CellChunk::kCells + 2, cellAt(t0 + 100));
  EXPECT_EQ(row.at(1).last_probe, t0);
  EXPECT_EQ(row.at(1).loss, 3);
  EXPECT_EQ(row.at(1).rtt, 300);
  EXPECT_EQ(row.at(CellChunk::kCells + 2).last_probe, t0 + 100);

  // Two hours on: past the span of the first base, within what the row keeps.
  const auto held = std::make_shared<Row>(row);  // a snapshot shares the chunks
  const uint32_t later = t0 + Row::kTimeSpan + 500;
  EXPECT_FALSE(row.refreshLastProbe(1, later));  // not in place: the base must move
  EXPECT_EQ(row.at(1).last_probe, t0);
  row.set(1, cellAt(later, 3));
  EXPECT_EQ(row.at(1).last_probe, later);
  // 3.4 hours kept before the newest: t0 + 100 is older, and reads as the new base.
  ASSERT_LT(t0 + 100, later - Row::kTimeKept);
  EXPECT_EQ(row.at(CellChunk::kCells + 2).last_probe, later - Row::kTimeKept);
  EXPECT_EQ(row.at(2 * CellChunk::kCells).last_probe, 0u);  // absent stays absent
  EXPECT_FALSE(row.at(2 * CellChunk::kCells).present());
  // The snapshot's copy still reads its own times.
  EXPECT_EQ(held->at(1).last_probe, t0);
  EXPECT_EQ(held->at(CellChunk::kCells + 2).last_probe, t0 + 100);

  // A time within the base is refreshed in place.
  EXPECT_TRUE(row.refreshLastProbe(1, later + 60));
  EXPECT_EQ(row.at(1).last_probe, later + 60);
  EXPECT_EQ(row.at(1).loss, 3);
}

TEST(RowTest, ATimeFarOlderThanTheNewestReadsAsTheBase) {
  constexpr uint32_t t0 = 1'900'000'000;
  Row row;
  row.clear(10);
  row.set(1, cellAt(t0));
  const uint32_t hours_later = t0 + 4 * Row::kTimeSpan;
  row.set(2, cellAt(hours_later));
  const uint32_t base = hours_later - Row::kTimeKept;
  EXPECT_EQ(row.at(2).last_probe, hours_later);
  EXPECT_EQ(row.at(1).last_probe, base);  // clamped: a cell long UNKNOWN by then
  EXPECT_TRUE(row.at(1).present());
  // Times written newest first (a report's results are in no time order) read back
  // exactly while within kTimeKept of the newest, with no move of the base.
  row.clear(10);
  row.set(3, cellAt(t0 + Row::kTimeKept));
  row.set(4, cellAt(t0));
  row.set(5, cellAt(t0 + Row::kTimeSpan));
  EXPECT_EQ(row.at(3).last_probe, t0 + Row::kTimeKept);
  EXPECT_EQ(row.at(4).last_probe, t0);
  EXPECT_EQ(row.at(5).last_probe, t0 + Row::kTimeSpan);
  EXPECT_TRUE(row.refreshLastProbe(4, t0 + 1));
  EXPECT_FALSE(row.refreshLastProbe(4, t0 - 1));  // older than the base: not in place
}

// The ingest thread refreshes probe times in place in chunks that a snapshot's row shares
// while query threads read that row: each read sees a whole cell, its other fields as
// they were, and a probe time that never goes back. (scripts/tsan.sh runs this under
// ThreadSanitizer: the word is read and written atomically.)
TEST(RowTest, ReadersOfASharedChunkSeeWholeCellsWhileTheirTimesAreRefreshed) {
  constexpr uint32_t t0 = 1'900'000'000, kRounds = 2000;
  Row row;
  row.clear(kWide);
  for (uint32_t slot = 0; slot < kWide; ++slot) row.set(slot, cellAt(t0, 3));
  const auto held = std::make_shared<const Row>(row);  // a snapshot's copy: the chunks shared

  std::atomic<bool> started{false}, done{false};
  std::atomic<uint64_t> reads{0}, bad{0};
  std::thread reader([&] {
    std::vector<uint32_t> seen(kWide, t0);
    started.store(true, std::memory_order_release);
    do {
      for (uint32_t slot = 0; slot < kWide; ++slot) {
        const PackedCell c = held->at(slot);
        const bool whole = c.present() && c.loss == 3 && c.rtt == 300 && c.last_probe >= seen[slot] &&
                           c.last_probe <= t0 + kRounds;
        if (!whole) bad.fetch_add(1, std::memory_order_relaxed);
        seen[slot] = c.last_probe;
      }
      reads.fetch_add(kWide, std::memory_order_relaxed);
    } while (!done.load(std::memory_order_acquire));
  });
  while (!started.load(std::memory_order_acquire)) std::this_thread::yield();  // the reader runs
  uint32_t refused = 0;
  for (uint32_t r = 1; r <= kRounds; ++r) {
    for (uint32_t slot = 0; slot < kWide; ++slot) refused += !row.refreshLastProbe(slot, t0 + r);
  }
  done.store(true, std::memory_order_release);
  reader.join();
  EXPECT_EQ(refused, 0u);
  EXPECT_EQ(bad.load(), 0u) << "of " << reads.load() << " reads";
  EXPECT_GT(reads.load(), 0u);
  for (uint32_t slot = 0; slot < kWide; ++slot) EXPECT_EQ(held->at(slot).last_probe, t0 + kRounds);
}

}  // namespace
}  // namespace meshprobe::aggregator
