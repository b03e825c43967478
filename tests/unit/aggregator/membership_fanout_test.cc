#include "aggregator/membership_fanout.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/aggregator/test_util.h"

namespace meshprobe::aggregator {
namespace {

using std::chrono::milliseconds;
using ::testing::ElementsAre;
using testing::makeHello;

constexpr milliseconds kWindow{250};

// One stream: records what it gets, and folds it into the membership it would hold.
struct Sink : MembershipSink {
  void sendMembership(MembershipMessage shared) override {
    const v1::AggregatorMessage& msg = shared->message();
    got.push_back(msg);
    objects.push_back(&shared->message());
    bytes += msg.ByteSizeLong();
    if (msg.has_peer_list()) {
      ++fulls;
      list = msg.peer_list();
      have_list = true;
    } else if (msg.has_peer_delta()) {
      ++deltas;
      entries += msg.peer_delta().peers_size() + msg.peer_delta().left_size();
      EXPECT_TRUE(have_list) << "a delta before the stream's PeerList";
      applyPeerDelta(list, msg.peer_delta());
    }
    if (msg.has_peer_list()) entries += msg.peer_list().peers_size();
  }
  std::vector<v1::AggregatorMessage> got;
  std::vector<const v1::AggregatorMessage*> objects;  // which shared message each one was
  v1::PeerList list;
  bool have_list = false;
  size_t fulls = 0, deltas = 0, entries = 0, bytes = 0;
};

std::string node(int i) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "node%04d", i);
  return buf;
}

// Membership as CollectorService drives the fanout: the change, the joiner added, then a
// flush when due.
class Cluster {
 public:
  Cluster(FakeClock& clock, milliseconds window) : fanout(clock, window) {}

  // node(i) says its first Hello on a new stream.
  Sink& join(int i, bool accepts_deltas) {
    v1::PeerList before = current();
    members_[node(i)] = peerFromHello(makeHello(node(i), i));
    fanout.changed(diffPeers(before, current()));
    sinks.push_back(std::make_unique<Sink>());
    fanout.add(sinks.back().get(), accepts_deltas);
    tick();
    return *sinks.back();
  }
  void change(int i, const std::string& mac) {
    v1::PeerList before = current();
    members_[node(i)].set_vtep_mac(mac);
    members_[node(i)].mutable_identity()->set_vtep_mac(mac);
    fanout.changed(diffPeers(before, current()));
    tick();
  }
  void forget(int i) {
    v1::PeerList before = current();
    members_.erase(node(i));
    fanout.changed(diffPeers(before, current()));
    tick();
  }
  void tick() {
    if (fanout.due()) fanout.flush(peerListMessage(current()));
  }
  v1::PeerList current() const {
    v1::PeerList out;
    for (const auto& [name, p] : members_) *out.add_peers() = p;
    return out;
  }
  size_t messages() const {
    size_t n = 0;
    for (const auto& s : sinks) n += s->got.size();
    return n;
  }
  size_t bytes() const {
    size_t n = 0;
    for (const auto& s : sinks) n += s->bytes;
    return n;
  }

  MembershipFanout fanout;
  std::vector<std::unique_ptr<Sink>> sinks;

 private:
  std::map<std::string, v1::Peer> members_;
};

void expectEveryStreamHolds(const Cluster& c) {
  const std::string want = c.current().SerializeAsString();
  for (size_t i = 0; i < c.sinks.size(); ++i) {
    EXPECT_EQ(c.sinks[i]->list.SerializeAsString(), want) << "stream " << i;
  }
}

constexpr int kBurst = 100;

