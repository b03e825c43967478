// E2E test of the probe responder's authentication and anti-replay: the real
// meshprobe-agent binary (standalone, --probe-key-file) in a network namespace of its own,
// probed over a veth pair from a second namespace by this test with hand-made packets:
// unsigned, signed, and the signed bytes again (a captured probe replayed). Only the
// signed one is answered; /metrics counts the other two by reason.
//
// Layout: mpe2e-<pid>-pauth-agent (10.77.0.1/24, the agent) <-veth-> mpe2e-<pid>-pauth-peer
// (10.77.0.2/24, the test's socket). All traffic stays between those two namespaces: the
// agent's istiod check is pointed at the peer namespace, where nothing listens.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <optional>
#include <regex>
#include <string>

#include "agent/probe/packet.h"
#include "tests/e2e/harness.h"

namespace meshprobe::e2e {
namespace {

constexpr const char* kAgentIp = "10.77.0.1";
constexpr const char* kPeerIp = "10.77.0.2";
constexpr uint16_t kProbePort = 9473;
constexpr uint16_t kHttpPort = 9472;
constexpr const char* kKey = "e2e probe key: not a secret";

// A UDP socket created inside `netns` (a socket keeps the namespace it was made in), by
// a short-lived thread in that namespace. Closed in the destructor.
class NetnsUdpSocket {
 public:
  NetnsUdpSocket(const std::string& netns_path, const std::string& bind_ip) {
    std::string error;
    runInNetnsThread(netns_path, [&] {
      fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      ::inet_pton(AF_INET, bind_ip.c_str(), &a.sin_addr);
      if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
        error = "cannot bind a UDP socket to " + bind_ip + ": " + std::strerror(errno);
      }
    });
    if (!error.empty()) {
      if (fd_ >= 0) ::close(fd_);
      throw HarnessError(error);
    }
  }
  ~NetnsUdpSocket() { ::close(fd_); }
  NetnsUdpSocket(const NetnsUdpSocket&) = delete;
  NetnsUdpSocket& operator=(const NetnsUdpSocket&) = delete;

  bool sendTo(const std::string& bytes, const std::string& ip, uint16_t port) const {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    ::inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
    return ::sendto(fd_, bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof(a)) ==
           static_cast<ssize_t>(bytes.size());
  }
  // One datagram within `timeout` (poll with a deadline), or nullopt.
  std::optional<std::string> receive(std::chrono::milliseconds timeout) const {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return std::nullopt;
    std::string buf(65536, '\0');
    ssize_t n = ::recv(fd_, buf.data(), buf.size(), 0);
    if (n < 0) return std::nullopt;
    buf.resize(static_cast<size_t>(n));
    return buf;
  }

