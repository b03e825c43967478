#include "agent/kernel/sock_diag.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "agent/kernel/sock_diag_io.h"
#include "agent/kernel/sock_diag_parse.h"

namespace meshprobe::agent {
namespace {

class KernelSockDiag final : public SockDiag {
 public:
  explicit KernelSockDiag(std::chrono::milliseconds timeout) : timeout_(timeout) {}

  Result<std::vector<InetSocket>> udpSockets() override { return inetBothFamilies(IPPROTO_UDP, ~0u); }
  Result<std::vector<InetSocket>> tcpListeners() override { return inetBothFamilies(IPPROTO_TCP, 1u << TCP_LISTEN); }

  Result<std::vector<UnixSocket>> unixSockets() override {
    auto dump = sockDiagDump(buildUnixDiagRequest(defaultUnixDiagShow(), 0), timeout_);
    if (!dump) return Error{"unix_diag dump: " + dump.error().message, dump.error().sys_errno};
    return parseUnixDiagDump(*dump);
  }

 private:
  // One dump per family; each dump has its own deadline of timeout_.
  Result<std::vector<InetSocket>> inetBothFamilies(uint8_t protocol, uint32_t states) {
    std::vector<InetSocket> all;
    for (uint8_t family : {uint8_t{AF_INET}, uint8_t{AF_INET6}}) {
      const char* what =
          protocol == IPPROTO_UDP ? (family == AF_INET ? "udp4" : "udp6") : (family == AF_INET ? "tcp4" : "tcp6");
      auto dump = sockDiagDump(buildInetDiagRequest(family, protocol, states, 0), timeout_);
      if (!dump)
        return Error{std::string("inet_diag ") + what + " dump: " + dump.error().message, dump.error().sys_errno};
      auto parsed = parseInetDiagDump(*dump, protocol);
      if (!parsed)
        return Error{std::string("inet_diag ") + what + ": " + parsed.error().message, parsed.error().sys_errno};
      all.insert(all.end(), parsed->begin(), parsed->end());
    }
    return all;
  }

  std::chrono::milliseconds timeout_;
};

}  // namespace

std::unique_ptr<SockDiag> makeKernelSockDiag(std::chrono::milliseconds timeout) {
  return std::make_unique<KernelSockDiag>(timeout);
}

}  // namespace meshprobe::agent
