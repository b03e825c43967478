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

namespace meshprobe::agent {
namespace {

constexpr unsigned kIffLowerUp = 1u << 16;  // IFF_LOWER_UP (linux/if.h clashes with net/if.h)

// Attributes of one level, indexed by type; later duplicates win, as in the kernel.
template <size_t Max>
struct AttrTable {
  std::array<const nlattr*, Max + 1> tb{};
  const nlattr* operator[](size_t type) const { return type <= Max ? tb[type] : nullptr; }
};

// Splits [p, p+len) into attributes, validating every length against the buffer.
template <size_t Max>
bool splitAttrs(const uint8_t* p, size_t len, AttrTable<Max>& table, std::string& err) {
  size_t off = 0;
  while (off < len) {
    if (len - off < sizeof(nlattr)) {
      err = "truncated attribute header";
      return false;
    }
    const auto* a = reinterpret_cast<const nlattr*>(p + off);
    if (a->nla_len < sizeof(nlattr) || a->nla_len > len - off) {
      err = "attribute type " + std::to_string(mnl_attr_get_type(a)) + " has bad length " + std::to_string(a->nla_len);
      return false;
    }
    const uint16_t type = mnl_attr_get_type(a);
    if (type <= Max) table.tb[type] = a;
    off += MNL_ALIGN(a->nla_len);
  }
  return true;
}

template <size_t Max>
bool splitNested(const nlattr* nest, AttrTable<Max>& table, std::string& err) {
  return splitAttrs(static_cast<const uint8_t*>(mnl_attr_get_payload(nest)), mnl_attr_get_payload_len(nest), table,
                    err);
}

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

// Typed attribute reads that record the first error instead of throwing; a message
// with any error is rejected as a whole.
class AttrReader {
 public:
  bool ok() const { return err_.empty(); }
  const std::string& error() const { return err_; }
  void fail(std::string e) {
    if (err_.empty()) err_ = std::move(e);
  }

  template <typename T>
  T integer(const nlattr* a, const char* name, T def = 0) {
    if (a == nullptr) return def;
    if (mnl_attr_get_payload_len(a) < sizeof(T)) {
      fail(std::string(name) + " shorter than " + std::to_string(sizeof(T)) + " bytes");
      return def;
    }
    T v;
    std::memcpy(&v, mnl_attr_get_payload(a), sizeof(T));
    return v;
  }

  std::string string(const nlattr* a, const char* name) {
    if (a == nullptr) return "";
    const auto* s = static_cast<const char*>(mnl_attr_get_payload(a));
    const size_t n = strnlen(s, mnl_attr_get_payload_len(a));
    if (n == mnl_attr_get_payload_len(a)) {
      fail(std::string(name) + " is not NUL-terminated");
      return "";
    }
    return std::string(s, n);
  }

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
    return formatMac({static_cast<const uint8_t*>(mnl_attr_get_payload(a)), mnl_attr_get_payload_len(a)});
  }

 private:
  std::string err_;
};

// Walks one dump's messages; calls fn(header, index) -> bool (false with `err` set
// rejects the dump). NLMSG_DONE ends the dump, NLMSG_ERROR is an error.
template <typename Fn>
Status forEachMessage(std::span<const uint8_t> bytes, uint16_t type, const char* what, Fn&& fn) {
  std::vector<uint8_t> aligned;
  const uint8_t* p = bytes.data();
  if (reinterpret_cast<uintptr_t>(p) % alignof(nlmsghdr) != 0) {
    aligned.assign(bytes.begin(), bytes.end());
    p = aligned.data();
  }
  const size_t n = bytes.size();
  size_t off = 0;
  size_t index = 0;
  auto bad = [&](const std::string& why) {
    return Error{std::string(what) + " dump: message " + std::to_string(index) + " at byte " + std::to_string(off) +
                 ": " + why};
  };
  while (off < n) {
    const size_t left = n - off;
    if (left < sizeof(nlmsghdr)) return bad("truncated netlink header (" + std::to_string(left) + " bytes left)");
    const auto* h = reinterpret_cast<const nlmsghdr*>(p + off);
    if (h->nlmsg_len < sizeof(nlmsghdr) || h->nlmsg_len > left) {
      return bad("nlmsg_len " + std::to_string(h->nlmsg_len) + " outside the " + std::to_string(left) +
                 " bytes left (truncated or garbled)");
    }
    if (h->nlmsg_type == NLMSG_DONE) break;
    if (h->nlmsg_type == NLMSG_ERROR) {
      if (mnl_nlmsg_get_payload_len(h) < sizeof(nlmsgerr)) return bad("truncated NLMSG_ERROR");
      const int code = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(h))->error;
      if (code == 0) {  // an ACK: not part of a dump, harmless
        off += NLMSG_ALIGN(h->nlmsg_len);
        continue;
      }
      return Error{std::string(what) + " dump: kernel returned error " + std::strerror(-code), -code};
    }
    if (h->nlmsg_type != NLMSG_NOOP) {
      if (h->nlmsg_type != type) return bad("unexpected message type " + std::to_string(h->nlmsg_type));
      std::string err;
      if (!fn(h, err)) return bad(err);
      ++index;
    }
    off += NLMSG_ALIGN(h->nlmsg_len);
  }
  return okStatus();
}

