#include "agent/checks/vxlan_fdb_check.h"

#include <gtest/gtest.h>

#include "agent/checks/vxlan_facts.h"
#include "tests/unit/agent/netlink/netlink_test_util.h"

using namespace meshprobe;
using namespace meshprobe::agent;
using namespace meshprobe::agent::nltest;

namespace {

CheckResult runFdb(Result<NetlinkSnapshot> snap, const AgentConfig& config = {}) {
  FakeNetlinkReader reader(std::move(snap));
  VxlanFdbCheck check(config, reader);
  EXPECT_EQ(check.name(), "vxlan_fdb");
  return check.run();
}

const OverlayPeerGroup* groupByKey(const std::vector<OverlayPeerGroup>& gs, const std::string& key) {
  for (const auto& g : gs) {
    if (g.key == key) return &g;
  }
  return nullptr;
}

bool hasProblem(const OverlayPeerGroup& g, const std::string& needle) {
  for (const auto& p : g.problems) {
    if (p.find(needle) != std::string::npos) return true;
  }
  return false;
}

NetlinkSnapshot twoHealthyPeers() {
  auto s = nodeSnapshot();
  addPeer(s, 2, "6e:1f:00:00:02:00", "198.51.100.12");
  addPeer(s, 3, "6e:1f:00:00:03:00", "198.51.100.13");
  return s;
}

}  // namespace

// ---- grouping on the captured namespace (2 healthy peers, 3 broken) ----

TEST(OverlayGroups, CapturedNamespace) {
  const auto snap = capturedSnapshot();
  const auto groups = groupOverlayPeers(snap, 4);
  size_t peers = 0;
  for (const auto& g : groups) peers += g.isPeer() ? 1 : 0;
  EXPECT_EQ(peers, 5u);

  const auto* p2 = groupByKey(groups, "10.244.2.0/24");
  ASSERT_NE(p2, nullptr);
  EXPECT_TRUE(p2->complete()) << p2->problems.front();
  EXPECT_EQ(p2->route->gateway, "10.244.2.0");
  EXPECT_EQ(p2->vtepMac(), "6e:1f:00:00:02:00");
  EXPECT_EQ(p2->vtepDst(), "198.51.100.12");
  EXPECT_TRUE(p2->neighbour->permanent());
  ASSERT_EQ(p2->fdb.size(), 1u);
  EXPECT_TRUE(groupByKey(groups, "10.244.3.0/24")->complete());

  // node4 recreated its device: neighbour has the new MAC, FDB only the old one.
  const auto* p4 = groupByKey(groups, "10.244.4.0/24");
  ASSERT_NE(p4, nullptr);
  EXPECT_TRUE(hasProblem(*p4, "no FDB entry for VTEP MAC 6e:1f:00:00:04:01"));
  // route without neighbour
  const auto* p5 = groupByKey(groups, "10.244.5.0/24");
  ASSERT_NE(p5, nullptr);
  EXPECT_FALSE(p5->neighbour.has_value());
  EXPECT_TRUE(hasProblem(*p5, "no neighbour entry for 10.244.5.0"));
  // learned neighbour + FDB entry without a remote
  const auto* p6 = groupByKey(groups, "10.244.6.0/24");
  ASSERT_NE(p6, nullptr);
  EXPECT_TRUE(hasProblem(*p6, "REACHABLE, not PERMANENT"));
  EXPECT_TRUE(hasProblem(*p6, "has no remote VTEP"));
  EXPECT_EQ(p6->vtepDst(), "");

  // node4's old FDB entry is a leftover; multicast NOARP neighbours (ff02::16) are not.
  const auto* old = groupByKey(groups, "6e:1f:00:00:04:00");
  ASSERT_NE(old, nullptr);
  EXPECT_FALSE(old->isPeer());
  EXPECT_EQ(old->vtepDst(), "198.51.100.14");
  EXPECT_EQ(groupByKey(groups, "ff02::16"), nullptr);
  EXPECT_EQ(groups.size(), 6u);
  // Only routes via the device: the default route and cni0's subnet are not peers.
  EXPECT_EQ(groupByKey(groups, "0.0.0.0/0"), nullptr);
  EXPECT_EQ(groupByKey(groups, "10.244.1.0/24"), nullptr);
}

TEST(OverlayGroups, NeighbourWithoutMac) {
  auto s = nodeSnapshot();
  addPeer(s, 2, "6e:1f:00:00:02:00", "198.51.100.12");
  s.neighbours.back().lladdr = "";
  s.neighbours.back().state = NUD_FAILED;
  const auto groups = groupOverlayPeers(s, kFlannel);
  ASSERT_EQ(groups.size(), 2u);  // the peer, and its now-unreferenced FDB entry
  EXPECT_TRUE(hasProblem(groups[0], "has no MAC (FAILED)"));
}

