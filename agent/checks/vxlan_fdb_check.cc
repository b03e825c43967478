#include "agent/checks/vxlan_fdb_check.h"

namespace meshprobe::agent {

VxlanFdbCheck::VxlanFdbCheck(const AgentConfig& config, NetlinkReader& netlink) : config_(config), netlink_(netlink) {}

CheckResult VxlanFdbCheck::run() { return result(CheckStatus::kSkip, "not implemented yet"); }

}  // namespace meshprobe::agent
