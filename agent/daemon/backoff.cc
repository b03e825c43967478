#include "agent/daemon/backoff.h"

#include <algorithm>

namespace meshprobe::agent {

std::chrono::milliseconds Backoff::next() {
  int64_t ceiling = base_.count();
  for (int i = 0; i < attempt_ && ceiling < cap_.count(); ++i) ceiling *= 2;
  ceiling = std::min<int64_t>(ceiling, cap_.count());
  if (attempt_ < 62) ++attempt_;
  std::uniform_int_distribution<int64_t> dist(ceiling / 2, ceiling);
  return std::chrono::milliseconds(dist(rng_));
}

}  // namespace meshprobe::agent