TEST(OverlayGroups, FdbWithSeveralDestinations) {
  auto s = twoHealthyPeers();
  s.fdb.push_back(makeFdb(kFlannel, "6e:1f:00:00:02:00", "198.51.100.99", NUD_PERMANENT));
  const auto groups = groupOverlayPeers(s, kFlannel);
  const auto* p2 = groupByKey(groups, "10.244.2.0/24");
  ASSERT_NE(p2, nullptr);
  EXPECT_TRUE(hasProblem(*p2, "has 2 destinations (198.51.100.12, 198.51.100.99)"));
}

TEST(OverlayGroups, LearnedFdbEntriesAreNotLeftovers) {
  auto s = twoHealthyPeers();
  s.fdb.push_back(makeFdb(kFlannel, "aa:bb:cc:00:00:01", "198.51.100.50", NUD_REACHABLE));
  s.fdb.push_back(makeFdb(kFlannel, "00:00:00:00:00:00", "198.51.100.51", NUD_PERMANENT));  // default remote
  s.fdb.push_back(makeFdb(kEth0, "6e:1f:00:00:09:00", "", NUD_PERMANENT));                  // another device
  EXPECT_EQ(groupOverlayPeers(s, kFlannel).size(), 2u);
}

TEST(OverlayGroups, MacsCompareCaseInsensitively) {
  auto s = twoHealthyPeers();
  s.fdb[0].mac = "6E:1F:00:00:02:00";
  const auto groups = groupOverlayPeers(s, kFlannel);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_TRUE(groups[0].complete());
}

// ---- the check ----

TEST(VxlanFdbCheck, HealthyPeersOk) {
  auto r = runFdb(twoHealthyPeers());
  EXPECT_EQ(r.status, CheckStatus::kOk) << r.summary;
  EXPECT_NE(r.summary.find("2 peers"), std::string::npos) << r.summary;
  EXPECT_TRUE(r.findings.empty());
  EXPECT_EQ(r.details["peers"], 2);
  EXPECT_EQ(r.details["incomplete"], 0);
  EXPECT_EQ(r.details["groups"].size(), 2u);
  EXPECT_EQ(r.details["groups"][0]["vtep_dst"], "198.51.100.12");
}

TEST(VxlanFdbCheck, NoPeersIsOkWithCount) {
  auto r = runFdb(nodeSnapshot());
  EXPECT_EQ(r.status, CheckStatus::kOk);
  EXPECT_NE(r.summary.find("0 peers"), std::string::npos) << r.summary;
}

TEST(VxlanFdbCheck, CapturedBrokenPeersFail) {
  auto r = runFdb(capturedSnapshot());
  EXPECT_EQ(r.status, CheckStatus::kFail);
  EXPECT_NE(r.summary.find("3 of 5 peers"), std::string::npos) << r.summary;
  EXPECT_NE(r.summary.find("10.244.4.0/24"), std::string::npos) << r.summary;
  ASSERT_EQ(r.findings.size(), 1u);
  const Finding& f = r.findings[0];
  EXPECT_EQ(f.code, codes::kOverlayFdbStale);
  EXPECT_EQ(f.layer, Layer::kOverlay);
  EXPECT_EQ(f.evidence.size(), 3u);
  EXPECT_NE(f.remedy.find("flannel"), std::string::npos);
  EXPECT_EQ(r.details["incomplete"], 3);
  EXPECT_EQ(r.details["leftovers"], 1);
  EXPECT_EQ(r.details["groups"][0]["complete"], false);  // broken ones listed first
}

TEST(VxlanFdbCheck, LeftoversOnlyWarn) {
  auto s = twoHealthyPeers();
  s.neighbours.push_back(makeNeigh(kFlannel, "10.244.9.0", "6e:1f:00:00:09:00", NUD_PERMANENT));
  auto r = runFdb(s);
  EXPECT_EQ(r.status, CheckStatus::kWarn);
  EXPECT_NE(r.summary.find("10.244.9.0"), std::string::npos) << r.summary;
  EXPECT_TRUE(r.findings.empty());
}