 private:
  int fd_ = -1;
};

// GET `target` from inside `netns` (bash /dev/tcp; Connection: close). The body, or ""
// when there was no 200 response.
std::string httpGet(const std::string& netns, const std::string& host, uint16_t port, const std::string& target) {
  CmdOptions o;
  o.netns = netns;
  o.timeout = 10s;
  const std::string script =
      "exec 3<>/dev/tcp/$1/$2 || exit 7\n"
      "printf 'GET %s HTTP/1.1\\r\\nHost: %s:%s\\r\\nConnection: close\\r\\n\\r\\n' \"$3\" \"$1\" \"$2\" >&3\n"
      "cat <&3\n";
  auto r = runCommand({"bash", "-c", script, "fetch", host, std::to_string(port), target}, o);
  if (r.exit_code != 0 || r.out.rfind("HTTP/1.1 200", 0) != 0) return "";
  const auto end = r.out.find("\r\n\r\n");
  return end == std::string::npos ? "" : r.out.substr(end + 4);
}

// meshprobe_responder_dropped_total{reason="<reason>"}, or -1 when absent.
double droppedTotal(const std::string& metrics, const std::string& reason) {
  std::smatch m;
  const std::regex re("(^|\\n)meshprobe_responder_dropped_total\\{reason=\"" + reason + "\"\\} ([0-9.e+]+)");
  if (!std::regex_search(metrics, m, re)) return -1;
  return std::strtod(m[2].str().c_str(), nullptr);
}

double requestsTotal(const std::string& metrics) {
  std::smatch m;
  if (!std::regex_search(metrics, m, std::regex("(^|\\n)meshprobe_responder_requests_total ([0-9.e+]+)"))) return -1;
  return std::strtod(m[2].str().c_str(), nullptr);
}

class ProbeAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!havePrivileges(&why)) GTEST_SKIP() << why;
    tmp_ = std::make_unique<TempDir>("pauth");
    agent_ns_ = std::make_unique<TestNetns>("pauth-agent");
    peer_ns_ = std::make_unique<TestNetns>("pauth-peer");
    mustRun({"ip", "-n", agent_ns_->name(), "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns",
             peer_ns_->name()});
    agent_ns_->sh(std::string("ip addr add ") + kAgentIp + "/24 dev eth0 && ip link set eth0 up");
    peer_ns_->sh(std::string("ip addr add ") + kPeerIp + "/24 dev eth0 && ip link set eth0 up");
    writeFile(tmp_->sub("probe-key"), std::string(kKey) + "\n", 0400);
    tmp_->mkdir("host");
    tmp_->mkdir("netns");
    // Standalone (no --aggregator), so no TLS flags are needed; the key is always given.
    agent_ = std::make_unique<Process>(agent_ns_->name(),
                                       std::vector<std::string>{kAgentBin,
                                                                "--node-name",
                                                                "pauth-agent",
                                                                "--node-ip",
                                                                kAgentIp,
                                                                "--probe-key-file",
                                                                tmp_->sub("probe-key"),
                                                                "--probe-port",
                                                                std::to_string(kProbePort),
                                                                "--http-listen",
                                                                std::string("127.0.0.1:") + std::to_string(kHttpPort),
                                                                "--istiod",
                                                                std::string(kPeerIp) + ":15012",
                                                                "--host-root",
                                                                tmp_->sub("host"),
                                                                "--netns-dir",
                                                                tmp_->sub("netns"),
                                                                "--ztunnel-socket",
                                                                tmp_->sub("ztunnel.sock"),
                                                                "--check-timeout",
                                                                "2s",
                                                                "--log-level",
                                                                "debug"},
                                       tmp_->sub("agent.log"));
    // The responder listens on TCP and UDP on the same port, bound before the HTTP server.
    pid_t pid = agent_->pid();
    waitFor([pid] { return tcpListening(pid, kProbePort) && tcpListening(pid, kHttpPort); }, 20s,
            "agent probe responder and HTTP listener", agent_.get());
    key_ = *agent::ProbeKey::fromBytes(kKey);
  }

  void TearDown() override {
    // Reverse order of creation; each destructor cleans up even when SetUp threw half way.
    agent_.reset();
    peer_ns_.reset();
    agent_ns_.reset();
    tmp_.reset();
  }

  std::string probe(uint64_t sequence, bool sign) const {
    agent::ProbePacket p;
    p.sequence = sequence;
    p.send_time_ns = 123456789;
    p.sender = "pauth-peer";
    auto bytes = agent::encodeProbe(p, sign ? &*key_ : nullptr, 256);
    if (!bytes.ok()) throw HarnessError("encodeProbe: " + bytes.error().message);
    return *bytes;
  }

  std::string metrics() const { return httpGet(agent_ns_->name(), "127.0.0.1", kHttpPort, "/metrics"); }

  std::unique_ptr<TempDir> tmp_;
  std::unique_ptr<TestNetns> agent_ns_;
  std::unique_ptr<TestNetns> peer_ns_;
  std::unique_ptr<Process> agent_;
  std::optional<agent::ProbeKey> key_;
};

TEST_F(ProbeAuthTest, UnsignedAndReplayedProbesGetNoReply) {
  NetnsUdpSocket sock(peer_ns_->path(), kPeerIp);
  const uint64_t seq = 1'000'000'000'000;

  ASSERT_TRUE(sock.sendTo(probe(seq, false), kAgentIp, kProbePort));  // unsigned
  const std::string signed_probe = probe(seq + 1, true);
  ASSERT_TRUE(sock.sendTo(signed_probe, kAgentIp, kProbePort));

  // The first datagram back (poll with a 5 s deadline) must answer the signed probe: the
  // unsigned one went first on the same path and the responder handles them in order.
  auto reply = sock.receive(5000ms);
  ASSERT_TRUE(reply.has_value()) << "no reply to the signed probe\n" << agent_->describe();
  EXPECT_EQ(reply->size(), signed_probe.size());
  agent::ProbePacket p;
  ASSERT_EQ(agent::decodeProbe(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(reply->data()), reply->size()),
                               &*key_, p),
            agent::DecodeStatus::kOk);
  EXPECT_EQ(p.type, agent::ProbeType::kReply);
  EXPECT_EQ(p.sequence, seq + 1);
  EXPECT_EQ(p.sender, "pauth-agent");

  ASSERT_TRUE(sock.sendTo(signed_probe, kAgentIp, kProbePort));  // the captured bytes, replayed

  // Poll /metrics (deadline 15 s) until the responder has counted all three requests and
  // both drops; it counts a request only after any reply to it was sent.
  std::string m;
  waitFor(
      [&] {
        m = metrics();
        return requestsTotal(m) >= 3 && droppedTotal(m, "unauthenticated") >= 1 && droppedTotal(m, "replayed") >= 1;
      },
      15s, "the responder's drops in /metrics", agent_.get());
  EXPECT_EQ(requestsTotal(m), 3) << m;
  EXPECT_EQ(droppedTotal(m, "unauthenticated"), 1) << m;
  EXPECT_EQ(droppedTotal(m, "replayed"), 1) << m;
  EXPECT_EQ(droppedTotal(m, "rate_limited"), 0) << m;
  // Nothing else came back: a reply to the unsigned probe or to the replay would have been
  // sent before the counters moved; 500 ms covers its trip across the veth pair.
  auto extra = sock.receive(500ms);
  EXPECT_FALSE(extra.has_value()) << "unexpected datagram of " << extra->size() << " bytes";
}

}  // namespace
}  // namespace meshprobe::e2e
