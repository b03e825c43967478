// Parsers over rtnetlink dumps captured in a namespace built by
// tests/data/netlink/capture.sh (see the README there).

#include "agent/kernel/netlink_parse.h"

#include <gtest/gtest.h>
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include <cstring>
#include <random>

#include "tests/unit/agent/netlink/netlink_test_util.h"

using namespace meshprobe;
using namespace meshprobe::agent;
using namespace meshprobe::agent::nltest;

namespace {

template <typename T, typename Pred>
const T* findOne(const std::vector<T>& v, Pred pred) {
  const T* found = nullptr;
  for (const auto& e : v) {
    if (pred(e)) {
      EXPECT_EQ(found, nullptr) << "more than one match";
      found = &e;
    }
  }
  return found;
}

// Offsets where a message ends, walking nlmsg_len.
std::vector<size_t> messageBoundaries(const std::vector<uint8_t>& b) {
  std::vector<size_t> out{0};
  size_t off = 0;
  while (off + sizeof(nlmsghdr) <= b.size()) {
    nlmsghdr h;
    std::memcpy(&h, b.data() + off, sizeof(h));
    off += NLMSG_ALIGN(h.nlmsg_len);
    out.push_back(std::min(off, b.size()));
  }
  return out;
}

}  // namespace

TEST(NetlinkParse, LinksFieldByField) {
  auto links = parseLinkDump(readFixture("links.bin"));
  ASSERT_TRUE(links.ok()) << links.error().message;
  ASSERT_EQ(links->size(), 6u);

  const LinkInfo* lo = findOne(*links, [](const LinkInfo& l) { return l.name == "lo"; });
  ASSERT_NE(lo, nullptr);
  EXPECT_EQ(lo->ifindex, 1);
  EXPECT_EQ(lo->kind, "");
  EXPECT_EQ(lo->mtu, 65536u);
  EXPECT_TRUE(lo->admin_up);
  EXPECT_FALSE(lo->vxlan.has_value());

  const LinkInfo* eth0 = findOne(*links, [](const LinkInfo& l) { return l.name == "eth0"; });
  ASSERT_NE(eth0, nullptr);
  EXPECT_EQ(eth0->ifindex, 3);
  EXPECT_EQ(eth0->kind, "veth");
  EXPECT_EQ(eth0->mtu, 1500u);
  EXPECT_EQ(eth0->mac, "02:00:c6:33:64:0b");
  EXPECT_EQ(eth0->operstate, "up");
  EXPECT_TRUE(eth0->admin_up);
  EXPECT_TRUE(eth0->lower_up);
  EXPECT_EQ(eth0->link_ifindex, 2);  // its veth peer, eth0-peer

  const LinkInfo* fl = findOne(*links, [](const LinkInfo& l) { return l.name == "flannel.1"; });
  ASSERT_NE(fl, nullptr);
  EXPECT_EQ(fl->ifindex, 4);
  EXPECT_EQ(fl->kind, "vxlan");
  EXPECT_EQ(fl->mtu, 1450u);
  EXPECT_EQ(fl->mac, "6e:1f:00:00:01:00");
  EXPECT_TRUE(fl->admin_up);
  EXPECT_TRUE(fl->lower_up);
  EXPECT_EQ(fl->operstate, "unknown");  // as `ip link` shows VXLAN devices: state UNKNOWN
  ASSERT_TRUE(fl->vxlan.has_value());
  EXPECT_EQ(fl->vxlan->vni, 1u);
  EXPECT_EQ(fl->vxlan->port, 4789);  // host byte order
  EXPECT_EQ(fl->vxlan->local, "198.51.100.11");
  EXPECT_EQ(fl->vxlan->underlay_ifindex, 3);
  EXPECT_FALSE(fl->vxlan->learning);

  const LinkInfo* cni0 = findOne(*links, [](const LinkInfo& l) { return l.name == "cni0"; });
  ASSERT_NE(cni0, nullptr);
  EXPECT_EQ(cni0->kind, "bridge");
  EXPECT_FALSE(cni0->vxlan.has_value());

  const LinkInfo* vx42 = findOne(*links, [](const LinkInfo& l) { return l.name == "vxlan42"; });
  ASSERT_NE(vx42, nullptr);
  EXPECT_FALSE(vx42->admin_up);
  EXPECT_FALSE(vx42->lower_up);
  EXPECT_EQ(vx42->operstate, "down");
  ASSERT_TRUE(vx42->vxlan.has_value());
  EXPECT_EQ(vx42->vxlan->vni, 42u);
  EXPECT_EQ(vx42->vxlan->port, 8472);
  EXPECT_TRUE(vx42->vxlan->learning);
  EXPECT_EQ(vx42->vxlan->underlay_ifindex, 3);
}

