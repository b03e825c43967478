#pragma once
// rtnetlink dump requests over the shared transport (netlink_socket.h), kept apart from
// parsing (netlink_parse.h): builds one dump request per kind and returns the reply's
// messages as raw bytes. The transport bounds every read by a deadline, checks sequence
// and port id, turns NLMSG_ERROR and a failed NLMSG_DONE into errors carrying the
// kernel's extended-ack text, and retries a dump marked NLM_F_DUMP_INTR.

#include <chrono>
#include <cstdint>
#include <string_view>
#include <vector>

#include "agent/kernel/netlink_parse.h"
#include "agent/kernel/netlink_socket.h"
#include "common/result.h"

namespace meshprobe::agent {

enum class DumpKind { kLinks, kAddresses, kNeighbours, kFdb, kRoutes };
std::string_view dumpKindName(DumpKind kind);  // "links", "addresses", "neighbours", "fdb", "routes"

// The dump request for `kind` (NLM_F_REQUEST | NLM_F_DUMP). ifindex != 0 asks the kernel
// to dump only that interface's entries (neighbours: NDA_IFINDEX; FDB: ndm_ifindex, the
// bridge port; addresses: ifa_index) — honoured under NETLINK_GET_STRICT_CHK; links and
// routes ignore it. Pure.
std::vector<uint8_t> buildDumpRequest(DumpKind kind, uint32_t seq, int ifindex = 0);

// One NETLINK_ROUTE socket in the calling thread's network namespace (the namespace is
// fixed when the socket is created). Not thread-safe; cheap to create per snapshot.
class RtnetlinkDumper {
 public:
  static Result<RtnetlinkDumper> open();
  RtnetlinkDumper(RtnetlinkDumper&& other) noexcept = default;

  // The messages of one dump (without NLMSG_DONE), concatenated as received. After a
  // failed dump (timeout, error) the kernel may still be mid-dump on this socket and would
  // answer EBUSY, so the dumper refuses further dumps: open a new one.
  // The bytes end with the NLMSG_DONE message. ifindex: see buildDumpRequest().
  Result<std::vector<uint8_t>> dump(DumpKind kind, std::chrono::steady_clock::time_point deadline, int ifindex = 0);

  // How many dumps had to be restarted because of NLM_F_DUMP_INTR (a degraded-mode counter).
  int interruptedRetries() const { return sock_.interruptedRetries(); }
  bool strictChecking() const { return sock_.strictChecking(); }

 private:
  explicit RtnetlinkDumper(NetlinkSocket sock) : sock_(std::move(sock)) {}

  NetlinkSocket sock_;
};

// All five dumps a snapshot needs, one after the other, within one overall timeout.
Result<RawNetlinkDumps> dumpAll(std::chrono::milliseconds timeout);

// A parsed snapshot within one overall timeout: one socket, each dump parsed as soon as it
// is read. (Dumping on parallel sockets was measured and not kept: the kernel serializes
// much of the work, and under CPU contention it was slower.)
Result<NetlinkSnapshot> readSnapshot(std::chrono::milliseconds timeout);
// The same on an open dumper (the notification cache re-dumps on its own socket).
Result<NetlinkSnapshot> readSnapshot(RtnetlinkDumper& dumper, std::chrono::steady_clock::time_point deadline);

}  // namespace meshprobe::agent
