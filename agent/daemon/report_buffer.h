#pragma once
// Reports waiting to be sent to the aggregator. Bounded: when the aggregator is away the
// agent keeps checking and probing, keeps the newest `capacity` reports, drops the
// oldest and counts what it dropped (a degraded mode visible as a counter).

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <chrono>

#include "agent/daemon/pending_report.h"

namespace meshprobe::agent {

class ReportBuffer {
 public:
  explicit ReportBuffer(size_t capacity) : capacity_(capacity) {}

  void push(PendingReport report);
  // Waits up to `timeout` for a report; nullopt when none arrived or close() was called.
  std::optional<PendingReport> pop(std::chrono::milliseconds timeout);
  // Puts a report that could not be sent back at the front (it stays the oldest).
  void pushFront(PendingReport report);
  void close();

  size_t size() const;
  uint64_t dropped() const;

 private:
  const size_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<PendingReport> reports_;
  uint64_t dropped_ = 0;
  bool closed_ = false;
};

}  // namespace meshprobe::agent
