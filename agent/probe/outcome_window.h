#pragma once
// A probe target's recent outcomes (the prober's loss / RTT / jitter window).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/duration.h"

namespace meshprobe::agent {

struct Outcome {
  bool ok = false;
  Duration rtt{};
};

// The last `capacity` outcomes of a target, oldest first: one allocation of 8 bytes per
// outcome (the RTT in nanoseconds, -1 for a miss), where a std::deque of 16-byte outcomes
// took two allocations and a 512-byte block per target.
class OutcomeWindow {
 public:
  void push(Outcome o, size_t capacity) {
    const int64_t v = o.ok ? std::max<int64_t>(o.rtt.count(), 0) : -1;
    if (ring_.size() < capacity) {
      if (ring_.empty()) ring_.reserve(capacity);
      ring_.push_back(v);
      return;
    }
    ring_[head_] = v;
    head_ = (head_ + 1) % ring_.size();
  }
  size_t size() const { return ring_.size(); }
  bool empty() const { return ring_.empty(); }
  // i-th oldest (0 = the oldest kept).
  Outcome operator[](size_t i) const {
    const int64_t v = ring_[(head_ + i) % ring_.size()];
    return v < 0 ? Outcome{} : Outcome{true, Duration(v)};
  }

 private:
  std::vector<int64_t> ring_;
  size_t head_ = 0;  // the oldest, once full
};

}  // namespace meshprobe::agent
