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
meshprobe::v1::ProbeFailure toProto(ProbeFailure failure);
meshprobe::v1::Finding toProto(const Finding& f);
meshprobe::v1::CheckResult toProto(const CheckResult& c);
// OVERLAY targets with path-MTU probing also fill path_mtu (its error only while failing).
// While failing: `error` (text, as older aggregators read it) and `failure` /
// `tcp_failure` (the same facts as reasons).
meshprobe::v1::ProbeResult toProto(const TargetStats& s);

meshprobe::v1::PodNetnsCapture::State toProto(PodState state);
meshprobe::v1::PodNetnsCaptures toProto(const PodCaptures& captures);
// Report.pod_netns from the check results the report carries: set from the one with
// pod_captures (ambient_redirection), left unset when none has them (unknown to readers).
void setPodNetns(meshprobe::v1::Report& report, const std::vector<CheckResult>& checks);

// The report's coverage window: every pair is probed at least once per coverage_rounds ×
// interval (coverage_period), and the probe interval itself.
void setCoverage(meshprobe::v1::Report& report, const ProbeRotationStatus& rotation, Duration interval);

// Hello from config + the node's VXLAN device as rtnetlink shows it (empty overlay facts
// when there is no device: the aggregator then sees a node without an overlay). The facts
// are in Hello.identity and, for older aggregators, in the flat fields.
meshprobe::v1::Hello buildHello(const AgentConfig& config, const NetlinkSnapshot* snapshot,
                                const std::string& flannel_subnet);

// A peer's identity: Peer.identity, or the flat fields from an aggregator that predates it.
meshprobe::v1::NodeIdentity identityOf(const meshprobe::v1::Peer& peer);

// Probe targets for a peer list: every other member's node IP (UNDERLAY) and VXLAN
// device address (OVERLAY). The list includes the receiver; it is skipped by name.
// OVERLAY targets get DF path-MTU probes at the overlay MTU (path_mtu_size): the smaller
// of `local_vxlan_mtu` (this node's VXLAN device MTU, the Hello's vxlan_mtu) and the
// peer's vxlan_mtu. An unknown (0) side is left out of the min; both unknown: no
// path-MTU probes for that peer.
std::vector<ProbeTarget> targetsFromPeers(const meshprobe::v1::PeerList& peers, const std::string& self,
                                          uint32_t local_vxlan_mtu = 0);
// The same of the peers' facts the caller keeps (PeerSet::view): a member list is not
// copied to be read.
std::vector<ProbeTarget> targetsFromPeers(const std::vector<const meshprobe::v1::NodeIdentity*>& peers,
                                          const std::string& self, uint32_t local_vxlan_mtu = 0);

// The overlay MTU of a pair: min of the two device MTUs, ignoring an unknown (0) one.
uint32_t overlayPathMtu(uint32_t local_vxlan_mtu, uint32_t peer_vxlan_mtu);

// What each other member's overlay entries on this node must be (for vxlan_fdb). Members
// without a VXLAN device (no overlay facts) are left out.
std::vector<PeerExpectation> expectationsFromPeers(const meshprobe::v1::PeerList& peers, const std::string& self);
std::vector<PeerExpectation> expectationsFromPeers(const std::vector<const meshprobe::v1::NodeIdentity*>& peers,
                                                   const std::string& self);

// Standalone mode: --peers IPs probed on the underlay, named by their address.
std::vector<ProbeTarget> targetsFromStaticPeers(const std::vector<std::string>& peers);

}  // namespace meshprobe::agent