TEST(NetlinkParse, Addresses) {
  auto addrs = parseAddrDump(readFixture("addresses.bin"));
  ASSERT_TRUE(addrs.ok()) << addrs.error().message;
  const AddressInfo* fl = findOne(*addrs, [](const AddressInfo& a) { return a.ifindex == 4 && a.family == AF_INET; });
  ASSERT_NE(fl, nullptr);
  EXPECT_EQ(fl->address, "10.244.1.0");
  EXPECT_EQ(fl->prefixlen, 32);
  const AddressInfo* eth0 = findOne(*addrs, [](const AddressInfo& a) { return a.address == "198.51.100.11"; });
  ASSERT_NE(eth0, nullptr);
  EXPECT_EQ(eth0->ifindex, 3);
  EXPECT_EQ(eth0->prefixlen, 24);
  const AddressInfo* v6 = findOne(*addrs, [](const AddressInfo& a) { return a.address == "2001:db8::11"; });
  ASSERT_NE(v6, nullptr);
  EXPECT_EQ(v6->family, AF_INET6);
  EXPECT_EQ(v6->prefixlen, 64);
  EXPECT_NE(findOne(*addrs, [](const AddressInfo& a) { return a.address == "10.244.1.1"; }), nullptr);
  EXPECT_NE(findOne(*addrs, [](const AddressInfo& a) { return a.address == "127.0.0.1"; }), nullptr);
}

TEST(NetlinkParse, Neighbours) {
  auto neigh = parseNeighDump(readFixture("neighbours.bin"));
  ASSERT_TRUE(neigh.ok()) << neigh.error().message;
  // `ip neigh` hides NOARP entries (multicast); the dump has them.
  size_t onFlannel = 0;
  for (const auto& n : *neigh) {
    if (n.ifindex == 4 && n.family == AF_INET) ++onFlannel;
    if (n.dst == "ff02::16") {
      EXPECT_EQ(n.family, AF_INET6);
      EXPECT_EQ(n.state, NUD_NOARP);
      EXPECT_EQ(n.lladdr, "33:33:00:00:00:16");
    }
  }
  EXPECT_EQ(onFlannel, 4u);
  EXPECT_EQ(neigh->size(), 9u);
  const NeighbourEntry* n2 = findOne(*neigh, [](const NeighbourEntry& n) { return n.dst == "10.244.2.0"; });
  ASSERT_NE(n2, nullptr);
  EXPECT_EQ(n2->ifindex, 4);
  EXPECT_EQ(n2->family, AF_INET);
  EXPECT_EQ(n2->lladdr, "6e:1f:00:00:02:00");
  EXPECT_TRUE(n2->permanent());
  EXPECT_EQ(nudStateName(n2->state), "PERMANENT");
  const NeighbourEntry* n6 = findOne(*neigh, [](const NeighbourEntry& n) { return n.dst == "10.244.6.0"; });
  ASSERT_NE(n6, nullptr);
  EXPECT_FALSE(n6->permanent());
  EXPECT_EQ(nudStateName(n6->state), "REACHABLE");
  const NeighbourEntry* n4 = findOne(*neigh, [](const NeighbourEntry& n) { return n.dst == "10.244.4.0"; });
  ASSERT_NE(n4, nullptr);
  EXPECT_EQ(n4->lladdr, "6e:1f:00:00:04:01");
}

