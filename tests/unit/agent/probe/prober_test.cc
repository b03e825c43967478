#include "agent/probe/prober.h"
#include "agent/probe/outcome_window.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>

#include "agent/probe/responder.h"
#include "tests/unit/agent/probe/loopback.h"

namespace meshprobe::agent {
namespace {

using namespace std::chrono_literals;
using testing::describe;
using testing::eventually;
using testing::UdpSocket;

ProberOptions fastOptions(uint16_t port, std::optional<ProbeKey> key = std::nullopt) {
  ProberOptions o;
  o.node_name = "node-1";
  o.key = std::move(key);
  o.port = port;
  o.bind_address = "127.0.0.1";
  o.interval = 100ms;
  o.timeout = 60ms;
  o.retries = 2;
  o.retry_spacing = 20ms;
  o.window = 10;
  o.tcp_check_after = 2;
  o.tcp_timeout = 500ms;
  o.rng_seed = 1;
  return o;
}

ResponderOptions responderOptions(std::optional<ProbeKey> key = std::nullopt) {
  ResponderOptions o;
  o.node_name = "node-2";
  o.key = std::move(key);
  o.bind_address = "127.0.0.1";
  o.port = 0;
  o.rate_per_source = 10000;
  o.burst_per_source = 10000;
  return o;
}

std::vector<ProbeTarget> bothLayers() {
  return {{"node-2", Layer::kUnderlay, "127.0.0.1"}, {"node-2", Layer::kOverlay, "127.0.0.1"}};
}

TEST(Prober, AgainstAResponderNoLossAndAnRtt) {
  SystemClock clock;
  ProbeKey key = *ProbeKey::fromBytes("cluster");
  Responder r(responderOptions(key), clock);
  ASSERT_TRUE(r.start().ok());
  Prober p(fastOptions(r.udpPort(), key), clock);
  ASSERT_TRUE(p.setTargets(bothLayers()).ok());
  ASSERT_TRUE(p.start().ok());
  ASSERT_TRUE(eventually(
      [&] {
        auto s = p.stats();
        return s.size() == 2 && s[0].received >= 5 && s[1].received >= 5;
      },
      [&] { return describe(p.stats()); }));
  auto stats = p.stats();
  for (const auto& s : stats) {
    EXPECT_EQ(s.loss, 0.0) << targetLabel(s.target);
    EXPECT_EQ(s.recent_loss, 0.0) << targetLabel(s.target);
    ASSERT_TRUE(s.rtt_p50.has_value());
    ASSERT_TRUE(s.rtt_p99.has_value());
    EXPECT_GT(*s.rtt_p50, 0ns);
    EXPECT_LT(*s.rtt_p50, 60ms);
    EXPECT_LE(*s.rtt_p50, *s.rtt_p99);
    EXPECT_TRUE(s.jitter.has_value());
    EXPECT_TRUE(s.last_success.has_value());
    EXPECT_EQ(s.consecutive_failures, 0u);
    EXPECT_EQ(s.responder, "node-2");
    EXPECT_FALSE(s.tcp_reachable.has_value());
  }
  EXPECT_EQ(stats[0].target.layer, Layer::kUnderlay);
  EXPECT_EQ(stats[1].target.layer, Layer::kOverlay);
  auto c = p.counters();
  EXPECT_EQ(c.dropped_unauthenticated, 0u);
  EXPECT_EQ(c.dropped_invalid, 0u);
  auto t0 = std::chrono::steady_clock::now();
  p.stop();
  // A real deadline: stop() interrupts the I/O thread's timer wait (up to 1 s, the
  // longest tick) instead of waiting for it to expire.
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
}

TEST(Prober, ClosedUdpPortWithTcpOpenIsUdpFiltered) {
  SystemClock clock;
  testing::TcpListener tcp;  // nothing on UDP at this port
  Prober p(fastOptions(tcp.port()), clock);
  ASSERT_TRUE(p.setTargets({{"node-3", Layer::kUnderlay, "127.0.0.1"}}).ok());
  ASSERT_TRUE(p.start().ok());
  ASSERT_TRUE(eventually([&] { return p.stats()[0].tcp_reachable.has_value(); }, [&] { return describe(p.stats()); }));
  auto s = p.stats()[0];
  EXPECT_TRUE(*s.tcp_reachable) << s.tcp_error;
  EXPECT_GE(s.consecutive_failures, 2u);
  EXPECT_GT(s.loss, 0.0);
  EXPECT_EQ(s.received, 0u);
  EXPECT_NE(s.last_error.find("no reply within"), std::string::npos) << s.last_error;
}

TEST(Prober, NothingListeningIsLossOneAndTcpUnreachable) {
  SystemClock clock;
  Prober p(fastOptions(testing::unusedPort()), clock);
  ASSERT_TRUE(p.setTargets({{"node-4", Layer::kOverlay, "127.0.0.1"}}).ok());
  ASSERT_TRUE(p.start().ok());
  ASSERT_TRUE(eventually(
      [&] {
        auto s = p.stats()[0];
        return s.tcp_reachable.has_value() && s.window_probes >= 3;
      },
      [&] { return describe(p.stats()); }));
  auto s = p.stats()[0];
  EXPECT_FALSE(*s.tcp_reachable);
  EXPECT_EQ(s.tcp_error, "connection refused");
  EXPECT_EQ(s.loss, 1.0);
  EXPECT_EQ(s.recent_loss, 1.0);
  EXPECT_EQ(s.received, 0u);
  EXPECT_FALSE(s.last_success.has_value());
  EXPECT_FALSE(s.rtt_p50.has_value());
  EXPECT_EQ(p.counters().tcp_checks, 1u);   // once per failure streak
  EXPECT_EQ(p.counters().transitions, 1u);  // confirmed down once, never back
}

TEST(Prober, MissIsConfirmedByQuickRetries) {
  SystemClock clock;
  ProberOptions o = fastOptions(testing::unusedPort());
  o.interval = 2s;  // regular rounds far apart: only the quick retries can miss three times soon
  Prober p(o, clock);
  ASSERT_TRUE(p.setTargets({{"node-4", Layer::kUnderlay, "127.0.0.1"}}).ok());
  ASSERT_TRUE(p.start().ok());
  // Timed from the first miss, so the first probe's offset in its interval does not count.
  ASSERT_TRUE(
      eventually([&] { return p.stats()[0].consecutive_failures >= 1; }, [&] { return describe(p.stats()); }, 5s, 1ms));
  const auto first_miss = std::chrono::steady_clock::now();
  ASSERT_TRUE(eventually([&] { return p.stats()[0].consecutive_failures >= 3; }, [&] { return describe(p.stats()); },
                         10s, 1ms));
  // A real deadline on the prober's real timers: two retries 20 ms after each 60 ms miss
  // confirm the fault ~0.16 s after the first miss; without quick retries the second and
  // third misses would wait for the next two regular rounds (2 s apart, 4 s). The 2 s bound
  // sits between the two with a wide margin for a loaded box.
  EXPECT_LT(std::chrono::steady_clock::now() - first_miss, 2s);
  EXPECT_EQ(p.stats()[0].received, 0u);
}

TEST(Prober, KeyedProberRejectsUnsignedReplies) {
  SystemClock clock;
  Responder r(responderOptions(std::nullopt), clock);  // dev-mode responder answers unsigned
  ASSERT_TRUE(r.start().ok());
  Prober p(fastOptions(r.udpPort(), *ProbeKey::fromBytes("cluster")), clock);
  ASSERT_TRUE(p.setTargets({{"node-2", Layer::kUnderlay, "127.0.0.1"}}).ok());
  ASSERT_TRUE(p.start().ok());
  ASSERT_TRUE(
      eventually([&] { return p.counters().dropped_unauthenticated >= 3; }, [&] { return describe(p.counters()); }));
  EXPECT_EQ(p.stats()[0].received, 0u);
  EXPECT_GT(r.counters().answered, 0u);
}

// A hand-driven responder: answers, duplicates, replays and forges replies.
TEST(Prober, DuplicateReplayedAndForgedRepliesAreDropped) {
  SystemClock clock;
  ProbeKey key = *ProbeKey::fromBytes("cluster");
  UdpSocket fake;
  ProberOptions o = fastOptions(fake.port(), key);
  o.interval = 200ms;
  o.timeout = 150ms;
  o.retries = 0;
  Prober p(o, clock);
  ASSERT_TRUE(p.setTargets({{"node-2", Layer::kUnderlay, "127.0.0.1"}}).ok());
  ASSERT_TRUE(p.start().ok());

  auto answer = [&](std::string* sent_reply, bool forge_first) {
    sockaddr_in from{};
    auto req = fake.receive(2000ms, &from);
    ASSERT_TRUE(req.has_value());
    ProbePacket in;
    ASSERT_EQ(
        decodeProbe(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(req->data()), req->size()), &key, in),
        DecodeStatus::kOk);
    if (forge_first) {
      ProbePacket forged = in;
      forged.type = ProbeType::kReply;
      forged.sender = "node-2";
      forged.send_time_ns += 1;  // right sequence, wrong timestamp
      ASSERT_TRUE(fake.sendTo(*encodeProbe(forged, &key, req->size()), from));
    }
    std::array<uint8_t, kMaxProbeSize> buf{};
    auto n = encodeReply(in, req->size(), "node-2", &key, buf);
    ASSERT_TRUE(n.ok());
    *sent_reply = std::string(reinterpret_cast<const char*>(buf.data()), *n);
    ASSERT_TRUE(fake.sendTo(*sent_reply, from));
    ASSERT_TRUE(fake.sendTo(*sent_reply, from));  // duplicate
  };
  std::string first, second;
  answer(&first, false);
  answer(&second, true);
  sockaddr_in prober_addr = testing::loopback(p.localPort());
  ASSERT_TRUE(fake.sendTo(first, prober_addr));  // replay of an old reply
  ASSERT_TRUE(eventually(
      [&] {
        auto c = p.counters();
        return c.dropped_duplicate >= 3 && c.dropped_unknown >= 1;
      },
      [&] { return describe(p.counters()); }));
  auto c = p.counters();
  EXPECT_EQ(c.replies, 2u);
  EXPECT_EQ(c.dropped_duplicate, 3u);
  EXPECT_EQ(c.dropped_unknown, 1u);
  EXPECT_EQ(p.stats()[0].received, 2u);

