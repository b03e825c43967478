#include "agent/kernel/netlink_dump.h"

#include <libmnl/libmnl.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace meshprobe::agent {
namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr size_t kRecvBufferBytes = 64 * 1024;  // kernel dump skbs are at most ~32 KiB
constexpr int kSocketRcvBuf = 4 * 1024 * 1024;  // SO_RCVBUF(FORCE): room for a burst of replies

struct Request {
  uint16_t type;
  uint8_t family;
};

Request requestFor(DumpKind kind) {
  switch (kind) {
    case DumpKind::kLinks:
      return {RTM_GETLINK, AF_UNSPEC};
    case DumpKind::kAddresses:
      return {RTM_GETADDR, AF_UNSPEC};
    case DumpKind::kNeighbours:
      return {RTM_GETNEIGH, AF_UNSPEC};  // ARP (AF_INET) + NDP (AF_INET6)
    case DumpKind::kFdb:
      return {RTM_GETNEIGH, AF_BRIDGE};
    case DumpKind::kRoutes:
      return {RTM_GETROUTE, AF_UNSPEC};  // IPv4 + IPv6, every table
  }
  return {RTM_GETLINK, AF_UNSPEC};
}

// Builds the dump request into buf; returns its length.
size_t buildRequest(DumpKind kind, uint32_t seq, char* buf) {
  const Request req = requestFor(kind);
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = req.type;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  nlh->nlmsg_seq = seq;
  switch (kind) {
    case DumpKind::kLinks: {
      auto* ifi = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
      ifi->ifi_family = req.family;
      // Statistics and VF info are not needed: keep link messages small.
      uint32_t mask = 0;
#ifdef RTEXT_FILTER_SKIP_STATS
      mask |= RTEXT_FILTER_SKIP_STATS;
#endif
      if (mask != 0) mnl_attr_put_u32(nlh, IFLA_EXT_MASK, mask);
      break;
    }
    case DumpKind::kAddresses: {
      auto* ifa = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifaddrmsg)));
      ifa->ifa_family = req.family;
      break;
    }
    case DumpKind::kNeighbours:
    case DumpKind::kFdb: {
      auto* nd = static_cast<ndmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ndmsg)));
      nd->ndm_family = req.family;
      break;
    }
    case DumpKind::kRoutes: {
      auto* rtm = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(rtmsg)));
      rtm->rtm_family = req.family;
      break;
    }
  }
  return nlh->nlmsg_len;
}

int remainingMs(SteadyClock::time_point deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - SteadyClock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<long long>(left, 60'000));
}

}  // namespace

std::string_view dumpKindName(DumpKind kind) {
  switch (kind) {
    case DumpKind::kLinks:
      return "links";
    case DumpKind::kAddresses:
      return "addresses";
    case DumpKind::kNeighbours:
      return "neighbours";
    case DumpKind::kFdb:
      return "fdb";
    case DumpKind::kRoutes:
      return "routes";
  }
  return "?";
}

Result<RtnetlinkDumper> RtnetlinkDumper::open() {
  const int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return Error::fromErrno("socket(AF_NETLINK, NETLINK_ROUTE)", errno);
  // Large receive buffer; SO_RCVBUFFORCE needs CAP_NET_ADMIN, SO_RCVBUF is capped by rmem_max.
  if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &kSocketRcvBuf, sizeof(kSocketRcvBuf)) != 0) {
    (void)::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &kSocketRcvBuf, sizeof(kSocketRcvBuf));
  }
  const int one = 1;
  (void)::setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));  // error text from the kernel
  sockaddr_nl addr{};
  addr.nl_family = AF_NETLINK;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int err = errno;
    ::close(fd);
    return Error::fromErrno("bind(NETLINK_ROUTE)", err);
  }
  socklen_t len = sizeof(addr);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const int err = errno;
    ::close(fd);
    return Error::fromErrno("getsockname(NETLINK_ROUTE)", err);
  }
  RtnetlinkDumper d(fd, addr.nl_pid);
  d.seq_ = static_cast<uint32_t>(SteadyClock::now().time_since_epoch().count());
  return d;
}

RtnetlinkDumper::RtnetlinkDumper(RtnetlinkDumper&& other) noexcept
    : fd_(other.fd_),
      portid_(other.portid_),
      seq_(other.seq_),
      interrupted_retries_(other.interrupted_retries_),
      broken_(other.broken_),
      buf_(std::move(other.buf_)) {
  other.fd_ = -1;
}

RtnetlinkDumper::~RtnetlinkDumper() {
  if (fd_ >= 0) ::close(fd_);
}

Result<std::vector<uint8_t>> RtnetlinkDumper::dump(DumpKind kind, SteadyClock::time_point deadline) {
  if (broken_) {
    return Error{std::string(dumpKindName(kind)) + " dump: socket unusable after an earlier failed dump", EBUSY};
  }
  for (int attempt = 1;; ++attempt) {
    bool interrupted = false;
    auto bytes = dumpOnce(kind, deadline, interrupted);
    if (!bytes) {
      broken_ = true;
      return bytes;
    }
    if (!interrupted) return bytes;
    if (attempt >= kMaxDumpAttempts) {
      return Error{std::string(dumpKindName(kind)) + " dump interrupted by concurrent changes (NLM_F_DUMP_INTR) " +
                   std::to_string(attempt) + " times in a row"};
    }
    ++interrupted_retries_;
  }
}

