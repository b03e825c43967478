#include "aggregator/collector_service.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <future>
#include <latch>
#include <memory>
#include <optional>
#include <vector>

#include "tests/unit/aggregator/server_fixture.h"
#include "tests/unit/aggregator/test_util.h"

namespace meshprobe::aggregator {
namespace {

using ::testing::ElementsAre;
using testing::eventually;
using testing::FakeAgent;
using testing::findCell;
using ::testing::HasSubstr;
using testing::makeHello;
using testing::makeProbe;

std::vector<std::string> names(const v1::PeerList& list) {
  std::vector<std::string> out;
  for (const auto& p : list.peers()) out.push_back(p.node_name());
  return out;
}

class CollectorTest : public testing::ServerFixture {
 protected:
  const CollectorStats& stats() { return server_->collector().stats(); }
  // The counters, as the last observed state when a wait fails.
  std::string statsNow() {
    const auto& c = stats();
    return "streams_open=" + std::to_string(c.streams_open.load()) +
           " connected_agents=" + std::to_string(c.connected_agents.load()) +
           " hellos=" + std::to_string(c.hellos.load()) +
           " reports_received=" + std::to_string(c.reports_received.load()) +
           " reports_ignored=" + std::to_string(c.reports_ignored.load());
  }

  grpc::Status getMatrix(v1::Layer layer, v1::GetMatrixResponse* resp) {
    grpc::ClientContext ctx;
    withDeadline(ctx);
    v1::GetMatrixRequest req;
    req.set_layer(layer);
    return query_->GetMatrix(&ctx, req, resp);
  }
};

TEST_F(CollectorTest, HelloGetsThePeerListAndAReportShowsInTheMatrix) {
  FakeAgent a(*collector_);
  ASSERT_TRUE(a.hello(makeHello("node1", 1)));
  auto peers = a.readPeers();
  ASSERT_TRUE(peers.has_value());
  EXPECT_THAT(names(*peers), ElementsAre("node1"));  // the receiver is included
  EXPECT_EQ(peers->peers(0).overlay_ip(), "10.244.1.0");

  FakeAgent b(*collector_);
  ASSERT_TRUE(b.hello(makeHello("node2", 2)));
  ASSERT_TRUE(b.readPeers().has_value());

  v1::Report r;
  r.set_sequence(1);
  *r.add_probes() = makeProbe("node2", v1::OVERLAY, 10, 0);
  *r.add_probes() = makeProbe("node2", v1::UNDERLAY, 10, 10);
  ASSERT_TRUE(a.report(r));

  v1::GetMatrixResponse overlay;
  ASSERT_TRUE(eventually(
      [&] {
        overlay.Clear();
        return getMatrix(v1::OVERLAY, &overlay).ok() && findCell(overlay, "node1", "node2") != nullptr &&
               findCell(overlay, "node1", "node2")->state() == v1::Cell::FAIL;
      },
      [&] { return overlay.ShortDebugString(); }));
  EXPECT_THAT(overlay.nodes(), ElementsAre("node1", "node2"));
  EXPECT_EQ(findCell(overlay, "node2", "node1")->state(), v1::Cell::UNKNOWN);
  v1::GetMatrixResponse underlay;
  ASSERT_TRUE(getMatrix(v1::UNDERLAY, &underlay).ok());
  EXPECT_EQ(findCell(underlay, "node1", "node2")->state(), v1::Cell::OK);

  grpc::ClientContext ctx;
  withDeadline(ctx);
  v1::ListNodesResponse nodes;
  ASSERT_TRUE(query_->ListNodes(&ctx, v1::ListNodesRequest(), &nodes).ok());
  ASSERT_EQ(nodes.nodes_size(), 2);
  EXPECT_TRUE(nodes.nodes(0).has_last_report());
  EXPECT_TRUE(nodes.nodes(0).up());

  EXPECT_EQ(stats().connected_agents.load(), 2);
  EXPECT_TRUE(eventually([&] { return stats().reports_received.load() == 1; },
                         [&] { return statsNow(); }));  // counted after applying
  EXPECT_EQ(stats().hellos.load(), 2u);
  EXPECT_TRUE(a.finish().ok());
  EXPECT_TRUE(b.finish().ok());
  EXPECT_TRUE(eventually([&] { return stats().connected_agents.load() == 0 && stats().streams_open.load() == 0; },
                         [&] { return statsNow(); }));
}

TEST_F(CollectorTest, ASecondAgentMakesTheFirstGetANewPeerList) {
  FakeAgent a(*collector_);
  ASSERT_TRUE(a.hello(makeHello("node1", 1)));
  ASSERT_THAT(names(*a.readPeers()), ElementsAre("node1"));

  FakeAgent b(*collector_);
  ASSERT_TRUE(b.hello(makeHello("node2", 2)));
  auto b_peers = b.readPeers();
  ASSERT_TRUE(b_peers.has_value());
  EXPECT_THAT(names(*b_peers), ElementsAre("node1", "node2"));

  auto a_peers = a.readPeers();
  ASSERT_TRUE(a_peers.has_value());
  EXPECT_THAT(names(*a_peers), ElementsAre("node1", "node2"));
  EXPECT_EQ(a_peers->peers(1).node_ip(), "198.51.100.2");

  // node2's VTEP MAC changes (flannel recreated flannel.1): both get the new list.
  auto moved = makeHello("node2", 2);
  moved.set_vtep_mac("02:de:ad:be:ef:02");
  ASSERT_TRUE(b.hello(moved));
  EXPECT_EQ(a.readPeers()->peers(1).vtep_mac(), "02:de:ad:be:ef:02");
  EXPECT_EQ(b.readPeers()->peers(1).vtep_mac(), "02:de:ad:be:ef:02");
  EXPECT_TRUE(a.finish().ok());
  EXPECT_TRUE(b.finish().ok());
}

TEST_F(CollectorTest, AnAgentThatAcceptsDeltasGetsThePeerListThenDeltasAndAnOldOneWholeLists) {
  FakeAgent old_agent(*collector_);
  ASSERT_TRUE(old_agent.hello(makeHello("node1", 1)));  // accepts_peer_deltas unset
  ASSERT_THAT(names(*old_agent.readPeers()), ElementsAre("node1"));
  FakeAgent agent(*collector_);
  auto hello = makeHello("node2", 2);
  hello.set_accepts_peer_deltas(true);
  ASSERT_TRUE(agent.hello(hello));
  auto first = agent.read();
  ASSERT_TRUE(first.has_value() && first->has_peer_list());  // a stream starts with the whole list
  EXPECT_THAT(names(first->peer_list()), ElementsAre("node1", "node2"));
  EXPECT_THAT(names(*old_agent.readPeers()), ElementsAre("node1", "node2"));

  FakeAgent third(*collector_);
  ASSERT_TRUE(third.hello(makeHello("node3", 3)));
  ASSERT_TRUE(third.readPeers().has_value());
  auto delta = agent.read();
  ASSERT_TRUE(delta.has_value() && delta->has_peer_delta()) << (delta ? delta->ShortDebugString() : "ended");
  ASSERT_EQ(delta->peer_delta().peers_size(), 1);
  EXPECT_EQ(delta->peer_delta().peers(0).node_name(), "node3");
  EXPECT_EQ(delta->peer_delta().peers(0).identity().node_ip(), "198.51.100.3");
  EXPECT_THAT(delta->peer_delta().left(), ::testing::IsEmpty());
  auto whole = old_agent.read();
  ASSERT_TRUE(whole.has_value() && whole->has_peer_list());
  EXPECT_THAT(names(whole->peer_list()), ElementsAre("node1", "node2", "node3"));

  // node3's VXLAN device was recreated: a delta entry with its new MAC.
  auto moved = makeHello("node3", 3);
  moved.set_vtep_mac("02:de:ad:be:ef:03");
  ASSERT_TRUE(third.hello(moved));
  auto change = agent.read();
  ASSERT_TRUE(change.has_value() && change->has_peer_delta());
  ASSERT_EQ(change->peer_delta().peers_size(), 1);
  EXPECT_EQ(change->peer_delta().peers(0).vtep_mac(), "02:de:ad:be:ef:03");

  // Written, by kind: 7 PeerLists (3 first lists; node1 and node3, which predate deltas,
  // one per later change: 3 + 1) and node2's 2 deltas.
  EXPECT_TRUE(eventually(
      [&] { return stats().membership_messages[0].load() == 7 && stats().membership_messages[1].load() == 2; },
      [&] {
        return "full=" + std::to_string(stats().membership_messages[0].load()) +
               " delta=" + std::to_string(stats().membership_messages[1].load());
      }));
  EXPECT_EQ(stats().membership_bytes[1].load(), delta->ByteSizeLong() + change->ByteSizeLong());
  EXPECT_TRUE(old_agent.finish().ok());
  EXPECT_TRUE(agent.finish().ok());
  EXPECT_TRUE(third.finish().ok());
}

TEST_F(CollectorTest, UnchangedMembershipPushesNothing) {
  FakeAgent a(*collector_);
  ASSERT_TRUE(a.hello(makeHello("node1", 1)));
  ASSERT_TRUE(a.readPeers().has_value());
  const uint64_t pushes = stats().peer_list_pushes.load();
  auto again = makeHello("node1", 1);
  again.set_agent_version("0.1.1");  // not a peer fact
  ASSERT_TRUE(a.hello(again));
  v1::Report r;
  r.set_sequence(1);
  ASSERT_TRUE(a.report(r));
  ASSERT_TRUE(eventually([&] { return stats().reports_received.load() == 1; }, [&] { return statsNow(); }));
  EXPECT_EQ(stats().peer_list_pushes.load(), pushes);
  EXPECT_EQ(server_->state().getNode("node1")->node().agent_version(), "0.1.1");
  EXPECT_TRUE(a.finish().ok());
}

TEST_F(CollectorTest, FirstMessageNotHelloIsInvalidArgument) {
  FakeAgent a(*collector_);
  v1::Report r;
  r.set_sequence(1);
  a.report(r);
  grpc::Status st = a.status();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("first message"));
  EXPECT_THAT(st.error_message(), HasSubstr("Hello"));
  EXPECT_EQ(stats().ingestErrors(IngestError::kFirstNotHello), 1u);
  EXPECT_EQ(server_->state().memberCount(), 0u);
}

TEST_F(CollectorTest, EmptyFirstMessageIsInvalidArgument) {
  FakeAgent a(*collector_);
  a.write(v1::AgentMessage());
  grpc::Status st = a.status();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("Hello"));
}

