#pragma once
// Polling with a deadline, for unit and e2e tests alike: the one place a test waits for
// state that another thread or process produces. Never a sleep as synchronisation: each
// helper re-checks until the state holds or the deadline passes, sleeping `interval`
// between checks.
//
//   EXPECT_TRUE(eventually([&] { return counter() == 3; }));                 // bool predicate
//   EXPECT_TRUE(eventually([&] { return counter() == 3; },                   // ... and what was
//                          [&] { return "counter=" + std::to_string(counter()); }));  // last seen
//   EXPECT_TRUE(eventually("all cells OK", [&] { return mismatch(); }, 30s)); // "" once it holds
//
// On failure the AssertionResult says how long it waited, how many checks it made and the
// last observed state, so a timeout explains itself.

#include <gtest/gtest.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <thread>

namespace meshprobe::test {

inline constexpr std::chrono::milliseconds kEventuallyTimeout{5000};
inline constexpr std::chrono::milliseconds kEventuallyInterval{10};

// Calls `done` until it returns true (true) or `timeout` has passed since the first call
// (false). `done` runs at least once and once more at or after the deadline, so a state
// that holds by the deadline is never missed. `checks`, when given, gets the number of calls.
inline bool pollUntil(const std::function<bool()>& done, std::chrono::milliseconds timeout = kEventuallyTimeout,
                      std::chrono::milliseconds interval = kEventuallyInterval, std::size_t* checks = nullptr) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::size_t n = 0;
  while (true) {
    ++n;
    const bool past = std::chrono::steady_clock::now() >= deadline;
    if (done()) {
      if (checks) *checks = n;
      return true;
    }
    if (past) {
      if (checks) *checks = n;
      return false;
    }
    std::this_thread::sleep_for(interval);  // poll interval, bounded by the deadline above
  }
}

// Polls `mismatch` (returns "" once the wanted state holds, else what differs) until it
// holds or `timeout` passes; the failure carries `what` and the last mismatch.
inline ::testing::AssertionResult eventually(const std::string& what, const std::function<std::string()>& mismatch,
                                             std::chrono::milliseconds timeout = kEventuallyTimeout,
                                             std::chrono::milliseconds interval = kEventuallyInterval) {
  std::string last;
  std::size_t checks = 0;
  const bool held = pollUntil(
      [&] {
        last = mismatch();
        return last.empty();
      },
      timeout, interval, &checks);
  if (held) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "not within " << timeout.count() << " ms (" << checks << " checks): " << what
                                       << "\n---- last mismatch ----\n"
                                       << last;
}

// Polls `holds` until it returns true or `timeout` passes; on failure the message carries
// `state()` as observed right after the last check.
inline ::testing::AssertionResult eventually(const std::function<bool()>& holds,
                                             const std::function<std::string()>& state,
                                             std::chrono::milliseconds timeout = kEventuallyTimeout,
                                             std::chrono::milliseconds interval = kEventuallyInterval) {
  std::size_t checks = 0;
  if (pollUntil(holds, timeout, interval, &checks)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "predicate did not hold within " << timeout.count() << " ms (" << checks
                                       << " checks); last state: "
                                       << (state ? state() : std::string("(not described)"));
}

inline ::testing::AssertionResult eventually(const std::function<bool()>& holds,
                                             std::chrono::milliseconds timeout = kEventuallyTimeout,
                                             std::chrono::milliseconds interval = kEventuallyInterval) {
  return eventually(holds, std::function<std::string()>{}, timeout, interval);
}

}  // namespace meshprobe::test
