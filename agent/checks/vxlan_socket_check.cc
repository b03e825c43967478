#include "agent/checks/vxlan_socket_check.h"

namespace meshprobe::agent {

VxlanSocketCheck::VxlanSocketCheck(const AgentConfig& config, NetlinkReader& netlink, SockDiag& sock_diag) : config_(config), netlink_(netlink), sock_diag_(sock_diag) {}

CheckResult VxlanSocketCheck::run() { return result(CheckStatus::kSkip, "not implemented yet"); }

}  // namespace meshprobe::agent