// Bytes that are not an AgentMessage (a field tag with its varint cut short), written
// through a stream that does not encode anything itself, end the stream with a status that
// says so, are counted, and change nothing.
TEST_F(CollectorTest, BytesThatAreNotAnAgentMessageAreInvalidArgument) {
  grpc::ClientContext ctx;
  withDeadline(ctx);
  const grpc::internal::RpcMethod method("/meshprobe.v1.Collector/Connect", grpc::internal::RpcMethod::BIDI_STREAMING);
  std::unique_ptr<grpc::ClientReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>> stream(
      grpc::internal::ClientReaderWriterFactory<grpc::ByteBuffer, grpc::ByteBuffer>::Create(channel_.get(), method,
                                                                                             &ctx));
  const std::string garbage("\x0a\xff\xff", 3);  // field 1, length-delimited, length never ends
  grpc::Slice slice(garbage);
  stream->Write(grpc::ByteBuffer(&slice, 1));
  stream->WritesDone();
  grpc::ByteBuffer ignored;
  while (stream->Read(&ignored)) {
  }
  const grpc::Status st = stream->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("AgentMessage"));
  EXPECT_EQ(stats().ingestErrors(IngestError::kUnparsable), 1u);
  EXPECT_EQ(stats().hellos.load(), 0u);
  EXPECT_EQ(server_->state().memberCount(), 0u);
}

