#include "agent/daemon/stream_client.h"

#include <grpcpp/grpcpp.h>
#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <thread>

using namespace meshprobe::agent;
using namespace std::chrono_literals;
using meshprobe::v1::AgentMessage;
using meshprobe::v1::AggregatorMessage;

namespace {

// A minimal in-process aggregator: records what agents send, answers Hello with a PeerList.
class FakeCollector final : public meshprobe::v1::Collector::Service {
 public:
  grpc::Status Connect(grpc::ServerContext*, grpc::ServerReaderWriter<AggregatorMessage, AgentMessage>* stream) override {
    AgentMessage msg;
    while (stream->Read(&msg)) {
      std::lock_guard lock(mu);
      if (msg.has_hello() && !script.empty()) {  // a scripted answer instead of the PeerList
        hellos.push_back(msg.hello());
        for (const auto& m : script) stream->Write(m);
      } else if (msg.has_hello()) {
        hellos.push_back(msg.hello());
        AggregatorMessage reply;
        reply.mutable_peer_list()->set_accepts_report_deltas(accepts_report_deltas);
        reply.mutable_peer_list()->set_accepts_results_follow(accepts_results_follow);
        if (quiet_report_interval.count() > 0) {
          *reply.mutable_peer_list()->mutable_quiet_report_interval() =
              google::protobuf::util::TimeUtil::NanosecondsToDuration(quiet_report_interval.count());
        }
        auto* peer = reply.mutable_peer_list()->add_peers();
        peer->set_node_name("peer-from-" + msg.hello().node_name());
        stream->Write(reply);
      } else if (msg.has_report()) {
        sequences.push_back(msg.report().sequence());
        delta_flags.push_back(msg.report().delta());
        results_follow_flags.push_back(msg.report().results_follow());
        std::vector<std::string> dsts;
        for (const auto& p : msg.report().probes()) dsts.push_back(p.dst());
        probe_dsts.push_back(std::move(dsts));
        if (msg.report().sequence() == late_after_sequence) {
          for (const auto& m : late) stream->Write(m);
        }
      }
    }
    return grpc::Status::OK;
  }
  std::mutex mu;
  std::vector<meshprobe::v1::Hello> hellos;
  std::vector<uint64_t> sequences;
  std::vector<bool> delta_flags;  // Report.delta of each report, in order
  std::vector<bool> results_follow_flags;  // Report.results_follow of each report, in order
  std::vector<std::vector<std::string>> probe_dsts;  // each report's probe destinations
  bool accepts_report_deltas = false;     // what its PeerLists say (set before the agent connects)
  std::chrono::nanoseconds quiet_report_interval{0};  // likewise; 0: unset
  bool accepts_results_follow = false;    // likewise
  uint64_t late_after_sequence = 0;       // `late` is written after the report with this sequence
  std::vector<AggregatorMessage> late;
  std::vector<AggregatorMessage> script;  // set before the agent connects
};

struct Server {
  FakeCollector service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  explicit Server(int want_port = 0) {
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:" + std::to_string(want_port), grpc::InsecureServerCredentials(), &port);
    b.RegisterService(&service);
    server = b.BuildAndStart();
  }
  ~Server() {
    if (server) server->Shutdown(std::chrono::system_clock::now() + 200ms);
  }
};

// Polls `pred` until it holds or the deadline passes.
template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds deadline = 10s) {
  auto end = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(10ms);  // poll interval, bounded by the deadline
  }
  return pred();
}

meshprobe::v1::Report report(uint64_t seq) {
  meshprobe::v1::Report r;
  r.set_sequence(seq);
  return r;
}

// `r` with a quiet (answered, lossless) overlay result for node-b and for node-late.
meshprobe::v1::Report withProbes(meshprobe::v1::Report r) {
  *r.mutable_time() = google::protobuf::util::TimeUtil::SecondsToTimestamp(1000 + static_cast<int64_t>(r.sequence()));
  for (const char* dst : {"node-b", "node-late"}) {
    auto* p = r.add_probes();
    p->set_dst(dst);
    p->set_layer(meshprobe::v1::OVERLAY);
    p->set_sent(10);
    p->set_received(10);
    *p->mutable_rtt_p50() = google::protobuf::util::TimeUtil::MicrosecondsToDuration(200);
    *p->mutable_rtt_p99() = google::protobuf::util::TimeUtil::MicrosecondsToDuration(400);
    *p->mutable_last_probe() = r.time();
  }
  return r;
}

