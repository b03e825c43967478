#include "agent/kernel/netlink_socket.h"

#include <libmnl/libmnl.h>
#include <linux/netlink.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>

#include "agent/kernel/netlink_walk.h"

namespace meshprobe::agent {
namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr size_t kRecvBufferBytes = 64 * 1024;  // dump skbs are at most ~32 KiB
constexpr int kSocketRcvBuf = 4 * 1024 * 1024;  // SO_RCVBUF(FORCE): room for a burst of replies/events

int remainingMs(SteadyClock::time_point deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - SteadyClock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<long long>(left, 60'000));
}

// What mnl_cb_run's callbacks collect for one dump.
struct DumpContext {
  std::vector<uint8_t>* out = nullptr;
  std::string what;
  std::optional<Error> error;
  bool done = false;
  bool until_ack = false;  // a request, not a dump: the ACK ends it
};

void append(std::vector<uint8_t>& out, const nlmsghdr* nlh) {
  const auto* p = reinterpret_cast<const uint8_t*>(nlh);
  out.insert(out.end(), p, p + nlh->nlmsg_len);
  out.resize(out.size() + (NLMSG_ALIGN(nlh->nlmsg_len) - nlh->nlmsg_len), 0);
}

int onData(const nlmsghdr* nlh, void* data) {
  append(*static_cast<DumpContext*>(data)->out, nlh);
  return MNL_CB_OK;
}

int onNoop(const nlmsghdr*, void*) { return MNL_CB_OK; }

int onError(const nlmsghdr* nlh, void* data) {
  auto* ctx = static_cast<DumpContext*>(data);
  if (netlinkStatus(nlh) == 0) {  // an ACK: ends a request; not expected for a dump, harmless
    if (!ctx->until_ack) return MNL_CB_OK;
    ctx->done = true;
    return MNL_CB_STOP;
  }
  ctx->error = netlinkError(nlh, ctx->what);
  errno = ctx->error->sys_errno;
  return MNL_CB_ERROR;
}

int onDone(const nlmsghdr* nlh, void* data) {
  auto* ctx = static_cast<DumpContext*>(data);
  if (netlinkStatus(nlh) < 0) {
    ctx->error = netlinkError(nlh, ctx->what + " ended with an error");
    errno = ctx->error->sys_errno;
    return MNL_CB_ERROR;
  }
  append(*ctx->out, nlh);
  ctx->done = true;
  return MNL_CB_STOP;
}

int onOverrun(const nlmsghdr*, void* data) {
  auto* ctx = static_cast<DumpContext*>(data);
  ctx->error = Error{ctx->what + ": reply overrun (NLMSG_OVERRUN)", EOVERFLOW};
  errno = EOVERFLOW;
  return MNL_CB_ERROR;
}

// True when the datagram holds the end (NLMSG_DONE / NLMSG_ERROR) of dump `seq`.
bool endsDump(std::span<const uint8_t> datagram, uint32_t seq) {
  const auto* nlh = reinterpret_cast<const nlmsghdr*>(datagram.data());
  int left = static_cast<int>(datagram.size());
  for (; netlinkMessageFits(nlh, left); nlh = mnl_nlmsg_next(nlh, &left)) {
    if (nlh->nlmsg_seq == seq && (nlh->nlmsg_type == NLMSG_DONE || nlh->nlmsg_type == NLMSG_ERROR)) return true;
  }
  return false;
}

}  // namespace

Result<NetlinkSocket> NetlinkSocket::open(int bus, std::span<const unsigned> groups) {
  mnl_socket* sock = mnl_socket_open2(bus, SOCK_CLOEXEC | SOCK_NONBLOCK);
  const char* bus_name = bus == NETLINK_ROUTE       ? "NETLINK_ROUTE"
                         : bus == NETLINK_SOCK_DIAG ? "NETLINK_SOCK_DIAG"
                         : bus == NETLINK_NETFILTER ? "NETLINK_NETFILTER"
                                                    : "netlink";
  if (sock == nullptr) return Error::fromErrno(std::string("socket(") + bus_name + ")", errno);
  const int fd = mnl_socket_get_fd(sock);
  // Large receive buffer; SO_RCVBUFFORCE needs CAP_NET_ADMIN, SO_RCVBUF is capped by rmem_max.
  if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &kSocketRcvBuf, sizeof(kSocketRcvBuf)) != 0) {
    (void)::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &kSocketRcvBuf, sizeof(kSocketRcvBuf));
  }
  int one = 1;
  (void)mnl_socket_setsockopt(sock, NETLINK_EXT_ACK, &one, sizeof(one));  // error text from the kernel
  bool strict = false;
  if (bus == NETLINK_ROUTE) strict = mnl_socket_setsockopt(sock, NETLINK_GET_STRICT_CHK, &one, sizeof(one)) == 0;
  if (mnl_socket_bind(sock, 0, MNL_SOCKET_AUTOPID) < 0) {
    const int err = errno;
    mnl_socket_close(sock);
    return Error::fromErrno(std::string("bind(") + bus_name + ")", err);
  }
  for (unsigned group : groups) {
    if (mnl_socket_setsockopt(sock, NETLINK_ADD_MEMBERSHIP, &group, sizeof(group)) != 0) {
      const int err = errno;
      mnl_socket_close(sock);
      return Error::fromErrno("join netlink group " + std::to_string(group), err);
    }
  }
  NetlinkSocket s(sock, mnl_socket_get_portid(sock), strict);
  s.seq_ = static_cast<uint32_t>(SteadyClock::now().time_since_epoch().count());
  return s;
}

