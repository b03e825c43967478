#include "aggregator/membership.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>

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

}  // namespace
}  // namespace meshprobe::aggregator
