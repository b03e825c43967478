#pragma once
// Seam for reading rtnetlink state. The kernel implementation dumps links, addresses,
// neighbours, FDB (AF_BRIDGE) and routes over NETLINK_ROUTE with a deadline on every
// read; tests substitute a fake that returns a prepared snapshot.

#include <chrono>
#include <memory>

#include "agent/kernel/netlink_types.h"
#include "common/result.h"

namespace meshprobe::agent {

class NetlinkReader {
 public:
  virtual ~NetlinkReader() = default;
  virtual Result<NetlinkSnapshot> snapshot() = 0;
};

// Reads the calling thread's network namespace.
std::unique_ptr<NetlinkReader> makeKernelNetlinkReader(std::chrono::milliseconds timeout);

}  // namespace meshprobe::agent