struct Client {
  ReportBuffer buffer{16};
  std::mutex mu;
  std::vector<std::string> peers_seen;
  std::vector<std::string> deltas_seen;  // "+name" joined or changed, "-name" left
  std::vector<uint64_t> sent_at_lists;   // reportsSent() when each PeerList arrived
  std::unique_ptr<StreamClient> client;
  explicit Client(int port, bool with_deltas = false, std::function<void()> on_members_joined = {},
                  std::chrono::nanoseconds early_spacing = {}) {
    auto channel = StreamClient::makeChannel("127.0.0.1:" + std::to_string(port));
    StreamClient::Callbacks cb;
    cb.hello = [] {
      meshprobe::v1::Hello h;
      h.set_node_name("node-a");
      h.set_vxlan_port(4789);
      return h;
    };
    cb.on_peers = [this](const meshprobe::v1::PeerList& pl) {
      std::lock_guard lock(mu);
      for (const auto& p : pl.peers()) peers_seen.push_back(p.node_name());
      sent_at_lists.push_back(client->reportsSent());
    };
    cb.on_members_joined = std::move(on_members_joined);
    if (with_deltas) {
      cb.on_peer_delta = [this](const meshprobe::v1::PeerDelta& d) {
        std::lock_guard lock(mu);
        for (const auto& p : d.peers()) deltas_seen.push_back("+" + p.node_name());
        for (const auto& n : d.left()) deltas_seen.push_back("-" + n);
      };
    }
    client = std::make_unique<StreamClient>(meshprobe::v1::Collector::NewStub(channel), buffer, cb,
                                            Backoff(20ms, 200ms, 1), channel);
    client->setEarlyReportSpacing(early_spacing);
  }
};

}  // namespace

TEST(StreamClient, SendsHelloThenReportsInOrderAndReceivesPeers) {
  Server server;
  ASSERT_NE(server.port, 0);
  Client c(server.port);
  c.buffer.push(report(1));
  c.buffer.push(report(2));
  c.client->start();
  ASSERT_TRUE(eventually([&] {
    std::lock_guard l(server.service.mu);
    return server.service.sequences.size() == 2;
  }));
  {
    std::lock_guard l(server.service.mu);
    ASSERT_EQ(server.service.hellos.size(), 1u);
    EXPECT_EQ(server.service.hellos[0].node_name(), "node-a");
    EXPECT_EQ(server.service.sequences, (std::vector<uint64_t>{1, 2}));
  }
  ASSERT_TRUE(eventually([&] {
    std::lock_guard l(c.mu);
    return !c.peers_seen.empty();
  }));
  EXPECT_EQ(c.peers_seen[0], "peer-from-node-a");
  EXPECT_TRUE(c.client->connected());
  c.client->stop();
}

TEST(StreamClient, HoldsReportsWhileTheAggregatorIsAwayAndReconnects) {
  int port;
  {
    Server first;
    port = first.port;
    ASSERT_NE(port, 0);
  }  // the aggregator is gone before the agent starts
  Client c(port);
  c.client->start();
  c.buffer.push(report(7));
  ASSERT_TRUE(eventually([&] { return c.client->retries() >= 2; }));
  EXPECT_EQ(c.client->reconnects(), 0u);  // attempts, not re-established streams
  EXPECT_FALSE(c.client->connected());
  EXPECT_EQ(c.buffer.size(), 1u);  // held, not lost

  Server second(port);
  ASSERT_EQ(second.port, port);
  ASSERT_TRUE(eventually([&] {
    std::lock_guard l(second.service.mu);
    return second.service.sequences.size() == 1;
  }));
  std::lock_guard l(second.service.mu);
  EXPECT_EQ(second.service.sequences[0], 7u);
  EXPECT_EQ(second.service.hellos.size(), 1u);
  EXPECT_EQ(c.client->reconnects(), 0u);  // the first stream ever accepted
}

