#pragma once
// What membership says the peers are (from the aggregator's PeerList), shared between
// the stream (writer) and the checks that compare the kernel with it (readers).
// Empty until the first PeerList; `--once` never has one.

#include <mutex>
#include <optional>
#include <vector>

#include "agent/checks/vxlan_facts.h"

namespace meshprobe::agent {

class PeerDirectory {
 public:
  void set(std::vector<PeerExpectation> peers) {
    std::lock_guard lock(mu_);
    peers_ = std::move(peers);
  }
  // nullopt: no membership known (standalone or not yet connected).
  std::optional<std::vector<PeerExpectation>> get() const {
    std::lock_guard lock(mu_);
    return peers_;
  }

 private:
  mutable std::mutex mu_;
  std::optional<std::vector<PeerExpectation>> peers_;
};

}  // namespace meshprobe::agent