TEST(NetlinkParse, FdbKeepsOnlyBridgeFamily) {
  auto fdb = parseFdbDump(readFixture("fdb.bin"));
  ASSERT_TRUE(fdb.ok()) << fdb.error().message;
  std::vector<FdbEntry> onFlannel;
  for (const auto& f : *fdb) {
    if (f.ifindex == 4) onFlannel.push_back(f);
  }
  ASSERT_EQ(onFlannel.size(), 4u);
  const FdbEntry* p2 = findOne(onFlannel, [](const FdbEntry& f) { return f.mac == "6e:1f:00:00:02:00"; });
  ASSERT_NE(p2, nullptr);
  EXPECT_EQ(p2->dst, "198.51.100.12");
  EXPECT_TRUE(p2->permanent());
  EXPECT_NE(p2->flags & NTF_SELF, 0);
  const FdbEntry* stale = findOne(onFlannel, [](const FdbEntry& f) { return f.mac == "6e:1f:00:00:04:00"; });
  ASSERT_NE(stale, nullptr);
  EXPECT_EQ(stale->dst, "198.51.100.14");
  const FdbEntry* nodst = findOne(onFlannel, [](const FdbEntry& f) { return f.mac == "6e:1f:00:00:06:00"; });
  ASSERT_NE(nodst, nullptr);
  EXPECT_TRUE(isUnspecifiedIp(nodst->dst)) << nodst->dst;
  EXPECT_EQ(nodst->state, NUD_PERMANENT | NUD_NOARP);  // how the kernel reports VXLAN "permanent" entries
  // cni0's own MAC is the bridge's entry (not NTF_SELF), multicast ones are the device's own (NTF_SELF).
  const FdbEntry* own = findOne(*fdb, [](const FdbEntry& f) { return f.ifindex == 5 && (f.flags & NTF_SELF) == 0; });
  ASSERT_NE(own, nullptr);
  EXPECT_TRUE(own->dst.empty());
  EXPECT_TRUE(own->permanent());
  EXPECT_EQ(fdb->size(), 17u);
  // The neighbour parser skips AF_BRIDGE messages and vice versa.
  auto asNeigh = parseNeighDump(readFixture("fdb.bin"));
  ASSERT_TRUE(asNeigh.ok());
  EXPECT_TRUE(asNeigh->empty());
  auto asFdb = parseFdbDump(readFixture("neighbours.bin"));
  ASSERT_TRUE(asFdb.ok());
  EXPECT_TRUE(asFdb->empty());
}

TEST(NetlinkParse, Routes) {
  auto routes = parseRouteDump(readFixture("routes.bin"));
  ASSERT_TRUE(routes.ok()) << routes.error().message;
  const RouteEntry* def = findOne(*routes, [](const RouteEntry& r) { return r.dst == "0.0.0.0/0"; });
  ASSERT_NE(def, nullptr);
  EXPECT_EQ(def->gateway, "198.51.100.1");
  EXPECT_EQ(def->oif, 3);
  EXPECT_EQ(def->table, static_cast<uint32_t>(RT_TABLE_MAIN));
  EXPECT_EQ(def->type, RTN_UNICAST);
  EXPECT_FALSE(def->onlink);

  const RouteEntry* p2 = findOne(*routes, [](const RouteEntry& r) { return r.dst == "10.244.2.0/24"; });
  ASSERT_NE(p2, nullptr);
  EXPECT_EQ(p2->family, AF_INET);
  EXPECT_EQ(p2->gateway, "10.244.2.0");
  EXPECT_EQ(p2->oif, 4);
  EXPECT_TRUE(p2->onlink);
  EXPECT_EQ(p2->table, static_cast<uint32_t>(RT_TABLE_MAIN));

  const RouteEntry* connected =
      findOne(*routes, [](const RouteEntry& r) { return r.dst == "10.244.1.0/24" && r.table == RT_TABLE_MAIN; });
  ASSERT_NE(connected, nullptr);
  EXPECT_TRUE(connected->gateway.empty());
  EXPECT_EQ(connected->oif, 5);

  const RouteEntry* local =
      findOne(*routes, [](const RouteEntry& r) { return r.dst == "10.244.1.0/32" && r.table == RT_TABLE_LOCAL; });
  ASSERT_NE(local, nullptr);
  EXPECT_EQ(local->type, RTN_LOCAL);

  const RouteEntry* v6 =
      findOne(*routes, [](const RouteEntry& r) { return r.dst == "2001:db8::/64" && r.table == RT_TABLE_MAIN; });
  ASSERT_NE(v6, nullptr);
  EXPECT_EQ(v6->family, AF_INET6);
  EXPECT_EQ(v6->oif, 3);
}

TEST(NetlinkParse, SnapshotOfCapture) {
  auto snap = parseSnapshot(capturedDumps());
  ASSERT_TRUE(snap.ok()) << snap.error().message;
  ASSERT_NE(snap->linkByName("flannel.1"), nullptr);
  EXPECT_EQ(snap->linkByIndex(3)->name, "eth0");
  EXPECT_EQ(snap->neighbours.size(), 9u);
  EXPECT_EQ(snap->fdb.size(), 17u);
  EXPECT_FALSE(snap->fdb.empty());
  EXPECT_FALSE(snap->routes.empty());
}

