#include "agent/probe/replay_window.h"

#include <gtest/gtest.h>

namespace meshprobe::agent {
namespace {

constexpr auto kFresh = ReplayWindow::Verdict::kFresh;
constexpr auto kReplayed = ReplayWindow::Verdict::kReplayed;
constexpr uint64_t W = ReplayWindow::kWindowSize;
constexpr uint64_t S = ReplayWindow::kRestartMaxStep;

TEST(ReplayWindow, FirstSequenceIsFreshAndARepeatIsReplayed) {
  ReplayWindow w;
  EXPECT_EQ(w.check("a", 1'000'000), kFresh);
  EXPECT_EQ(w.check("a", 1'000'000), kReplayed);
  EXPECT_EQ(w.check("a", 1'000'001), kFresh);
  EXPECT_EQ(w.check("a", 1'000'001), kReplayed);
  EXPECT_EQ(w.check("a", 1'000'000), kReplayed);
}

TEST(ReplayWindow, KeysHaveTheirOwnWindows) {
  ReplayWindow w;
  EXPECT_EQ(w.check("a", 5000), kFresh);
  EXPECT_EQ(w.check("b", 5000), kFresh);
  EXPECT_EQ(w.check("b", 5000), kReplayed);
  EXPECT_EQ(w.size(), 2u);
}

TEST(ReplayWindow, OutOfOrderInsideTheWindowIsFreshOnce) {
  ReplayWindow w;
  const uint64_t top = 100'000;
  EXPECT_EQ(w.check("a", top), kFresh);
  // Every sequence still inside the window arrives late, once each.
  for (uint64_t s = top - (W - 1); s < top; s += 97) EXPECT_EQ(w.check("a", s), kFresh) << s;
  for (uint64_t s = top - (W - 1); s < top; s += 97) EXPECT_EQ(w.check("a", s), kReplayed) << s;
  EXPECT_EQ(w.check("a", top - (W - 1)), kReplayed);  // the window's oldest slot, seen above
  EXPECT_EQ(w.check("a", top - 1), kFresh);           // not among those sent
}

TEST(ReplayWindow, BelowTheWindowIsReplayed) {
  ReplayWindow w;
  const uint64_t top = 100'000;
  EXPECT_EQ(w.check("a", top), kFresh);
  EXPECT_EQ(w.check("a", top - W), kReplayed);  // one below the oldest slot, never seen
  EXPECT_EQ(w.check("a", 1), kReplayed);
}

TEST(ReplayWindow, SlidingForgetsNothingStillInside) {
  ReplayWindow w;
  EXPECT_EQ(w.check("a", 10'000), kFresh);
  EXPECT_EQ(w.check("a", 10'500), kFresh);          // slide by 500
  EXPECT_EQ(w.check("a", 10'000), kReplayed);       // 500 behind: still in, still seen
  EXPECT_EQ(w.check("a", 10'000 + W - 1), kFresh);  // 10'000 now 1023 behind
  EXPECT_EQ(w.check("a", 10'000), kReplayed);
  EXPECT_EQ(w.check("a", 10'000 + W), kFresh);  // 10'000 is now below the window
  EXPECT_EQ(w.check("a", 10'000), kReplayed);
  EXPECT_EQ(w.check("a", 10'001), kFresh);  // 1023 behind, never seen
  EXPECT_EQ(w.check("a", 10'500), kReplayed);
}

TEST(ReplayWindow, FarJumpForwardClearsTheWindow) {
  ReplayWindow w;
  EXPECT_EQ(w.check("a", 10), kFresh);
  EXPECT_EQ(w.check("a", 11), kFresh);
  const uint64_t far = uint64_t{1} << 62;
  EXPECT_EQ(w.check("a", far), kFresh);
  EXPECT_EQ(w.check("a", far), kReplayed);
  EXPECT_EQ(w.check("a", far - 1), kFresh);  // inside the new window, not seen
  EXPECT_EQ(w.check("a", 11), kReplayed);    // far below it
  EXPECT_EQ(w.check("a", 12), kReplayed);
}

// An older prober restarting from a random lower sequence, or a wall clock stepped back.
TEST(ReplayWindow, ThreeIncreasingBelowWindowSequencesRestartTheWindow) {
  ReplayWindow w;
  const uint64_t old_top = 1'000'000'000;
  EXPECT_EQ(w.check("a", old_top), kFresh);
  EXPECT_EQ(w.check("a", 500), kReplayed);
  EXPECT_EQ(w.check("a", 501), kReplayed);
  EXPECT_EQ(w.check("a", 501 + S), kFresh);  // third, at most kRestartMaxStep above the second
  // The window is the new run now: its members are seen, what follows is fresh.
  EXPECT_EQ(w.check("a", 500), kReplayed);
  EXPECT_EQ(w.check("a", 501), kReplayed);
  EXPECT_EQ(w.check("a", 501 + S), kReplayed);
  EXPECT_EQ(w.check("a", 502 + S), kFresh);
  EXPECT_EQ(w.check("a", 501 + S - 10), kFresh);  // inside the new window, never seen
  EXPECT_EQ(w.check("a", old_top), kFresh);  // the old run's top is above the new window again
}

TEST(ReplayWindow, RestartRunMustBeConsecutiveIncreasingAndClose) {
  ReplayWindow w;
  const uint64_t top = 1'000'000'000;
  EXPECT_EQ(w.check("a", top), kFresh);
  // Not increasing: a repeated 500 starts the run over, and so does a lower 499.
  EXPECT_EQ(w.check("a", 500), kReplayed);
  EXPECT_EQ(w.check("a", 500), kReplayed);
  EXPECT_EQ(w.check("a", 501), kReplayed);
  EXPECT_EQ(w.check("a", 499), kReplayed);  // decreasing: starts over at 499
  EXPECT_EQ(w.check("a", 502), kReplayed);
  // Too far apart: 502 -> 502 + S + 1 starts over.
  EXPECT_EQ(w.check("a", 502 + S + 1), kReplayed);
  EXPECT_EQ(w.check("a", 503 + S + 1), kReplayed);
  // An in-window packet in between breaks the run.
  EXPECT_EQ(w.check("a", top - 1), kFresh);
  EXPECT_EQ(w.check("a", 504 + S + 1), kReplayed);
  EXPECT_EQ(w.check("a", 505 + S + 1), kReplayed);
  EXPECT_EQ(w.check("a", top), kReplayed);  // a replay inside the window breaks it too
  EXPECT_EQ(w.check("a", 506 + S + 1), kReplayed);
  EXPECT_EQ(w.check("a", 507 + S + 1), kReplayed);
  EXPECT_EQ(w.check("a", 508 + S + 1), kFresh);  // three in a row at last
}

TEST(ReplayWindow, BoundedLeastRecentlySeenEvicted) {
  ReplayWindow w(3);
  EXPECT_EQ(w.check("a", 100), kFresh);
  EXPECT_EQ(w.check("b", 100), kFresh);
  EXPECT_EQ(w.check("c", 100), kFresh);
  EXPECT_EQ(w.check("a", 100), kReplayed);  // a is now the most recently seen; b the least
  EXPECT_EQ(w.check("d", 100), kFresh);     // evicts b
  EXPECT_EQ(w.size(), 3u);
  EXPECT_EQ(w.evictions(), 1u);
  EXPECT_EQ(w.check("a", 100), kReplayed);  // kept
  EXPECT_EQ(w.check("c", 100), kReplayed);  // kept
  EXPECT_EQ(w.check("b", 100), kFresh);     // forgotten: a new window (evicts d)
  EXPECT_EQ(w.evictions(), 2u);
  for (int i = 0; i < 1000; ++i) w.check("k" + std::to_string(i), 1);
  EXPECT_EQ(w.size(), 3u);
  EXPECT_EQ(w.evictions(), 1002u);
}

TEST(ReplayWindow, ZeroMaxEntriesStillKeepsOne) {
  ReplayWindow w(0);
  EXPECT_EQ(w.check("a", 7), kFresh);
  EXPECT_EQ(w.check("a", 7), kReplayed);
  EXPECT_EQ(w.size(), 1u);
}

}  // namespace
}  // namespace meshprobe::agent
