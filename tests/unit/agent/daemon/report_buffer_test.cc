#include "agent/daemon/report_buffer.h"

#include <gtest/gtest.h>

#include "agent/daemon/backoff.h"

using namespace meshprobe::agent;
using namespace std::chrono_literals;

namespace {
meshprobe::v1::Report report(uint64_t seq) {
  meshprobe::v1::Report r;
  r.set_sequence(seq);
  return r;
}
}  // namespace

TEST(ReportBuffer, KeepsTheNewestAndCountsDrops) {
  ReportBuffer buffer(3);
  for (uint64_t i = 1; i <= 5; ++i) buffer.push(report(i));
  EXPECT_EQ(buffer.size(), 3u);
  EXPECT_EQ(buffer.dropped(), 2u);
  EXPECT_EQ(buffer.pop(0ms)->report.sequence(), 3u);
  EXPECT_EQ(buffer.pop(0ms)->report.sequence(), 4u);
  EXPECT_EQ(buffer.pop(0ms)->report.sequence(), 5u);
  EXPECT_FALSE(buffer.pop(0ms).has_value());
}

TEST(ReportBuffer, AnUnsentReportGoesBackToTheFront) {
  ReportBuffer buffer(3);
  buffer.push(report(2));
  buffer.pushFront(report(1));
  EXPECT_EQ(buffer.pop(0ms)->report.sequence(), 1u);
  EXPECT_EQ(buffer.pop(0ms)->report.sequence(), 2u);
}

TEST(ReportBuffer, PushFrontIntoAFullBufferDropsTheOldOne) {
  ReportBuffer buffer(1);
  buffer.push(report(2));
  buffer.pushFront(report(1));
  EXPECT_EQ(buffer.dropped(), 1u);
  EXPECT_EQ(buffer.pop(0ms)->report.sequence(), 2u);
}

TEST(ReportBuffer, CloseWakesAWaiter) {
  ReportBuffer buffer(1);
  buffer.close();
  EXPECT_FALSE(buffer.pop(10s).has_value());  // returns at once, not after 10 s
}

TEST(Backoff, GrowsExponentiallyWithJitterUpToTheCap) {
  Backoff b(100ms, 2000ms, 42);
  std::vector<std::chrono::milliseconds> delays;
  for (int i = 0; i < 8; ++i) delays.push_back(b.next());
  // attempt n: uniform in [ceil/2, ceil], ceil = min(100ms * 2^n, 2s)
  int64_t ceil = 100;
  for (auto d : delays) {
    EXPECT_GE(d.count(), ceil / 2);
    EXPECT_LE(d.count(), ceil);
    ceil = std::min<int64_t>(ceil * 2, 2000);
  }
  EXPECT_LE(delays.back().count(), 2000);
  EXPECT_GE(delays.back().count(), 1000);
}

TEST(Backoff, ResetStartsOver) {
  Backoff b(100ms, 2000ms, 7);
  for (int i = 0; i < 5; ++i) b.next();
  b.reset();
  EXPECT_LE(b.next().count(), 100);
}

TEST(Backoff, SameSeedSameSequence) {
  Backoff a(100ms, 5000ms, 9), b(100ms, 5000ms, 9);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(a.next(), b.next());
}
