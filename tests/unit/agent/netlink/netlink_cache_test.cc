// The notification cache's state machine on notification bytes captured from a real
// kernel (tests/data/netlink/events_*.bin, made by capture.sh in the fixtures' namespace),
// applied on top of that namespace's dumps; and the cache itself on the test process's
// own namespace (subscribing and dumping need no privileges).

#include "agent/kernel/netlink_cache.h"

#include <gtest/gtest.h>
#include <linux/neighbour.h>

#include <algorithm>

#include "agent/checks/vxlan_facts.h"
#include "tests/unit/agent/netlink/netlink_test_util.h"

using namespace meshprobe;
using namespace meshprobe::agent;
using namespace meshprobe::agent::nltest;

namespace {

const NeighbourEntry* neighbour(const NetlinkSnapshot& s, const std::string& dst) {
  for (const auto& n : s.neighbours)
    if (n.dst == dst) return &n;
  return nullptr;
}
size_t fdbCount(const NetlinkSnapshot& s, const std::string& mac) {
  return static_cast<size_t>(std::count_if(s.fdb.begin(), s.fdb.end(), [&](const FdbEntry& f) { return f.mac == mac; }));
}
const RouteEntry* route(const NetlinkSnapshot& s, const std::string& dst) {
  for (const auto& r : s.routes)
    if (r.dst == dst) return &r;
  return nullptr;
}
const OverlayPeerGroup* group(const std::vector<OverlayPeerGroup>& groups, const std::string& key) {
  for (const auto& g : groups)
    if (g.key == key) return &g;
  return nullptr;
}

class CacheState : public ::testing::Test {
 protected:
  void SetUp() override {
    state_.reset(capturedSnapshot());
    ASSERT_FALSE(state_.needsDump());
    flannel_ = state_.state().linkByName("flannel.1")->ifindex;
  }
  NetlinkCacheState state_;
  int flannel_ = 0;
};

}  // namespace

TEST_F(CacheState, AddedPeerAppearsComplete) {
  ASSERT_EQ(neighbour(state_.state(), "10.244.7.0"), nullptr);
  const size_t links = state_.state().links.size();
  ASSERT_TRUE(state_.apply(readFixture("events_add.bin")).ok());
  EXPECT_FALSE(state_.needsDump());
  EXPECT_GE(state_.applied(), 3u);
  const auto& s = state_.state();
  const NeighbourEntry* n = neighbour(s, "10.244.7.0");
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(n->lladdr, "6e:1f:00:00:07:00");
  EXPECT_TRUE(n->permanent());
  EXPECT_EQ(fdbCount(s, "6e:1f:00:00:07:00"), 1u);
  ASSERT_NE(route(s, "10.244.7.0/24"), nullptr);
  EXPECT_EQ(route(s, "10.244.7.0/24")->gateway, "10.244.7.0");
  EXPECT_EQ(s.links.size(), links);
  const auto groups = groupOverlayPeers(s, flannel_);  // g points into it: keep it alive
  const auto* g = group(groups, "10.244.7.0/24");
  ASSERT_NE(g, nullptr);
  EXPECT_TRUE(g->complete()) << (g->problems.empty() ? "" : g->problems.front());
  EXPECT_EQ(g->vtepDst(), "198.51.100.17");
}

TEST_F(CacheState, ChangedNeighboursAreUpdatedInPlace) {
  const size_t before = state_.state().neighbours.size();
  ASSERT_EQ(neighbour(state_.state(), "10.244.4.0")->lladdr, "6e:1f:00:00:04:01");
  ASSERT_FALSE(neighbour(state_.state(), "10.244.6.0")->permanent());
  ASSERT_TRUE(state_.apply(readFixture("events_change.bin")).ok());
  EXPECT_EQ(state_.state().neighbours.size(), before);
  EXPECT_EQ(neighbour(state_.state(), "10.244.4.0")->lladdr, "6e:1f:00:00:04:00");
  EXPECT_TRUE(neighbour(state_.state(), "10.244.6.0")->permanent());
  EXPECT_FALSE(state_.needsDump());
}

TEST_F(CacheState, DeletedPeerIsGone) {
  ASSERT_NE(route(state_.state(), "10.244.3.0/24"), nullptr);
  ASSERT_EQ(fdbCount(state_.state(), "6e:1f:00:00:03:00"), 1u);
  ASSERT_TRUE(state_.apply(readFixture("events_delete.bin")).ok());
  EXPECT_EQ(route(state_.state(), "10.244.3.0/24"), nullptr);
  EXPECT_EQ(neighbour(state_.state(), "10.244.3.0"), nullptr);
  EXPECT_EQ(fdbCount(state_.state(), "6e:1f:00:00:03:00"), 0u);
  EXPECT_EQ(group(groupOverlayPeers(state_.state(), flannel_), "10.244.3.0/24"), nullptr);
  EXPECT_NE(route(state_.state(), "10.244.2.0/24"), nullptr);  // the other peers stay
  EXPECT_FALSE(state_.needsDump());
}

TEST_F(CacheState, FdbEntryReplacedInPlaceAsksForADump) {
  // The VXLAN driver announces only the new remote; the cache cannot know whether the old
  // one is gone, so it asks for a dump rather than guess.
  ASSERT_TRUE(state_.apply(readFixture("events_fdb_replace.bin")).ok());
  EXPECT_TRUE(state_.needsDump());
}

TEST_F(CacheState, LossAsksForADumpAndTheDumpIsTheNewTruth) {
  ASSERT_TRUE(state_.apply(readFixture("events_delete.bin")).ok());
  state_.lose();  // what the cache does on ENOBUFS
  EXPECT_TRUE(state_.needsDump());
  state_.reset(capturedSnapshot());  // the re-dump
  EXPECT_FALSE(state_.needsDump());
  EXPECT_NE(route(state_.state(), "10.244.3.0/24"), nullptr);
}

TEST_F(CacheState, PublishedSnapshotsDoNotChangeAfterwards) {
  SnapshotPtr before = state_.publish();
  EXPECT_FALSE(state_.changedSincePublish());
  ASSERT_TRUE(state_.apply(readFixture("events_delete.bin")).ok());
  EXPECT_TRUE(state_.changedSincePublish());
  EXPECT_NE(route(*before, "10.244.3.0/24"), nullptr);
  EXPECT_EQ(route(*state_.publish(), "10.244.3.0/24"), nullptr);
}

TEST_F(CacheState, GarbledNotificationsAreErrors) {
  auto bytes = readFixture("events_add.bin");
  bytes.resize(bytes.size() - 3);
  EXPECT_FALSE(state_.apply(bytes).ok());
  auto garbled = readFixture("events_change.bin");
  garbled[0] = 0xff;  // nlmsg_len beyond the buffer
  garbled[1] = 0xff;
  EXPECT_FALSE(state_.apply(garbled).ok());
}

TEST(NetlinkCache, StartsWithOneDumpOfThisNamespace) {
  auto cache = NetlinkCache::start();
  ASSERT_TRUE(cache.ok()) << cache.error().message;
  auto snap = (*cache)->current();
  ASSERT_TRUE(snap.ok()) << snap.error().message;
  EXPECT_NE((*snap)->linkByName("lo"), nullptr);
  EXPECT_EQ((*cache)->stats().dumps, 1u);
  // Reads cost no dump, and a reader over the cache pins one snapshot per round.
  auto reader = makeCachedNetlinkReader(*cache);
  reader->beginRound();
  auto a = reader->view();
  auto b = reader->view();
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(a->get(), b->get());
  EXPECT_EQ((*cache)->stats().dumps, 1u);
}
