#pragma once
// vxlan_socket: a UDP socket is bound on the VXLAN device's own dstport (IPv4 and IPv6
// listed separately), read over NETLINK_SOCK_DIAG. The port comes from the device
// (rtnetlink), never assumed; --vxlan-port is an expectation compared against it.

#include "agent/checks/check.h"
#include "agent/config.h"
#include "agent/kernel/netlink_reader.h"
#include "agent/kernel/sock_diag.h"

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
