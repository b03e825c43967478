#pragma once
// Seam for NETLINK_SOCK_DIAG (libmnl). Reads the calling thread's network namespace;
// every read is bounded by a deadline.

#include <chrono>
#include <memory>
#include <vector>

#include "agent/kernel/sock_diag_types.h"
#include "common/result.h"

namespace meshprobe::agent {

class SockDiag {
 public:
  virtual ~SockDiag() = default;
  // All UDP sockets, IPv4 and IPv6 (bound and unconnected ones included).
  virtual Result<std::vector<InetSocket>> udpSockets() = 0;
  // TCP sockets in LISTEN state, IPv4 and IPv6.
  virtual Result<std::vector<InetSocket>> tcpListeners() = 0;
  // All AF_UNIX sockets with name, peer and VFS information.
  virtual Result<std::vector<UnixSocket>> unixSockets() = 0;
};

std::unique_ptr<SockDiag> makeKernelSockDiag(std::chrono::milliseconds timeout);

}  // namespace meshprobe::agent
