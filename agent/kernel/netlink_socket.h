#pragma once
// The one netlink transport (libmnl) for NETLINK_ROUTE and NETLINK_SOCK_DIAG: send a dump
// request, read the multi-part reply to NLMSG_DONE with mnl_cb_run (sequence and port id
// checked), every read bounded by a deadline (poll). A dump the kernel marks
// NLM_F_DUMP_INTR (the table changed while it was being dumped) is drained and retried a
// bounded number of times, for both buses. NETLINK_EXT_ACK is on, so an NLMSG_ERROR or a
// failed NLMSG_DONE carries the kernel's own explanation (NLMSGERR_ATTR_MSG) into the
// Error; on NETLINK_ROUTE, NETLINK_GET_STRICT_CHK is on too, so dump filters in the
// request (an interface index for neighbours and FDB) are applied by the kernel and a
// malformed request is refused instead of silently widened.
//
// No parsing here: the reply comes back as bytes (netlink_parse.h, sock_diag_parse.h, both
// over the one message walker of netlink_walk.h, which also words kernel errors).
// The same class receives multicast notifications (netlink_cache.h), and sends single
// requests that the kernel answers with a message and an ACK (NETLINK_NETFILTER's
// NFT_MSG_GETGEN, ruleset_generation.h).

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "agent/kernel/netlink_walk.h"  // netlinkError, extAckMessage
#include "common/result.h"

struct mnl_socket;
struct nlmsghdr;

namespace meshprobe::agent {

inline constexpr int kMaxDumpAttempts = 4;  // first try + 3 retries on NLM_F_DUMP_INTR

// One netlink socket in the calling thread's network namespace (fixed at creation).
// Not thread-safe; cheap to open.
class NetlinkSocket {
 public:
  // bus: NETLINK_ROUTE, NETLINK_SOCK_DIAG or NETLINK_NETFILTER. groups: RTNLGRP_* numbers
  // to join (route only).
  static Result<NetlinkSocket> open(int bus, std::span<const unsigned> groups = {});
  NetlinkSocket(NetlinkSocket&& other) noexcept;
  NetlinkSocket& operator=(NetlinkSocket&&) = delete;
  NetlinkSocket(const NetlinkSocket&) = delete;
  ~NetlinkSocket();

  int fd() const;
  uint32_t portid() const { return portid_; }
  // The kernel accepted NETLINK_GET_STRICT_CHK (Linux >= 4.20; route bus only).
  bool strictChecking() const { return strict_; }

  // Sends `request` (its nlmsg_seq is replaced by a fresh one) and returns the messages
  // of the dump, concatenated as received, ending with NLMSG_DONE. `what` names the dump
  // in errors. After a failed dump (timeout, error) the kernel may still be mid-dump on
  // this socket and would answer EBUSY, so the socket refuses further dumps: open a new one.
  Result<std::vector<uint8_t>> dump(std::span<const uint8_t> request, std::chrono::steady_clock::time_point deadline,
                                    std::string_view what);

  // Sends `request` with NLM_F_ACK set (and a fresh nlmsg_seq) and returns the messages
  // the kernel answered with before its ACK, concatenated. For requests that are not
  // dumps; an NLMSG_ERROR is the Error. Same failure rule as dump().
  Result<std::vector<uint8_t>> request(std::span<const uint8_t> request, std::chrono::steady_clock::time_point deadline,
                                       std::string_view what);

  // Waits until the deadline for one datagram and returns its bytes (empty span: the
  // deadline passed). Error ENOBUFS: the kernel dropped messages (the socket's receive
  // buffer overran) — notifications were lost. For multicast subscribers.
  Result<std::span<const uint8_t>> receive(std::chrono::steady_clock::time_point deadline);

  // How many dumps had to be restarted because of NLM_F_DUMP_INTR.
  int interruptedRetries() const { return interrupted_retries_; }

 private:
  NetlinkSocket(mnl_socket* sock, uint32_t portid, bool strict) : sock_(sock), portid_(portid), strict_(strict) {}
  Result<std::vector<uint8_t>> dumpOnce(std::span<const uint8_t> request,
                                        std::chrono::steady_clock::time_point deadline, std::string_view what,
                                        bool& interrupted, bool until_ack = false);

  mnl_socket* sock_ = nullptr;
  uint32_t portid_ = 0;
  bool strict_ = false;
  uint32_t seq_ = 0;
  int interrupted_retries_ = 0;
  bool broken_ = false;
  std::vector<uint8_t> buf_;
};

}  // namespace meshprobe::agent
