#include "agent/checks/vxlan_facts.h"

#include <arpa/inet.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <cctype>
#include <cerrno>
#include <charconv>
#include <fstream>
#include <unordered_map>

namespace meshprobe::agent {

VxlanDeviceChoice chooseVxlanDevice(const NetlinkSnapshot& snap, const AgentConfig& config) {
  VxlanDeviceChoice choice;
  if (!config.vxlan_device.empty()) {
    choice.wanted = config.vxlan_device;
    choice.link = snap.linkByName(config.vxlan_device);
    choice.reason = choice.link ? "configured with --vxlan-device"
                                : "device " + config.vxlan_device + " (--vxlan-device) does not exist";
    return choice;
  }
  choice.wanted = kDefaultVxlanDevice;
  if (const LinkInfo* l = snap.linkByName(kDefaultVxlanDevice)) {
    choice.link = l;
    choice.reason = "flannel's default device";
    return choice;
  }
  const LinkInfo* only = nullptr;
  int count = 0;
  for (const auto& l : snap.links) {
    if (l.kind == "vxlan") {
      ++count;
      only = &l;
    }
  }
  if (count == 1) {
    choice.link = only;
    choice.wanted = only->name;
    choice.reason = "the only VXLAN device on this node";
  } else if (count == 0) {
    choice.reason = std::string("no ") + kDefaultVxlanDevice + " and no VXLAN device on this node";
  } else {
    choice.reason = std::string("no ") + kDefaultVxlanDevice + " and " + std::to_string(count) +
                    " VXLAN devices; choose one with --vxlan-device";
  }
  return choice;
}

std::string deviceIPv4(const NetlinkSnapshot& snap, int ifindex) {
  for (const auto& a : snap.addresses) {
    if (a.ifindex == ifindex && a.family == AF_INET) return a.address;
  }
  return "";
}

const LinkInfo* vxlanUnderlay(const NetlinkSnapshot& snap, const LinkInfo& device) {
  if (!device.vxlan) return nullptr;
  if (device.vxlan->underlay_ifindex != 0) return snap.linkByIndex(device.vxlan->underlay_ifindex);
  if (device.vxlan->local.empty()) return nullptr;
  for (const auto& a : snap.addresses) {
    if (a.address == device.vxlan->local) return snap.linkByIndex(a.ifindex);
  }
  return nullptr;
}

uint32_t vxlanOverhead(const VxlanInfo& vxlan) { return vxlan.local.find(':') != std::string::npos ? 70 : 50; }

// ---- subnet.env ------------------------------------------------------------------------

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

std::string ipv4NetworkAddress(std::string_view cidr) {
  const size_t slash = cidr.find('/');
  if (slash == std::string_view::npos) return "";
  const std::string ip(cidr.substr(0, slash));
  const std::string_view len_text = cidr.substr(slash + 1);
  int len = -1;
  auto [ptr, ec] = std::from_chars(len_text.data(), len_text.data() + len_text.size(), len);
  if (ec != std::errc() || ptr != len_text.data() + len_text.size() || len < 0 || len > 32) return "";
  in_addr addr{};
  if (inet_pton(AF_INET, ip.c_str(), &addr) != 1) return "";
  const uint32_t mask = len == 0 ? 0 : ~uint32_t{0} << (32 - len);
  addr.s_addr = htonl(ntohl(addr.s_addr) & mask);
  char buf[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &addr, buf, sizeof(buf));
  return buf;
}

Result<FlannelSubnetEnv> parseFlannelSubnetEnv(std::string_view text) {
  FlannelSubnetEnv env;
  bool have_subnet = false;
  int line_no = 0;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    std::string_view line = trim(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    ++line_no;
    if (line.empty() || line.front() == '#') continue;
    const size_t eq = line.find('=');
    if (eq == std::string_view::npos) {
      return Error{"subnet.env line " + std::to_string(line_no) + ": not KEY=VALUE: " + std::string(line)};
    }
    const std::string_view key = trim(line.substr(0, eq));
    std::string_view value = trim(line.substr(eq + 1));
    if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') && value.back() == value.front()) {
      value = value.substr(1, value.size() - 2);
    }
    if (key == "FLANNEL_NETWORK") {
      env.network = value;
    } else if (key == "FLANNEL_SUBNET") {
      if (ipv4NetworkAddress(value).empty()) {
        return Error{"subnet.env: FLANNEL_SUBNET is not an IPv4 CIDR: " + std::string(value)};
      }
      env.subnet = value;
      have_subnet = true;
    } else if (key == "FLANNEL_MTU") {
      uint32_t mtu = 0;
      auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), mtu);
      if (ec != std::errc() || ptr != value.data() + value.size() || mtu == 0) {
        return Error{"subnet.env: FLANNEL_MTU is not a number: " + std::string(value)};
      }
      env.mtu = mtu;
    } else if (key == "FLANNEL_IPMASQ") {
      env.ipmasq = value == "true";
    }
  }
  if (!have_subnet) return Error{"subnet.env has no FLANNEL_SUBNET"};
  return env;
}

