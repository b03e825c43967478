#pragma once
// A probe target's recent outcomes (the prober's loss / RTT / jitter window).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "common/duration.h"

namespace meshprobe::agent {

struct Outcome {
  bool ok = false;
  Duration rtt{};
};

// The last `capacity` outcomes of a target, oldest first: one allocation of 4 bytes per
// outcome (the RTT in nanoseconds, -1 for a miss), where a std::deque of 16-byte outcomes
// took two allocations and a 512-byte block per target. An RTT is kept up to kMaxRtt
// (2.1 s), above any probe timeout the prober uses (at most 0.8 s: a later reply is late,
// not an RTT); a longer one counts as kMaxRtt.
class OutcomeWindow {
 public:
  static constexpr Duration kMaxRtt{std::numeric_limits<int32_t>::max()};

  void push(Outcome o, size_t capacity) {
    const int32_t v = o.ok ? static_cast<int32_t>(std::clamp<int64_t>(o.rtt.count(), 0, kMaxRtt.count())) : -1;
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
    const int32_t v = ring_[(head_ + i) % ring_.size()];
    return v < 0 ? Outcome{} : Outcome{true, Duration(v)};
  }

 private:
  std::vector<int32_t> ring_;
  size_t head_ = 0;  // the oldest, once full
};

}  // namespace meshprobe::agent