  // A reply to a probe that already timed out is "late".
  sockaddr_in from{};
  auto r = fake.receive(2000ms, &from);
  ASSERT_TRUE(r.has_value());
  ProbePacket in;
  ASSERT_EQ(decodeProbe(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(r->data()), r->size()), &key, in),
            DecodeStatus::kOk);
  ASSERT_TRUE(eventually([&] { return p.stats()[0].consecutive_failures >= 1; }, [&] { return describe(p.stats()); }));
  std::array<uint8_t, kMaxProbeSize> buf{};
  auto n = encodeReply(in, r->size(), "node-2", &key, buf);
  ASSERT_TRUE(fake.sendTo(std::string(reinterpret_cast<const char*>(buf.data()), *n), from));
  ASSERT_TRUE(eventually([&] { return p.counters().dropped_late == 1; }, [&] { return describe(p.counters()); }));
  EXPECT_EQ(p.stats()[0].received, 2u);
}

TEST(Prober, SetTargetsKeepsStatsOfRemainingTargets) {
  SystemClock clock;
  Responder r(responderOptions(), clock);
  ASSERT_TRUE(r.start().ok());
  Prober p(fastOptions(r.udpPort()), clock);
  ProbeTarget a{"node-2", Layer::kUnderlay, "127.0.0.1"};
  ProbeTarget b{"node-3", Layer::kUnderlay, "127.0.0.1"};
  ASSERT_TRUE(p.setTargets({a}).ok());
  ASSERT_TRUE(p.start().ok());
  ASSERT_TRUE(eventually([&] { return p.stats()[0].received >= 3; }, [&] { return describe(p.stats()); }));
  uint64_t before = p.stats()[0].received;
  auto st = p.setTargets({b, a, {"node-5", Layer::kOverlay, "not-an-ip"}});
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("node-5/OVERLAY/not-an-ip"), std::string::npos) << st.error().message;
  auto s = p.stats();
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].target, b);
  EXPECT_EQ(s[1].target, a);
  EXPECT_GE(s[1].received, before);
  ASSERT_TRUE(eventually([&] { return p.stats()[0].received >= 2; }, [&] { return describe(p.stats()); }));
  ASSERT_TRUE(p.setTargets({b}).ok());
  ASSERT_EQ(p.stats().size(), 1u);
}

