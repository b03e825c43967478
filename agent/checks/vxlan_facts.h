#pragma once
// Which device is "the VXLAN device" and the facts the other checks key on (its own
// dstport, VNI, address), flannel's subnet.env, and the per-peer overlay state flannel
// programs on the device (route -> neighbour -> FDB). Pure functions over a snapshot,
// except readFlannelSubnet() which reads one file.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/config.h"
#include "agent/kernel/netlink_types.h"
#include "common/result.h"

namespace meshprobe::agent {

inline constexpr const char* kDefaultVxlanDevice = "flannel.1";

struct VxlanDeviceChoice {
  const LinkInfo* link = nullptr;  // nullptr: not found (reason says why)
  std::string wanted;              // the name we looked for
  std::string reason;              // why this device / why none
};

// --vxlan-device if set; else flannel.1 if present; else the only VXLAN device if
// exactly one exists; else none.
VxlanDeviceChoice chooseVxlanDevice(const NetlinkSnapshot& snap, const AgentConfig& config);

// The IPv4 address on the device (flannel: the pod subnet's .0/32), empty when none.
std::string deviceIPv4(const NetlinkSnapshot& snap, int ifindex);

// The device VXLAN sends through: IFLA_VXLAN_LINK, else the link holding the local IP.
const LinkInfo* vxlanUnderlay(const NetlinkSnapshot& snap, const LinkInfo& device);

// Bytes VXLAN adds per packet, as flannel computes the device MTU: 50 over an IPv4
// underlay, 70 over IPv6 (outer IP + UDP + VXLAN + inner Ethernet).
uint32_t vxlanOverhead(const VxlanInfo& vxlan);

// ---- flannel's /run/flannel/subnet.env ----------------------------------------------

struct FlannelSubnetEnv {
  std::string network;          // FLANNEL_NETWORK, "10.244.0.0/16"
  std::string subnet;           // FLANNEL_SUBNET as written, "10.244.1.1/24"
  std::optional<uint32_t> mtu;  // FLANNEL_MTU
  std::optional<bool> ipmasq;   // FLANNEL_IPMASQ
};

// KEY=VALUE lines; blank lines and # comments ignored. Error when FLANNEL_SUBNET is
// missing or malformed, or FLANNEL_MTU is not a number.
Result<FlannelSubnetEnv> parseFlannelSubnetEnv(std::string_view text);
// Reads and parses the file; a missing file is an Error with sys_errno == ENOENT.
Result<FlannelSubnetEnv> readFlannelSubnet(const std::string& path);

// "10.244.1.1/24" -> "10.244.1.0" (the network address); empty when not an IPv4 CIDR.
std::string ipv4NetworkAddress(std::string_view cidr);

// ---- per-peer overlay state (vxlan_fdb) ----------------------------------------------

// One remote subnet as flannel programs it on the VXLAN device:
//   route <pod CIDR> via <peer .0> dev flannel.1 onlink
//   -> neighbour <peer .0> lladdr <peer VTEP MAC> PERMANENT
//   -> FDB <peer VTEP MAC> dst <peer node IP> self permanent
// Groups without a route hold leftovers: permanent neighbour or FDB entries on the
// device that no route uses (typically what a removed or re-created peer left behind).
struct OverlayPeerGroup {
  std::string key;  // route dst CIDR; leftovers: neighbour IP or FDB MAC
  std::optional<RouteEntry> route;
  std::optional<NeighbourEntry> neighbour;
  std::vector<FdbEntry> fdb;          // entries for the neighbour's MAC (more than one: several dsts)
  std::vector<std::string> problems;  // empty: a complete, permanent triple

  bool isPeer() const { return route.has_value(); }
  bool complete() const { return problems.empty(); }
  std::string vtepMac() const;  // neighbour lladdr, else the FDB MAC
  std::string vtepDst() const;  // first usable FDB dst, empty when none
};

// Routes (main table, unicast, with a gateway) whose oif is the device, each with its
// neighbour and FDB entries, followed by leftover groups. Pure and deterministic: peers
// in route order, then leftover neighbours, then leftover FDB entries.
std::vector<OverlayPeerGroup> groupOverlayPeers(const NetlinkSnapshot& snap, int device_ifindex);

// What the mesh (membership) says a peer's overlay entries must be.
struct PeerExpectation {
  std::string node;        // node name
  std::string node_ip;     // underlay IP: the FDB dst
  std::string overlay_ip;  // the peer's flannel.1 address (its subnet's .0): route gateway, neighbour IP
  std::string vtep_mac;    // the peer's flannel.1 MAC: neighbour lladdr and FDB MAC
  std::string pod_cidr;    // the peer's subnet: route dst, canonical ("10.244.2.0/24")
};

enum class PeerMismatchKind {
  kMissing,     // an entry for the peer is absent (route, neighbour or FDB)
  kStaleMac,    // neighbour points at a MAC other than the peer's VTEP MAC
  kStaleDst,    // FDB entry for the VTEP MAC points at another node IP (or at several)
  kStaleRoute,  // route for the pod CIDR goes via another gateway, or not onlink
  kUnexpected,  // a route via the device to a subnet no peer owns
};
std::string_view peerMismatchKindName(PeerMismatchKind kind);  // "missing", "stale_mac", ...

struct PeerMismatch {
  PeerMismatchKind kind;
  std::string node;   // empty for kUnexpected
  std::string entry;  // "route 10.244.2.0/24", "neighbour 10.244.2.0", "fdb 6e:1f:...", ...
  std::string expected;
  std::string actual;  // empty when missing
  std::string describe() const;
};

// Compares the device's groups with the peers' expectations. Pure.
std::vector<PeerMismatch> comparePeers(const std::vector<OverlayPeerGroup>& groups,
                                       const std::vector<PeerExpectation>& expectations);

}  // namespace meshprobe::agent
