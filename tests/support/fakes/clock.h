#pragma once
// The fake clock lives with the Clock seam in common/clock.h (meshprobe::FakeClock): tests of
// every component (agent, aggregator) drive it, so it stays there; this header is where
// unit tests look for it with the other fakes. It never moves on its own: advance() moves
// time and wakes the waiters it reaches, and waiters() says how many threads are parked.

#include "common/clock.h"

namespace meshprobe::test {

using meshprobe::FakeClock;

}  // namespace meshprobe::test
