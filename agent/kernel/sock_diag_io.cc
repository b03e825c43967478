#include "agent/kernel/sock_diag_io.h"

#include <libmnl/libmnl.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>

#include "agent/kernel/sock_diag_parse.h"

namespace meshprobe::agent {
namespace {

struct MnlSocketCloser {
  void operator()(mnl_socket* s) const { mnl_socket_close(s); }
};
using MnlSocketPtr = std::unique_ptr<mnl_socket, MnlSocketCloser>;

uint32_t nextSeq() {
  static std::atomic<uint32_t> seq{static_cast<uint32_t>(std::chrono::steady_clock::now().time_since_epoch().count())};
  uint32_t s = seq.fetch_add(1);
  return s == 0 ? seq.fetch_add(1) : s;
}

}  // namespace

Result<std::vector<uint8_t>> sockDiagDump(std::span<const uint8_t> request, std::chrono::milliseconds timeout) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + timeout;
  if (request.size() < sizeof(nlmsghdr)) return Error{"sock_diag request shorter than a netlink header"};

  MnlSocketPtr sock(mnl_socket_open2(NETLINK_SOCK_DIAG, SOCK_CLOEXEC | SOCK_NONBLOCK));
  if (!sock) return Error::fromErrno("socket(NETLINK_SOCK_DIAG)", errno);
  if (mnl_socket_bind(sock.get(), 0, MNL_SOCKET_AUTOPID) < 0) return Error::fromErrno("bind(NETLINK_SOCK_DIAG)", errno);
  const uint32_t portid = mnl_socket_get_portid(sock.get());
  const uint32_t seq = nextSeq();

  std::vector<uint8_t> req(request.begin(), request.end());
  nlmsghdr hdr;
  std::memcpy(&hdr, req.data(), sizeof(hdr));
  hdr.nlmsg_seq = seq;
  std::memcpy(req.data(), &hdr, sizeof(hdr));
  if (mnl_socket_sendto(sock.get(), req.data(), req.size()) < 0)
    return Error::fromErrno("send sock_diag request", errno);

  // Dump datagrams are at most a page or so; 64 KiB covers any kernel's choice.
  std::vector<uint8_t> buf(64 * 1024);
  std::vector<uint8_t> dump;
  const int fd = mnl_socket_get_fd(sock.get());
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      return Error{"sock_diag dump timed out after " + std::to_string(timeout.count()) + "ms", ETIMEDOUT};
    }
    pollfd pfd{fd, POLLIN, 0};
    const int ready = poll(&pfd, 1, static_cast<int>(left.count()));
    if (ready < 0) {
      if (errno == EINTR) continue;
      return Error::fromErrno("poll(NETLINK_SOCK_DIAG)", errno);
    }
    if (ready == 0) continue;  // the deadline check above ends the loop
    const ssize_t n = recv(fd, buf.data(), buf.size(), MSG_DONTWAIT | MSG_TRUNC);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      if (errno == ENOBUFS) return Error{"sock_diag dump lost replies (ENOBUFS): receive buffer overrun", ENOBUFS};
      return Error::fromErrno("recv(NETLINK_SOCK_DIAG)", errno);
    }
    if (static_cast<size_t>(n) > buf.size()) {
      return Error{"sock_diag reply datagram of " + std::to_string(n) + " bytes exceeds the receive buffer"};
    }
    auto progress = collectDumpChunk(std::span<const uint8_t>(buf.data(), static_cast<size_t>(n)), seq, portid, dump);
    if (!progress) return progress.error();
    if (progress->done) return dump;
  }
}

}  // namespace meshprobe::agent
