#include "agent/daemon/peer_set.h"

#include <gtest/gtest.h>

using namespace meshprobe;
using namespace meshprobe::agent;
using namespace std::chrono_literals;

namespace {
meshprobe::v1::PeerList listOf(std::initializer_list<const char*> names, const char* mac = "0a:58:00:00:00:01") {
  meshprobe::v1::PeerList pl;
  for (const char* n : names) {
    auto* p = pl.add_peers();
    p->set_node_name(n);
    p->set_vtep_mac(mac);
  }
  return pl;
}
std::vector<std::string> names(const meshprobe::v1::PeerList& pl) {
  std::vector<std::string> out;
  for (const auto& p : pl.peers()) out.push_back(p.node_name());
  return out;
}
}  // namespace

TEST(PeerSet, SkipsSelfAndSortsByName) {
  FakeClock clock;
  PeerSet set(clock, 30s);
  EXPECT_TRUE(set.apply(listOf({"c", "self", "a"}), "self"));
  EXPECT_EQ(names(set.current()), (std::vector<std::string>{"a", "c"}));
}

TEST(PeerSet, APartialListAfterAnAggregatorRestartKeepsKnownPeersDuringTheGrace) {
  FakeClock clock;
  PeerSet set(clock, 30s);
  set.apply(listOf({"a", "b", "c"}), "self");
  clock.advance(1s);
  EXPECT_FALSE(set.apply(listOf({"a"}), "self"));  // the new aggregator knows only "a" so far
  EXPECT_EQ(names(set.current()), (std::vector<std::string>{"a", "b", "c"}));
  clock.advance(29s);
  EXPECT_FALSE(set.expire());
  clock.advance(2s);  // b and c left out of every list for 31 s
  EXPECT_TRUE(set.expire());
  EXPECT_EQ(names(set.current()), (std::vector<std::string>{"a"}));
}

TEST(PeerSet, PeersRelistedWithinTheGraceStay) {
  FakeClock clock;
  PeerSet set(clock, 30s);
  set.apply(listOf({"a", "b"}), "self");
  set.apply(listOf({"a"}), "self");
  clock.advance(5s);
  set.apply(listOf({"a", "b"}), "self");  // b reconnected to the new aggregator
  clock.advance(60s);
  EXPECT_FALSE(set.expire());
  EXPECT_EQ(names(set.current()), (std::vector<std::string>{"a", "b"}));
}

TEST(PeerSet, AQuietClusterExpiresNothing) {
  FakeClock clock;
  PeerSet set(clock, 30s);
  set.apply(listOf({"a", "b"}), "self");
  clock.advance(std::chrono::hours(1));  // lists come only on change
  EXPECT_FALSE(set.expire());
  EXPECT_EQ(set.current().peers_size(), 2);
}

TEST(PeerSet, ChangedFactsCountAsAChange) {
  FakeClock clock;
  PeerSet set(clock, 30s);
  set.apply(listOf({"a"}, "0a:58:00:00:00:01"), "self");
  EXPECT_FALSE(set.apply(listOf({"a"}, "0a:58:00:00:00:01"), "self"));
  EXPECT_TRUE(set.apply(listOf({"a"}, "0a:58:00:00:00:02"), "self"));  // flannel recreated the device
  EXPECT_EQ(set.current().peers(0).vtep_mac(), "0a:58:00:00:00:02");
}
