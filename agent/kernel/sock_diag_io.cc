#include "agent/kernel/sock_diag_io.h"

#include <linux/netlink.h>

#include "agent/kernel/netlink_socket.h"

namespace meshprobe::agent {

Result<std::vector<uint8_t>> sockDiagDump(std::span<const uint8_t> request, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto sock = NetlinkSocket::open(NETLINK_SOCK_DIAG);
  if (!sock) return sock.error();
  return sock->dump(request, deadline, "sock_diag dump");
}

}  // namespace meshprobe::agent