// The fixed header after nlmsghdr and the attributes after it.
template <typename Hdr, size_t Max>
const Hdr* splitMessage(const nlmsghdr* h, AttrTable<Max>& table, std::string& err) {
  if (mnl_nlmsg_get_payload_len(h) < MNL_ALIGN(sizeof(Hdr))) {
    err = "payload shorter than its " + std::to_string(sizeof(Hdr)) + "-byte family header";
    return nullptr;
  }
  const auto* hdr = static_cast<const Hdr*>(mnl_nlmsg_get_payload(h));
  const auto* attrs = static_cast<const uint8_t*>(mnl_nlmsg_get_payload_offset(h, sizeof(Hdr)));
  const size_t len = h->nlmsg_len - MNL_NLMSG_HDRLEN - MNL_ALIGN(sizeof(Hdr));
  if (!splitAttrs(attrs, len, table, err)) return nullptr;
  return hdr;
}

bool parseVxlan(const nlattr* data, VxlanInfo& vx, AttrReader& r) {
  AttrTable<IFLA_VXLAN_MAX> t;
  std::string err;
  if (!splitNested(data, t, err)) {
    r.fail("IFLA_INFO_DATA: " + err);
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

bool parseLink(const nlmsghdr* h, std::vector<LinkInfo>& out, std::string& err) {
  AttrTable<IFLA_MAX> t;
  const auto* ifi = splitMessage<ifinfomsg>(h, t, err);
  if (ifi == nullptr) return false;
  AttrReader r;
  LinkInfo l;
  l.ifindex = ifi->ifi_index;
  l.admin_up = (ifi->ifi_flags & IFF_UP) != 0;
  l.lower_up = (ifi->ifi_flags & kIffLowerUp) != 0;
  l.name = r.string(t[IFLA_IFNAME], "IFLA_IFNAME");
  l.mtu = r.integer<uint32_t>(t[IFLA_MTU], "IFLA_MTU");
  l.mac = r.mac(t[IFLA_ADDRESS]);
  l.operstate = operstateName(r.integer<uint8_t>(t[IFLA_OPERSTATE], "IFLA_OPERSTATE"));
  l.master_ifindex = static_cast<int>(r.integer<uint32_t>(t[IFLA_MASTER], "IFLA_MASTER"));
  l.link_ifindex = static_cast<int>(r.integer<uint32_t>(t[IFLA_LINK], "IFLA_LINK"));
  if (const nlattr* info = t[IFLA_LINKINFO]) {
    AttrTable<IFLA_INFO_MAX> it;
    if (!splitNested(info, it, err)) {
      err = "IFLA_LINKINFO: " + err;
      return false;
    }
    l.kind = r.string(it[IFLA_INFO_KIND], "IFLA_INFO_KIND");
    if (l.kind == "vxlan" && it[IFLA_INFO_DATA] != nullptr) {
      VxlanInfo vx;
      if (parseVxlan(it[IFLA_INFO_DATA], vx, r)) l.vxlan = vx;
    }
  }
  if (!r.ok()) {
    err = r.error();
    return false;
  }
  if (l.name.empty()) {
    err = "link " + std::to_string(l.ifindex) + " has no IFLA_IFNAME";
    return false;
  }
  out.push_back(std::move(l));
  return true;
}

bool parseAddr(const nlmsghdr* h, std::vector<AddressInfo>& out, std::string& err) {
  AttrTable<IFA_MAX> t;
  const auto* ifa = splitMessage<ifaddrmsg>(h, t, err);
  if (ifa == nullptr) return false;
  if (ifa->ifa_family != AF_INET && ifa->ifa_family != AF_INET6) return true;
  AttrReader r;
  AddressInfo a;
  a.ifindex = static_cast<int>(ifa->ifa_index);
  a.family = ifa->ifa_family;
  a.prefixlen = ifa->ifa_prefixlen;
  // IFA_LOCAL is the interface's own address (IFA_ADDRESS is the peer on point-to-point).
  a.address = r.ip(t[IFA_LOCAL] != nullptr ? t[IFA_LOCAL] : t[IFA_ADDRESS], a.family, "IFA_LOCAL/IFA_ADDRESS");
  if (!r.ok()) {
    err = r.error();
    return false;
  }
  out.push_back(std::move(a));
  return true;
}

bool parseNeigh(const nlmsghdr* h, std::vector<NeighbourEntry>& out, std::string& err) {
  AttrTable<NDA_MAX> t;
  const auto* nd = splitMessage<ndmsg>(h, t, err);
  if (nd == nullptr) return false;
  if (nd->ndm_family != AF_INET && nd->ndm_family != AF_INET6) return true;
  AttrReader r;
  NeighbourEntry n;
  n.ifindex = nd->ndm_ifindex;
  n.family = nd->ndm_family;
  n.state = nd->ndm_state;
  n.flags = nd->ndm_flags;
  n.dst = r.ip(t[NDA_DST], n.family, "NDA_DST");
  n.lladdr = r.mac(t[NDA_LLADDR]);
  if (!r.ok()) {
    err = r.error();
    return false;
  }
  out.push_back(std::move(n));
  return true;
}

bool parseFdb(const nlmsghdr* h, std::vector<FdbEntry>& out, std::string& err) {
  AttrTable<NDA_MAX> t;
  const auto* nd = splitMessage<ndmsg>(h, t, err);
  if (nd == nullptr) return false;
  if (nd->ndm_family != AF_BRIDGE) return true;
  AttrReader r;
  FdbEntry f;
  f.ifindex = nd->ndm_ifindex;
  f.state = nd->ndm_state;
  f.flags = nd->ndm_flags;
  f.mac = r.mac(t[NDA_LLADDR]);
  f.dst = r.ip(t[NDA_DST], AF_UNSPEC, "NDA_DST");
  f.vni = r.integer<uint32_t>(t[NDA_VNI], "NDA_VNI");
  if (!r.ok()) {
    err = r.error();
    return false;
  }
  out.push_back(std::move(f));
  return true;
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
  AttrTable<RTA_MAX> t;
  std::string err;
  if (!splitAttrs(reinterpret_cast<const uint8_t*>(nh) + RTNH_ALIGN(sizeof(rtnexthop)),
                  nh->rtnh_len - RTNH_ALIGN(sizeof(rtnexthop)), t, err)) {
    r.fail("RTA_MULTIPATH: " + err);
    return false;
  }
  route.gateway = r.ip(t[RTA_GATEWAY], family, "RTA_MULTIPATH/RTA_GATEWAY");
  return r.ok();
}

bool parseRoute(const nlmsghdr* h, std::vector<RouteEntry>& out, std::string& err) {
  AttrTable<RTA_MAX> t;
  const auto* rtm = splitMessage<rtmsg>(h, t, err);
  if (rtm == nullptr) return false;
  if (rtm->rtm_family != AF_INET && rtm->rtm_family != AF_INET6) return true;
  AttrReader r;
  RouteEntry route;
  route.family = rtm->rtm_family;
  route.type = rtm->rtm_type;
  route.table = r.integer<uint32_t>(t[RTA_TABLE], "RTA_TABLE", rtm->rtm_table);
  route.dst = r.ip(t[RTA_DST], route.family, "RTA_DST");
  if (route.dst.empty()) route.dst = route.family == AF_INET ? "0.0.0.0" : "::";
  route.dst += '/';
  route.dst += std::to_string(rtm->rtm_dst_len);
  route.gateway = r.ip(t[RTA_GATEWAY], route.family, "RTA_GATEWAY");
  route.oif = static_cast<int>(r.integer<uint32_t>(t[RTA_OIF], "RTA_OIF"));
  route.onlink = (rtm->rtm_flags & RTNH_F_ONLINK) != 0;
  if (route.oif == 0 && t[RTA_MULTIPATH] != nullptr) firstNexthop(t[RTA_MULTIPATH], route.family, route, r);
  if (!r.ok()) {
    err = r.error();
    return false;
  }
  out.push_back(std::move(route));
  return true;
}

template <typename T, typename Fn>
Result<std::vector<T>> parseDump(std::span<const uint8_t> bytes, uint16_t type, const char* what, Fn parse) {
  std::vector<T> out;
  out.reserve(bytes.size() / 60);  // ~60-80 bytes per neighbour/FDB/route message
  Status st =
      forEachMessage(bytes, type, what, [&](const nlmsghdr* h, std::string& err) { return parse(h, out, err); });
  if (!st) return st.error();
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
  return parseDump<LinkInfo>(bytes, RTM_NEWLINK, "link", parseLink);
}
Result<std::vector<AddressInfo>> parseAddrDump(std::span<const uint8_t> bytes) {
  return parseDump<AddressInfo>(bytes, RTM_NEWADDR, "address", parseAddr);
}
Result<std::vector<NeighbourEntry>> parseNeighDump(std::span<const uint8_t> bytes) {
  return parseDump<NeighbourEntry>(bytes, RTM_NEWNEIGH, "neighbour", parseNeigh);
}
Result<std::vector<FdbEntry>> parseFdbDump(std::span<const uint8_t> bytes) {
  return parseDump<FdbEntry>(bytes, RTM_NEWNEIGH, "fdb", parseFdb);
}
Result<std::vector<RouteEntry>> parseRouteDump(std::span<const uint8_t> bytes) {
  return parseDump<RouteEntry>(bytes, RTM_NEWROUTE, "route", parseRoute);
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