Result<FlannelSubnetEnv> readFlannelSubnet(const std::string& path) {
  std::ifstream f(path);
  if (!f) return Error::fromErrno("cannot read " + path, errno);
  std::string text;
  char buf[4096];
  while (f.read(buf, sizeof(buf)) || f.gcount() > 0) {
    text.append(buf, static_cast<size_t>(f.gcount()));
    if (text.size() > 64 * 1024) return Error{path + " is larger than 64 KiB; not a flannel subnet file"};
  }
  auto env = parseFlannelSubnetEnv(text);
  if (!env) return Error{path + ": " + env.error().message};
  return env;
}

// ---- overlay peer groups ------------------------------------------------------------------

std::string OverlayPeerGroup::vtepMac() const {
  if (neighbour && !neighbour->lladdr.empty()) return neighbour->lladdr;
  return fdb.empty() ? "" : fdb.front().mac;
}

std::string OverlayPeerGroup::vtepDst() const {
  for (const auto& f : fdb) {
    if (!isUnspecifiedIp(f.dst)) return f.dst;
  }
  return "";
}

namespace {

bool isLinkLocalOrMulticast(const NeighbourEntry& n) {
  if (n.family != AF_INET6) return false;
  const std::string l = lower(n.dst);
  return l.rfind("fe80:", 0) == 0 || l.rfind("ff", 0) == 0;
}

bool isMulticastOrZeroMac(const std::string& mac) {
  if (mac.size() < 2 || mac == "00:00:00:00:00:00") return true;
  const char c = mac[1];  // low nibble of the first octet holds the group bit
  const int nibble = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : 0;
  return (nibble & 1) != 0;
}

bool isPermanent(uint16_t state) { return (state & (NUD_PERMANENT | NUD_NOARP)) != 0; }

void checkFdb(OverlayPeerGroup& g, const std::string& mac) {
  if (g.fdb.empty()) {
    g.problems.push_back("no FDB entry for VTEP MAC " + mac);
    return;
  }
  std::vector<std::string> dsts;
  for (const auto& f : g.fdb) {
    if (isUnspecifiedIp(f.dst)) {
      g.problems.push_back("FDB entry " + mac + " has no remote VTEP (dst " + (f.dst.empty() ? "unset" : f.dst) + ")");
    } else {
      dsts.push_back(f.dst);
    }
    if (!f.permanent()) g.problems.push_back("FDB entry " + mac + " is " + nudStateName(f.state) + ", not permanent");
  }
  if (dsts.size() > 1) {
    std::string list;
    for (const auto& d : dsts) list += (list.empty() ? "" : ", ") + d;
    g.problems.push_back("FDB entry " + mac + " has " + std::to_string(dsts.size()) + " destinations (" + list + ")");
  }
}

}  // namespace

