#include "agent/daemon/peer_set.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

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
  // The view: the same peers in the same order, the set's own (not copies).
  const auto view = set.view();
  ASSERT_EQ(view.size(), 2u);
  EXPECT_EQ(view[0]->name(), "a");
  EXPECT_EQ(view[1]->name(), "c");
  EXPECT_EQ(view, set.view());
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
  EXPECT_EQ(set.current().peers(0).identity().vtep_mac(), "0a:58:00:00:00:02");
}

namespace {
meshprobe::v1::PeerDelta deltaOf(std::initializer_list<const char*> joined, std::initializer_list<const char*> left,
                                 const char* mac = "0a:58:00:00:00:01") {
  meshprobe::v1::PeerDelta d;
  *d.mutable_peers() = listOf(joined, mac).peers();
  for (const char* n : left) d.add_left(n);
  return d;
}
}  // namespace

TEST(PeerSet, ADeltaJoinsChangesAndLeavesWithTheGrace) {
  FakeClock clock;
  PeerSet set(clock, 30s);
  set.apply(listOf({"a", "b"}), "self");
  EXPECT_TRUE(set.applyDelta(deltaOf({"c", "self"}, {}), "self"));
  EXPECT_EQ(names(set.current()), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_TRUE(set.applyDelta(deltaOf({"a"}, {}, "0a:58:00:00:00:02"), "self"));
  EXPECT_EQ(set.current().peers(0).identity().vtep_mac(), "0a:58:00:00:00:02");
  EXPECT_FALSE(set.applyDelta(deltaOf({"a"}, {}, "0a:58:00:00:00:02"), "self"));  // again: no change
  EXPECT_FALSE(set.applyDelta(deltaOf({}, {"b", "never-known"}), "self"));        // b kept for the grace
  EXPECT_EQ(names(set.current()), (std::vector<std::string>{"a", "b", "c"}));
  clock.advance(31s);
  EXPECT_TRUE(set.expire());
  EXPECT_EQ(names(set.current()), (std::vector<std::string>{"a", "c"}));
}

// Property: a PeerList then deltas (the changes between consecutive memberships, padded
// with entries the agent already has, as the aggregator may send) leave the agent with the
// same peers, and report the same changes, as the whole lists would. Random memberships
// over a few names, random time steps across the grace; bounded and seeded.
TEST(PeerSet, DeltasGiveTheSameStateAsTheWholeLists) {
  const std::vector<std::string> universe = {"a", "b", "c", "d", "e", "f", "self"};
  for (uint32_t seed = 1; seed <= 200; ++seed) {
    std::mt19937 rng(seed);
    FakeClock clock;
    PeerSet by_lists(clock, 30s), by_deltas(clock, 30s);
    std::map<std::string, std::string> members;  // name -> vtep_mac
    auto listNow = [&] {
      meshprobe::v1::PeerList pl;
      for (const auto& [n, mac] : members) {
        auto* p = pl.add_peers();
        p->set_node_name(n);
        p->set_vtep_mac(mac);
      }
      return pl;
    };
    by_lists.apply(listNow(), "self");
    by_deltas.apply(listNow(), "self");
    for (int step = 0; step < 30; ++step) {
      const auto before = members;
      const int edits = std::uniform_int_distribution<int>(0, 3)(rng);
      for (int e = 0; e < edits; ++e) {
        const std::string& n = universe[rng() % universe.size()];
        if (members.count(n) && rng() % 2) {
          members.erase(n);
        } else {
          members[n] = "0a:58:00:00:00:0" + std::to_string(rng() % 3);
        }
      }
      meshprobe::v1::PeerDelta delta;
      for (const auto& [n, mac] : members) {
        auto it = before.find(n);
        if (it == before.end() || it->second != mac || rng() % 4 == 0) {  // some unchanged ones too
          auto* p = delta.add_peers();
          p->set_node_name(n);
          p->set_vtep_mac(mac);
        }
      }
      for (const auto& n : universe) {
        if (members.count(n)) continue;
        if (before.count(n) || rng() % 4 == 0) delta.add_left(n);  // and names already gone
      }
      clock.advance(std::chrono::seconds(rng() % 20));
      const bool changed_lists = by_lists.apply(listNow(), "self");
      const bool changed_deltas = by_deltas.applyDelta(delta, "self");
      ASSERT_EQ(changed_deltas, changed_lists) << "seed " << seed << " step " << step;
      ASSERT_EQ(by_deltas.current().SerializeAsString(), by_lists.current().SerializeAsString())
          << "seed " << seed << " step " << step << "\n"
          << by_deltas.current().ShortDebugString() << "\nvs\n"
          << by_lists.current().ShortDebugString();
    }
  }
}
