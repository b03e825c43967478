#pragma once
// Loopback helpers for the probe tests: a plain UDP socket with deadline-bounded receive,
// a TCP listener, and polling with a deadline (no sleeps as synchronization).

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <thread>

namespace meshprobe::agent::testing {

inline sockaddr_in loopback(uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

// Polls `cond` every few milliseconds until it holds or `deadline` passes.
inline bool pollUntil(const std::function<bool()>& cond, std::chrono::milliseconds deadline = std::chrono::seconds(5)) {
  auto end = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // poll interval, bounded by the deadline
  }
  return cond();
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
