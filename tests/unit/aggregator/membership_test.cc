#include "aggregator/membership.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <random>
#include <set>

#include "tests/unit/aggregator/test_util.h"

namespace meshprobe::aggregator {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using testing::makeHello;

v1::PeerList listOf(std::initializer_list<v1::Hello> hellos) {
  v1::PeerList list;
  for (const auto& h : hellos) *list.add_peers() = peerFromHello(h);
  return list;
}

TEST(MembershipDiff, IdenticalListsInAnyOrderAreNoChange) {
  auto a = makeHello("node1", 1), b = makeHello("node2", 2);
  MembershipDiff diff = diffPeers(listOf({a, b}), listOf({b, a}));
  EXPECT_TRUE(diff.empty());
  EXPECT_EQ(diff.describe(), "no change");
}

TEST(MembershipDiff, ReportsAddedRemovedAndChanged) {
  auto a = makeHello("node1", 1), b = makeHello("node2", 2), c = makeHello("node3", 3);
  auto b2 = b;
  b2.set_vtep_mac("02:aa:bb:cc:dd:ee");  // flannel recreated the device
  MembershipDiff diff = diffPeers(listOf({a, b}), listOf({b2, c}));
  EXPECT_THAT(diff.added, ElementsAre("node3"));
  EXPECT_THAT(diff.removed, ElementsAre("node1"));
  EXPECT_THAT(diff.changed, ElementsAre("node2"));
  EXPECT_FALSE(diff.empty());
  EXPECT_EQ(diff.describe(), "added node3; removed node1; changed node2");
}

TEST(MembershipDiff, EveryPeerFactCountsAsAChange) {
  const auto base = makeHello("node1", 1);
  std::vector<std::function<void(v1::Hello&)>> edits = {
      [](v1::Hello& h) { h.set_node_ip("198.51.100.99"); },
      [](v1::Hello& h) { h.set_overlay_ip("10.244.9.0"); },
      [](v1::Hello& h) { h.set_vtep_mac("02:00:00:00:00:99"); },
      [](v1::Hello& h) { h.set_vxlan_vni(2); },
      [](v1::Hello& h) { h.set_vxlan_port(8472); },
      [](v1::Hello& h) { h.set_pod_cidr("10.244.9.0/24"); },
      [](v1::Hello& h) { h.set_vxlan_mtu(1400); },
  };
  for (size_t i = 0; i < edits.size(); ++i) {
    auto edited = base;
    edits[i](edited);
    EXPECT_THAT(diffPeers(listOf({base}), listOf({edited})).changed, ElementsAre("node1")) << "edit " << i;
  }
}

TEST(MembershipDiff, AgentVersionIsNotAPeerFact) {
  auto a = makeHello("node1", 1);
  auto a2 = a;
  a2.set_agent_version("0.2.0");
  EXPECT_TRUE(diffPeers(listOf({a}), listOf({a2})).empty());
}

TEST(ValidateHello, AcceptsAFullHello) { EXPECT_TRUE(validateHello(makeHello("node1", 1)).ok()); }

TEST(ValidateHello, RejectsEmptyNameAndNamesTheField) {
  auto h = makeHello("", 1);
  auto st = validateHello(h);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.error().message, HasSubstr("node_name"));
}

TEST(ValidateHello, RejectsWhitespaceInName) { EXPECT_FALSE(validateHello(makeHello("node 1", 1)).ok()); }

TEST(ValidateHello, RejectsBadAddressesNamingThem) {
  auto h = makeHello("node1", 1);
  h.set_node_ip("198.51.100.300");
  auto st = validateHello(h);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.error().message, HasSubstr("node_ip '198.51.100.300'"));
  h = makeHello("node1", 1);
  h.set_overlay_ip("flannel.1");
  st = validateHello(h);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.error().message, HasSubstr("overlay_ip"));
  h = makeHello("node1", 1);
  h.set_node_ip("2001:db8::1");
  EXPECT_TRUE(validateHello(h).ok());
  h.set_node_ip("");  // unknown is allowed
  EXPECT_TRUE(validateHello(h).ok());
}