TEST(VxlanFdbCheck, PeerWhoseRouteWasDeletedFails) {
  auto s = twoHealthyPeers();
  // Peer 3's neighbour and FDB entry stay; its route is gone: its pods are unreachable.
  std::erase_if(s.routes, [](const RouteEntry& r) { return r.dst == "10.244.3.0/24"; });
  auto r = runFdb(s);
  EXPECT_EQ(r.status, CheckStatus::kFail) << r.summary;
  ASSERT_EQ(r.findings.size(), 1u);
  EXPECT_EQ(r.findings[0].code, "OVERLAY_FDB_STALE");
  EXPECT_NE(r.findings[0].evidence[0].find("10.244.3.0"), std::string::npos);
}

TEST(VxlanFdbCheck, AgainstMembershipNamesTheStalePeer) {
  auto s = twoHealthyPeers();
  PeerDirectory directory;
  directory.set({{"node-2", "198.51.100.12", "10.244.2.0", "6e:1f:00:00:02:00", "10.244.2.0/24"},
                 // node-3 moved: its node IP is now .23, the FDB still says .13
                 {"node-3", "198.51.100.23", "10.244.3.0", "6e:1f:00:00:03:00", "10.244.3.0/24"}});
  FakeNetlinkReader reader(s);
  AgentConfig config;
  VxlanFdbCheck check(config, reader, &directory);
  auto r = check.run();
  EXPECT_EQ(r.status, CheckStatus::kFail) << r.summary;
  EXPECT_NE(r.summary.find("node-3"), std::string::npos) << r.summary;
  ASSERT_EQ(r.findings.size(), 1u);
  EXPECT_EQ(r.findings[0].code, "OVERLAY_FDB_STALE");
  EXPECT_NE(r.findings[0].evidence[0].find("198.51.100.13"), std::string::npos) << r.findings[0].evidence[0];
  EXPECT_EQ(r.details["membership"]["peers"], 2);
  EXPECT_EQ(r.details["membership"]["mismatches"][0]["node"], "node-3");
}

TEST(VxlanFdbCheck, MatchingMembershipIsOk) {
  auto s = twoHealthyPeers();
  PeerDirectory directory;
  directory.set({{"node-2", "198.51.100.12", "10.244.2.0", "6e:1f:00:00:02:00", "10.244.2.0/24"},
                 {"node-3", "198.51.100.13", "10.244.3.0", "6e:1f:00:00:03:00", "10.244.3.0/24"}});
  FakeNetlinkReader reader(s);
  AgentConfig config;
  VxlanFdbCheck check(config, reader, &directory);
  auto r = check.run();
  EXPECT_EQ(r.status, CheckStatus::kOk) << r.summary;
  EXPECT_TRUE(r.findings.empty());
}

TEST(VxlanFdbCheck, NoDeviceSkips) {
  auto s = nodeSnapshot();
  s.links.pop_back();
  auto r = runFdb(s);
  EXPECT_EQ(r.status, CheckStatus::kSkip);
  EXPECT_NE(r.summary.find("vxlan_device"), std::string::npos);
}

TEST(VxlanFdbCheck, ReaderErrorFails) {
  auto r = runFdb(Error{"fdb dump: timed out waiting for the kernel", ETIMEDOUT});
  EXPECT_EQ(r.status, CheckStatus::kFail);
  EXPECT_NE(r.summary.find("timed out"), std::string::npos);
}

TEST(VxlanFdbCheck, ManyBrokenPeersCapDetailsAndEvidence) {
  auto s = nodeSnapshot();
  for (int n = 2; n < 402; ++n) {
    const std::string gw = "10.244." + std::to_string(n % 250) + "." + std::to_string(n / 250);
    s.routes.push_back(makeRoute(gw + "/24", gw, kFlannel, true));  // routes without neighbours
  }
  auto r = runFdb(s);
  EXPECT_EQ(r.status, CheckStatus::kFail);
  EXPECT_EQ(r.details["incomplete"], 400);
  EXPECT_EQ(r.details["groups"].size(), 256u);
  EXPECT_EQ(r.details["groups_truncated"], true);
  EXPECT_EQ(r.findings[0].evidence.size(), 21u);
  EXPECT_NE(r.summary.find("+397 more"), std::string::npos) << r.summary;
}

// ---- expectations (membership comes with the mesh issue) ----

namespace {
std::vector<PeerExpectation> expectTwo() {
  return {{"node2", "198.51.100.12", "10.244.2.0", "6e:1f:00:00:02:00", "10.244.2.0/24"},
          {"node3", "198.51.100.13", "10.244.3.0", "6e:1f:00:00:03:00", "10.244.3.0/24"}};
}
}  // namespace

TEST(ComparePeers, AllMatch) {
  auto s = twoHealthyPeers();
  EXPECT_TRUE(comparePeers(groupOverlayPeers(s, kFlannel), expectTwo()).empty());
}

