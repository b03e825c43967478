#include "agent/probe/responder.h"

#include <gtest/gtest.h>

#include "agent/probe/replay_window.h"
#include "tests/unit/agent/probe/loopback.h"

namespace meshprobe::agent {
namespace {

using namespace std::chrono_literals;
using testing::describe;
using testing::eventually;
using testing::UdpSocket;

ProbeKey key(std::string_view k) { return *ProbeKey::fromBytes(k); }

std::string request(uint64_t seq, const ProbeKey* k, size_t size = 0, std::string sender = "node-1") {
  ProbePacket p;
  p.sequence = seq;
  p.send_time_ns = seq * 1000;
  p.sender = std::move(sender);
  return *encodeProbe(p, k, size);
}

ResponderOptions options(std::optional<ProbeKey> k) {
  ResponderOptions o;
  o.node_name = "node-2";
  o.key = std::move(k);
  o.bind_address = "127.0.0.1";
  o.port = 0;
  o.rate_per_source = 1e6;
  o.burst_per_source = 1e6;
  return o;
}

TEST(Responder, RepliesAreNeverLargerThanRequests) {
  FakeClock clock;
  ProbeKey k = key("cluster");
  Responder r(options(k), clock);
  ASSERT_TRUE(r.start().ok());
  ASSERT_NE(r.udpPort(), 0);
  UdpSocket c;
  uint64_t seq = 1;
  for (size_t size : {size_t{0}, size_t{100}, size_t{128}, size_t{1400}, size_t{8000}}) {
    std::string req = request(seq, &k, size, "n");  // "n": shorter than the responder's name
    ASSERT_TRUE(c.sendTo(req, r.udpPort()));
    auto rep = c.receive(2000ms);
    ASSERT_TRUE(rep.has_value()) << "size " << size;
    EXPECT_EQ(rep->size(), req.size());
    ProbePacket p;
    ASSERT_EQ(decodeProbe(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(rep->data()), rep->size()), &k, p),
              DecodeStatus::kOk);
    EXPECT_EQ(p.type, ProbeType::kReply);
    EXPECT_EQ(p.sequence, seq);
    EXPECT_EQ(p.send_time_ns, seq * 1000);
    // The minimal request ("n" + MAC) has no room for "node-2": empty name, same size.
    EXPECT_EQ(p.sender, size == 0 ? "" : "node-2");
    ++seq;
  }
  EXPECT_TRUE(eventually([&] { return r.counters().answered == 5; }, [&] { return describe(r.counters()); }));
}

// Path-MTU probes: padded to the overlay MTU (minus IP + UDP headers); the reply is the
// same size (it must cross the return path at full size, with DF) and authenticated.
TEST(Responder, PathMtuSizedRequestsGetSameSizeReplies) {
  FakeClock clock;
  ProbeKey k = key("cluster");
  Responder r(options(k), clock);
  ASSERT_TRUE(r.start().ok());
  UdpSocket c;
  uint64_t seq = 100;
  for (size_t mtu : {size_t{1450}, size_t{1400}, size_t{8950}, kMaxProbeSize + kIpv4UdpOverhead}) {
    std::string req = request(seq, &k, probePayloadForIpSize(mtu, false));
    ASSERT_TRUE(c.sendTo(req, r.udpPort())) << mtu;
    auto rep = c.receive(2000ms);
    ASSERT_TRUE(rep.has_value()) << mtu;
    EXPECT_EQ(rep->size(), mtu - kIpv4UdpOverhead);
    ProbePacket p;
    ASSERT_EQ(decodeProbe(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(rep->data()), rep->size()), &k, p),
              DecodeStatus::kOk);
    EXPECT_EQ(p.sequence, seq);
    EXPECT_EQ(p.sender, "node-2");
    ++seq;
  }
  // One byte above the largest probe: dropped as invalid, never answered.
  std::string big(kMaxProbeSize + 1, '\0');
  ASSERT_TRUE(c.sendTo(big, r.udpPort()));
  EXPECT_TRUE(eventually([&] { return r.counters().dropped_invalid == 1; }, [&] { return describe(r.counters()); }));
  EXPECT_EQ(r.counters().answered, 4u);
  EXPECT_EQ(r.counters().send_errors, 0u);
}

