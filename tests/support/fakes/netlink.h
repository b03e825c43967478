#pragma once
// A NetlinkReader that answers every read with a prepared snapshot (or error), counting
// reads and check rounds.

#include <atomic>
#include <utility>

#include "agent/kernel/netlink_reader.h"

namespace meshprobe::test {

class FakeNetlinkReader final : public agent::NetlinkReader {
 public:
  FakeNetlinkReader() = default;
  explicit FakeNetlinkReader(Result<agent::NetlinkSnapshot> s) : snap(std::move(s)) {}
  Result<agent::NetlinkSnapshot> snapshot() override {
    ++calls;
    return snap;
  }
  void beginRound() override { ++rounds; }

  Result<agent::NetlinkSnapshot> snap = agent::NetlinkSnapshot{};  // what every read returns
  std::atomic<int> calls{0};                                       // snapshot() / view() reads
  std::atomic<int> rounds{0};                                      // beginRound() calls
};

}  // namespace meshprobe::test