Result<std::vector<uint8_t>> RtnetlinkDumper::dumpOnce(DumpKind kind, SteadyClock::time_point deadline,
                                                       bool& interrupted) {
  const std::string what = std::string(dumpKindName(kind)) + " dump";
  const uint32_t seq = ++seq_;
  alignas(nlmsghdr) char req[MNL_SOCKET_BUFFER_SIZE];
  const size_t req_len = buildRequest(kind, seq, req);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(fd_, req, req_len, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) < 0) {
    return Error::fromErrno(what + ": sendto", errno);
  }

  buf_.resize(kRecvBufferBytes);
  std::vector<uint8_t> out;
  for (;;) {
    const int wait_ms = remainingMs(deadline);
    if (wait_ms == 0) return Error{what + ": timed out waiting for the kernel", ETIMEDOUT};
    pollfd pfd{fd_, POLLIN, 0};
    const int pr = ::poll(&pfd, 1, wait_ms);
    if (pr < 0) {
      if (errno == EINTR) continue;
      return Error::fromErrno(what + ": poll", errno);
    }
    if (pr == 0) return Error{what + ": timed out waiting for the kernel", ETIMEDOUT};
    const ssize_t n = ::recv(fd_, buf_.data(), buf_.size(), MSG_DONTWAIT | MSG_TRUNC);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return Error::fromErrno(what + ": recv", errno);  // ENOBUFS: replies were dropped
    }
    if (static_cast<size_t>(n) > buf_.size()) {
      return Error{what + ": a reply of " + std::to_string(n) + " bytes did not fit the receive buffer"};
    }
    const auto* nlh = reinterpret_cast<const nlmsghdr*>(buf_.data());
    int left = static_cast<int>(n);
    for (; mnl_nlmsg_ok(nlh, left); nlh = mnl_nlmsg_next(nlh, &left)) {
      if (nlh->nlmsg_pid != portid_ || nlh->nlmsg_seq != seq) continue;  // stale reply of an earlier request
      if ((nlh->nlmsg_flags & NLM_F_DUMP_INTR) != 0) interrupted = true;
      if (nlh->nlmsg_type == NLMSG_ERROR) {
        int code = EPROTO;
        if (mnl_nlmsg_get_payload_len(nlh) >= sizeof(nlmsgerr)) {
          code = -static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh))->error;
        }
        if (code == 0) continue;  // an ACK, not expected for dumps but harmless
        return Error::fromErrno(what, code);
      }
      if (nlh->nlmsg_type == NLMSG_DONE) {
        if (mnl_nlmsg_get_payload_len(nlh) >= sizeof(int)) {
          int code = 0;
          std::memcpy(&code, mnl_nlmsg_get_payload(nlh), sizeof(code));
          if (code < 0) return Error::fromErrno(what + " ended with an error", -code);
        }
        return out;
      }
      if (nlh->nlmsg_type == NLMSG_NOOP || nlh->nlmsg_type == NLMSG_OVERRUN) continue;
      const auto* p = reinterpret_cast<const uint8_t*>(nlh);
      out.insert(out.end(), p, p + nlh->nlmsg_len);
      out.resize(out.size() + (NLMSG_ALIGN(nlh->nlmsg_len) - nlh->nlmsg_len), 0);
    }
    if (left != 0) return Error{what + ": malformed reply (" + std::to_string(left) + " trailing bytes)"};
  }
}

Result<RawNetlinkDumps> dumpAll(std::chrono::milliseconds timeout) {
  const auto deadline = SteadyClock::now() + timeout;
  auto dumper = RtnetlinkDumper::open();
  if (!dumper) return dumper.error();
  RawNetlinkDumps raw;
  struct Slot {
    DumpKind kind;
    std::vector<uint8_t>* bytes;
  };
  const Slot slots[] = {{DumpKind::kLinks, &raw.links},
                        {DumpKind::kAddresses, &raw.addresses},
                        {DumpKind::kNeighbours, &raw.neighbours},
                        {DumpKind::kFdb, &raw.fdb},
                        {DumpKind::kRoutes, &raw.routes}};
  for (const Slot& s : slots) {
    auto bytes = dumper->dump(s.kind, deadline);
    if (!bytes) return bytes.error();
    *s.bytes = std::move(bytes).value();
  }
  return raw;
}

namespace {

// Dumps one kind and parses it into its field of `snap`.
Status dumpAndParse(RtnetlinkDumper& dumper, DumpKind kind, SteadyClock::time_point deadline, NetlinkSnapshot& snap) {
  auto bytes = dumper.dump(kind, deadline);
  if (!bytes) return bytes.error();
  auto assign = [](auto parsed, auto& field) -> Status {
    if (!parsed) return parsed.error();
    field = std::move(parsed).value();
    return okStatus();
  };
  switch (kind) {
    case DumpKind::kLinks:
      return assign(parseLinkDump(*bytes), snap.links);
    case DumpKind::kAddresses:
      return assign(parseAddrDump(*bytes), snap.addresses);
    case DumpKind::kNeighbours:
      return assign(parseNeighDump(*bytes), snap.neighbours);
    case DumpKind::kFdb:
      return assign(parseFdbDump(*bytes), snap.fdb);
    case DumpKind::kRoutes:
      return assign(parseRouteDump(*bytes), snap.routes);
  }
  return Error{"unknown dump kind"};
}

}  // namespace

Result<NetlinkSnapshot> readSnapshot(std::chrono::milliseconds timeout) {
  const auto deadline = SteadyClock::now() + timeout;
  auto dumper = RtnetlinkDumper::open();
  if (!dumper) return dumper.error();
  NetlinkSnapshot snap;
  for (DumpKind kind :
       {DumpKind::kLinks, DumpKind::kAddresses, DumpKind::kNeighbours, DumpKind::kFdb, DumpKind::kRoutes}) {
    if (Status st = dumpAndParse(*dumper, kind, deadline, snap); !st) return st.error();
  }
  return snap;
}

}  // namespace meshprobe::agent
