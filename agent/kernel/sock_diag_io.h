#pragma once
// NETLINK_SOCK_DIAG dumps over the shared netlink transport (netlink_socket.h): one
// socket per dump, every read bounded by a deadline, sequence and port id checked,
// NLMSG_ERROR (with the kernel's extended-ack text) an Error, NLM_F_DUMP_INTR retried a
// bounded number of times as for rtnetlink. Reads the calling thread's network namespace.

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
