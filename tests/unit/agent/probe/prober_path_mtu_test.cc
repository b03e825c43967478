// DF path-MTU probes: sizes on the wire, cadence, and accounting apart from
// the regular probes. Loopback cannot have a small MTU without privileges, so a fake
// responder on 127.0.0.1 plays the path: it answers small requests and drops (or
// shortens the replies to) large ones. The real DF behaviour is proven in namespaces.

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <mutex>
#include <thread>

#include "agent/probe/df_socket.h"
#include "agent/probe/prober.h"
#include "agent/probe/responder.h"
#include "tests/unit/agent/probe/loopback.h"

namespace meshprobe::agent {
namespace {

using namespace std::chrono_literals;
using testing::describe;
using testing::eventually;
using testing::UdpSocket;

constexpr uint32_t kOverlayMtu = 1450;
constexpr size_t kDfPayload = kOverlayMtu - kIpv4UdpOverhead;  // 1422

// Answers requests from its own thread. Requests larger than `max_answered` bytes are
// dropped (a path that loses large packets); the others get a reply of
// min(request size, reply_limit) bytes.
class FakePath {
 public:
  FakePath(const ProbeKey* key, size_t max_answered, size_t reply_limit = kMaxProbeSize)
      : key_(key), max_answered_(max_answered), reply_limit_(reply_limit) {
    thread_ = std::thread([this] { run(); });
  }
  ~FakePath() {
    stop_ = true;
    thread_.join();
  }
  uint16_t port() const { return socket_.port(); }
  // Request sizes by source port.
  std::vector<std::pair<uint16_t, size_t>> seen() const {
    std::lock_guard lock(mu_);
    return seen_;
  }

 private:
  void run() {
    while (!stop_) {
      sockaddr_in from{};
      auto req = socket_.receive(20ms, &from);
      if (!req) continue;
      {
        std::lock_guard lock(mu_);
        seen_.emplace_back(ntohs(from.sin_port), req->size());
      }
      ProbePacket in;
      if (decodeProbe(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(req->data()), req->size()), key_, in) !=
          DecodeStatus::kOk) {
        continue;
      }
      if (req->size() > max_answered_) continue;
      std::array<uint8_t, kMaxProbeSize> buf{};
      auto n = encodeReply(in, std::min(req->size(), reply_limit_), "node-2", key_, buf);
      if (n) socket_.sendTo(std::string(reinterpret_cast<const char*>(buf.data()), *n), from);
    }
  }