TEST_F(CollectorTest, HelloWithoutNodeNameIsInvalidArgumentNamingTheField) {
  FakeAgent a(*collector_);
  a.hello(makeHello("", 1));
  grpc::Status st = a.status();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("node_name"));
  EXPECT_EQ(stats().ingestErrors(IngestError::kInvalidHello), 1u);
}

TEST_F(CollectorTest, AStreamCannotChangeItsNodeName) {
  FakeAgent a(*collector_);
  ASSERT_TRUE(a.hello(makeHello("node1", 1)));
  ASSERT_TRUE(a.readPeers().has_value());
  a.hello(makeHello("node9", 9));
  grpc::Status st = a.status();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("node1"));
  EXPECT_THAT(st.error_message(), HasSubstr("node9"));
  EXPECT_EQ(stats().ingestErrors(IngestError::kNodeRenamed), 1u);
  // The membership keeps node1 (a closed stream marks nothing) and never had node9.
  EXPECT_EQ(server_->state().memberCount(), 1u);
}

TEST_F(CollectorTest, OldSequencesAreCountedAndIgnored) {
  FakeAgent a(*collector_);
  ASSERT_TRUE(a.hello(makeHello("node1", 1)));
  ASSERT_TRUE(a.readPeers().has_value());
  for (uint64_t seq : {3, 2, 3, 4}) {
    v1::Report r;
    r.set_sequence(seq);
    ASSERT_TRUE(a.report(r));
  }
  ASSERT_TRUE(eventually([&] { return stats().reports_received.load() + stats().reports_ignored.load() == 4; },
                         [&] { return statsNow(); }));
  EXPECT_EQ(stats().reports_received.load(), 2u);
  EXPECT_EQ(stats().reports_ignored.load(), 2u);
  EXPECT_TRUE(a.finish().ok());
}

