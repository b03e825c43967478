#pragma once
// Shared by the netlink unit tests: captured fixtures and snapshot builders (the fake
// NetlinkReader is tests/support/fakes/netlink.h).

#include <gtest/gtest.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "agent/kernel/netlink_parse.h"
#include "agent/kernel/netlink_reader.h"
#include "tests/support/fakes/netlink.h"

namespace meshprobe::agent::nltest {

inline std::string netlinkDataPath(const std::string& name) {
  return std::string(MESHPROBE_TEST_DATA) + "/netlink/" + name;
}

inline std::vector<uint8_t> readFixture(const std::string& name) {
  std::ifstream f(netlinkDataPath(name), std::ios::binary);
  EXPECT_TRUE(f.good()) << "missing fixture " << netlinkDataPath(name);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

inline RawNetlinkDumps capturedDumps() {
  RawNetlinkDumps raw;
  raw.links = readFixture("links.bin");
  raw.addresses = readFixture("addresses.bin");
  raw.neighbours = readFixture("neighbours.bin");
  raw.fdb = readFixture("fdb.bin");
  raw.routes = readFixture("routes.bin");
  return raw;
}

// The namespace of tests/data/netlink/capture.sh, parsed.
inline NetlinkSnapshot capturedSnapshot() {
  auto snap = parseSnapshot(capturedDumps());
  EXPECT_TRUE(snap.ok()) << (snap.ok() ? "" : snap.error().message);
  return snap.ok() ? *snap : NetlinkSnapshot{};
}

using test::FakeNetlinkReader;  // the one fake reader, tests/support/fakes/netlink.h

// Builders for hand-made snapshots: a node with eth0 (ifindex 2, MTU 1500) and
// flannel.1 (ifindex 3, VNI 1, port 4789, MTU 1450, 10.244.1.0/32).
inline constexpr int kEth0 = 2;
inline constexpr int kFlannel = 3;

inline LinkInfo makeLink(int ifindex, std::string name, std::string kind, uint32_t mtu, std::string mac) {
  LinkInfo l;
  l.ifindex = ifindex;
  l.name = std::move(name);
  l.kind = std::move(kind);
  l.admin_up = true;
  l.lower_up = true;
  l.operstate = l.kind == "veth" ? "up" : "unknown";
  l.mtu = mtu;
  l.mac = std::move(mac);
  return l;
}

inline AddressInfo makeAddr(int ifindex, std::string ip, int prefixlen) {
  AddressInfo a;
  a.ifindex = ifindex;
  a.family = ip.find(':') == std::string::npos ? AF_INET : AF_INET6;
  a.address = std::move(ip);
  a.prefixlen = prefixlen;
  return a;
}

inline RouteEntry makeRoute(std::string dst, std::string gateway, int oif, bool onlink) {
  RouteEntry r;
  r.family = AF_INET;
  r.dst = std::move(dst);
  r.gateway = std::move(gateway);
  r.oif = oif;
  r.onlink = onlink;
  r.table = RT_TABLE_MAIN;
  r.type = RTN_UNICAST;
  return r;
}

inline NeighbourEntry makeNeigh(int ifindex, std::string ip, std::string mac, uint16_t state) {
  NeighbourEntry n;
  n.ifindex = ifindex;
  n.family = AF_INET;
  n.dst = std::move(ip);
  n.lladdr = std::move(mac);
  n.state = state;
  return n;
}

inline FdbEntry makeFdb(int ifindex, std::string mac, std::string dst, uint16_t state) {
  FdbEntry f;
  f.ifindex = ifindex;
  f.mac = std::move(mac);
  f.dst = std::move(dst);
  f.state = state;
  f.flags = NTF_SELF;
  return f;
}

inline NetlinkSnapshot nodeSnapshot() {
  NetlinkSnapshot s;
  s.links.push_back(makeLink(1, "lo", "", 65536, "00:00:00:00:00:00"));
  s.links.push_back(makeLink(kEth0, "eth0", "veth", 1500, "02:00:c6:33:64:0b"));
  LinkInfo fl = makeLink(kFlannel, "flannel.1", "vxlan", 1450, "6e:1f:00:00:01:00");
  VxlanInfo vx;
  vx.vni = 1;
  vx.port = 4789;
  vx.local = "198.51.100.11";
  vx.underlay_ifindex = kEth0;
  fl.vxlan = vx;
  s.links.push_back(fl);
  s.addresses = {makeAddr(kEth0, "198.51.100.11", 24), makeAddr(kFlannel, "10.244.1.0", 32)};
  s.routes = {makeRoute("0.0.0.0/0", "198.51.100.1", kEth0, false)};
  return s;
}

// What flannel programs for peer N: route, PERMANENT neighbour, permanent FDB entry.
inline void addPeer(NetlinkSnapshot& s, int n, const std::string& mac, const std::string& node_ip) {
  const std::string gw = "10.244." + std::to_string(n) + ".0";
  s.routes.push_back(makeRoute(gw + "/24", gw, kFlannel, true));
  s.neighbours.push_back(makeNeigh(kFlannel, gw, mac, NUD_PERMANENT));
  s.fdb.push_back(makeFdb(kFlannel, mac, node_ip, NUD_PERMANENT));
}

}  // namespace meshprobe::agent::nltest