TEST(MembershipFanout, ABurstOfJoinsWithinAWindowIsOneSharedPeerListPerStream) {
  FakeClock clock;
  Cluster c(clock, kWindow);
  for (int i = 1; i <= kBurst; ++i) {
    c.join(i, /*accepts_deltas=*/true);
    clock.advance(milliseconds(1));  // 100 joins within 100 ms: one window
  }
  EXPECT_EQ(c.messages(), 0u);  // the joiners' lists wait for the window
  clock.advance(kWindow);
  c.tick();
  expectEveryStreamHolds(c);
  size_t entries = 0;
  for (int i = 0; i < kBurst; ++i) {
    const Sink& s = *c.sinks[i];
    EXPECT_EQ(s.fulls, 1u) << i;
    EXPECT_EQ(s.deltas, 0u) << i;  // the list came after every join
    EXPECT_EQ(s.entries, static_cast<size_t>(kBurst)) << i;
    // One list built for the window, shared by every joiner.
    ASSERT_EQ(s.objects.size(), 1u);
    EXPECT_EQ(s.objects[0], c.sinks[0]->objects[0]) << i;
    entries += s.entries;
  }
  // O(N) messages and O(N) entries per stream: N^2 entries in all, not N^3/2.
  EXPECT_EQ(c.messages(), static_cast<size_t>(kBurst));
  EXPECT_EQ(entries, static_cast<size_t>(kBurst * kBurst));
  const size_t entry_bytes = c.current().ByteSizeLong() / kBurst;
  EXPECT_LT(c.bytes(), static_cast<size_t>(kBurst * kBurst) * (entry_bytes + 8));
  // Nothing waits: a later tick sends nothing.
  clock.advance(kWindow);
  c.tick();
  EXPECT_EQ(c.messages(), static_cast<size_t>(kBurst));
}

// Joins that span windows: a stream gets its list at the flush after its join, then one
// delta per later window with the joins after its list.
TEST(MembershipFanout, ABurstOfJoinsOverSeveralWindowsIsOneListThenOneDeltaPerWindow) {
  FakeClock clock;
  Cluster c(clock, kWindow);
  for (int i = 1; i <= kBurst; ++i) {
    c.join(i, /*accepts_deltas=*/true);
    clock.advance(milliseconds(10));  // 1 s of joins: 4 windows
  }
  clock.advance(kWindow);
  c.tick();
  expectEveryStreamHolds(c);
  std::set<const v1::AggregatorMessage*> lists;
  for (int i = 0; i < kBurst; ++i) {
    const Sink& s = *c.sinks[i];
    EXPECT_EQ(s.fulls, 1u) << i;
    EXPECT_LE(s.deltas, 4u) << i;
    EXPECT_EQ(s.entries, static_cast<size_t>(kBurst)) << i;  // every member once
    lists.insert(s.objects[0]);
  }
  EXPECT_LE(lists.size(), 5u);  // one list built per window
  EXPECT_EQ(c.sinks.back()->deltas, 0u);
}

TEST(MembershipFanout, AgentsWithoutDeltasGetWholeListsOnlyAndEveryChangeAtOnceCostsNSquaredMessages) {
  // Without a window and without deltas: every join sends the whole list to every stream.
  FakeClock clock;
  Cluster before(clock, milliseconds(0));
  for (int i = 1; i <= kBurst; ++i) before.join(i, /*accepts_deltas=*/false);
  expectEveryStreamHolds(before);
  EXPECT_EQ(before.messages(), static_cast<size_t>(kBurst * (kBurst + 1) / 2));

  // Coalesced, still without deltas: whole lists only, one per stream and window.
  auto burst = [&](Cluster& c, bool accepts_deltas) {
    for (int i = 1; i <= kBurst; ++i) {
      c.join(i, accepts_deltas);
      clock.advance(milliseconds(10));  // 1 s of joins: 4 windows
    }
    clock.advance(kWindow);
    c.tick();
    expectEveryStreamHolds(c);
  };
  Cluster old_agents(clock, kWindow);
  burst(old_agents, false);
  for (const auto& s : old_agents.sinks) {
    EXPECT_EQ(s->deltas, 0u);
    for (const auto& m : s->got) EXPECT_TRUE(m.has_peer_list());
  }
  EXPECT_LE(old_agents.messages(), 5u * kBurst);

  // With deltas the same burst is as many messages, and far fewer bytes than either.
  Cluster new_agents(clock, kWindow);
  burst(new_agents, true);
  EXPECT_EQ(new_agents.messages(), old_agents.messages());
  EXPECT_LT(new_agents.bytes() * 20, before.bytes());
  EXPECT_LT(new_agents.bytes() * 4, old_agents.bytes() * 3);
}