// What a target's stats say, every field, to compare two readings.
std::string fingerprint(const TargetStats& s) {
  auto opt = [](const auto& o) { return o ? std::to_string(o->time_since_epoch().count()) : std::string("-"); };
  auto dur = [](const std::optional<Duration>& d) { return d ? std::to_string(d->count()) : std::string("-"); };
  std::string f = targetLabel(s.target) + " " + std::to_string(s.sent) + " " + std::to_string(s.received) + " " +
                  std::to_string(s.window_probes) + " " + std::to_string(s.loss) + " " +
                  std::to_string(s.recent_loss) + " " + dur(s.rtt_p50) + " " + dur(s.rtt_p99) + " " +
                  dur(s.jitter) + " " + dur(s.last_rtt) + " " + opt(s.last_success) + " " + opt(s.last_probe) + " " +
                  std::to_string(s.consecutive_failures) + " " + s.last_error + " " +
                  (s.tcp_reachable ? std::to_string(*s.tcp_reachable) : "-") + " " + s.tcp_error + " " + s.responder;
  f += " df " + std::to_string(s.path_mtu.size) + " " + std::to_string(s.path_mtu.sent) + " " +
       std::to_string(s.path_mtu.received) + " " + std::to_string(s.path_mtu.consecutive_failures) + " " +
       s.path_mtu.last_error + " " + opt(s.path_mtu.last_success);
  return f;
}

