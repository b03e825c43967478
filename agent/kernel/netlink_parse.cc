#include "agent/kernel/netlink_parse.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>

#include <array>
#include <cstring>
#include <string>

#include "agent/kernel/netlink_walk.h"

namespace meshprobe::agent {
namespace {

constexpr unsigned kIffLowerUp = 1u << 16;  // IFF_LOWER_UP (linux/if.h clashes with net/if.h)

// glibc's inet_ntop formats IPv4 with sprintf, which dominates a 15,000-entry parse;
// this writes the dotted quad directly.
std::string formatIp(int family, const uint8_t* p) {
  if (family == AF_INET) {
    char buf[16];
    char* o = buf;
    for (int i = 0; i < 4; ++i) {
      if (i != 0) *o++ = '.';
      const unsigned v = p[i];
      if (v >= 100) *o++ = static_cast<char>('0' + v / 100);
      if (v >= 10) *o++ = static_cast<char>('0' + v / 10 % 10);
      *o++ = static_cast<char>('0' + v % 10);
    }
    return std::string(buf, static_cast<size_t>(o - buf));
  }
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(family, p, buf, sizeof(buf));
  return buf;
}

// The walker's typed reads plus the address formats of rtnetlink.
class AttrReader : public NetlinkAttrReader {
 public:
  // family AF_UNSPEC: decided by length (4 or 16 bytes).
  std::string ip(const nlattr* a, int family, const char* name) {
    if (a == nullptr) return "";
    const size_t len = mnl_attr_get_payload_len(a);
    if (family == AF_UNSPEC) family = len == 4 ? AF_INET : len == 16 ? AF_INET6 : AF_UNSPEC;
    const size_t want = family == AF_INET ? 4 : family == AF_INET6 ? 16 : 0;
    if (want == 0 || len != want) {
      fail(std::string(name) + " has " + std::to_string(len) + " bytes, not an IPv4/IPv6 address");
      return "";
    }
    return formatIp(family, static_cast<const uint8_t*>(mnl_attr_get_payload(a)));
  }