// meshprobe_stream_reconnects_total counts streams re-established, not attempts: an
// accepted stream, the aggregator away for several attempts, then accepted again = 1.
TEST(StreamClient, ReconnectsCountReestablishedStreamsNotAttempts) {
  int port;
  auto first = std::make_unique<Server>();
  port = first->port;
  ASSERT_NE(port, 0);
  Client c(port);
  c.client->start();
  ASSERT_TRUE(eventually([&] {
    std::lock_guard l(c.mu);
    return c.client->connected() && !c.peers_seen.empty();
  }));
  first.reset();  // the aggregator goes away
  ASSERT_TRUE(eventually([&] { return c.client->retries() >= 3; }));
  EXPECT_EQ(c.client->reconnects(), 0u);
  Server second(port);
  ASSERT_EQ(second.port, port);
  ASSERT_TRUE(eventually([&] {
    std::lock_guard l(second.service.mu);
    return second.service.hellos.size() == 1 && c.client->reconnects() == 1;
  }));
  c.client->stop();
  EXPECT_EQ(c.client->reconnects(), 1u);
}

TEST(StreamClient, StopsWhileDisconnected) {
  Client c(1);  // nothing listens on port 1 of 127.0.0.1
  c.client->start();
  ASSERT_TRUE(eventually([&] { return c.client->retries() >= 1; }));
  c.client->stop();  // must return (ctest's timeout catches a hang)
  EXPECT_FALSE(c.client->connected());
}

AggregatorMessage deltaMsg(const std::string& joined, const std::string& left) {
  AggregatorMessage m;
  m.mutable_peer_delta()->add_peers()->set_node_name(joined);
  m.mutable_peer_delta()->add_left(left);
  return m;
}

TEST(StreamClient, AdvertisesDeltasAndIgnoresADeltaBeforeThePeerList) {
  Server server;
  ASSERT_NE(server.port, 0);
  AggregatorMessage list;
  list.mutable_peer_list()->add_peers()->set_node_name("b");
  {
    // Under the service's lock: its handler thread reads the script (ThreadSanitizer).
    std::lock_guard l(server.service.mu);
    server.service.script = {deltaMsg("early", "b"), list, deltaMsg("c", "b")};
  }
  Client c(server.port, /*with_deltas=*/true);
  c.client->start();
  ASSERT_TRUE(eventually([&] {
    std::lock_guard l(c.mu);
    return !c.deltas_seen.empty();
  }));
  {
    std::lock_guard l(c.mu);
    EXPECT_EQ(c.peers_seen, (std::vector<std::string>{"b"}));
    EXPECT_EQ(c.deltas_seen, (std::vector<std::string>{"+c", "-b"}));  // not "early"
  }
  EXPECT_EQ(c.client->peerDeltasIgnored(), 1u);
  {
    std::lock_guard l(server.service.mu);
    ASSERT_FALSE(server.service.hellos.empty());
    EXPECT_TRUE(server.service.hellos[0].accepts_peer_deltas());
  }
  c.client->stop();
}

TEST(StreamClient, WithoutADeltaHandlerTheHelloDoesNotAskForDeltas) {
  Server server;
  ASSERT_NE(server.port, 0);
  Client c(server.port);
  c.client->start();
  ASSERT_TRUE(eventually([&] {
    std::lock_guard l(server.service.mu);
    return !server.service.hellos.empty();
  }));
  std::lock_guard l(server.service.mu);
  EXPECT_FALSE(server.service.hellos[0].accepts_peer_deltas());
  c.client->stop();
}

// A stream's first report waits for its PeerList, even when it was waiting before the
// stream opened: the aggregator then knows every member the report names, or names them
// later in a PeerDelta that makes the agent resend their results. (Without the wait the
// report goes out right after the Hello, long before the PeerList's round trip ends.)
TEST(StreamClient, TheFirstReportWaitsForTheStreamsPeerList) {
  Server server;
  ASSERT_NE(server.port, 0);
  Client c(server.port);
  c.buffer.push(report(1));
  c.client->start();
  ASSERT_TRUE(eventually([&] {
    std::lock_guard l(server.service.mu);
    return server.service.sequences.size() == 1;
  }));
  {
    std::lock_guard l(c.mu);
    EXPECT_EQ(c.sent_at_lists, std::vector<uint64_t>{0});
  }
  // The client counts a report once its Write returns, which can be after the server
  // has it.
  EXPECT_TRUE(eventually([&] { return c.client->reportsSent() == 1u; })) << c.client->reportsSent();
  c.client->stop();
}