TEST(Responder, DropsUnauthenticatedInvalidAndReplies) {
  FakeClock clock;
  ProbeKey k = key("cluster");
  ProbeKey wrong = key("other");
  Responder r(options(k), clock);
  ASSERT_TRUE(r.start().ok());
  UdpSocket c;
  ASSERT_TRUE(c.sendTo(request(1, nullptr, 128), r.udpPort()));  // unsigned
  ASSERT_TRUE(c.sendTo(request(2, &wrong, 128), r.udpPort()));   // wrong key
  ASSERT_TRUE(c.sendTo("garbage that is long enough to pass the header size", r.udpPort()));
  ProbePacket reply;
  reply.type = ProbeType::kReply;
  reply.sequence = 3;
  reply.sender = "node-9";
  ASSERT_TRUE(c.sendTo(*encodeProbe(reply, &k, 128), r.udpPort()));  // a reply is never answered
  ASSERT_TRUE(eventually([&] { return r.counters().received == 4; }, [&] { return describe(r.counters()); }));
  auto cnt = r.counters();
  EXPECT_EQ(cnt.dropped_unauthenticated, 2u);
  EXPECT_EQ(cnt.dropped_invalid, 2u);
  EXPECT_EQ(cnt.answered, 0u);
  EXPECT_FALSE(c.receive(50ms).has_value());
}

// A captured signed request sent again is not answered a second time; the window is per
// sender (source address + signed node name), and a late but unseen sequence is fresh.
TEST(Responder, DropsReplayedSignedRequests) {
  FakeClock clock;
  ProbeKey k = key("cluster");
  Responder r(options(k), clock);
  ASSERT_TRUE(r.start().ok());
  UdpSocket c;
  const std::string req = request(5000, &k, 128);
  ASSERT_TRUE(c.sendTo(req, r.udpPort()));
  auto rep = c.receive(2000ms);
  ASSERT_TRUE(rep.has_value()) << describe(r.counters());
  EXPECT_EQ(rep->size(), req.size());
  ASSERT_TRUE(c.sendTo(req, r.udpPort()));  // the same bytes again
  ASSERT_TRUE(eventually([&] { return r.counters().received == 2; }, [&] { return describe(r.counters()); }));
  // The counters move after the send, so a reply to the replay would already be queued.
  EXPECT_FALSE(c.receive(50ms).has_value());
  auto cnt = r.counters();
  EXPECT_EQ(cnt.dropped_replayed, 1u);
  EXPECT_EQ(cnt.answered, 1u);

  ASSERT_TRUE(c.sendTo(request(5000, &k, 128, "node-3"), r.udpPort()));  // another sender, same sequence
  EXPECT_TRUE(c.receive(2000ms).has_value()) << describe(r.counters());
  ASSERT_TRUE(c.sendTo(request(4990, &k, 128), r.udpPort()));  // late, inside the window, unseen
  EXPECT_TRUE(c.receive(2000ms).has_value()) << describe(r.counters());
  ASSERT_TRUE(c.sendTo(request(4990, &k, 128), r.udpPort()));  // and now seen
  ASSERT_TRUE(c.sendTo(request(5000 - ReplayWindow::kWindowSize, &k, 128), r.udpPort()));  // below the window
  ASSERT_TRUE(eventually([&] { return r.counters().received == 6; }, [&] { return describe(r.counters()); }));
  EXPECT_FALSE(c.receive(50ms).has_value());
  cnt = r.counters();
  EXPECT_EQ(cnt.dropped_replayed, 3u);
  EXPECT_EQ(cnt.answered, 3u);
}

// Unsigned requests to a keyed responder are unauthenticated, never "replayed", and do not
// touch the window: the signed request with the same sequence is still answered.
TEST(Responder, UnsignedRequestsNeitherAnsweredNorRecorded) {
  FakeClock clock;
  ProbeKey k = key("cluster");
  Responder r(options(k), clock);
  ASSERT_TRUE(r.start().ok());
  UdpSocket c;
  ASSERT_TRUE(c.sendTo(request(77, nullptr, 128), r.udpPort()));
  ASSERT_TRUE(c.sendTo(request(77, nullptr, 128), r.udpPort()));
  ASSERT_TRUE(eventually([&] { return r.counters().received == 2; }, [&] { return describe(r.counters()); }));
  EXPECT_FALSE(c.receive(50ms).has_value());
  auto cnt = r.counters();
  EXPECT_EQ(cnt.dropped_unauthenticated, 2u);
  EXPECT_EQ(cnt.dropped_replayed, 0u);
  EXPECT_EQ(cnt.answered, 0u);
  ASSERT_TRUE(c.sendTo(request(77, &k, 128), r.udpPort()));
  EXPECT_TRUE(c.receive(2000ms).has_value()) << describe(r.counters());
}

