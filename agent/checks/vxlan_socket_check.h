#pragma once
#include "agent/kernel/netlink_reader.h"
#include "agent/kernel/sock_diag.h"
#include "agent/checks/check.h"
#include "agent/config.h"

namespace meshprobe::agent {

class VxlanSocketCheck final : public Check {
 public:
  VxlanSocketCheck(const AgentConfig& config, NetlinkReader& netlink, SockDiag& sock_diag);
  std::string_view name() const override { return "vxlan_socket"; }
  CheckResult run() override;

 private:
  const AgentConfig& config_;
  NetlinkReader& netlink_;
  SockDiag& sock_diag_;
};

}  // namespace meshprobe::agent