// Delta reports only after the stream's PeerList says the aggregator applies them; the first
// report of every stream, and every report to an aggregator that never says so, is whole.
TEST(StreamClient, DeltaReportsOnlyAfterThePeerListAcceptsThem) {
  for (bool accepts : {false, true}) {
    SCOPED_TRACE(accepts ? "aggregator accepts deltas" : "aggregator predates deltas");
    Server server;
    ASSERT_NE(server.port, 0);
    server.service.accepts_report_deltas = accepts;
    Client c(server.port);
    c.buffer.push(report(1));
    c.client->start();
    ASSERT_TRUE(eventually([&] {
      std::lock_guard l(server.service.mu);
      std::lock_guard lc(c.mu);
      return server.service.sequences.size() == 1 && !c.peers_seen.empty();
    }));
    c.buffer.push(report(2));
    c.buffer.push(report(3));
    ASSERT_TRUE(eventually([&] {
      std::lock_guard l(server.service.mu);
      return server.service.sequences.size() == 3;
    }));
    {
      std::lock_guard l(server.service.mu);
      EXPECT_EQ(server.service.delta_flags, (std::vector<bool>{false, accepts, accepts}));
    }
    EXPECT_EQ(c.client->deltaReportsSent(), accepts ? 2u : 0u);
    c.client->stop();
  }
}

// A PeerList with a quiet report interval: reports with no news (unchanged results, by
// report time a second apart) are left out until that long after the last one sent.
TEST(StreamClient, QuietReportsWaitForThePeerListsQuietInterval) {
  Server server;
  ASSERT_NE(server.port, 0);
  server.service.accepts_report_deltas = true;
  server.service.quiet_report_interval = 3s;
  Client c(server.port);
  c.buffer.push(withProbes(report(1)));
  c.client->start();
  ASSERT_TRUE(eventually([&] {
    std::lock_guard l(server.service.mu);
    return server.service.sequences.size() == 1;
  }));
  for (uint64_t seq = 2; seq <= 5; ++seq) c.buffer.push(withProbes(report(seq)));
  ASSERT_TRUE(eventually([&] { return c.client->reportsHeld() == 3u; })) << c.client->reportsHeld();
  {
    std::lock_guard l(server.service.mu);
    EXPECT_EQ(server.service.sequences, (std::vector<uint64_t>{1, 4}));  // 4: 3 s after 1
    EXPECT_EQ(server.service.delta_flags, (std::vector<bool>{false, true}));
  }
  // A change goes out at once: node-b failing, a second after the last report sent.
  auto failing = withProbes(report(6));
  failing.mutable_probes(0)->set_received(0);
  failing.mutable_probes(0)->set_loss(1.0);
  c.buffer.push(failing);
  ASSERT_TRUE(eventually([&] {
    std::lock_guard l(server.service.mu);
    return server.service.sequences.size() == 3;
  }));
  {
    std::lock_guard l(server.service.mu);
    EXPECT_EQ(server.service.sequences.back(), 6u);
    EXPECT_EQ(server.service.probe_dsts.back(), std::vector<std::string>{"node-b"});
  }
  EXPECT_EQ(c.client->reportsHeld(), 3u);
  c.client->stop();
}

// A PeerList that accepts Report.results_follow: a report of more results than the encoder's
// limit (600 here, coverage period 25 intervals) goes out as a whole report of the first 512
// marked so, and the next report carries the other 88. Without it, all 600 at once.
TEST(StreamClient, TheResultsOfALargeFirstReportFollowOnlyWhenThePeerListAcceptsIt) {
  auto large = [](uint64_t seq) {
    meshprobe::v1::Report r = report(seq);
    *r.mutable_time() = google::protobuf::util::TimeUtil::SecondsToTimestamp(1000 + static_cast<int64_t>(seq));
    *r.mutable_coverage_period() = google::protobuf::util::TimeUtil::SecondsToDuration(25);
    *r.mutable_probe_interval() = google::protobuf::util::TimeUtil::SecondsToDuration(1);
    for (int i = 0; i < 600; ++i) {
      auto* p = r.add_probes();
      p->set_dst("node-" + std::to_string(i));
      p->set_layer(meshprobe::v1::UNDERLAY);
      p->set_sent(10);
      p->set_received(10);
      *p->mutable_last_probe() = r.time();
    }
    return r;
  };
  for (bool accepts : {true, false}) {
    SCOPED_TRACE(accepts);
    Server server;
    ASSERT_NE(server.port, 0);
    server.service.accepts_report_deltas = true;
    server.service.accepts_results_follow = accepts;
    Client c(server.port);
    c.buffer.push(large(1));
    c.buffer.push(large(2));
    c.client->start();
    ASSERT_TRUE(eventually([&] {
      std::lock_guard l(server.service.mu);
      return server.service.sequences.size() == 2;
    }));
    std::lock_guard l(server.service.mu);
    EXPECT_EQ(server.service.results_follow_flags, (std::vector<bool>{accepts, false}));
    EXPECT_EQ(server.service.delta_flags, (std::vector<bool>{false, true}));
    ASSERT_EQ(server.service.probe_dsts.size(), 2u);
    EXPECT_EQ(server.service.probe_dsts[0].size(), accepts ? 512u : 600u);
    EXPECT_EQ(server.service.probe_dsts[1].size(), accepts ? 88u : 0u);
    c.client->stop();
  }
}

