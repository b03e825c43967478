#include "agent/probe/df_socket.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace meshprobe::agent {

int setDontFragmentProbe(int fd, bool ipv6) {
  if (ipv6) {
    // A dual-stack socket sends to v4-mapped peers by the IPv4 option: best effort.
    int mode = IP_PMTUDISC_PROBE;
    ::setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &mode, sizeof(mode));
  }
  const int level = ipv6 ? IPPROTO_IPV6 : IPPROTO_IP;
  const int option = ipv6 ? IPV6_MTU_DISCOVER : IP_MTU_DISCOVER;
  for (int mode : {ipv6 ? IPV6_PMTUDISC_PROBE : IP_PMTUDISC_PROBE, ipv6 ? IPV6_PMTUDISC_DO : IP_PMTUDISC_DO}) {
    if (::setsockopt(fd, level, option, &mode, sizeof(mode)) == 0) return 0;
  }
  return errno;
}

std::optional<uint32_t> kernelPathMtu(const std::string& address) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  bool ipv6 = false;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (::inet_pton(AF_INET, address.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(9);  // any port: connect() on UDP only looks up the route
    len = sizeof(*v4);
  } else if (::inet_pton(AF_INET6, address.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(9);
    len = sizeof(*v6);
    ipv6 = true;
  } else {
    return std::nullopt;
  }
  int fd = ::socket(ipv6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::nullopt;
  std::optional<uint32_t> mtu;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&ss), len) == 0) {
    int value = 0;
    socklen_t vlen = sizeof(value);
    if (::getsockopt(fd, ipv6 ? IPPROTO_IPV6 : IPPROTO_IP, ipv6 ? IPV6_MTU : IP_MTU, &value, &vlen) == 0 && value > 0) {
      mtu = static_cast<uint32_t>(value);
    }
  }
  ::close(fd);
  return mtu;
}

std::string dfSendErrorText(size_t ip_packet_size, int err, std::optional<uint32_t> path_mtu) {
  std::string name = err == EMSGSIZE ? "EMSGSIZE" : std::strerror(err);
  return "send " + std::to_string(ip_packet_size) + " bytes with DF: " + name + " (path MTU " +
         (path_mtu ? std::to_string(*path_mtu) : std::string("unknown")) + ")";
}

}  // namespace meshprobe::agent
