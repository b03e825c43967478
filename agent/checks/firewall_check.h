#pragma once
// firewall: reads iptables (the backend kubelet uses, and the other one when it holds
// rules) and native nftables, and reports every rule that drops or rejects UDP on the
// VXLAN port (the device's own dstport) or TCP to istiod (--istiod port).
#include "agent/checks/check.h"
#include "agent/config.h"
#include "agent/kernel/command_runner.h"
#include "agent/kernel/netlink_reader.h"

namespace meshprobe::agent {

class FirewallCheck final : public Check {
 public:
  FirewallCheck(const AgentConfig& config, NetlinkReader& netlink, CommandRunner& commands);
  std::string_view name() const override { return "firewall"; }
  CheckResult run() override;

 private:
  CheckResult runChecked();

  const AgentConfig& config_;
  NetlinkReader& netlink_;
  CommandRunner& commands_;
};

}  // namespace meshprobe::agent
