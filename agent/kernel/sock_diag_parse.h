#pragma once
// NETLINK_SOCK_DIAG as pure functions over bytes (message as a value, I/O separate):
// build the dump requests, and parse the kernel's reply bytes into the plain structs
// of sock_diag_types.h. No I/O here; sock_diag_io.h sends and reads with a deadline.
//
// A "dump" is the concatenation of every reply datagram of one request, up to and
// including NLMSG_DONE (netlink messages are 4-byte aligned, so datagrams concatenate
// into one valid message stream). Parsers reject anything they cannot fully account
// for: a truncated message, a reply without NLMSG_DONE, an NLMSG_ERROR, a short body.

#include <cstdint>
#include <span>
#include <vector>

#include "agent/kernel/sock_diag_types.h"
#include "common/result.h"

namespace meshprobe::agent {

// The unix_diag "show" flags the agent asks for.
uint32_t defaultUnixDiagShow();  // NAME | VFS | PEER | ICONS | RQLEN

// One SOCK_DIAG_BY_FAMILY dump request (NLM_F_REQUEST | NLM_F_DUMP).
// states: bit mask of TCP_* states, e.g. ~0u for all, 1u << TCP_LISTEN for listeners.
std::vector<uint8_t> buildInetDiagRequest(uint8_t family, uint8_t protocol, uint32_t states, uint32_t seq);
std::vector<uint8_t> buildUnixDiagRequest(uint32_t show, uint32_t seq);

// Where a buffer of netlink messages stands, for the reader's loop.
struct DumpProgress {
  bool done = false;    // NLMSG_DONE seen
  size_t messages = 0;  // data messages kept
};

// Appends to `kept` the messages of `chunk` that belong to the dump (nlmsg_seq == seq and
// nlmsg_pid == portid; others are skipped: they are stale replies), up to and including
// NLMSG_DONE. Error on NLMSG_ERROR (errno carried), a negative NLMSG_DONE status,
// NLM_F_DUMP_INTR, or a malformed/truncated message.
Result<DumpProgress> collectDumpChunk(std::span<const uint8_t> chunk, uint32_t seq, uint32_t portid,
                                      std::vector<uint8_t>& kept);

// inet_diag replies (UDP or TCP, AF_INET or AF_INET6). `protocol` fills
// InetSocket::protocol when the reply carries no INET_DIAG_PROTOCOL attribute (0: leave
// it as reported).
Result<std::vector<InetSocket>> parseInetDiagDump(std::span<const uint8_t> dump, int protocol = 0);

// unix_diag replies.
Result<std::vector<UnixSocket>> parseUnixDiagDump(std::span<const uint8_t> dump);

// UNIX_DIAG_VFS reports the socket file's device as the kernel's internal dev_t
// (major << 20 | minor); stat() reports glibc's encoding. This converts the former into
// the latter, so the two compare.
uint64_t userDevFromKernelDev(uint32_t kernel_dev);

}  // namespace meshprobe::agent
