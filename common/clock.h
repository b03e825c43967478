#pragma once
// Time goes through a seam: monotonic time for intervals and deadlines, wall time for
// display, and waits on monotonic deadlines. Tests use FakeClock: they advance it instead
// of sleeping, and a wait on a FakeClock ends when advance() reaches its deadline.

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <list>
#include <mutex>
#include <stop_token>

namespace meshprobe {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::chrono::steady_clock::time_point monotonicNow() const = 0;
  virtual std::chrono::system_clock::time_point wallNow() const = 0;

  // Blocks until monotonicNow() reaches `deadline` or `stop` is requested, whichever comes
  // first. Returns true when the deadline was reached, false when stop was requested. To
  // wake a waiter early, pass it a token that the waker can stop (a std::stop_source of its
  // own, linked to the thread's token with a std::stop_callback).
  // The default waits in real time, in slices, re-reading monotonicNow(): right for any
  // clock that moves with real time.
  virtual bool waitUntil(std::chrono::steady_clock::time_point deadline, std::stop_token stop) const {
    std::mutex mu;
    std::condition_variable_any cv;
    std::unique_lock lock(mu);
    while (!stop.stop_requested()) {
      const auto now = monotonicNow();
      if (now >= deadline) return true;
      const auto slice = std::min<std::chrono::steady_clock::duration>(deadline - now, std::chrono::milliseconds(100));
      cv.wait_for(lock, stop, slice, [] { return false; });
    }
    return false;
  }
  bool waitFor(std::chrono::nanoseconds d, std::stop_token stop) const {
    return waitUntil(monotonicNow() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(d),
                     std::move(stop));
  }
};

class SystemClock final : public Clock {
 public:
  std::chrono::steady_clock::time_point monotonicNow() const override { return std::chrono::steady_clock::now(); }
  std::chrono::system_clock::time_point wallNow() const override { return std::chrono::system_clock::now(); }
  bool waitUntil(std::chrono::steady_clock::time_point deadline, std::stop_token stop) const override {
    std::mutex mu;
    std::condition_variable_any cv;  // woken only by `stop` (its stop_callback notifies)
    std::unique_lock lock(mu);
    cv.wait_until(lock, stop, deadline, [] { return false; });
    return !stop.stop_requested();
  }
};

class FakeClock final : public Clock {
 public:
  std::chrono::steady_clock::time_point monotonicNow() const override {
    std::lock_guard lock(mu_);
    return mono_;
  }
  std::chrono::system_clock::time_point wallNow() const override {
    std::lock_guard lock(mu_);
    return wall_;
  }
  // Ends when advance() reaches `deadline` (or stop); never on its own in real time.
  bool waitUntil(std::chrono::steady_clock::time_point deadline, std::stop_token stop) const override {
    std::unique_lock lock(mu_);
    auto me = waiters_.insert(waiters_.end(), Waiter{deadline, stop});
    const bool reached = cv_.wait(lock, stop, [&] { return mono_ >= deadline; });
    waiters_.erase(me);
    return reached;
  }
  void advance(std::chrono::nanoseconds d) {
    std::lock_guard lock(mu_);
    mono_ += std::chrono::duration_cast<std::chrono::steady_clock::duration>(d);
    wall_ += std::chrono::duration_cast<std::chrono::system_clock::duration>(d);
    cv_.notify_all();
  }
  // Threads blocked in waitUntil() that neither time nor their stop token has released yet:
  // a test that knows how many threads should be parked polls this before advancing, so
  // it never races a thread that is still working.
  size_t waiters() const {
    std::lock_guard lock(mu_);
    return static_cast<size_t>(std::count_if(waiters_.begin(), waiters_.end(), [&](const Waiter& w) {
      return w.deadline > mono_ && !w.stop.stop_requested();
    }));
  }

 private:
  struct Waiter {
    std::chrono::steady_clock::time_point deadline;
    std::stop_token stop;
  };
  mutable std::mutex mu_;
  mutable std::condition_variable_any cv_;
  mutable std::list<Waiter> waiters_;
  std::chrono::steady_clock::time_point mono_{std::chrono::hours(1)};
  std::chrono::system_clock::time_point wall_{std::chrono::seconds(1'800'000'000)};
};

}  // namespace meshprobe