TEST(MembershipFanout, OldAndNewAgentsSideBySideEachGetTheirForm) {
  FakeClock clock;
  Cluster c(clock, kWindow);
  Sink& old_agent = c.join(1, false);
  Sink& new_agent = c.join(2, true);
  clock.advance(kWindow);
  c.tick();
  Sink& last = c.join(3, true);
  clock.advance(kWindow);
  c.tick();
  expectEveryStreamHolds(c);
  ASSERT_EQ(old_agent.got.size(), 2u);
  EXPECT_TRUE(old_agent.got[1].has_peer_list());
  ASSERT_EQ(new_agent.got.size(), 2u);
  ASSERT_TRUE(new_agent.got[1].has_peer_delta());
  // Only what came after its own PeerList: node3's join.
  ASSERT_EQ(new_agent.got[1].peer_delta().peers_size(), 1);
  EXPECT_EQ(new_agent.got[1].peer_delta().peers(0).node_name(), node(3));
  ASSERT_EQ(last.got.size(), 1u);
  EXPECT_EQ(last.got[0].peer_list().peers_size(), 3);
}

TEST(MembershipFanout, AChangedIdentityIsADeltaEntryAndAForgottenNodeALeftOne) {
  FakeClock clock;
  Cluster c(clock, kWindow);
  Sink& a = c.join(1, true);
  Sink& legacy = c.join(2, false);
  c.join(3, true);
  clock.advance(kWindow);
  c.tick();
  const size_t before = a.got.size();

  c.change(2, "02:de:ad:be:ef:02");  // flannel recreated node2's VXLAN device
  c.forget(3);                       // --forget-after
  EXPECT_EQ(a.got.size(), before);   // the window is open
  clock.advance(kWindow);
  c.tick();
  ASSERT_EQ(a.got.size(), before + 1);
  const v1::PeerDelta& d = a.got.back().peer_delta();
  ASSERT_EQ(d.peers_size(), 1);
  EXPECT_EQ(d.peers(0).node_name(), node(2));
  EXPECT_EQ(d.peers(0).vtep_mac(), "02:de:ad:be:ef:02");
  EXPECT_EQ(d.peers(0).identity().vtep_mac(), "02:de:ad:be:ef:02");
  EXPECT_THAT(d.left(), ElementsAre(node(3)));
  ASSERT_TRUE(legacy.got.back().has_peer_list());
  EXPECT_EQ(legacy.got.back().peer_list().peers_size(), 2);
  expectEveryStreamHolds(c);
}

TEST(MembershipFanout, WithoutAWindowEveryChangeGoesOutAtOnceAndTheJoinerGetsOneList) {
  FakeClock clock;
  Cluster c(clock, milliseconds(0));
  Sink& a = c.join(1, true);
  Sink& b = c.join(2, true);
  EXPECT_EQ(b.got.size(), 1u);  // its PeerList had its own join
  ASSERT_EQ(a.got.size(), 2u);
  ASSERT_TRUE(a.got[1].has_peer_delta());
  EXPECT_EQ(a.got[1].peer_delta().peers(0).node_name(), node(2));
  expectEveryStreamHolds(c);
}

TEST(MembershipFanout, ARemovedStreamGetsNothingMore) {
  FakeClock clock;
  Cluster c(clock, milliseconds(0));
  Sink& a = c.join(1, true);
  c.fanout.remove(&a);
  c.join(2, true);
  EXPECT_EQ(a.got.size(), 1u);
  EXPECT_EQ(c.fanout.receivers(), 1u);
}

