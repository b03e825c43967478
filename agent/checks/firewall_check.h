#pragma once
#include "agent/kernel/command_runner.h"
#include "agent/kernel/netlink_reader.h"
#include "agent/checks/check.h"
#include "agent/config.h"

namespace meshprobe::agent {

class FirewallCheck final : public Check {
 public:
  FirewallCheck(const AgentConfig& config, NetlinkReader& netlink, CommandRunner& commands);
  std::string_view name() const override { return "firewall"; }
  CheckResult run() override;

 private:
  const AgentConfig& config_;
  NetlinkReader& netlink_;
  CommandRunner& commands_;
};

}  // namespace meshprobe::agent
