#include "agent/checks/firewall_check.h"

namespace meshprobe::agent {

FirewallCheck::FirewallCheck(const AgentConfig& config, NetlinkReader& netlink, CommandRunner& commands) : config_(config), netlink_(netlink), commands_(commands) {}

CheckResult FirewallCheck::run() { return result(CheckStatus::kSkip, "not implemented yet"); }

}  // namespace meshprobe::agent
