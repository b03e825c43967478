#pragma once
// Capped exponential backoff with full jitter for reconnecting to the aggregator:
// delay n is uniform in [base·2^n / 2, base·2^n], capped at `cap`. Deterministic for a
// given seed, so tests assert the sequence.

#include <chrono>
#include <cstdint>
#include <random>

namespace meshprobe::agent {

class Backoff {
 public:
  Backoff(std::chrono::milliseconds base, std::chrono::milliseconds cap, uint64_t seed)
      : base_(base), cap_(cap), rng_(seed) {}

  std::chrono::milliseconds next();
  // Another backoff with other limits, seeded from this one (still deterministic per seed).
  Backoff derived(std::chrono::milliseconds base, std::chrono::milliseconds cap) { return {base, cap, rng_()}; }
  void reset() { attempt_ = 0; }
  int attempts() const { return attempt_; }

 private:
  std::chrono::milliseconds base_;
  std::chrono::milliseconds cap_;
  std::mt19937_64 rng_;
  int attempt_ = 0;
};

}  // namespace meshprobe::agent
