// e2e_doctor entry point: harness setup (signal cleanup, leftovers of dead runs), then GoogleTest.
#include <gtest/gtest.h>

#include <cstring>

#include "tests/e2e/harness.h"

int main(int argc, char** argv) {
  bool listing = false;
  for (int i = 1; i < argc; ++i) listing = listing || std::strncmp(argv[i], "--gtest_list_tests", 18) == 0;
  ::testing::InitGoogleTest(&argc, argv);
  if (!listing) meshprobe::e2e::initHarness();
  return RUN_ALL_TESTS();
}
