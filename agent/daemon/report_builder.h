#pragma once
// Conversions from the agent's own values (check results, findings, probe stats, the
// VXLAN device facts) to meshprobe.v1 messages.

#include <chrono>
#include <string>
#include <vector>

#include "agent/checks/check.h"
#include "agent/checks/vxlan_facts.h"
#include "agent/config.h"
#include "agent/kernel/netlink_types.h"
#include "agent/probe/prober.h"
#include "meshprobe/v1/collector.pb.h"

namespace meshprobe::agent {

meshprobe::v1::Layer toProto(Layer layer);
meshprobe::v1::Finding toProto(const Finding& f);
meshprobe::v1::CheckResult toProto(const CheckResult& c);
meshprobe::v1::ProbeResult toProto(const TargetStats& s);

// Hello from config + the node's VXLAN device as rtnetlink shows it (empty overlay facts
// when there is no device: the aggregator then sees a node without an overlay).
meshprobe::v1::Hello buildHello(const AgentConfig& config, const NetlinkSnapshot* snapshot,
                                const std::string& flannel_subnet);

// Probe targets for a peer list: every other member's node IP (UNDERLAY) and VXLAN
// device address (OVERLAY). The list includes the receiver; it is skipped by name.
std::vector<ProbeTarget> targetsFromPeers(const meshprobe::v1::PeerList& peers, const std::string& self);

// What each other member's overlay entries on this node must be (for vxlan_fdb). Members
// without a VXLAN device (no overlay facts) are left out.
std::vector<PeerExpectation> expectationsFromPeers(const meshprobe::v1::PeerList& peers, const std::string& self);

// Standalone mode: --peers IPs probed on the underlay, named by their address.
std::vector<ProbeTarget> targetsFromStaticPeers(const std::vector<std::string>& peers);

}  // namespace meshprobe::agent