TEST(ComparePeers, MissingPeer) {
  auto s = nodeSnapshot();
  addPeer(s, 2, "6e:1f:00:00:02:00", "198.51.100.12");
  const auto m = comparePeers(groupOverlayPeers(s, kFlannel), expectTwo());
  ASSERT_EQ(m.size(), 3u);  // route, neighbour and FDB of node3
  for (const auto& x : m) {
    EXPECT_EQ(x.kind, PeerMismatchKind::kMissing);
    EXPECT_EQ(x.node, "node3");
  }
  EXPECT_EQ(m[0].entry, "route 10.244.3.0/24");
  EXPECT_EQ(m[1].entry, "neighbour 10.244.3.0");
  EXPECT_EQ(m[2].entry, "fdb 6e:1f:00:00:03:00");
  EXPECT_EQ(m[0].describe(), "missing route 10.244.3.0/24 (peer node3): expected via 10.244.3.0 onlink");
}

TEST(ComparePeers, StaleMacAfterPeerRecreatedItsDevice) {
  auto s = twoHealthyPeers();
  auto e = expectTwo();
  e[1].vtep_mac = "6E:1F:00:00:03:01";  // node3's new VTEP MAC; this node still has :00
  const auto m = comparePeers(groupOverlayPeers(s, kFlannel), e);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].kind, PeerMismatchKind::kStaleMac);
  EXPECT_EQ(m[0].expected, "lladdr 6e:1f:00:00:03:01");
  EXPECT_EQ(m[0].actual, "lladdr 6e:1f:00:00:03:00");
  EXPECT_EQ(m[1].kind, PeerMismatchKind::kMissing);
  EXPECT_EQ(m[1].entry, "fdb 6e:1f:00:00:03:01");
}

TEST(ComparePeers, StaleDst) {
  auto s = twoHealthyPeers();
  s.fdb[1].dst = "198.51.100.99";  // bridge fdb replace ... dst <wrong ip>
  const auto m = comparePeers(groupOverlayPeers(s, kFlannel), expectTwo());
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].kind, PeerMismatchKind::kStaleDst);
  EXPECT_EQ(m[0].node, "node3");
  EXPECT_EQ(m[0].actual, "dst 198.51.100.99");
}

TEST(ComparePeers, ExtraDstIsStale) {
  auto s = twoHealthyPeers();
  s.fdb.push_back(makeFdb(kFlannel, "6e:1f:00:00:02:00", "198.51.100.98", NUD_PERMANENT));
  const auto m = comparePeers(groupOverlayPeers(s, kFlannel), expectTwo());
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].kind, PeerMismatchKind::kStaleDst);
  EXPECT_EQ(m[0].actual, "dst 198.51.100.12, 198.51.100.98");
}

TEST(ComparePeers, StaleRoute) {
  auto s = twoHealthyPeers();
  s.routes[1].gateway = "10.244.20.0";  // 10.244.2.0/24 via the wrong gateway
  const auto m = comparePeers(groupOverlayPeers(s, kFlannel), expectTwo());
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].kind, PeerMismatchKind::kStaleRoute);
  EXPECT_EQ(m[0].actual, "via 10.244.20.0 onlink");
}

TEST(ComparePeers, UnexpectedRoute) {
  auto s = twoHealthyPeers();
  addPeer(s, 7, "6e:1f:00:00:07:00", "198.51.100.17");  // node7 left the cluster
  const auto m = comparePeers(groupOverlayPeers(s, kFlannel), expectTwo());
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].kind, PeerMismatchKind::kUnexpected);
  EXPECT_EQ(m[0].entry, "route 10.244.7.0/24");
  EXPECT_EQ(peerMismatchKindName(m[0].kind), "unexpected");
}

TEST(ComparePeers, CapturedNamespaceAgainstItsPeers) {
  const auto groups = groupOverlayPeers(capturedSnapshot(), 4);
  std::vector<PeerExpectation> e = {{"node2", "198.51.100.12", "10.244.2.0", "6e:1f:00:00:02:00", "10.244.2.0/24"},
                                    {"node4", "198.51.100.14", "10.244.4.0", "6e:1f:00:00:04:01", "10.244.4.0/24"}};
  const auto m = comparePeers(groups, e);
  // node4: FDB for its new MAC missing; routes to 3, 5, 6 belong to no expected peer.
  std::map<std::string, int> kinds;
  for (const auto& x : m) kinds[std::string(peerMismatchKindName(x.kind))]++;
  EXPECT_EQ(kinds["missing"], 1);
  EXPECT_EQ(kinds["unexpected"], 3);
  EXPECT_EQ(m.size(), 4u);
}
