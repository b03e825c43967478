#include "common/duration.h"

#include <gtest/gtest.h>

using namespace meshprobe;
using namespace std::chrono_literals;

TEST(ParseDuration, AcceptsKubernetesStyleUnits) {
  EXPECT_EQ(parseDuration("500ms"), Duration(500ms));
  EXPECT_EQ(parseDuration("1s"), Duration(1s));
  EXPECT_EQ(parseDuration("2m"), Duration(2min));
  EXPECT_EQ(parseDuration("1m30s"), Duration(90s));
  EXPECT_EQ(parseDuration("1.5s"), Duration(1500ms));
  EXPECT_EQ(parseDuration("250us"), Duration(250us));
  EXPECT_EQ(parseDuration("0"), Duration::zero());
}

TEST(ParseDuration, RejectsMalformedInput) {
  EXPECT_FALSE(parseDuration(""));
  EXPECT_FALSE(parseDuration("5"));
  EXPECT_FALSE(parseDuration("s"));
  EXPECT_FALSE(parseDuration("1x"));
  EXPECT_FALSE(parseDuration("1..2s"));
  EXPECT_FALSE(parseDuration("-1s"));
}

TEST(FormatDuration, PicksAReadableUnit) {
  EXPECT_EQ(formatDuration(1500ms), "1.5s");
  EXPECT_EQ(formatDuration(250ms), "250ms");
  EXPECT_EQ(formatDuration(40us), "40us");
}
