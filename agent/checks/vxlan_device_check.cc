#include "agent/checks/vxlan_device_check.h"

namespace meshprobe::agent {

VxlanDeviceCheck::VxlanDeviceCheck(const AgentConfig& config, NetlinkReader& netlink) : config_(config), netlink_(netlink) {}

CheckResult VxlanDeviceCheck::run() { return result(CheckStatus::kSkip, "not implemented yet"); }

}  // namespace meshprobe::agent
