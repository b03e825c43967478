#pragma once
// Loopback helpers for the probe tests: a plain UDP socket with deadline-bounded receive,
// a TCP listener, and descriptions of the counters for polling with a deadline.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "agent/probe/prober.h"
#include "agent/probe/responder.h"
#include "tests/support/eventually.h"

namespace meshprobe::agent::testing {

inline sockaddr_in loopback(uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

// Waiting for the prober's and responder's I/O threads: tests/support/eventually.h, with
// the counters below as the last observed state in a failure.
using meshprobe::test::eventually;

inline std::string describe(const ResponderCounters& c) {
  std::ostringstream o;
  o << "responder{received=" << c.received << " answered=" << c.answered << " dropped_invalid=" << c.dropped_invalid
    << " dropped_unauthenticated=" << c.dropped_unauthenticated << " dropped_replayed=" << c.dropped_replayed
    << " dropped_rate_limited=" << c.dropped_rate_limited
    << " send_errors=" << c.send_errors << " tcp_accepted=" << c.tcp_accepted << "}";
  return o.str();
}

inline std::string describe(const ProberCounters& c) {
  std::ostringstream o;
  o << "prober{sent=" << c.sent << " replies=" << c.replies << " timeouts=" << c.timeouts
    << " dropped_invalid=" << c.dropped_invalid << " dropped_late=" << c.dropped_late
    << " dropped_duplicate=" << c.dropped_duplicate << " dropped_unknown=" << c.dropped_unknown
    << " tcp_checks=" << c.tcp_checks << " path_mtu_sent=" << c.path_mtu_sent
    << " path_mtu_replies=" << c.path_mtu_replies << "}";
  return o.str();
}

inline std::string describe(const std::vector<TargetStats>& stats) {
  std::ostringstream o;
  o << stats.size() << " targets";
  for (const auto& s : stats) {
    o << "\n  {sent=" << s.sent << " received=" << s.received << " consecutive_failures=" << s.consecutive_failures
      << " last_error='" << s.last_error
      << "' tcp_reachable=" << (s.tcp_reachable ? (*s.tcp_reachable ? "true" : "false") : "unset")
      << " path_mtu{sent=" << s.path_mtu.sent << " received=" << s.path_mtu.received
      << " consecutive_failures=" << s.path_mtu.consecutive_failures << " last_error='" << s.path_mtu.last_error
      << "'}}";
  }
  return o.str();
}

class UdpSocket {
 public:
  UdpSocket() {
    fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in a = loopback(0);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  }
  ~UdpSocket() {
    if (fd_ >= 0) ::close(fd_);
  }
  UdpSocket(const UdpSocket&) = delete;
  UdpSocket& operator=(const UdpSocket&) = delete;

  uint16_t port() const {
    sockaddr_in a{};
    socklen_t len = sizeof(a);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    return ntohs(a.sin_port);
  }
  bool sendTo(const std::string& bytes, uint16_t port) {
    sockaddr_in a = loopback(port);
    return ::sendto(fd_, bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof(a)) ==
           static_cast<ssize_t>(bytes.size());
  }
  bool sendTo(const std::string& bytes, const sockaddr_in& to) {
    return ::sendto(fd_, bytes.data(), bytes.size(), 0, reinterpret_cast<const sockaddr*>(&to), sizeof(to)) ==
           static_cast<ssize_t>(bytes.size());
  }
  // One datagram within `timeout`, or nullopt.
  std::optional<std::string> receive(std::chrono::milliseconds timeout, sockaddr_in* from = nullptr) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return std::nullopt;
    std::string buf(65536, '\0');
    sockaddr_in src{};
    socklen_t len = sizeof(src);
    ssize_t n = ::recvfrom(fd_, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&src), &len);
    if (n < 0) return std::nullopt;
    if (from != nullptr) *from = src;
    buf.resize(static_cast<size_t>(n));
    return buf;
  }

 private:
  int fd_ = -1;
};

class TcpListener {
 public:
  TcpListener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a = loopback(0);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    ::listen(fd_, 16);
  }
  ~TcpListener() { close(); }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  uint16_t port() const {
    sockaddr_in a{};
    socklen_t len = sizeof(a);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    return ntohs(a.sin_port);
  }

 private:
  int fd_ = -1;
};

// A port with nothing listening on UDP or TCP at the time of the call.
inline uint16_t unusedPort() {
  TcpListener t;
  uint16_t p = t.port();
  t.close();
  return p;
}

}  // namespace meshprobe::agent::testing
