#pragma once
#include "agent/checks/check.h"
#include "agent/config.h"
#include "agent/kernel/netlink_reader.h"

namespace meshprobe::agent {

class VxlanDeviceCheck final : public Check {
 public:
  VxlanDeviceCheck(const AgentConfig& config, NetlinkReader& netlink);
  std::string_view name() const override { return "vxlan_device"; }
  CheckResult run() override;

 private:
  const AgentConfig& config_;
  NetlinkReader& netlink_;
};

}  // namespace meshprobe::agent
