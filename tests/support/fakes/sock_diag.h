#pragma once
// A SockDiag that answers each dump with a prepared list (or error), counting calls.
// Default: no sockets at all; FakeSockDiag(Error) answers every dump with that error.

#include <atomic>
#include <vector>

#include "agent/kernel/sock_diag.h"

namespace meshprobe::test {

class FakeSockDiag final : public agent::SockDiag {
 public:
  FakeSockDiag() = default;
  explicit FakeSockDiag(const Error& every_dump) : udp(every_dump), tcp_listeners(every_dump), unix_sockets(every_dump) {}

  Result<std::vector<agent::InetSocket>> udpSockets() override {
    ++udp_calls;
    return udp;
  }
  Result<std::vector<agent::InetSocket>> tcpListeners() override {
    ++tcp_calls;
    return tcp_listeners;
  }
  Result<std::vector<agent::UnixSocket>> unixSockets() override {
    ++unix_calls;
    return unix_sockets;
  }

  Result<std::vector<agent::InetSocket>> udp = std::vector<agent::InetSocket>{};
  Result<std::vector<agent::InetSocket>> tcp_listeners = std::vector<agent::InetSocket>{};
  Result<std::vector<agent::UnixSocket>> unix_sockets = std::vector<agent::UnixSocket>{};
  std::atomic<int> udp_calls{0}, tcp_calls{0}, unix_calls{0};
};

}  // namespace meshprobe::test