TEST_F(CollectorTest, AClosedStreamLeavesTheNodeUntilItIsStale) {
  {
    FakeAgent a(*collector_);
    ASSERT_TRUE(a.hello(makeHello("node1", 1)));
    ASSERT_TRUE(a.readPeers().has_value());
    EXPECT_TRUE(a.finish().ok());
  }
  ASSERT_TRUE(eventually([&] { return stats().streams_open.load() == 0; }, [&] { return statsNow(); }));
  EXPECT_EQ(server_->state().memberCount(), 1u);
  EXPECT_TRUE(server_->state().isUp("node1"));
  clock_.advance(std::chrono::seconds(10));
  EXPECT_FALSE(server_->state().isUp("node1"));
}

TEST_F(CollectorTest, ForgettingASilentNodePushesTheShorterList) {
  FakeAgent a(*collector_);
  ASSERT_TRUE(a.hello(makeHello("node1", 1)));
  ASSERT_TRUE(a.readPeers().has_value());
  {
    FakeAgent b(*collector_);
    ASSERT_TRUE(b.hello(makeHello("node2", 2)));
    ASSERT_TRUE(b.readPeers().has_value());
    ASSERT_THAT(names(*a.readPeers()), ElementsAre("node1", "node2"));
    EXPECT_TRUE(b.finish().ok());
  }
  clock_.advance(std::chrono::seconds(60));
  v1::Report r;
  r.set_sequence(1);
  ASSERT_TRUE(a.report(r));  // node1 keeps reporting
  ASSERT_TRUE(eventually([&] { return stats().reports_received.load() == 1; }, [&] { return statsNow(); }));
  clock_.advance(std::chrono::seconds(40));  // node2 silent for 100 s = 10 x stale-after
  server_->collector().sweep();
  auto peers = a.readPeers();
  ASSERT_TRUE(peers.has_value());
  EXPECT_THAT(names(*peers), ElementsAre("node1"));
  EXPECT_TRUE(a.finish().ok());
}

TEST_F(CollectorTest, AForgottenNodeIsALeftEntryInTheDelta) {
  FakeAgent a(*collector_);
  auto hello = makeHello("node1", 1);
  hello.set_accepts_peer_deltas(true);
  ASSERT_TRUE(a.hello(hello));
  ASSERT_TRUE(a.read().has_value());
  {
    FakeAgent b(*collector_);
    ASSERT_TRUE(b.hello(makeHello("node2", 2)));
    ASSERT_TRUE(b.readPeers().has_value());
    auto joined = a.read();
    ASSERT_TRUE(joined.has_value() && joined->has_peer_delta());
    EXPECT_TRUE(b.finish().ok());
  }
  clock_.advance(std::chrono::seconds(60));
  v1::Report r;
  r.set_sequence(1);
  ASSERT_TRUE(a.report(r));  // node1 keeps reporting
  ASSERT_TRUE(eventually([&] { return stats().reports_received.load() == 1; }, [&] { return statsNow(); }));
  clock_.advance(std::chrono::seconds(40));  // node2 silent for 100 s = 10 x stale-after
  server_->collector().sweep();
  auto left = a.read();
  ASSERT_TRUE(left.has_value() && left->has_peer_delta());
  EXPECT_THAT(left->peer_delta().left(), ElementsAre("node2"));
  EXPECT_EQ(left->peer_delta().peers_size(), 0);
  EXPECT_TRUE(a.finish().ok());
}

