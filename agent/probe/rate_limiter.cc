#include "agent/probe/rate_limiter.h"

#include <algorithm>

namespace meshprobe::agent {

SourceRateLimiter::SourceRateLimiter(double rate, double burst, size_t max_sources)
    : rate_(std::max(rate, 0.0)), burst_(std::max(burst, 1.0)), max_(std::max<size_t>(max_sources, 1)) {}

bool SourceRateLimiter::allow(const std::string& source, TimePoint now) {
  auto it = index_.find(source);
  if (it == index_.end()) {
    if (index_.size() >= max_) {
      index_.erase(lru_.back().source);
      lru_.pop_back();
      ++evictions_;
    }
    lru_.push_front(Bucket{source, burst_, now});
    it = index_.emplace(source, lru_.begin()).first;
  } else if (it->second != lru_.begin()) {
    lru_.splice(lru_.begin(), lru_, it->second);
  }
  Bucket& b = *it->second;
  double elapsed = std::chrono::duration<double>(now - b.last).count();
  if (elapsed > 0) {
    b.tokens = std::min(burst_, b.tokens + elapsed * rate_);
    b.last = now;
  }
  if (b.tokens < 1.0) return false;
  b.tokens -= 1.0;
  return true;
}

}  // namespace meshprobe::agent