// A stream that ends before the flush after its join gets nothing, and the others still
// get their lists.
TEST(MembershipFanout, AStreamRemovedBeforeItsListGetsNothing) {
  FakeClock clock;
  Cluster c(clock, kWindow);
  Sink& a = c.join(1, true);
  Sink& b = c.join(2, true);
  c.fanout.remove(&a);
  clock.advance(kWindow);
  c.tick();
  EXPECT_TRUE(a.got.empty());
  ASSERT_EQ(b.got.size(), 1u);
  EXPECT_EQ(b.got[0].peer_list().peers_size(), 2);
  clock.advance(kWindow);
  EXPECT_FALSE(c.fanout.due());  // nothing waits
}

TEST(MembershipFanout, NoChangeNoMessage) {
  FakeClock clock;
  Cluster c(clock, kWindow);
  c.join(1, true);
  clock.advance(kWindow);
  EXPECT_TRUE(c.fanout.due());  // node1's join and its stream's list wait
  c.tick();
  EXPECT_EQ(c.messages(), 1u);
  c.fanout.changed(MembershipDiff{});
  clock.advance(kWindow * 2);
  EXPECT_FALSE(c.fanout.due());
  c.tick();
  EXPECT_EQ(c.messages(), 1u);
  EXPECT_THAT(c.sinks[0]->got[0].peer_list().peers(), ::testing::SizeIs(1));
}

// A stream whose agent does not read: what the fanout sends it waits in its queue
// (MembershipQueue, as AgentStream holds it), and is drained at the end in order.
struct SlowSink : MembershipSink {
  void sendMembership(MembershipMessage msg) override {
    queue.push(std::move(msg));
    longest = std::max(longest, queue.size());
  }
  MembershipQueue queue;
  size_t longest = 0;
};

TEST(MembershipQueue, ASlowStreamHoldsTheSharedListAndOneDeltaAndEndsWithTheMembership) {
  FakeClock clock;
  Cluster c(clock, kWindow);
  for (int i = 1; i <= 20; ++i) c.join(i, true);
  SlowSink slow;
  c.fanout.add(&slow, /*accepts_deltas=*/true);
  clock.advance(kWindow);
  c.tick();  // the slow stream's PeerList, shared with the joiners of the window
  ASSERT_EQ(slow.queue.size(), 1u);
  const OutboundMessage* list = nullptr;
  {
    MembershipQueue copy = slow.queue;
    list = copy.pop().get();
  }
  EXPECT_EQ(&list->message(), c.sinks[0]->objects.back()) << "the queue holds the shared list";
  // Changes over many windows while the agent reads nothing.
  for (int w = 0; w < 30; ++w) {
    c.join(100 + w, true);
    if (w % 3 == 0) c.forget(1 + w / 3);
    if (w % 4 == 0) c.change(15, "02:00:00:00:00:" + std::to_string(10 + w));
    clock.advance(kWindow);
    c.tick();
  }
  EXPECT_EQ(slow.longest, 2u);
  ASSERT_EQ(slow.queue.size(), 2u);
  // Drained as the stream writes: the same list object first (never copied for this
  // stream), then one delta with every change since.
  const MembershipMessage first = slow.queue.pop();
  EXPECT_EQ(first.get(), list);
  const MembershipMessage second = slow.queue.pop();
  EXPECT_TRUE(slow.queue.empty());
  ASSERT_TRUE(first->message().has_peer_list());
  ASSERT_TRUE(second->message().has_peer_delta());
  v1::PeerList held = first->message().peer_list();
  applyPeerDelta(held, second->message().peer_delta());
  EXPECT_EQ(held.SerializeAsString(), c.current().SerializeAsString());
}