std::vector<OverlayPeerGroup> groupOverlayPeers(const NetlinkSnapshot& snap, int device_ifindex) {
  // Index the device's neighbours by IP and FDB entries by MAC, in dump order.
  std::unordered_map<std::string, size_t> neigh_by_ip;
  std::vector<const NeighbourEntry*> neighs;
  for (const auto& n : snap.neighbours) {
    if (n.ifindex != device_ifindex) continue;
    neigh_by_ip.emplace(n.dst, neighs.size());
    neighs.push_back(&n);
  }
  std::unordered_map<std::string, std::vector<const FdbEntry*>> fdb_by_mac;
  std::vector<std::string> fdb_macs;  // first-seen order
  for (const auto& f : snap.fdb) {
    if (f.ifindex != device_ifindex) continue;
    const std::string mac = lower(f.mac);
    auto& v = fdb_by_mac[mac];
    if (v.empty()) fdb_macs.push_back(mac);
    v.push_back(&f);
  }
  std::vector<bool> neigh_used(neighs.size(), false);
  std::unordered_map<std::string, bool> fdb_used;

  std::vector<OverlayPeerGroup> groups;
  for (const auto& r : snap.routes) {
    if (r.oif != device_ifindex || r.table != RT_TABLE_MAIN || r.type != RTN_UNICAST || r.gateway.empty()) continue;
    OverlayPeerGroup g;
    g.key = r.dst;
    g.route = r;
    auto it = neigh_by_ip.find(r.gateway);
    if (it == neigh_by_ip.end()) {
      g.problems.push_back("route " + r.dst + " via " + r.gateway + ": no neighbour entry for " + r.gateway);
      groups.push_back(std::move(g));
      continue;
    }
    neigh_used[it->second] = true;
    const NeighbourEntry& n = *neighs[it->second];
    g.neighbour = n;
    if (n.lladdr.empty()) {
      g.problems.push_back("neighbour " + n.dst + " has no MAC (" + nudStateName(n.state) + ")");
      groups.push_back(std::move(g));
      continue;
    }
    if (!n.permanent()) g.problems.push_back("neighbour " + n.dst + " is " + nudStateName(n.state) + ", not PERMANENT");
    const std::string mac = lower(n.lladdr);
    if (auto f = fdb_by_mac.find(mac); f != fdb_by_mac.end()) {
      fdb_used[mac] = true;
      for (const FdbEntry* e : f->second) g.fdb.push_back(*e);
    }
    checkFdb(g, mac);
    groups.push_back(std::move(g));
  }

  // Leftovers: permanent entries nothing routes through. Learned (non-permanent) entries
  // are the kernel's and age out; link-local/multicast neighbours are not peers.
  for (size_t i = 0; i < neighs.size(); ++i) {
    const NeighbourEntry& n = *neighs[i];
    if (neigh_used[i] || !n.permanent() || isLinkLocalOrMulticast(n)) continue;  // NOARP-only: kernel's multicast
    OverlayPeerGroup g;
    g.key = n.dst;
    g.neighbour = n;
    const std::string mac = lower(n.lladdr);
    if (auto f = fdb_by_mac.find(mac); !mac.empty() && f != fdb_by_mac.end()) {
      fdb_used[mac] = true;
      for (const FdbEntry* e : f->second) g.fdb.push_back(*e);
    }
    g.problems.push_back("neighbour " + n.dst + " (" + (n.lladdr.empty() ? "no MAC" : n.lladdr) +
                         ") is not used by any route via the device");
    groups.push_back(std::move(g));
  }
  for (const auto& mac : fdb_macs) {
    if (fdb_used.count(mac) != 0 || isMulticastOrZeroMac(mac)) continue;
    OverlayPeerGroup g;
    g.key = mac;
    for (const FdbEntry* e : fdb_by_mac[mac]) {
      if (isPermanent(e->state)) g.fdb.push_back(*e);
    }
    if (g.fdb.empty()) continue;
    g.problems.push_back("FDB entry " + mac + " (dst " + (g.vtepDst().empty() ? "none" : g.vtepDst()) +
                         ") is not used by any neighbour on the device");
    groups.push_back(std::move(g));
  }
  return groups;
}

// ---- expectations ---------------------------------------------------------------------------

