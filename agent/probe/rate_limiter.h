#pragma once
// Per-source token buckets for the probe responder, pure: the caller passes
// the time. The table is bounded; when full, the least recently seen source is evicted
// (it starts again with a full bucket if it comes back).

#include <chrono>
#include <cstdint>
#include <list>
#include <string>
#include <unordered_map>

namespace meshprobe::agent {

class SourceRateLimiter {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  // `rate` tokens per second, buckets `burst` deep (at least 1), at most `max_sources`.
  SourceRateLimiter(double rate, double burst, size_t max_sources);

  // True when `source` (any byte string, e.g. the raw IP) may be answered at `now`.
  bool allow(const std::string& source, TimePoint now);

  size_t size() const { return index_.size(); }
  uint64_t evictions() const { return evictions_; }

 private:
  struct Bucket {
    std::string source;
    double tokens;
    TimePoint last;
  };
  double rate_;
  double burst_;
  size_t max_;
  uint64_t evictions_ = 0;
  std::list<Bucket> lru_;  // most recently seen first
  std::unordered_map<std::string, std::list<Bucket>::iterator> index_;
};

}  // namespace meshprobe::agent