// The server as deployed: membership changes wait for the window (on the server's clock).
class CoalescingCollectorTest : public CollectorTest {
 protected:
  CoalescingCollectorTest() { membership_window_ = std::chrono::milliseconds(250); }
};

TEST_F(CoalescingCollectorTest, JoinsWithinTheWindowReachAnAgentAsOneDelta) {
  FakeAgent a(*collector_);
  auto hello = makeHello("node1", 1);
  hello.set_accepts_peer_deltas(true);
  ASSERT_TRUE(a.hello(hello));
  // The joiner's list waits for the window too (the server's tick keeps calling
  // flushMembership, but the FakeClock has not moved).
  ASSERT_TRUE(eventually([&] { return stats().hellos.load() == 1; }, [&] { return statsNow(); }));
  server_->collector().flushMembership();
  EXPECT_EQ(stats().peer_list_pushes.load(), 0u);
  clock_.advance(std::chrono::milliseconds(250));
  server_->collector().flushMembership();
  auto first = a.read();
  ASSERT_TRUE(first.has_value() && first->has_peer_list());
  EXPECT_THAT(names(first->peer_list()), ElementsAre("node1"));
  std::vector<std::unique_ptr<FakeAgent>> others;
  for (int n = 2; n <= 4; ++n) {
    others.push_back(std::make_unique<FakeAgent>(*collector_));
    ASSERT_TRUE(others.back()->hello(makeHello("node" + std::to_string(n), n)));
    ASSERT_TRUE(eventually([&] { return stats().hellos.load() == static_cast<uint64_t>(n); },
                           [&] { return statsNow(); }));
  }
  // The window is open: no list or delta was written for these joins yet.
  EXPECT_EQ(stats().peer_list_pushes.load(), 1u);
  clock_.advance(std::chrono::milliseconds(250));
  server_->collector().flushMembership();
  auto delta = a.read();
  ASSERT_TRUE(delta.has_value() && delta->has_peer_delta()) << (delta ? delta->ShortDebugString() : "ended");
  std::vector<std::string> joined;
  for (const auto& p : delta->peer_delta().peers()) joined.push_back(p.node_name());
  EXPECT_THAT(joined, ElementsAre("node2", "node3", "node4"));
  // The joiners got one whole list each, with every join of the window.
  for (auto& o : others) {
    auto whole = o->readPeers();
    ASSERT_TRUE(whole.has_value());
    EXPECT_THAT(names(*whole), ElementsAre("node1", "node2", "node3", "node4"));
  }
  EXPECT_TRUE(eventually([&] { return stats().membership_messages[1].load() == 1; }, [&] { return statsNow(); }));
  EXPECT_TRUE(a.finish().ok());
  for (auto& o : others) EXPECT_TRUE(o->finish().ok());
}