std::string_view peerMismatchKindName(PeerMismatchKind kind) {
  switch (kind) {
    case PeerMismatchKind::kMissing:
      return "missing";
    case PeerMismatchKind::kStaleMac:
      return "stale_mac";
    case PeerMismatchKind::kStaleDst:
      return "stale_dst";
    case PeerMismatchKind::kStaleRoute:
      return "stale_route";
    case PeerMismatchKind::kUnexpected:
      return "unexpected";
  }
  return "?";
}

std::string PeerMismatch::describe() const {
  std::string s = std::string(peerMismatchKindName(kind)) + " " + entry;
  if (!node.empty()) s += " (peer " + node + ")";
  if (!expected.empty()) s += ": expected " + expected;
  if (!actual.empty()) s += (expected.empty() ? ": " : ", found ") + actual;
  return s;
}

std::vector<PeerMismatch> comparePeers(const std::vector<OverlayPeerGroup>& groups,
                                       const std::vector<PeerExpectation>& expectations) {
  std::unordered_map<std::string, const RouteEntry*> route_by_dst;
  std::unordered_map<std::string, const NeighbourEntry*> neigh_by_ip;
  std::unordered_map<std::string, std::vector<const FdbEntry*>> fdb_by_mac;
  for (const auto& g : groups) {
    if (g.route) route_by_dst.emplace(g.route->dst, &*g.route);
    if (g.neighbour) neigh_by_ip.emplace(g.neighbour->dst, &*g.neighbour);
    for (const auto& f : g.fdb) fdb_by_mac[lower(f.mac)].push_back(&f);
  }

  std::vector<PeerMismatch> out;
  std::unordered_map<std::string, bool> expected_cidrs;
  for (const auto& e : expectations) {
    expected_cidrs[e.pod_cidr] = true;
    const std::string want_mac = lower(e.vtep_mac);
    const std::string want_route = "via " + e.overlay_ip + " onlink";

    if (auto r = route_by_dst.find(e.pod_cidr); r == route_by_dst.end()) {
      out.push_back({PeerMismatchKind::kMissing, e.node, "route " + e.pod_cidr, want_route, ""});
    } else if (r->second->gateway != e.overlay_ip || !r->second->onlink) {
      out.push_back({PeerMismatchKind::kStaleRoute, e.node, "route " + e.pod_cidr, want_route,
                     "via " + r->second->gateway + (r->second->onlink ? " onlink" : "")});
    }

    if (auto n = neigh_by_ip.find(e.overlay_ip); n == neigh_by_ip.end()) {
      out.push_back({PeerMismatchKind::kMissing, e.node, "neighbour " + e.overlay_ip, "lladdr " + want_mac, ""});
    } else if (lower(n->second->lladdr) != want_mac) {
      out.push_back({PeerMismatchKind::kStaleMac, e.node, "neighbour " + e.overlay_ip, "lladdr " + want_mac,
                     "lladdr " + (n->second->lladdr.empty() ? std::string("none") : n->second->lladdr)});
    }

    auto f = fdb_by_mac.find(want_mac);
    if (f == fdb_by_mac.end()) {
      out.push_back({PeerMismatchKind::kMissing, e.node, "fdb " + want_mac, "dst " + e.node_ip, ""});
      continue;
    }
    bool found = false;
    std::string actual;
    for (const FdbEntry* entry : f->second) {
      if (entry->dst == e.node_ip) found = true;
      actual += (actual.empty() ? "dst " : ", ") + (entry->dst.empty() ? std::string("none") : entry->dst);
    }
    if (!found || f->second.size() > 1) {
      out.push_back({PeerMismatchKind::kStaleDst, e.node, "fdb " + want_mac, "dst " + e.node_ip, actual});
    }
  }

  for (const auto& g : groups) {
    if (!g.route || expected_cidrs.count(g.route->dst) != 0) continue;
    out.push_back({PeerMismatchKind::kUnexpected, "", "route " + g.route->dst, "no peer owns this subnet",
                   "via " + g.route->gateway});
  }
  return out;
}

}  // namespace meshprobe::agent