NetlinkSocket::NetlinkSocket(NetlinkSocket&& other) noexcept
    : sock_(other.sock_),
      portid_(other.portid_),
      strict_(other.strict_),
      seq_(other.seq_),
      interrupted_retries_(other.interrupted_retries_),
      broken_(other.broken_),
      buf_(std::move(other.buf_)) {
  other.sock_ = nullptr;
}

NetlinkSocket::~NetlinkSocket() {
  if (sock_ != nullptr) mnl_socket_close(sock_);
}

int NetlinkSocket::fd() const { return mnl_socket_get_fd(sock_); }

Result<std::vector<uint8_t>> NetlinkSocket::dump(std::span<const uint8_t> request, SteadyClock::time_point deadline,
                                                 std::string_view what) {
  if (broken_) return Error{std::string(what) + ": socket unusable after an earlier failed dump", EBUSY};
  if (request.size() < sizeof(nlmsghdr)) return Error{std::string(what) + ": request shorter than a netlink header"};
  for (int attempt = 1;; ++attempt) {
    bool interrupted = false;
    auto bytes = dumpOnce(request, deadline, what, interrupted);
    if (!bytes) {
      broken_ = true;
      return bytes;
    }
    if (!interrupted) return bytes;
    if (attempt >= kMaxDumpAttempts) {
      return Error{std::string(what) + " interrupted by concurrent changes (NLM_F_DUMP_INTR) " +
                   std::to_string(attempt) + " times in a row"};
    }
    ++interrupted_retries_;
  }
}

Result<std::vector<uint8_t>> NetlinkSocket::request(std::span<const uint8_t> request,
                                                    SteadyClock::time_point deadline, std::string_view what) {
  if (broken_) return Error{std::string(what) + ": socket unusable after an earlier failed request", EBUSY};
  if (request.size() < sizeof(nlmsghdr)) return Error{std::string(what) + ": request shorter than a netlink header"};
  std::vector<uint8_t> req(request.begin(), request.end());
  nlmsghdr hdr;
  std::memcpy(&hdr, req.data(), sizeof(hdr));
  hdr.nlmsg_flags |= NLM_F_ACK;
  std::memcpy(req.data(), &hdr, sizeof(hdr));
  bool interrupted = false;
  auto bytes = dumpOnce(req, deadline, what, interrupted, /*until_ack=*/true);
  if (!bytes) broken_ = true;
  return bytes;
}