// Readers rebuild a target's report entry only when its stats version moved, so the
// version must move with every change the stats show, in replies, misses, the TCP check
// while failing and DF probes, and one version never stands for two readings.
TEST(Prober, TheStatsVersionMovesWheneverTheStatsDo) {
  SystemClock clock;
  Responder r(responderOptions(), clock);
  ASSERT_TRUE(r.start().ok());
  Prober answered(fastOptions(r.udpPort()), clock);
  ProbeTarget df{"node-2", Layer::kOverlay, "127.0.0.1"};
  df.path_mtu_size = 1200;
  ASSERT_TRUE(answered.setTargets({{"node-2", Layer::kUnderlay, "127.0.0.1"}, df}).ok());
  Prober unanswered(fastOptions(testing::unusedPort()), clock);
  ASSERT_TRUE(unanswered.setTargets({{"node-4", Layer::kOverlay, "127.0.0.1"}}).ok());

  // Per prober (versions are one prober's): version -> the stats it stood for.
  std::map<uint64_t, std::string> seen_answered, seen_unanswered;
  std::set<uint64_t> versions_of_answered, versions_of_unanswered;
  bool consistent = true;
  auto read = [&](const Prober& p, std::map<uint64_t, std::string>& seen, std::set<uint64_t>& versions) {
    for (const auto& s : p.stats()) {
      auto [it, fresh] = seen.emplace(s.version, fingerprint(s));
      if (!fresh && it->second != fingerprint(s)) {
        consistent = false;
        ADD_FAILURE() << "version " << s.version << " stood for\n  " << it->second << "\nand\n  " << fingerprint(s);
      }
      versions.insert(s.version);
    }
  };
  ASSERT_TRUE(answered.start().ok());
  ASSERT_TRUE(unanswered.start().ok());
  // Read as often as possible (no pause between reads), so that readings fall between a
  // probe's send and its reply, which the prober reads a tick (1 ms here) later.
  auto done = [&] {
    const auto a = answered.stats();
    const auto u = unanswered.stats()[0];
    return a[0].received >= 5 && a[1].path_mtu.received >= 1 && u.tcp_reachable.has_value() && u.window_probes >= 3;
  };
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  bool finished = false;
  while (consistent && !finished && std::chrono::steady_clock::now() < deadline) {
    read(answered, seen_answered, versions_of_answered);
    read(unanswered, seen_unanswered, versions_of_unanswered);
    finished = done();
  }
  ASSERT_TRUE(finished || !consistent) << describe(answered.stats()) << describe(unanswered.stats());
  EXPECT_TRUE(consistent);
  EXPECT_GE(versions_of_answered.size(), 5u);  // it moved as the probes went on
  EXPECT_GE(versions_of_unanswered.size(), 3u);

  // Stopped, nothing moves: the versions stay, and stats(ids) reads the targets asked for,
  // in that order, at those versions.
  answered.stop();
  const auto versions = answered.versions();
  ASSERT_EQ(versions.size(), 2u);
  EXPECT_NE(versions[0].id, versions[1].id);
  EXPECT_EQ(answered.versions()[1].version, versions[1].version);
  const auto some = answered.stats({versions[1].id, 999999, versions[0].id});
  ASSERT_EQ(some.size(), 2u);  // the unknown id is left out
  EXPECT_EQ(some[0].id, versions[1].id);
  EXPECT_EQ(some[0].version, versions[1].version);
  EXPECT_EQ(some[0].target, df);
  EXPECT_EQ(some[1].version, versions[0].version);
  EXPECT_EQ(fingerprint(some[1]), fingerprint(answered.stats()[0]));
}

