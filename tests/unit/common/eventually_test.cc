// The shared polling helper of the tests (tests/support/eventually.h): what it returns and
// what a failure says. Counts calls instead of timing them.

#include "tests/support/eventually.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace meshprobe::test {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

TEST(Eventually, StopsAtTheFirstCheckThatHolds) {
  int calls = 0;
  EXPECT_TRUE(eventually([&] { return ++calls == 3; }, 5s, 1ms));
  EXPECT_EQ(calls, 3);
}

TEST(Eventually, FailureCarriesTheLastObservedState) {
  int calls = 0;
  auto r = eventually([&] { return ++calls < 0; }, [&] { return "calls=" + std::to_string(calls); }, 30ms, 1ms);
  ASSERT_FALSE(r);
  EXPECT_GE(calls, 2) << "checked again at or after the deadline";
  EXPECT_THAT(r.message(), HasSubstr("within 30 ms"));
  EXPECT_THAT(r.message(), HasSubstr("last state: calls=" + std::to_string(calls)));
  EXPECT_THAT(r.message(), HasSubstr("(" + std::to_string(calls) + " checks)"));
}

TEST(Eventually, MismatchFormReportsWhatAndTheLastMismatch) {
  int calls = 0;
  auto r = eventually(
      "the counter reaches 1000", [&] { return "counter=" + std::to_string(++calls); }, 20ms, 1ms);
  ASSERT_FALSE(r);
  EXPECT_THAT(r.message(), HasSubstr("the counter reaches 1000"));
  EXPECT_THAT(r.message(), HasSubstr("---- last mismatch ----\ncounter=" + std::to_string(calls)));
  int held_at = 0;
  EXPECT_TRUE(eventually(
      "holds on the second check", [&] { return ++held_at == 2 ? std::string() : std::string("not yet"); }, 5s, 1ms));
  EXPECT_EQ(held_at, 2);
}

TEST(PollUntil, ZeroTimeoutStillChecksOnce) {
  size_t checks = 0;
  int calls = 0;
  EXPECT_FALSE(pollUntil([&] { return ++calls < 0; }, 0ms, 1ms, &checks));
  EXPECT_EQ(checks, 1u);  // a zero timeout still checks once
  EXPECT_EQ(calls, 1);
}

}  // namespace
}  // namespace meshprobe::test
