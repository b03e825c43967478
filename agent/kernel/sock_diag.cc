#include "agent/kernel/sock_diag.h"

namespace meshprobe::agent {
namespace {
class Unimplemented final : public SockDiag {
 public:
  Result<std::vector<InetSocket>> udpSockets() override { return Error{"sock_diag not implemented"}; }
  Result<std::vector<InetSocket>> tcpListeners() override { return Error{"sock_diag not implemented"}; }
  Result<std::vector<UnixSocket>> unixSockets() override { return Error{"sock_diag not implemented"}; }
};
}  // namespace

std::unique_ptr<SockDiag> makeKernelSockDiag(std::chrono::milliseconds) { return std::make_unique<Unimplemented>(); }

}  // namespace meshprobe::agent
