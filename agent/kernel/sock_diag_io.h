#pragma once
// The one place that talks to NETLINK_SOCK_DIAG (libmnl): send one dump request and
// read every reply datagram until NLMSG_DONE, bounded by a deadline (poll, never a
// blocking recv). Replies of another seq/portid are dropped; NLMSG_ERROR becomes an
// Error. Reads the calling thread's network namespace.

#include <chrono>
#include <cstdint>
#include <span>
#include <vector>

#include "common/result.h"

namespace meshprobe::agent {

// Sends `request` (its nlmsg_seq is replaced by a fresh sequence number) and returns
// the reply messages of that dump, concatenated, ending with NLMSG_DONE: exactly the
// bytes parseInetDiagDump / parseUnixDiagDump take.
Result<std::vector<uint8_t>> sockDiagDump(std::span<const uint8_t> request, std::chrono::milliseconds timeout);

}  // namespace meshprobe::agent