// A member that joins after the stream's peer list: the agent is asked to report at once,
// and the next report stays a delta that carries every result for that member (the
// aggregator could not place this agent's cells for it before it knew the member).
TEST(StreamClient, AJoinedMembersResultsGoInTheNextReportWhichStaysADelta) {
  Server server;
  ASSERT_NE(server.port, 0);
  server.service.accepts_report_deltas = true;
  server.service.late_after_sequence = 2;
  AggregatorMessage join;
  join.mutable_peer_delta()->add_peers()->set_node_name("node-late");
  server.service.late.push_back(join);
  std::atomic<int> asked{0};
  Client c(server.port, /*with_deltas=*/true, [&] { ++asked; });
  c.buffer.push(withProbes(report(1)));
  c.client->start();
  ASSERT_TRUE(eventually([&] {
    std::lock_guard l(server.service.mu);
    std::lock_guard lc(c.mu);
    return server.service.sequences.size() == 1 && !c.peers_seen.empty();
  }));
  c.buffer.push(withProbes(report(2)));
  ASSERT_TRUE(eventually([&] {
    std::lock_guard lc(c.mu);
    return !c.deltas_seen.empty();
  }));
  ASSERT_TRUE(eventually([&] { return asked.load() == 1; }));
  c.buffer.push(withProbes(report(3)));
  c.buffer.push(withProbes(report(4)));
  ASSERT_TRUE(eventually([&] {
    std::lock_guard l(server.service.mu);
    return server.service.sequences.size() == 4;
  }));
  {
    std::lock_guard l(server.service.mu);
    EXPECT_EQ(server.service.delta_flags, (std::vector<bool>{false, true, true, true}));
    EXPECT_EQ(server.service.probe_dsts[0], (std::vector<std::string>{"node-b", "node-late"}));
    EXPECT_EQ(server.service.probe_dsts[1], std::vector<std::string>{});
    EXPECT_EQ(server.service.probe_dsts[2], std::vector<std::string>{"node-late"});
    EXPECT_EQ(server.service.probe_dsts[3], std::vector<std::string>{});
  }
  c.client->stop();
}

// A join soon after a report does not ask for another one (while thousands of agents join,
// a PeerDelta comes every membership window): the next regular report carries the new
// member's results, still as a delta.
TEST(StreamClient, AJoinRightAfterAReportWaitsForTheNextOne) {
  Server server;
  ASSERT_NE(server.port, 0);
  server.service.accepts_report_deltas = true;
  server.service.late_after_sequence = 1;
  AggregatorMessage join;
  join.mutable_peer_delta()->add_peers()->set_node_name("node-late");
  server.service.late.push_back(join);
  std::atomic<int> asked{0};
  Client c(server.port, /*with_deltas=*/true, [&] { ++asked; }, std::chrono::hours(1));
  c.buffer.push(withProbes(report(1)));
  c.client->start();
  ASSERT_TRUE(eventually([&] {
    std::lock_guard lc(c.mu);
    return !c.deltas_seen.empty();  // the join, right after report 1
  }));
  c.buffer.push(withProbes(report(2)));
  ASSERT_TRUE(eventually([&] {
    std::lock_guard l(server.service.mu);
    return server.service.sequences.size() == 2;
  }));
  EXPECT_EQ(asked.load(), 0);
  {
    std::lock_guard l(server.service.mu);
    EXPECT_EQ(server.service.delta_flags, (std::vector<bool>{false, true}));
    EXPECT_EQ(server.service.probe_dsts[1], std::vector<std::string>{"node-late"});
  }
  c.client->stop();
}
