#include "agent/probe/rate_limiter.h"

#include <gtest/gtest.h>

namespace meshprobe::agent {
namespace {

using namespace std::chrono_literals;

TEST(SourceRateLimiter, BurstThenRate) {
  SourceRateLimiter l(10, 3, 16);
  SourceRateLimiter::TimePoint t{1h};
  EXPECT_TRUE(l.allow("a", t));
  EXPECT_TRUE(l.allow("a", t));
  EXPECT_TRUE(l.allow("a", t));
  EXPECT_FALSE(l.allow("a", t));
  EXPECT_TRUE(l.allow("b", t));          // per source
  EXPECT_FALSE(l.allow("a", t + 50ms));  // half a token
  EXPECT_TRUE(l.allow("a", t + 100ms));
  EXPECT_FALSE(l.allow("a", t + 100ms));
  // Refill is capped at the burst.
  t += 1h;
  int n = 0;
  while (l.allow("a", t)) ++n;
  EXPECT_EQ(n, 3);
}

TEST(SourceRateLimiter, TableIsBoundedAndEvictsLeastRecentlySeen) {
  SourceRateLimiter l(1, 1, 2);
  SourceRateLimiter::TimePoint t{1h};
  EXPECT_TRUE(l.allow("a", t));
  EXPECT_TRUE(l.allow("b", t));
  EXPECT_FALSE(l.allow("a", t));  // a is now the most recent, b the least
  EXPECT_TRUE(l.allow("c", t));   // evicts b
  EXPECT_EQ(l.size(), 2u);
  EXPECT_EQ(l.evictions(), 1u);
  EXPECT_FALSE(l.allow("a", t));  // a kept its empty bucket
  EXPECT_FALSE(l.allow("c", t));
  EXPECT_TRUE(l.allow("b", t));  // b comes back with a fresh bucket (evicting a)
  EXPECT_EQ(l.evictions(), 2u);
}

}  // namespace
}  // namespace meshprobe::agent