// A probe the kernel refuses to send (a broadcast address without SO_BROADCAST: EACCES at
// once, nothing leaves the host) is a miss with the kernel's reason, and the probes due in
// the same tick still go out.
TEST(Prober, ASendTheKernelRefusesIsAMissAndTheRestOfTheTickGoesOut) {
  SystemClock clock;
  Responder r(responderOptions(), clock);
  ASSERT_TRUE(r.start().ok());
  ProberOptions o = fastOptions(r.udpPort());
  o.retries = 0;
  Prober p(o, clock);
  // 60 answered targets spread over the 100 ms interval and 2 ms ticks: several per tick,
  // some of them due after the refused one.
  std::vector<ProbeTarget> targets;
  for (int i = 0; i < 60; ++i) targets.push_back({"node-" + std::to_string(i), Layer::kUnderlay, "127.0.0.1"});
  targets.push_back({"broadcast", Layer::kUnderlay, "255.255.255.255"});
  ASSERT_TRUE(p.setTargets(targets).ok());
  ASSERT_TRUE(p.start().ok());
  auto settled = [&] {
    for (const auto& s : p.stats()) {
      if (s.target.peer == "broadcast" ? s.window_probes < 3 : s.received < 3) return false;
    }
    return true;
  };
  ASSERT_TRUE(eventually(settled, [&] { return describe(p.stats()); }));
  for (const auto& s : p.stats()) {
    if (s.target.peer != "broadcast") {
      EXPECT_EQ(s.consecutive_failures, 0u) << s.target.peer;
      continue;
    }
    EXPECT_EQ(s.received, 0u);
    EXPECT_EQ(s.loss, 1.0);
    EXPECT_EQ(s.last_error, "send: Permission denied");
    EXPECT_EQ(s.last_failure, ProbeFailure::kOther);
  }
  // Every probe counted for a target was sent or failed: none was lost.
  p.stop();
  uint64_t queued = 0;
  for (const auto& s : p.stats()) queued += s.sent;
  const auto c = p.counters();
  EXPECT_GE(c.send_errors, 3u);
  EXPECT_EQ(c.sent + c.send_errors, queued) << describe(c);
}