  std::string mac(const nlattr* a) {
    if (a == nullptr) return "";
    return formatMac(payload(a));
  }
};

bool parseVxlan(const nlattr* data, VxlanInfo& vx, AttrReader& r) {
  NetlinkAttrs<IFLA_VXLAN_MAX> t;
  if (Status st = parseNestedAttrs(data, t); !st) {
    r.fail("IFLA_INFO_DATA: " + st.error().message);
    return false;
  }
  vx.vni = r.integer<uint32_t>(t[IFLA_VXLAN_ID], "IFLA_VXLAN_ID");
  vx.port = ntohs(r.integer<uint16_t>(t[IFLA_VXLAN_PORT], "IFLA_VXLAN_PORT"));
  vx.local = r.ip(t[IFLA_VXLAN_LOCAL], AF_INET, "IFLA_VXLAN_LOCAL");
  if (vx.local.empty()) vx.local = r.ip(t[IFLA_VXLAN_LOCAL6], AF_INET6, "IFLA_VXLAN_LOCAL6");
  vx.underlay_ifindex = static_cast<int>(r.integer<uint32_t>(t[IFLA_VXLAN_LINK], "IFLA_VXLAN_LINK"));
  vx.learning = r.integer<uint8_t>(t[IFLA_VXLAN_LEARNING], "IFLA_VXLAN_LEARNING") != 0;
  return r.ok();
}

Status parseLink(const nlmsghdr* h, std::vector<LinkInfo>& out) {
  NetlinkAttrs<IFLA_MAX> t;
  auto ifi = parseNetlinkMessage<ifinfomsg>(h, t);
  if (!ifi) return ifi.error();
  AttrReader r;
  LinkInfo l;
  l.ifindex = (*ifi)->ifi_index;
  l.admin_up = ((*ifi)->ifi_flags & IFF_UP) != 0;
  l.lower_up = ((*ifi)->ifi_flags & kIffLowerUp) != 0;
  l.name = r.string(t[IFLA_IFNAME], "IFLA_IFNAME");
  l.mtu = r.integer<uint32_t>(t[IFLA_MTU], "IFLA_MTU");
  l.mac = r.mac(t[IFLA_ADDRESS]);
  l.operstate = operstateName(r.integer<uint8_t>(t[IFLA_OPERSTATE], "IFLA_OPERSTATE"));
  l.master_ifindex = static_cast<int>(r.integer<uint32_t>(t[IFLA_MASTER], "IFLA_MASTER"));
  l.link_ifindex = static_cast<int>(r.integer<uint32_t>(t[IFLA_LINK], "IFLA_LINK"));
  if (const nlattr* info = t[IFLA_LINKINFO]) {
    NetlinkAttrs<IFLA_INFO_MAX> it;
    if (Status st = parseNestedAttrs(info, it); !st) return Error{"IFLA_LINKINFO: " + st.error().message};
    l.kind = r.string(it[IFLA_INFO_KIND], "IFLA_INFO_KIND");
    if (l.kind == "vxlan" && it[IFLA_INFO_DATA] != nullptr) {
      VxlanInfo vx;
      if (parseVxlan(it[IFLA_INFO_DATA], vx, r)) l.vxlan = vx;
    }
  }
  if (!r.ok()) return Error{r.error()};
  if (l.name.empty()) return Error{"link " + std::to_string(l.ifindex) + " has no IFLA_IFNAME"};
  out.push_back(std::move(l));
  return okStatus();
}

Status parseAddr(const nlmsghdr* h, std::vector<AddressInfo>& out) {
  NetlinkAttrs<IFA_MAX> t;
  auto ifa = parseNetlinkMessage<ifaddrmsg>(h, t);
  if (!ifa) return ifa.error();
  if ((*ifa)->ifa_family != AF_INET && (*ifa)->ifa_family != AF_INET6) return okStatus();
  AttrReader r;
  AddressInfo a;
  a.ifindex = static_cast<int>((*ifa)->ifa_index);
  a.family = (*ifa)->ifa_family;
  a.prefixlen = (*ifa)->ifa_prefixlen;
  a.scope = (*ifa)->ifa_scope;
  // IFA_LOCAL is the interface's own address (IFA_ADDRESS is the peer on point-to-point).
  a.address = r.ip(t[IFA_LOCAL] != nullptr ? t[IFA_LOCAL] : t[IFA_ADDRESS], a.family, "IFA_LOCAL/IFA_ADDRESS");
  if (!r.ok()) return Error{r.error()};
  out.push_back(std::move(a));
  return okStatus();
}

Status parseNeigh(const nlmsghdr* h, std::vector<NeighbourEntry>& out) {
  NetlinkAttrs<NDA_MAX> t;
  auto nd = parseNetlinkMessage<ndmsg>(h, t);
  if (!nd) return nd.error();
  if ((*nd)->ndm_family != AF_INET && (*nd)->ndm_family != AF_INET6) return okStatus();
  AttrReader r;
  NeighbourEntry n;
  n.ifindex = (*nd)->ndm_ifindex;
  n.family = (*nd)->ndm_family;
  n.state = (*nd)->ndm_state;
  n.flags = (*nd)->ndm_flags;
  n.dst = r.ip(t[NDA_DST], n.family, "NDA_DST");
  n.lladdr = r.mac(t[NDA_LLADDR]);
  if (!r.ok()) return Error{r.error()};
  out.push_back(std::move(n));
  return okStatus();
}

Status parseFdb(const nlmsghdr* h, std::vector<FdbEntry>& out) {
  NetlinkAttrs<NDA_MAX> t;
  auto nd = parseNetlinkMessage<ndmsg>(h, t);
  if (!nd) return nd.error();
  if ((*nd)->ndm_family != AF_BRIDGE) return okStatus();
  AttrReader r;
  FdbEntry f;
  f.ifindex = (*nd)->ndm_ifindex;
  f.state = (*nd)->ndm_state;
  f.flags = (*nd)->ndm_flags;
  f.mac = r.mac(t[NDA_LLADDR]);
  f.dst = r.ip(t[NDA_DST], AF_UNSPEC, "NDA_DST");
  f.vni = r.integer<uint32_t>(t[NDA_VNI], "NDA_VNI");
  if (!r.ok()) return Error{r.error()};
  out.push_back(std::move(f));
  return okStatus();
}

// The first nexthop of RTA_MULTIPATH: gateway, ifindex, onlink.
bool firstNexthop(const nlattr* mp, int family, RouteEntry& route, AttrReader& r) {
  const size_t len = mnl_attr_get_payload_len(mp);
  if (len == 0) return true;
  if (len < sizeof(rtnexthop)) {
    r.fail("RTA_MULTIPATH shorter than one rtnexthop");
    return false;
  }
  const auto* nh = static_cast<const rtnexthop*>(mnl_attr_get_payload(mp));
  if (nh->rtnh_len < sizeof(rtnexthop) || nh->rtnh_len > len) {
    r.fail("RTA_MULTIPATH nexthop has bad length");
    return false;
  }
  route.oif = nh->rtnh_ifindex;
  route.onlink = (nh->rtnh_flags & RTNH_F_ONLINK) != 0;
  NetlinkAttrs<RTA_MAX> t;
  if (Status st = parseNetlinkAttrs(reinterpret_cast<const uint8_t*>(nh) + RTNH_ALIGN(sizeof(rtnexthop)),
                                    nh->rtnh_len - RTNH_ALIGN(sizeof(rtnexthop)), t);
      !st) {
    r.fail("RTA_MULTIPATH: " + st.error().message);
    return false;
  }
  route.gateway = r.ip(t[RTA_GATEWAY], family, "RTA_MULTIPATH/RTA_GATEWAY");
  return r.ok();
}

Status parseRoute(const nlmsghdr* h, std::vector<RouteEntry>& out) {
  NetlinkAttrs<RTA_MAX> t;
  auto rtm = parseNetlinkMessage<rtmsg>(h, t);
  if (!rtm) return rtm.error();
  if ((*rtm)->rtm_family != AF_INET && (*rtm)->rtm_family != AF_INET6) return okStatus();
  AttrReader r;
  RouteEntry route;
  route.family = (*rtm)->rtm_family;
  route.type = (*rtm)->rtm_type;
  route.table = r.integer<uint32_t>(t[RTA_TABLE], "RTA_TABLE", (*rtm)->rtm_table);
  route.dst = r.ip(t[RTA_DST], route.family, "RTA_DST");
  if (route.dst.empty()) route.dst = route.family == AF_INET ? "0.0.0.0" : "::";
  route.dst += '/';
  route.dst += std::to_string((*rtm)->rtm_dst_len);
  route.gateway = r.ip(t[RTA_GATEWAY], route.family, "RTA_GATEWAY");
  route.oif = static_cast<int>(r.integer<uint32_t>(t[RTA_OIF], "RTA_OIF"));
  route.onlink = ((*rtm)->rtm_flags & RTNH_F_ONLINK) != 0;
  if (route.oif == 0 && t[RTA_MULTIPATH] != nullptr) firstNexthop(t[RTA_MULTIPATH], route.family, route, r);
  if (!r.ok()) return Error{r.error()};
  out.push_back(std::move(route));
  return okStatus();
}

// One dump (or notification) through the shared walker; NLMSG_DONE is optional here: a
// notification has none, and the transport only returns a dump it read to its end.
template <typename T, typename Fn>
Result<std::vector<T>> parseDump(std::span<const uint8_t> bytes, uint16_t type, const char* what, Fn parse) {
  std::vector<T> out;
  out.reserve(bytes.size() / 60);  // ~60-80 bytes per neighbour/FDB/route message
  NetlinkWalkOptions options;
  options.what = what;
  options.data_type = type;
  auto walked = walkNetlinkMessages(bytes, options, [&](const nlmsghdr* h) { return parse(h, out); });
  if (!walked) return walked.error();
  return out;
}

}  // namespace

std::string formatMac(std::span<const uint8_t> bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  s.reserve(bytes.size() * 3);
  for (size_t i = 0; i < bytes.size(); ++i) {
    if (i != 0) s.push_back(':');
    s.push_back(kHex[bytes[i] >> 4]);
    s.push_back(kHex[bytes[i] & 0xf]);
  }
  return s;
}

std::string operstateName(uint8_t operstate) {
  // RFC 2863 IF_OPER_* values, as `ip link` prints them (lower case).
  static constexpr const char* kNames[] = {"unknown", "notpresent", "down", "lowerlayerdown",
                                           "testing", "dormant",    "up"};
  if (operstate < std::size(kNames)) return kNames[operstate];
  return "unknown(" + std::to_string(operstate) + ")";
}

Result<std::vector<LinkInfo>> parseLinkDump(std::span<const uint8_t> bytes) {
  return parseDump<LinkInfo>(bytes, RTM_NEWLINK, "link dump", parseLink);
}
Result<std::vector<AddressInfo>> parseAddrDump(std::span<const uint8_t> bytes) {
  return parseDump<AddressInfo>(bytes, RTM_NEWADDR, "address dump", parseAddr);
}
Result<std::vector<NeighbourEntry>> parseNeighDump(std::span<const uint8_t> bytes) {
  return parseDump<NeighbourEntry>(bytes, RTM_NEWNEIGH, "neighbour dump", parseNeigh);
}
Result<std::vector<FdbEntry>> parseFdbDump(std::span<const uint8_t> bytes) {
  return parseDump<FdbEntry>(bytes, RTM_NEWNEIGH, "fdb dump", parseFdb);
}
Result<std::vector<RouteEntry>> parseRouteDump(std::span<const uint8_t> bytes) {
  return parseDump<RouteEntry>(bytes, RTM_NEWROUTE, "route dump", parseRoute);
}

Result<NetlinkSnapshot> parseSnapshot(const RawNetlinkDumps& raw) {
  NetlinkSnapshot snap;
  auto links = parseLinkDump(raw.links);
  if (!links) return links.error();
  auto addrs = parseAddrDump(raw.addresses);
  if (!addrs) return addrs.error();
  auto neigh = parseNeighDump(raw.neighbours);
  if (!neigh) return neigh.error();
  auto fdb = parseFdbDump(raw.fdb);
  if (!fdb) return fdb.error();
  auto routes = parseRouteDump(raw.routes);
  if (!routes) return routes.error();
  snap.links = std::move(links).value();
  snap.addresses = std::move(addrs).value();
  snap.neighbours = std::move(neigh).value();
  snap.fdb = std::move(fdb).value();
  snap.routes = std::move(routes).value();
  return snap;
}

}  // namespace meshprobe::agent