TEST(MembershipQueue, AListReplacesWhateverWaitsAndDeltasMergeIntoOne) {
  auto list = [](std::initializer_list<int> ids) {
    v1::PeerList l;
    for (int i : ids) *l.add_peers() = peerFromHello(makeHello(node(i), i));
    return peerListMessage(l);
  };
  auto delta = [](int joined, int left) {
    v1::AggregatorMessage m;
    *m.mutable_peer_delta()->add_peers() = peerFromHello(makeHello(node(joined), joined));
    m.mutable_peer_delta()->add_left(node(left));
    return std::make_shared<const OutboundMessage>(std::move(m));
  };
  MembershipQueue q;
  q.push(delta(3, 1));
  q.push(delta(4, 2));
  ASSERT_EQ(q.size(), 1u);  // merged
  {
    v1::PeerList l;
    for (int i : {1, 2}) *l.add_peers() = peerFromHello(makeHello(node(i), i));
    applyPeerDelta(l, q.pop()->message().peer_delta());
    std::vector<std::string> names;
    for (const auto& p : l.peers()) names.push_back(p.node_name());
    EXPECT_THAT(names, ::testing::UnorderedElementsAre(node(3), node(4)));
  }
  q.push(delta(3, 1));
  const MembershipMessage newest = list({5, 6});
  q.push(newest);
  ASSERT_EQ(q.size(), 1u);  // the list says everything the delta did
  q.push(delta(7, 5));
  q.push(list({8}));
  ASSERT_EQ(q.size(), 1u);
  EXPECT_EQ(q.pop()->message().peer_list().peers(0).node_name(), node(8));
  q.push(newest);
  q.push(delta(7, 5));
  q.push(delta(9, 6));
  ASSERT_EQ(q.size(), 2u);
  EXPECT_EQ(q.pop(), newest);
  EXPECT_EQ(q.pop()->message().peer_delta().peers_size(), 2);
  q.push(newest);
  q.clear();
  EXPECT_TRUE(q.empty());
}

// The wire form is encoded once, however many streams write it at the same time, and every
// copy of the buffer refers to the same bytes: a stream's write costs a reference, not a
// copy of a 5,000-member PeerList. The bytes decode to the message.
TEST(OutboundMessage, IsEncodedOnceAndEveryStreamWritesTheSameBytes) {
  v1::PeerList list;
  for (int i = 0; i < 2000; ++i) {
    auto* p = list.add_peers();
    p->set_node_name(node(i));
    p->set_overlay_ip("10.244.0.0");
  }
  const MembershipMessage msg = peerListMessage(list);
  constexpr int kStreams = 4;
  std::vector<const uint8_t*> data(kStreams);
  std::vector<size_t> slices(kStreams), sizes(kStreams);
  {
    std::vector<std::jthread> streams;
    for (int t = 0; t < kStreams; ++t) {
      streams.emplace_back([&, t] {
        const grpc::ByteBuffer out = msg->wire();  // what a stream hands to StartWrite
        std::vector<grpc::Slice> s;
        if (!out.Dump(&s).ok() || s.empty()) return;
        slices[t] = s.size();
        data[t] = s[0].begin();
        sizes[t] = s[0].size();
      });
    }
  }
  for (int t = 0; t < kStreams; ++t) {
    EXPECT_EQ(slices[t], 1u) << t;
    EXPECT_EQ(data[t], data[0]) << "stream " << t << " got its own encoding";
    EXPECT_EQ(sizes[t], msg->message().ByteSizeLong()) << t;
  }
  std::vector<grpc::Slice> s;
  ASSERT_TRUE(msg->wire().Dump(&s).ok());
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].begin(), data[0]);
  v1::AggregatorMessage decoded;
  ASSERT_TRUE(decoded.ParseFromArray(s[0].begin(), static_cast<int>(s[0].size())));
  EXPECT_EQ(decoded.SerializeAsString(), msg->message().SerializeAsString());
  EXPECT_EQ(decoded.peer_list().peers_size(), 2000);
}

}  // namespace
}  // namespace meshprobe::aggregator