Result<std::vector<uint8_t>> NetlinkSocket::dumpOnce(std::span<const uint8_t> request,
                                                     SteadyClock::time_point deadline, std::string_view what_view,
                                                     bool& interrupted, bool until_ack) {
  const std::string what(what_view);
  const uint32_t seq = ++seq_;
  std::vector<uint8_t> req(request.begin(), request.end());
  nlmsghdr hdr;
  std::memcpy(&hdr, req.data(), sizeof(hdr));
  hdr.nlmsg_seq = seq;
  std::memcpy(req.data(), &hdr, sizeof(hdr));
  if (mnl_socket_sendto(sock_, req.data(), req.size()) < 0) return Error::fromErrno(what + ": sendto", errno);

  std::vector<uint8_t> out;
  DumpContext ctx;
  ctx.out = &out;
  ctx.what = what;
  ctx.until_ack = until_ack;
  mnl_cb_t ctl[NLMSG_MIN_TYPE] = {};
  ctl[NLMSG_NOOP] = onNoop;
  ctl[NLMSG_ERROR] = onError;
  ctl[NLMSG_DONE] = onDone;
  ctl[NLMSG_OVERRUN] = onOverrun;
  for (;;) {
    if (remainingMs(deadline) == 0) return Error{what + ": timed out waiting for the kernel", ETIMEDOUT};
    auto datagram = receive(deadline);
    if (!datagram) return Error{what + ": " + datagram.error().message, datagram.error().sys_errno};
    if (datagram->empty()) return Error{what + ": timed out waiting for the kernel", ETIMEDOUT};
    if (interrupted) {  // draining an interrupted dump to its end before retrying
      if (endsDump(*datagram, seq)) return out;
      continue;
    }
    const int rc = mnl_cb_run2(datagram->data(), datagram->size(), seq, portid_, onData, &ctx, ctl, NLMSG_MIN_TYPE);
    if (rc == MNL_CB_STOP && ctx.done) return out;
    if (rc >= MNL_CB_OK) continue;  // more datagrams to come
    if (ctx.error) return *ctx.error;
    if (errno == EINTR) {  // NLM_F_DUMP_INTR: the table changed mid-dump; finish reading, then retry
      interrupted = true;
      out.clear();
      if (endsDump(*datagram, seq)) return out;
      continue;
    }
    if (errno == ESRCH) return Error{what + ": reply from another netlink port", ESRCH};
    if (errno == EPROTO) return Error{what + ": reply to another request (sequence mismatch)", EPROTO};
    return Error::fromErrno(what + ": malformed reply", errno);
  }
}

Result<std::span<const uint8_t>> NetlinkSocket::receive(SteadyClock::time_point deadline) {
  buf_.resize(kRecvBufferBytes);
  const int fd = mnl_socket_get_fd(sock_);
  for (;;) {
    const int wait_ms = remainingMs(deadline);
    pollfd pfd{fd, POLLIN, 0};
    const int pr = ::poll(&pfd, 1, wait_ms);
    if (pr < 0) {
      if (errno == EINTR) continue;
      return Error::fromErrno("poll", errno);
    }
    if (pr == 0) return std::span<const uint8_t>{};
    const ssize_t n = ::recv(fd, buf_.data(), buf_.size(), MSG_DONTWAIT | MSG_TRUNC);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) {
        if (wait_ms == 0) return std::span<const uint8_t>{};
        continue;
      }
      if (errno == ENOBUFS) return Error{"recv: the kernel dropped messages (ENOBUFS, receive buffer overrun)", ENOBUFS};
      return Error::fromErrno("recv", errno);
    }
    if (static_cast<size_t>(n) > buf_.size()) {
      return Error{"a datagram of " + std::to_string(n) + " bytes did not fit the receive buffer", EMSGSIZE};
    }
    return std::span<const uint8_t>(buf_.data(), static_cast<size_t>(n));
  }
}

}  // namespace meshprobe::agent
