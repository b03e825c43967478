#pragma once
#include "agent/checks/check.h"
#include "agent/checks/peer_directory.h"
#include "agent/config.h"
#include "agent/kernel/netlink_reader.h"

namespace meshprobe::agent {

class VxlanFdbCheck final : public Check {
 public:
  // With `peers`, every peer's route, neighbour and FDB entry is also compared with the
  // peer's own facts from membership (missing / stale MAC / stale dst / stale route).
  VxlanFdbCheck(const AgentConfig& config, NetlinkReader& netlink, const PeerDirectory* peers = nullptr);
  std::string_view name() const override { return "vxlan_fdb"; }
  CheckResult run() override;

 private:
  const AgentConfig& config_;
  NetlinkReader& netlink_;
  const PeerDirectory* peers_;
};

}  // namespace meshprobe::agent
