#pragma once
// The node's datapath as rtnetlink reports it: plain values, no libnl types, so checks
// and tests work on data. Filled by parse functions over captured netlink bytes
// (netlink_parse.h) and by the kernel reader (netlink_reader.h).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace meshprobe::agent {

struct VxlanInfo {
  uint32_t vni = 0;
  uint16_t port = 0;         // UDP destination port, host byte order (IFLA_VXLAN_PORT)
  std::string local;         // IFLA_VXLAN_LOCAL(6), empty when unset
  int underlay_ifindex = 0;  // IFLA_VXLAN_LINK, 0 when unset
  bool learning = false;
};

struct LinkInfo {
  int ifindex = 0;
  std::string name;
  std::string kind;       // IFLA_INFO_KIND: "vxlan", "bridge", "veth", "" ...
  bool admin_up = false;  // IFF_UP
  bool lower_up = false;  // IFF_LOWER_UP
  std::string operstate;  // "up", "down", "unknown", ...
  uint32_t mtu = 0;
  std::string mac;  // "aa:bb:cc:dd:ee:ff", lower case
  int master_ifindex = 0;
  int link_ifindex = 0;  // IFLA_LINK
  std::optional<VxlanInfo> vxlan;
};

struct AddressInfo {
  int ifindex = 0;
  int family = 0;       // AF_INET / AF_INET6
  std::string address;  // "10.244.1.0"
  int prefixlen = 0;
  int scope = 0;  // ifa_scope: RT_SCOPE_UNIVERSE (0, global), RT_SCOPE_LINK (253), RT_SCOPE_HOST (254)
};

// An IP neighbour (ARP/NDP) entry: `ip neigh`.
struct NeighbourEntry {
  int ifindex = 0;
  int family = 0;
  std::string dst;     // IP
  std::string lladdr;  // MAC, empty when incomplete
  uint16_t state = 0;  // NUD_* bits
  uint8_t flags = 0;   // NTF_* bits
  bool permanent() const;
};

// A bridge forwarding entry on a VXLAN device: `bridge fdb show dev flannel.1`.
struct FdbEntry {
  int ifindex = 0;
  std::string mac;
  std::string dst;  // remote VTEP IP (NDA_DST), empty when none
  uint16_t state = 0;
  uint8_t flags = 0;  // NTF_SELF, NTF_MASTER ...
  uint32_t vni = 0;   // NDA_VNI when present
  bool permanent() const;
};

struct RouteEntry {
  int family = 0;
  std::string dst;      // CIDR, "0.0.0.0/0" for default
  std::string gateway;  // empty when direct
  int oif = 0;
  bool onlink = false;  // RTNH_F_ONLINK
  uint32_t table = 0;
  uint8_t type = 0;  // RTN_UNICAST ...
};

// NUD_* state as `ip neigh` prints it: "PERMANENT", "REACHABLE", "STALE", ... ("NONE" for 0);
// several bits are joined with '|'.
std::string nudStateName(uint16_t state);

// True for an empty, 0.0.0.0 or :: address (a VXLAN FDB entry with no usable remote).
bool isUnspecifiedIp(const std::string& ip);

struct NetlinkSnapshot {
  std::vector<LinkInfo> links;
  std::vector<AddressInfo> addresses;
  std::vector<NeighbourEntry> neighbours;
  std::vector<FdbEntry> fdb;
  std::vector<RouteEntry> routes;

  const LinkInfo* linkByName(const std::string& name) const;
  const LinkInfo* linkByIndex(int ifindex) const;
};

}  // namespace meshprobe::agent