  const ProbeKey* key_;
  size_t max_answered_;
  size_t reply_limit_;
  UdpSocket socket_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  std::vector<std::pair<uint16_t, size_t>> seen_;
  std::thread thread_;
};

ProberOptions options(uint16_t port, const ProbeKey& key) {
  ProberOptions o;
  o.node_name = "node-1";
  o.key = key;
  o.port = port;
  o.bind_address = "127.0.0.1";
  // A DF probe's timeout is processed before the target's next regular probe unless the
  // I/O thread is late by more than interval - jitter - timeout (135 ms): the cadence
  // assertions below stay exact on a loaded CI machine.
  o.interval = 300ms;
  o.timeout = 150ms;
  o.retries = 2;
  o.retry_spacing = 20ms;
  o.window = 10;
  o.rng_seed = 1;
  return o;
}

ProbeTarget overlay(uint32_t mtu = kOverlayMtu) { return {"node-2", Layer::kOverlay, "127.0.0.1", mtu}; }

TEST(ProberPathMtu, DfProbesAreMtuSizedFromTheirOwnSocketOnTheCadence) {
  SystemClock clock;
  ProbeKey key = *ProbeKey::fromBytes("cluster");
  FakePath path(&key, kMaxProbeSize);
  ProberOptions o = options(path.port(), key);
  o.path_mtu_every = 2;
  std::atomic<int> rtts{0};
  o.on_rtt = [&](const ProbeTarget&, Duration) { ++rtts; };
  Prober p(o, clock);
  ASSERT_TRUE(p.setTargets({overlay(), {"node-2", Layer::kUnderlay, "127.0.0.1"}}).ok());
  ASSERT_TRUE(p.start().ok());
  ASSERT_NE(p.localPort(), p.dfLocalPort());
  ASSERT_TRUE(eventually([&] { return p.stats()[0].path_mtu.received >= 3; }, [&] { return describe(p.stats()); }));
  auto s = p.stats();
  // One DF probe with the first regular probe, then with every second one.
  EXPECT_EQ(s[0].path_mtu.sent, 1 + (s[0].sent - 1) / 2) << "regular probes: " << s[0].sent;
  EXPECT_EQ(s[0].path_mtu.size, kOverlayMtu);
  EXPECT_EQ(s[0].path_mtu.consecutive_failures, 0u);
  EXPECT_TRUE(s[0].path_mtu.last_success.has_value());
  EXPECT_EQ(s[0].target.path_mtu_size, kOverlayMtu);
  // The underlay target has no size: never a DF probe.
  EXPECT_EQ(s[1].path_mtu.size, 0u);
  EXPECT_EQ(s[1].path_mtu.sent, 0u);
  // Regular accounting counts regular probes only; on_rtt never sees a DF reply.
  auto c = p.counters();
  EXPECT_EQ(c.sent, s[0].sent + s[1].sent);
  EXPECT_GE(c.path_mtu_replies, 3u);
  EXPECT_EQ(c.path_mtu_failures, 0u);
  EXPECT_LE(static_cast<uint64_t>(rtts.load()), c.replies);
  p.stop();
  EXPECT_EQ(static_cast<uint64_t>(rtts.load()), p.counters().replies);
  // On the wire: DF probes are the overlay MTU minus IPv4+UDP headers, from the DF
  // socket; regular probes are the small request size, from the regular socket.
  size_t df = 0, small = 0;
  for (const auto& [port, size] : path.seen()) {
    if (port == p.dfLocalPort()) {
      EXPECT_EQ(size, kDfPayload);
      ++df;
    } else {
      EXPECT_EQ(port, p.localPort());
      EXPECT_EQ(size, o.request_size);
      ++small;
    }
  }
  EXPECT_EQ(df, p.stats()[0].path_mtu.sent);
  EXPECT_EQ(small, p.counters().sent);
}

TEST(ProberPathMtu, LostDfProbesFailWithoutTouchingTheRegularProbes) {
  SystemClock clock;
  ProbeKey key = *ProbeKey::fromBytes("cluster");
  FakePath path(&key, /*max_answered=*/1000);  // small probes pass, 1422-byte ones vanish
  ProberOptions o = options(path.port(), key);
  o.path_mtu_every = 2;
  Prober p(o, clock);
  ASSERT_TRUE(p.setTargets({overlay()}).ok());
  ASSERT_TRUE(p.start().ok());
  ASSERT_TRUE(eventually([&] { return p.stats()[0].sent >= 6; }, [&] { return describe(p.stats()); }));
  auto s = p.stats()[0];
  // Every regular probe until kPathMtuConfirm misses, then every 2nd again.
  EXPECT_EQ(s.path_mtu.sent, kPathMtuConfirm + (s.sent - kPathMtuConfirm) / 2) << "regular probes: " << s.sent;
  EXPECT_GE(s.path_mtu.consecutive_failures, kPathMtuConfirm);
  EXPECT_EQ(s.path_mtu.received, 0u);
  EXPECT_FALSE(s.path_mtu.last_success.has_value());
  EXPECT_EQ(s.path_mtu.last_error.rfind("no reply within 150ms", 0), 0u) << s.path_mtu.last_error;
  // The small probes are untouched: no loss, no failures, no TCP check, no transition.
  EXPECT_EQ(s.consecutive_failures, 0u);
  EXPECT_EQ(s.loss, 0.0);
  EXPECT_GE(s.received, 5u);
  EXPECT_FALSE(s.tcp_reachable.has_value());
  auto c = p.counters();
  EXPECT_EQ(c.timeouts, 0u);
  EXPECT_EQ(c.transitions, 0u);
  EXPECT_EQ(c.tcp_checks, 0u);
  EXPECT_EQ(c.path_mtu_transitions, 1u);
  EXPECT_EQ(c.path_mtu_replies, 0u);
  EXPECT_GE(c.path_mtu_failures, kPathMtuConfirm);
}

TEST(ProberPathMtu, AShortenedReplyIsAFailure) {
  SystemClock clock;
  ProbeKey key = *ProbeKey::fromBytes("cluster");
  FakePath path(&key, kMaxProbeSize, /*reply_limit=*/500);
  ProberOptions o = options(path.port(), key);
  Prober p(o, clock);
  ASSERT_TRUE(p.setTargets({overlay()}).ok());
  ASSERT_TRUE(p.start().ok());
  ASSERT_TRUE(
      eventually([&] { return p.stats()[0].path_mtu.consecutive_failures >= 1; }, [&] { return describe(p.stats()); }));
  auto s = p.stats()[0];
  EXPECT_EQ(s.path_mtu.received, 0u);
  EXPECT_EQ(s.path_mtu.last_error, "reply of 500 bytes to a 1422-byte DF probe");
  EXPECT_EQ(s.consecutive_failures, 0u);
}

TEST(ProberPathMtu, AgainstTheRealResponderBothSizesPass) {
  SystemClock clock;
  ProbeKey key = *ProbeKey::fromBytes("cluster");
  ResponderOptions ro;
  ro.node_name = "node-2";
  ro.key = key;
  ro.bind_address = "127.0.0.1";
  ro.port = 0;
  ro.rate_per_source = 10000;
  ro.burst_per_source = 10000;
  Responder r(ro, clock);
  ASSERT_TRUE(r.start().ok());
  ProberOptions o = options(r.udpPort(), key);
  o.path_mtu_every = 1;
  Prober p(o, clock);
  ASSERT_TRUE(p.setTargets({overlay(8950)}).ok());  // jumbo: still one datagram on loopback
  ASSERT_TRUE(p.start().ok());
  ASSERT_TRUE(eventually([&] { return p.stats()[0].path_mtu.received >= 3 && p.stats()[0].received >= 3; },
                         [&] { return describe(p.stats()); }));
  auto s = p.stats()[0];
  EXPECT_EQ(s.path_mtu.size, 8950u);
  EXPECT_EQ(s.path_mtu.consecutive_failures, 0u);
  EXPECT_EQ(r.counters().send_errors, 0u);
}

TEST(ProberPathMtu, ANewSizeRestartsOnlyThePathMtuHistory) {
  SystemClock clock;
  ProbeKey key = *ProbeKey::fromBytes("cluster");
  FakePath path(&key, 1000);
  Prober p(options(path.port(), key), clock);
  ASSERT_TRUE(p.setTargets({overlay()}).ok());
  ASSERT_TRUE(p.start().ok());
  ASSERT_TRUE(
      eventually([&] { return p.stats()[0].path_mtu.consecutive_failures >= 1; }, [&] { return describe(p.stats()); }));
  uint64_t regular = p.stats()[0].received;
  ASSERT_TRUE(p.setTargets({overlay(1000 + kIpv4UdpOverhead)}).ok());  // fits the fake path
  auto s = p.stats()[0];
  EXPECT_EQ(s.target.path_mtu_size, 1028u);
  EXPECT_EQ(s.path_mtu.size, 1028u);
  EXPECT_EQ(s.path_mtu.sent, 0u);
  EXPECT_EQ(s.path_mtu.consecutive_failures, 0u);
  EXPECT_GE(s.received, regular);  // the regular history stays
  ASSERT_TRUE(eventually([&] { return p.stats()[0].path_mtu.received >= 1; }, [&] { return describe(p.stats()); }));
  s = p.stats()[0];
  EXPECT_EQ(s.path_mtu.consecutive_failures, 0u);
  EXPECT_LE(s.path_mtu.received, s.path_mtu.sent);  // an old-size outcome is not counted
}

TEST(ProberPathMtu, ASizeTooSmallForAProbeIsReportedNotSent) {
  SystemClock clock;
  ProbeKey key = *ProbeKey::fromBytes("cluster");
  FakePath path(&key, kMaxProbeSize);
  Prober p(options(path.port(), key), clock);
  ASSERT_TRUE(p.setTargets({overlay(60)}).ok());
  ASSERT_TRUE(p.start().ok());
  ASSERT_TRUE(
      eventually([&] { return p.stats()[0].path_mtu.consecutive_failures >= 1; }, [&] { return describe(p.stats()); }));
  EXPECT_EQ(p.stats()[0].path_mtu.last_error, "path MTU probe size 60 is below the smallest probe");
  EXPECT_EQ(p.counters().path_mtu_sent, 0u);
}

TEST(DfSocket, ErrorTextNamesSizeAndKernelMtu) {
  EXPECT_EQ(dfSendErrorText(1450, EMSGSIZE, 1400u), "send 1450 bytes with DF: EMSGSIZE (path MTU 1400)");
  EXPECT_EQ(dfSendErrorText(1450, EMSGSIZE, std::nullopt), "send 1450 bytes with DF: EMSGSIZE (path MTU unknown)");
  EXPECT_NE(dfSendErrorText(1450, ENETUNREACH, std::nullopt).find("unreachable"), std::string::npos);
}

TEST(DfSocket, KernelPathMtuOfLoopbackAndOfNonsense) {
  auto lo = kernelPathMtu("127.0.0.1");
  ASSERT_TRUE(lo.has_value());
  EXPECT_GE(*lo, 1500u);  // loopback's MTU (65536 by default)
  EXPECT_FALSE(kernelPathMtu("not-an-ip").has_value());
}

TEST(DfSocket, ProbeModeIsSetOnAUdpSocket) {
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(setDontFragmentProbe(fd, false), 0);
  int mode = -1;
  socklen_t len = sizeof(mode);
  ASSERT_EQ(::getsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &mode, &len), 0);
  EXPECT_EQ(mode, IP_PMTUDISC_PROBE);
  ::close(fd);
}

}  // namespace
}  // namespace meshprobe::agent
