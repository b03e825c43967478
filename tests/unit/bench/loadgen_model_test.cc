// meshprobe-loadgen's model (bench/loadgen/sim_model.h): names, identities, faults and
// the probe results its simulated agents send, read back as the aggregator reads them.
#include <gtest/gtest.h>

#include <random>
#include <set>

#include "agent/daemon/peer_set.h"
#include "agent/daemon/report_builder.h"
#include "aggregator/matrix.h"
#include "aggregator/membership.h"
#include "bench/loadgen/sim_model.h"
#include "common/clock.h"

namespace meshprobe::loadgen {
namespace {

TEST(LoadgenModel, NamesRoundTripAndForeignNamesAreRejected) {
  EXPECT_EQ(nodeName("sim-", 0, 50), "sim-0001");
  EXPECT_EQ(nodeName("sim-", 4999, 5000), "sim-5000");
  EXPECT_EQ(nodeName("n", 0, 20000), "n00001");
  for (size_t i : {0u, 6u, 49u}) EXPECT_EQ(indexOfName("sim-", nodeName("sim-", i, 50), 50), i);
  EXPECT_FALSE(indexOfName("sim-", "sim-0051", 50));  // beyond N
  EXPECT_FALSE(indexOfName("sim-", "sim-0000", 50));
  EXPECT_FALSE(indexOfName("sim-", "sim-1", 50));  // not zero-padded as the run names it
  EXPECT_FALSE(indexOfName("sim-", "node-0001", 50));
  EXPECT_FALSE(indexOfName("sim-", "sim-00a1", 50));
}

TEST(LoadgenModel, IdentitiesAreUniqueAndTheHelloCarriesThemLikeAnAgent) {
  std::set<std::string> ips, overlays, cidrs, macs;
  constexpr size_t kN = 5000;
  for (size_t i = 0; i < kN; ++i) {
    auto id = identityOf("sim-", i, kN);
    ips.insert(id.node_ip);
    overlays.insert(id.overlay_ip);
    cidrs.insert(id.pod_cidr);
    macs.insert(id.vtep_mac);
  }
  EXPECT_EQ(ips.size(), kN);
  EXPECT_EQ(overlays.size(), kN);
  EXPECT_EQ(cidrs.size(), kN);
  EXPECT_EQ(macs.size(), kN);

  auto hello = helloFor(identityOf("sim-", 257, kN));
  EXPECT_EQ(hello.node_name(), "sim-0258");
  EXPECT_EQ(hello.node_ip(), "198.18.1.2");
  EXPECT_EQ(hello.identity().name(), "sim-0258");
  EXPECT_EQ(hello.identity().overlay_ip(), "10.129.1.0");
  EXPECT_EQ(hello.identity().pod_cidr(), "10.129.1.0/24");
  EXPECT_EQ(hello.identity().vtep_mac(), "0e:5e:00:00:01:02");
  EXPECT_EQ(hello.identity().vxlan_vni(), 1u);
  EXPECT_EQ(hello.identity().vxlan_port(), 8472u);
  EXPECT_EQ(hello.identity().vxlan_mtu(), kSimVxlanMtu);
  EXPECT_EQ(hello.vtep_mac(), hello.identity().vtep_mac());  // flat fields too, as agents send
}

TEST(LoadgenModel, FaultSpecsParse) {
  auto node = parseNodeFault("sim-0007:UNDERLAY");
  ASSERT_TRUE(node.ok());
  EXPECT_EQ(node->a, "sim-0007");
  EXPECT_TRUE(node->b.empty());
  EXPECT_EQ(node->layer, Layer::kUnderlay);
  auto pair = parsePairFault("sim-0002:sim-0003:overlay");
  ASSERT_TRUE(pair.ok());
  EXPECT_EQ(pair->b, "sim-0003");
  EXPECT_EQ(pair->layer, Layer::kOverlay);
  EXPECT_FALSE(parseNodeFault("sim-0007").ok());
  EXPECT_FALSE(parseNodeFault("sim-0007:ambient").ok());
  EXPECT_FALSE(parsePairFault("sim-0002:sim-0002:overlay").ok());
  EXPECT_FALSE(parsePairFault("sim-0002:overlay").ok());
}

TEST(LoadgenModel, FaultSetCoversExactlyTheFaultedPairsAndLayers) {
  std::string error;
  FaultSet set({*parseNodeFault("sim-0003:underlay"), *parsePairFault("sim-0001:sim-0002:overlay")}, "sim-", 10,
               &error);
  ASSERT_EQ(error, "");
  EXPECT_TRUE(set.fails(2, 5, Layer::kUnderlay));  // from the node
  EXPECT_TRUE(set.fails(5, 2, Layer::kUnderlay));  // to the node
  EXPECT_FALSE(set.fails(2, 5, Layer::kOverlay));
  EXPECT_TRUE(set.fails(0, 1, Layer::kOverlay));
  EXPECT_TRUE(set.fails(1, 0, Layer::kOverlay));
  EXPECT_FALSE(set.fails(0, 1, Layer::kUnderlay));
  EXPECT_FALSE(set.fails(0, 4, Layer::kOverlay));

  FaultSet bad({*parseNodeFault("sim-0011:underlay")}, "sim-", 10, &error);
  EXPECT_NE(error.find("sim-0011"), std::string::npos) << error;
}

TEST(LoadgenModel, ProbeResultsReadAsTheAggregatorReadsAnAgentsOnes) {
  RoundFacts facts;
  facts.round = 12;
  facts.now = std::chrono::system_clock::now();
  facts.probe_timeout = std::chrono::milliseconds(800);
  agent::ProbeTarget overlay{"sim-0002", Layer::kOverlay, "10.128.1.0", kSimVxlanMtu};

  auto healthy = agent::toProto(targetStats(overlay, 1, false, facts));
  EXPECT_EQ(healthy.dst(), "sim-0002");
  EXPECT_EQ(healthy.layer(), v1::OVERLAY);
  EXPECT_EQ(healthy.sent(), 12u);
  EXPECT_EQ(healthy.loss(), 0);
  EXPECT_TRUE(healthy.error().empty());
  EXPECT_EQ(healthy.path_mtu().size(), kSimVxlanMtu);
  EXPECT_EQ(aggregator::classifyProbe(healthy, {}), v1::Cell::OK);

  facts.failed_rounds = 2;
  facts.injected_at = facts.now - std::chrono::seconds(2);
  auto failing = agent::toProto(targetStats(overlay, 1, true, facts));
  EXPECT_EQ(failing.consecutive_failures(), 6u);
  EXPECT_EQ(failing.loss(), 1.0);
  EXPECT_EQ(failing.received(), 0u);
  EXPECT_EQ(failing.failure(), v1::PROBE_FAILURE_TIMEOUT);
  EXPECT_EQ(failing.tcp_failure(), v1::PROBE_FAILURE_TIMEOUT);
  EXPECT_EQ(failing.error(), "no reply within 800ms (TCP connect failed: timed out)");
  EXPECT_EQ(failing.path_mtu().failure(), v1::PROBE_FAILURE_TIMEOUT);
  EXPECT_EQ(aggregator::classifyProbe(failing, {}), v1::Cell::FAIL);
}

TEST(LoadgenModel, ChecksAreTheRegistrysSevenAllOk) {
  auto checks = healthyChecks();
  ASSERT_EQ(checks.size(), 7u);
  EXPECT_EQ(checks[4].name(), "istiod");
  for (const auto& c : checks) EXPECT_EQ(c.status(), v1::CheckResult::OK) << c.name();
}

// A member as the aggregator lists it, from the simulated node's own Hello.
v1::Peer memberOf(size_t i, size_t nodes) { return aggregator::peerFromHello(helloFor(identityOf("sim-", i, nodes))); }

std::vector<size_t> knownOf(const SimPeers& peers, size_t nodes) {
  std::vector<size_t> out;
  for (size_t j = 0; j < nodes; ++j) {
    if (peers.known(j)) out.push_back(j);
  }
  return out;
}

TEST(LoadgenMembership, ADeltaBeforeTheStreamsFirstListIsIgnoredAndCounted) {
  FakeClock clock;
  SimPeers peers(clock, "sim-", 4, 0);
  v1::PeerDelta early;
  *early.add_peers() = memberOf(1, 4);
  EXPECT_FALSE(peers.onPeerDelta(early));
  EXPECT_EQ(peers.deltasIgnored(), 1u);
  EXPECT_EQ(peers.knownCount(), 0u);

  v1::PeerList list;
  for (size_t i : {0u, 2u}) *list.add_peers() = memberOf(i, 4);
  peers.onPeerList(list);
  EXPECT_EQ(knownOf(peers, 4), (std::vector<size_t>{2}));  // its own entry skipped
  EXPECT_TRUE(peers.onPeerDelta(early));
  EXPECT_EQ(knownOf(peers, 4), (std::vector<size_t>{1, 2}));

  // A new stream: the members stay (as the agent's PeerSet does across reconnects), but
  // its deltas wait for its own first list.
  peers.streamStarted();
  v1::PeerDelta join3;
  *join3.add_peers() = memberOf(3, 4);
  EXPECT_FALSE(peers.onPeerDelta(join3));
  EXPECT_EQ(peers.deltasIgnored(), 2u);
  EXPECT_EQ(knownOf(peers, 4), (std::vector<size_t>{1, 2}));
}

TEST(LoadgenMembership, DeltasGiveTheMembersOfTheFullListTheyStandForAndLeftPeersExpireAfterTheGrace) {
  constexpr size_t kN = 6;
  FakeClock clock;
  SimPeers peers(clock, "sim-", kN, 1);
  v1::PeerList full;  // what an old agent would be sent, built with the aggregator's helper
  for (size_t i : {0u, 1u, 2u}) *full.add_peers() = memberOf(i, kN);
  peers.onPeerList(full);

  v1::PeerDelta delta;
  for (size_t i : {4u, 5u}) *delta.add_peers() = memberOf(i, kN);
  *delta.add_left() = nodeName("sim-", 0, kN);
  v1::Peer foreign = memberOf(3, kN);
  foreign.set_node_name("real-node-a");
  foreign.mutable_identity()->set_name("real-node-a");
  *delta.add_peers() = foreign;
  ASSERT_TRUE(peers.onPeerDelta(delta));
  aggregator::applyPeerDelta(full, delta);

  // sim-0001 left but is kept for the agent's grace, as a peer missing from a list is.
  EXPECT_EQ(knownOf(peers, kN), (std::vector<size_t>{0, 2, 4, 5}));
  EXPECT_EQ(peers.foreign(), 1u);

  clock.advance(SimPeers::kGrace + std::chrono::seconds(1));
  v1::PeerDelta later;
  *later.add_left() = "real-node-a";
  ASSERT_TRUE(peers.onPeerDelta(later));
  aggregator::applyPeerDelta(full, later);
  EXPECT_EQ(knownOf(peers, kN), (std::vector<size_t>{2, 4, 5}));
  EXPECT_EQ(peers.foreign(), 1u);  // left just now: within its grace

  // The same members as the aggregator's full list (less the receiver and the foreign
  // one still in its grace).
  std::vector<size_t> listed;
  for (const auto& p : full.peers()) {
    if (auto idx = indexOfName("sim-", p.node_name(), kN); idx && *idx != 1) listed.push_back(*idx);
  }
  std::sort(listed.begin(), listed.end());
  EXPECT_EQ(knownOf(peers, kN), listed);
}

// SimPeers keeps only each member's state; the agent's PeerSet keeps the Peer messages.
// Fed the same random lists, deltas (joins, updates, leaves, foreign names) and clock steps
// across the grace, they must hold the same members at every step.
TEST(LoadgenMembership, SameMembersAsTheAgentsPeerSetOverRandomListsDeltasAndGraces) {
  constexpr size_t kN = 12;
  constexpr size_t kSelf = 3;
  std::mt19937 rng(20261205);
  for (int run = 0; run < 20; ++run) {
    FakeClock clock;
    SimPeers sim(clock, "sim-", kN, kSelf);
    agent::PeerSet agent(clock, SimPeers::kGrace);
    const std::string self = nodeName("sim-", kSelf, kN);
    auto peerFor = [&](size_t i) {
      if (i < kN) return memberOf(i, kN);
      v1::Peer p = memberOf(0, kN);  // a node meshprobe-loadgen does not simulate
      p.set_node_name("real-" + std::to_string(i));
      p.mutable_identity()->set_name(p.node_name());
      return p;
    };
    auto pick = [&] { return static_cast<size_t>(rng() % (kN + 3)); };  // 3 foreign names
    bool listed = false;
    for (int step = 0; step < 200; ++step) {
      const auto op = rng() % 10;
      if (op == 0 || !listed) {
        v1::PeerList list;
        for (size_t i = 0; i < kN + 3; ++i) {
          if (rng() % 3 != 0) *list.add_peers() = peerFor(i);
        }
        sim.onPeerList(list);
        agent.apply(list, self);
        listed = true;
      } else if (op <= 6) {
        v1::PeerDelta delta;
        for (int k = 0, n = static_cast<int>(rng() % 3); k < n; ++k) *delta.add_peers() = peerFor(pick());
        for (int k = 0, n = static_cast<int>(rng() % 3); k < n; ++k) *delta.add_left() = peerFor(pick()).node_name();
        ASSERT_TRUE(sim.onPeerDelta(delta));
        agent.applyDelta(delta, self);
      } else {
        clock.advance(std::chrono::seconds(rng() % 2 == 0 ? 7 : 31));
      }
      std::vector<size_t> want;
      uint64_t foreign = 0;
      const v1::PeerList members = agent.current();
      for (const auto& p : members.peers()) {
        if (auto idx = indexOfName("sim-", p.node_name(), kN)) {
          want.push_back(*idx);
        } else {
          ++foreign;
        }
      }
      std::sort(want.begin(), want.end());
      ASSERT_EQ(knownOf(sim, kN), want) << "run " << run << " step " << step;
      ASSERT_EQ(sim.foreign(), foreign) << "run " << run << " step " << step;
    }
  }
}

}  // namespace
}  // namespace meshprobe::loadgen