TEST(NetlinkParse, EmptyDumpIsEmpty) {
  auto links = parseLinkDump({});
  ASSERT_TRUE(links.ok());
  EXPECT_TRUE(links->empty());
}

TEST(NetlinkParse, UnalignedInputParsesTheSame) {
  const auto bytes = readFixture("routes.bin");
  std::vector<uint8_t> shifted(bytes.size() + 1);
  std::memcpy(shifted.data() + 1, bytes.data(), bytes.size());
  auto a = parseRouteDump(bytes);
  auto b = parseRouteDump(std::span<const uint8_t>(shifted).subspan(1));
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok()) << b.error().message;
  ASSERT_EQ(a->size(), b->size());
  EXPECT_EQ(a->back().dst, b->back().dst);
}

TEST(NetlinkParse, EveryTruncationIsAnErrorOrAShorterDump) {
  for (const char* name : {"links.bin", "addresses.bin", "neighbours.bin", "fdb.bin", "routes.bin"}) {
    const auto bytes = readFixture(name);
    const auto ends = messageBoundaries(bytes);
    for (size_t cut = 1; cut < bytes.size(); ++cut) {
      std::span<const uint8_t> part(bytes.data(), cut);
      const bool boundary = std::find(ends.begin(), ends.end(), cut) != ends.end();
      Status ok = okStatus();
      if (std::string(name) == "links.bin") {
        auto r = parseLinkDump(part);
        if (!r) ok = r.error();
      } else if (std::string(name) == "addresses.bin") {
        auto r = parseAddrDump(part);
        if (!r) ok = r.error();
      } else if (std::string(name) == "neighbours.bin") {
        auto r = parseNeighDump(part);
        if (!r) ok = r.error();
      } else if (std::string(name) == "fdb.bin") {
        auto r = parseFdbDump(part);
        if (!r) ok = r.error();
      } else {
        auto r = parseRouteDump(part);
        if (!r) ok = r.error();
      }
      EXPECT_EQ(ok.ok(), boundary) << name << " cut at " << cut;
    }
  }
}

TEST(NetlinkParse, GarbledLengthsAreErrors) {
  auto bytes = readFixture("links.bin");
  {
    auto b = bytes;
    const uint32_t huge = 0x7fffffff;
    std::memcpy(b.data(), &huge, sizeof(huge));  // nlmsg_len of the first message
    auto r = parseLinkDump(b);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message.find("nlmsg_len"), std::string::npos) << r.error().message;
  }
  {
    auto b = bytes;
    const uint32_t tiny = 4;  // shorter than nlmsghdr
    std::memcpy(b.data(), &tiny, sizeof(tiny));
    EXPECT_FALSE(parseLinkDump(b).ok());
  }
  {
    // First attribute after ifinfomsg claims to run past the message.
    auto b = bytes;
    const size_t attr = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(ifinfomsg));
    const uint16_t bad = 0xfff0;
    std::memcpy(b.data() + attr, &bad, sizeof(bad));
    auto r = parseLinkDump(b);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message.find("bad length"), std::string::npos) << r.error().message;
  }
  {
    // An attribute shorter than its own header.
    auto b = bytes;
    const size_t attr = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(ifinfomsg));
    const uint16_t bad = 2;
    std::memcpy(b.data() + attr, &bad, sizeof(bad));
    EXPECT_FALSE(parseLinkDump(b).ok());
  }
  {
    // A message too short for its family header.
    std::vector<uint8_t> b(NLMSG_HDRLEN + 4, 0);
    nlmsghdr h{};
    h.nlmsg_len = static_cast<uint32_t>(b.size());
    h.nlmsg_type = RTM_NEWROUTE;
    std::memcpy(b.data(), &h, sizeof(h));
    auto r = parseRouteDump(b);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message.find("family header"), std::string::npos) << r.error().message;
  }
}

