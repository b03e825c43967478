#include "agent/checks/ztunnel_check.h"

namespace meshprobe::agent {

ZtunnelCheck::ZtunnelCheck(const AgentConfig& config, SockDiag& sock_diag) : config_(config), sock_diag_(sock_diag) {}

CheckResult ZtunnelCheck::run() { return result(CheckStatus::kSkip, "not implemented yet"); }

}  // namespace meshprobe::agent