TEST(VxlanMismatch, NoneWhenAllAgree) {
  EXPECT_THAT(findVxlanMismatches(listOf({makeHello("a", 1), makeHello("b", 2), makeHello("c", 3)})), IsEmpty());
}

TEST(VxlanMismatch, ListsTheMinorityPortAndVni) {
  auto list = listOf(
      {makeHello("node1", 1), makeHello("node2", 2, 1, 8472), makeHello("node3", 3), makeHello("node4", 4, 7, 4789)});
  auto mismatches = findVxlanMismatches(list);
  ASSERT_EQ(mismatches.size(), 2u);
  EXPECT_EQ(mismatches[0].node, "node2");
  EXPECT_EQ(mismatches[0].port, 8472u);
  EXPECT_EQ(mismatches[0].majority_port, 4789u);
  EXPECT_TRUE(mismatches[0].port_differs);
  EXPECT_FALSE(mismatches[0].vni_differs);
  EXPECT_EQ(mismatches[1].node, "node4");
  EXPECT_EQ(mismatches[1].vni, 7u);
  EXPECT_EQ(mismatches[1].majority_vni, 1u);
  EXPECT_TRUE(mismatches[1].vni_differs);
  EXPECT_FALSE(mismatches[1].port_differs);
}

TEST(VxlanMismatch, NodesWithoutVxlanFactsTakeNoPart) {
  auto list = listOf({makeHello("node1", 1), makeHello("node2", 2, 0, 0), makeHello("node3", 3, 1, 8472)});
  auto mismatches = findVxlanMismatches(list);
  // 4789 vs 8472 is a tie: the lower port is the majority, so node3 is named; node2 (0) never.
  ASSERT_EQ(mismatches.size(), 1u);
  EXPECT_EQ(mismatches[0].node, "node3");
}

std::vector<std::string> namesOf(const v1::PeerList& list) {
  std::vector<std::string> out;
  for (const auto& p : list.peers()) out.push_back(p.node_name());
  return out;
}

TEST(PeerDelta, AppliesOnTopOfAListKeepingItSorted) {
  auto list = listOf({makeHello("node1", 1), makeHello("node3", 3)});
  v1::PeerDelta d;
  *d.add_peers() = peerFromHello(makeHello("node2", 2));
  auto moved = makeHello("node3", 3);
  moved.set_node_ip("198.51.100.33");
  *d.add_peers() = peerFromHello(moved);
  d.add_left("node1");
  d.add_left("node9");  // never a member: nothing to do
  applyPeerDelta(list, d);
  EXPECT_THAT(namesOf(list), ElementsAre("node2", "node3"));
  EXPECT_EQ(list.peers(1).node_ip(), "198.51.100.33");
}

// Folding deltas (a stream's queue does, for a slow agent) means the same as applying them
// in turn: random deltas over a few names, bounded and seeded.
TEST(PeerDelta, MergedDeltasApplyLikeTheDeltasInTurn) {
  const std::vector<std::string> names = {"node1", "node2", "node3", "node4"};
  for (uint32_t seed = 1; seed <= 300; ++seed) {
    std::mt19937 rng(seed);
    auto randomDelta = [&] {
      v1::PeerDelta d;
      std::set<std::string> used;
      for (int i = 0, n = static_cast<int>(rng() % 4); i < n; ++i) {
        const std::string& name = names[rng() % names.size()];
        if (!used.insert(name).second) continue;  // one entry per name, as the fanout sends
        if (rng() % 2) {
          auto h = makeHello(name, static_cast<int>(rng() % 9) + 1);
          h.set_node_name(name);
          *d.add_peers() = peerFromHello(h);
        } else {
          d.add_left(name);
        }
      }
      return d;
    };
    v1::PeerList start = listOf({makeHello("node1", 1), makeHello("node2", 2)});
    v1::PeerList in_turn = start, merged_list = start;
    v1::PeerDelta merged;
    for (int k = 0; k < 4; ++k) {
      auto d = randomDelta();
      applyPeerDelta(in_turn, d);
      mergePeerDeltas(merged, d);
    }
    applyPeerDelta(merged_list, merged);
    ASSERT_EQ(merged_list.SerializeAsString(), in_turn.SerializeAsString()) << "seed " << seed;
  }
}

}  // namespace
}  // namespace meshprobe::aggregator