// A stream that never says Hello is ended once the Hello timeout (10 s on the FakeClock)
// has passed since it opened; a stream that said Hello is left alone however long ago that was.
TEST_F(CollectorTest, AStreamWithoutHelloIsEndedAfterTheHelloTimeout) {
  FakeAgent agent(*collector_);
  ASSERT_TRUE(agent.hello(makeHello("node1", 1)));
  ASSERT_TRUE(agent.readPeers().has_value());
  FakeAgent silent(*collector_);
  ASSERT_TRUE(eventually([&] { return stats().streams_open.load() == 2; }, [&] { return statsNow(); }));

  clock_.advance(kDefaultHelloTimeout - std::chrono::seconds(1));
  server_->collector().sweep();
  EXPECT_EQ(stats().ingestErrors(IngestError::kHelloTimeout), 0u);
  EXPECT_EQ(stats().streams_open.load(), 2);

  clock_.advance(std::chrono::seconds(1));
  server_->collector().sweep();
  EXPECT_EQ(stats().ingestErrors(IngestError::kHelloTimeout), 1u);
  const grpc::Status st = silent.status();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_THAT(st.error_message(), HasSubstr("no Hello within 10s"));
  EXPECT_TRUE(eventually([&] { return stats().streams_open.load() == 1; }, [&] { return statsNow(); }));

  server_->collector().sweep();  // ended once, counted once
  EXPECT_EQ(stats().ingestErrors(IngestError::kHelloTimeout), 1u);
  EXPECT_EQ(stats().connected_agents.load(), 1);
  v1::Report r;
  r.set_sequence(1);
  EXPECT_TRUE(agent.report(r));
  EXPECT_TRUE(eventually([&] { return stats().reports_received.load() == 1; }, [&] { return statsNow(); }));
  EXPECT_TRUE(agent.finish().ok());
}

// A Hello that arrived but waits behind a backlog of messages for an ingest worker is the
// aggregator's delay, not the agent's silence: the sweep leaves the stream open, and the
// Hello is handled when a worker is free.
TEST_F(CollectorTest, AHelloWaitingForAWorkerIsNotEndedByTheHelloTimeout) {
  // Occupy every ingest worker until `release` (also on a failed assertion: the fixture's
  // shutdown joins the workers).
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::latch busy(static_cast<std::ptrdiff_t>(kIngestWorkers));
  for (size_t i = 0; i < kIngestWorkers; ++i) {
    server_->collector().post([&busy, released] {
      busy.count_down();
      released.wait();
    });
  }
  struct Release {
    explicit Release(std::promise<void>& p) : p(p) {}
    Release(const Release&) = delete;
    Release& operator=(const Release&) = delete;
    ~Release() { p.set_value(); }
    std::promise<void>& p;
  };
  std::optional<Release> guard;
  guard.emplace(release);
  busy.wait();

  FakeAgent agent(*collector_);
  ASSERT_TRUE(agent.hello(makeHello("node1", 1)));
  ASSERT_TRUE(eventually([&] { return stats().messages_read.load() == 1; }, [&] { return statsNow(); }));
  clock_.advance(kDefaultHelloTimeout + std::chrono::seconds(1));
  server_->collector().sweep();
  EXPECT_EQ(stats().ingestErrors(IngestError::kHelloTimeout), 0u);
  EXPECT_EQ(stats().streams_open.load(), 1);
  EXPECT_EQ(stats().hellos.load(), 0u);  // still waiting for a worker

  guard.reset();  // the workers take the Hello
  auto peers = agent.readPeers();
  ASSERT_TRUE(peers.has_value());
  EXPECT_THAT(names(*peers), ElementsAre("node1"));
  EXPECT_EQ(stats().connected_agents.load(), 1);
  // Its wait is the handling time in /metrics: 11 s on the FakeClock, above every bound.
  ASSERT_TRUE(eventually([&] { return stats().message_seconds.snapshot().count == 1; }, [&] { return statsNow(); }));
  const HistogramSnapshot handled = stats().message_seconds.snapshot();
  EXPECT_DOUBLE_EQ(handled.sum, 11.0);
  EXPECT_EQ(handled.counts.back(), 1u);
  EXPECT_TRUE(agent.finish().ok());
}

TEST_F(CollectorTest, ShutdownEndsAgentStreamsWithUnavailable) {
  FakeAgent a(*collector_);
  ASSERT_TRUE(a.hello(makeHello("node1", 1)));
  ASSERT_TRUE(a.readPeers().has_value());
  const auto start = std::chrono::steady_clock::now();
  server_->shutdown();
  // A real deadline: shutdown() ends open agent streams itself instead of waiting for
  // them; a stream left open would hold grpc::Server::Shutdown for its whole grace
  // (500 ms) and Wait() after it. The bound is twice that grace.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  grpc::Status st = a.status();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE);
}

}  // namespace
}  // namespace meshprobe::aggregator