// Without a key (dev mode) anyone can forge a fresh sequence: no replay check is made.
TEST(Responder, DevModeHasNoReplayCheck) {
  FakeClock clock;
  Responder r(options(std::nullopt), clock);
  ASSERT_TRUE(r.start().ok());
  UdpSocket c;
  const std::string req = request(9, nullptr, 64);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(c.sendTo(req, r.udpPort()));
    EXPECT_TRUE(c.receive(2000ms).has_value()) << i << " " << describe(r.counters());
  }
  EXPECT_EQ(r.counters().dropped_replayed, 0u);
}

// Replays are dropped before the rate limiter: they spend no tokens of the real sender.
TEST(Responder, ReplaysDoNotSpendTheSendersTokens) {
  FakeClock clock;  // not advanced: no refill
  ProbeKey k = key("cluster");
  ResponderOptions o = options(k);
  o.rate_per_source = 1;
  o.burst_per_source = 2;
  Responder r(o, clock);
  ASSERT_TRUE(r.start().ok());
  UdpSocket c;
  const std::string first = request(300, &k, 64);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(c.sendTo(first, r.udpPort()));
  ASSERT_TRUE(c.sendTo(request(301, &k, 64), r.udpPort()));
  ASSERT_TRUE(eventually([&] { return r.counters().received == 6; }, [&] { return describe(r.counters()); }));
  int replies = 0;
  while (c.receive(100ms)) ++replies;
  EXPECT_EQ(replies, 2);
  auto cnt = r.counters();
  EXPECT_EQ(cnt.dropped_replayed, 4u);
  EXPECT_EQ(cnt.dropped_rate_limited, 0u);
}

TEST(Responder, RateLimitsPerSource) {
  FakeClock clock;  // not advanced: buckets refill only when the test says so
  ResponderOptions o = options(std::nullopt);
  o.rate_per_source = 2;
  o.burst_per_source = 5;
  Responder r(o, clock);
  ASSERT_TRUE(r.start().ok());
  UdpSocket a, b;
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(a.sendTo(request(static_cast<uint64_t>(i), nullptr, 64), r.udpPort()));
  ASSERT_TRUE(eventually([&] { return r.counters().received == 20; }, [&] { return describe(r.counters()); }));
  int replies = 0;
  while (a.receive(100ms)) ++replies;
  EXPECT_EQ(replies, 5);
  EXPECT_EQ(r.counters().dropped_rate_limited, 15u);
  // One second refills two tokens.
  clock.advance(1s);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(a.sendTo(request(100 + static_cast<uint64_t>(i), nullptr, 64), r.udpPort()));
  ASSERT_TRUE(eventually([&] { return r.counters().received == 25; }, [&] { return describe(r.counters()); }));
  replies = 0;
  while (a.receive(100ms)) ++replies;
  EXPECT_EQ(replies, 2);
  EXPECT_EQ(r.counters().answered, 7u);
}

TEST(Responder, TcpAcceptsAndCloses) {
  FakeClock clock;
  Responder r(options(std::nullopt), clock);
  ASSERT_TRUE(r.start().ok());
  ASSERT_EQ(r.tcpPort(), r.udpPort());
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = testing::loopback(r.tcpPort());
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  // The server closes: read returns EOF (0) within the deadline.
  pollfd p{fd, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 2000), 1);
  char buf[8];
  EXPECT_EQ(::read(fd, buf, sizeof(buf)), 0);
  ::close(fd);
  EXPECT_TRUE(eventually([&] { return r.counters().tcp_accepted == 1; }, [&] { return describe(r.counters()); }));
}

TEST(Responder, BindErrorNamesTheAddress) {
  FakeClock clock;
  Responder first(options(std::nullopt), clock);
  ASSERT_TRUE(first.start().ok());
  ResponderOptions o = options(std::nullopt);
  o.port = first.udpPort();
  Responder second(o, clock);
  auto st = second.start();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("127.0.0.1:" + std::to_string(first.udpPort())), std::string::npos)
      << st.error().message;
}

TEST(Responder, StopIsIdempotentAndFast) {
  FakeClock clock;
  Responder r(options(std::nullopt), clock);
  ASSERT_TRUE(r.start().ok());
  auto t0 = std::chrono::steady_clock::now();
  r.stop();
  r.stop();
  // A real deadline: stop() wakes the I/O thread blocked on its idle sockets (it would
  // otherwise wait for the next datagram forever) and joins it; 1 s is generous.
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
}

}  // namespace
}  // namespace meshprobe::agent
