#include "agent/checks/registry.h"

#include "agent/checks/ambient_redirection_check.h"
#include "agent/checks/firewall_check.h"
#include "agent/checks/istiod_check.h"
#include "agent/checks/vxlan_device_check.h"
#include "agent/checks/vxlan_fdb_check.h"
#include "agent/checks/vxlan_socket_check.h"
#include "agent/checks/ztunnel_check.h"

namespace meshprobe::agent {

std::vector<CheckPtr> makeChecks(const AgentConfig& config, const AgentDeps& deps) {
  std::vector<CheckPtr> checks;
  checks.push_back(std::make_unique<VxlanDeviceCheck>(config, deps.netlink));
  checks.push_back(std::make_unique<VxlanSocketCheck>(config, deps.netlink, deps.sock_diag));
  checks.push_back(std::make_unique<VxlanFdbCheck>(config, deps.netlink, deps.peers));
  checks.push_back(std::make_unique<FirewallCheck>(config, deps.netlink, deps.commands, deps.rulesets, &deps.clock));
  checks.push_back(std::make_unique<IstiodCheck>(config));
  checks.push_back(std::make_unique<ZtunnelCheck>(config, deps.sock_diag));
  checks.push_back(std::make_unique<AmbientRedirectionCheck>(config, deps.commands, deps.sock_diag, deps.rulesets));
  return checks;
}

}  // namespace meshprobe::agent