TEST(NetlinkParse, WrongMessageTypeIsAnError) {
  auto r = parseLinkDump(readFixture("routes.bin"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("unexpected message type"), std::string::npos);
}

TEST(NetlinkParse, KernelErrorMessageIsAnError) {
  std::vector<uint8_t> b(NLMSG_HDRLEN + sizeof(nlmsgerr), 0);
  nlmsghdr h{};
  h.nlmsg_len = static_cast<uint32_t>(b.size());
  h.nlmsg_type = NLMSG_ERROR;
  nlmsgerr e{};
  e.error = -EPERM;
  std::memcpy(b.data(), &h, sizeof(h));
  std::memcpy(b.data() + NLMSG_HDRLEN, &e, sizeof(e));
  auto r = parseNeighDump(b);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().sys_errno, EPERM);
}

TEST(NetlinkParse, WrongAddressLengthIsAnError) {
  // Route 10.244.2.0/24: shrink RTA_GATEWAY's declared length from 8 to 6 (a 2-byte address).
  auto bytes = readFixture("routes.bin");
  auto routes = parseRouteDump(bytes);
  ASSERT_TRUE(routes.ok());
  bool patched = false;
  size_t off = 0;
  while (!patched && off + NLMSG_HDRLEN <= bytes.size()) {
    nlmsghdr h;
    std::memcpy(&h, bytes.data() + off, sizeof(h));
    size_t a = off + NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(rtmsg));
    while (a + 4 <= off + h.nlmsg_len) {
      uint16_t len, type;
      std::memcpy(&len, bytes.data() + a, 2);
      std::memcpy(&type, bytes.data() + a + 2, 2);
      if (type == RTA_GATEWAY && len == 8) {
        const uint16_t shorter = 6;
        std::memcpy(bytes.data() + a, &shorter, 2);
        patched = true;
        break;
      }
      a += NLA_ALIGN(len);
    }
    off += NLMSG_ALIGN(h.nlmsg_len);
  }
  ASSERT_TRUE(patched);
  auto r = parseRouteDump(bytes);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("RTA_GATEWAY"), std::string::npos) << r.error().message;
}

TEST(NetlinkParse, RandomCorruptionNeverCrashes) {
  std::mt19937 rng(1234);
  const auto raw = capturedDumps();
  int errors = 0;
  for (int round = 0; round < 2000; ++round) {
    RawNetlinkDumps d = raw;
    for (auto* v : {&d.links, &d.addresses, &d.neighbours, &d.fdb, &d.routes}) {
      for (int k = 0; k < 3 && !v->empty(); ++k) (*v)[rng() % v->size()] = static_cast<uint8_t>(rng());
    }
    auto snap = parseSnapshot(d);
    if (!snap.ok()) {
      ++errors;
      EXPECT_FALSE(snap.error().message.empty());
    }
  }
  EXPECT_GT(errors, 0);  // corruption is detected at least some of the time
}

TEST(NetlinkParse, Formatting) {
  const uint8_t mac[] = {0x6e, 0x1f, 0x00, 0xab, 0x01, 0xff};
  EXPECT_EQ(formatMac(mac), "6e:1f:00:ab:01:ff");
  EXPECT_EQ(formatMac({}), "");
  EXPECT_EQ(operstateName(6), "up");
  EXPECT_EQ(operstateName(2), "down");
  EXPECT_EQ(operstateName(0), "unknown");
  EXPECT_EQ(operstateName(99), "unknown(99)");
  EXPECT_EQ(nudStateName(NUD_PERMANENT), "PERMANENT");
  EXPECT_EQ(nudStateName(NUD_STALE), "STALE");
  EXPECT_EQ(nudStateName(0), "NONE");
}

TEST(NetlinkParse, AckIsSkippedAndTruncatedErrorIsAnError) {
  const auto links = readFixture("links.bin");
  std::vector<uint8_t> b(NLMSG_HDRLEN + sizeof(nlmsgerr), 0);
  nlmsghdr h{};
  h.nlmsg_len = static_cast<uint32_t>(b.size());
  h.nlmsg_type = NLMSG_ERROR;
  std::memcpy(b.data(), &h, sizeof(h));  // error 0: an ACK
  b.insert(b.end(), links.begin(), links.end());
  auto r = parseLinkDump(b);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->size(), 6u);

  std::vector<uint8_t> shortErr(NLMSG_HDRLEN + 2, 0);
  h.nlmsg_len = static_cast<uint32_t>(shortErr.size());
  std::memcpy(shortErr.data(), &h, sizeof(h));
  auto bad = parseLinkDump(shortErr);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("truncated NLMSG_ERROR"), std::string::npos) << bad.error().message;
}
