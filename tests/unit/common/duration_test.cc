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

// Found by the flags fuzz target: what formatDuration prints must parse back.
TEST(FormatDuration, MinutesAndHoursAsGoPrintsThemNeverWithAnExponent) {
  EXPECT_EQ(formatDuration(90s), "1m30s");
  EXPECT_EQ(formatDuration(2463s), "41m3s");  // was "2.46e+03s"
  EXPECT_EQ(formatDuration(2h + 500ms), "2h0m0.5s");
  for (Duration d : {Duration(2463s), Duration(2h + 500ms), Duration(61s + 1ms)}) {
    auto back = parseDuration(formatDuration(d));
    ASSERT_TRUE(back.has_value()) << formatDuration(d);
    EXPECT_EQ(*back, d) << formatDuration(d);
  }
}

TEST(FormatDuration, AValueRoundingUpTo1000OfAUnitIsOneOfTheNext) {
  EXPECT_EQ(formatDuration(999'600us), "1s");  // was "1e+03ms"
  EXPECT_EQ(formatDuration(999'700ns), "1ms");
  EXPECT_EQ(formatDuration(999ns), "999ns");
}

TEST(ParseDuration, HugeNumbersAreRefusedNotThrown) {
  EXPECT_FALSE(parseDuration(std::string(400, '9') + "s"));
  EXPECT_FALSE(parseDuration("1" + std::string(30, '0') + "h"));
}

TEST(ParseDuration, MicroSignUnit) { EXPECT_EQ(parseDuration("250µs"), Duration(250us)); }
