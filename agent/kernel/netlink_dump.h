#pragma once
// rtnetlink dump I/O, kept apart from parsing (netlink_parse.h): sends one dump request
// and returns the reply's messages as raw bytes. Every read is bounded by a deadline
// (poll), replies are filtered by sequence number and port id, NLMSG_ERROR and a failed
// NLMSG_DONE are errors, and a dump the kernel marks NLM_F_DUMP_INTR (the table changed
// while it was being dumped) is retried a bounded number of times.

#include <chrono>
#include <cstdint>
#include <string_view>
#include <vector>

#include "agent/kernel/netlink_parse.h"
#include "common/result.h"

namespace meshprobe::agent {

enum class DumpKind { kLinks, kAddresses, kNeighbours, kFdb, kRoutes };
std::string_view dumpKindName(DumpKind kind);  // "links", "addresses", "neighbours", "fdb", "routes"

inline constexpr int kMaxDumpAttempts = 4;  // first try + 3 retries on NLM_F_DUMP_INTR

// One NETLINK_ROUTE socket in the calling thread's network namespace (the namespace is
// fixed when the socket is created). Not thread-safe; cheap to create per snapshot.
class RtnetlinkDumper {
 public:
  static Result<RtnetlinkDumper> open();
  RtnetlinkDumper(RtnetlinkDumper&& other) noexcept;
  RtnetlinkDumper& operator=(RtnetlinkDumper&&) = delete;
  RtnetlinkDumper(const RtnetlinkDumper&) = delete;
  ~RtnetlinkDumper();

  // The messages of one dump (without NLMSG_DONE), concatenated as received. After a
  // failed dump (timeout, error) the kernel may still be mid-dump on this socket and would
  // answer EBUSY, so the dumper refuses further dumps: open a new one.
  Result<std::vector<uint8_t>> dump(DumpKind kind, std::chrono::steady_clock::time_point deadline);

  // How many dumps had to be restarted because of NLM_F_DUMP_INTR (a degraded-mode counter).
  int interruptedRetries() const { return interrupted_retries_; }

 private:
  explicit RtnetlinkDumper(int fd, uint32_t portid) : fd_(fd), portid_(portid) {}
  Result<std::vector<uint8_t>> dumpOnce(DumpKind kind, std::chrono::steady_clock::time_point deadline,
                                        bool& interrupted);

  int fd_ = -1;
  uint32_t portid_ = 0;
  uint32_t seq_ = 0;
  int interrupted_retries_ = 0;
  bool broken_ = false;
  std::vector<uint8_t> buf_;
};

// All five dumps a snapshot needs, one after the other, within one overall timeout.
Result<RawNetlinkDumps> dumpAll(std::chrono::milliseconds timeout);

// A parsed snapshot within one overall timeout: one socket, each dump parsed as soon as it
// is read. (Dumping on parallel sockets was measured and not kept: the kernel serializes
// much of the work, and under CPU contention it was slower.)
Result<NetlinkSnapshot> readSnapshot(std::chrono::milliseconds timeout);

}  // namespace meshprobe::agent