TEST(Prober, TargetsPerLayerCountsWhatStatsHolds) {
  SystemClock clock;
  Prober p(fastOptions(1), clock);
  EXPECT_TRUE(p.targetsPerLayer().empty());
  ProbeTarget u2{"node-2", Layer::kUnderlay, "127.0.0.2"};
  ProbeTarget u3{"node-3", Layer::kUnderlay, "127.0.0.3"};
  ProbeTarget o2{"node-2", Layer::kOverlay, "127.0.1.2"};
  // A duplicate is one target, and one without an IP address is none.
  (void)p.setTargets({u2, o2, u3, u2, {"node-4", Layer::kOverlay, "not-an-ip"}});
  auto counts = p.targetsPerLayer();
  EXPECT_EQ(counts, (std::map<Layer, size_t>{{Layer::kUnderlay, 2}, {Layer::kOverlay, 1}}));
  size_t held = 0;
  for (const auto& [layer, n] : counts) held += n;
  EXPECT_EQ(held, p.stats().size());
  ASSERT_TRUE(p.setTargets({u3}).ok());
  EXPECT_EQ(p.targetsPerLayer(), (std::map<Layer, size_t>{{Layer::kUnderlay, 1}}));
}

TEST(Prober, StartWithoutNodeNameFails) {
  SystemClock clock;
  ProberOptions o = fastOptions(1);
  o.node_name = "";
  Prober p(o, clock);
  EXPECT_FALSE(p.start().ok());
}

TEST(OutcomeWindow, KeepsTheLastCapacityOutcomesOldestFirst) {
  OutcomeWindow w;
  EXPECT_TRUE(w.empty());
  for (int i = 1; i <= 7; ++i) {
    // Every third one a miss; the others an RTT of i ms.
    w.push(i % 3 == 0 ? Outcome{} : Outcome{true, std::chrono::milliseconds(i)}, 4);
  }
  ASSERT_EQ(w.size(), 4u);  // 4, 5, 6 (miss), 7
  EXPECT_TRUE(w[0].ok);
  EXPECT_EQ(w[0].rtt, std::chrono::milliseconds(4));
  EXPECT_EQ(w[1].rtt, std::chrono::milliseconds(5));
  EXPECT_FALSE(w[2].ok);
  EXPECT_EQ(w[3].rtt, std::chrono::milliseconds(7));
  w.push(Outcome{true, Duration(0)}, 4);  // a zero RTT is a reply, not a miss
  EXPECT_EQ(w[0].rtt, std::chrono::milliseconds(5));
  EXPECT_TRUE(w[3].ok);
  EXPECT_EQ(w[3].rtt, Duration(0));
  // Kept to the nanosecond up to kMaxRtt (2.1 s), beyond any probe timeout; longer counts as it.
  w.push(Outcome{true, std::chrono::nanoseconds(2'000'000'001)}, 4);
  w.push(Outcome{true, std::chrono::seconds(5)}, 4);
  EXPECT_EQ(w[2].rtt, std::chrono::nanoseconds(2'000'000'001));
  EXPECT_TRUE(w[3].ok);
  EXPECT_EQ(w[3].rtt, OutcomeWindow::kMaxRtt);
}

}  // namespace
}  // namespace meshprobe::agent
