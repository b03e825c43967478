// ztunnel check logic with a fake SockDiag; the socket file is real (a temp dir per
// test, a unix socket bound and closed = a stale socket file), so the inode match is real.

#include "agent/checks/ztunnel_check.h"

#include <gtest/gtest.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>

#include "agent/kernel/sock_diag_parse.h"
#include "tests/support/fakes/sock_diag.h"

using namespace meshprobe;
using namespace meshprobe::agent;
using meshprobe::test::FakeSockDiag;

namespace {

class ZtunnelCheckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mp-ztunnel-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    config.ztunnel_socket = dir_ + "/ztunnel.sock";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // A socket file with nobody listening: bind, then close.
  void makeStaleSocketFile() {
    int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    ASSERT_GE(fd, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", config.ztunnel_socket.c_str());
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    close(fd);
  }

  struct stat statFile() const {
    struct stat st {};
    EXPECT_EQ(stat(config.ztunnel_socket.c_str(), &st), 0);
    return st;
  }

  // A SEQPACKET listener bound to the socket file (as UNIX_DIAG_VFS reports it).
  UnixSocket listener(uint64_t inode, const std::string& bound_name, uint8_t type = SOCK_SEQPACKET) {
    const struct stat st = statFile();
    UnixSocket s;
    s.inode = inode;
    s.type = type;
    s.state = TCP_LISTEN;
    s.path = bound_name;
    s.vfs_inode = st.st_ino;
    s.vfs_dev = static_cast<uint32_t>((major(st.st_dev) << 20) | minor(st.st_dev));
    s.wqueue = 128;
    return s;
  }

  // The accepted side of a connection: same name and file as the listener.
  static UnixSocket accepted(const UnixSocket& l, uint64_t inode, uint64_t peer) {
    UnixSocket s = l;
    s.inode = inode;
    s.state = TCP_ESTABLISHED;
    s.peer_inode = peer;
    s.wqueue = 0;
    return s;
  }

  static UnixSocket client(uint64_t inode, uint64_t peer) {
    UnixSocket s;
    s.inode = inode;
    s.type = SOCK_SEQPACKET;
    s.state = TCP_ESTABLISHED;
    s.peer_inode = peer;
    return s;
  }

  CheckResult run() { return ZtunnelCheck(config, diag).run(); }

  AgentConfig config;
  FakeSockDiag diag;
  std::string dir_;
};

const Finding* findingWith(const CheckResult& r, std::string_view code) {
  for (const auto& f : r.findings)
    if (f.code == code) return &f;
  return nullptr;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

TEST_F(ZtunnelCheckTest, NoFileNoListenerIsNotAnAmbientNode) {
  UnixSocket other;
  other.inode = 9;
  other.type = SOCK_STREAM;
  other.state = TCP_LISTEN;
  other.path = "/run/containerd/containerd.sock";
  diag.unix_sockets = std::vector<UnixSocket>{other};
  auto r = run();
  EXPECT_EQ(r.status, CheckStatus::kSkip);
  EXPECT_EQ(r.name, "ztunnel");
  EXPECT_TRUE(contains(r.summary, "not an ambient node")) << r.summary;
  EXPECT_TRUE(contains(r.summary, config.ztunnel_socket)) << r.summary;
  EXPECT_EQ(r.details["reason"], "not an ambient node");
  EXPECT_TRUE(r.findings.empty());
}

TEST_F(ZtunnelCheckTest, StaleSocketFileWithoutListenerIsCniAgentDown) {
  makeStaleSocketFile();
  auto r = run();
  EXPECT_EQ(r.status, CheckStatus::kFail);
  EXPECT_TRUE(contains(r.summary, "stale socket file")) << r.summary;
  EXPECT_TRUE(contains(r.summary, "istio-cni is not running")) << r.summary;
  const Finding* f = findingWith(r, codes::kCniAgentDown);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->layer, Layer::kAmbient);
  EXPECT_EQ(f->severity, Severity::kCritical);
  EXPECT_TRUE(contains(f->summary, config.ztunnel_socket)) << f->summary;
  EXPECT_FALSE(f->remedy.empty());
  EXPECT_EQ(r.details["socket_file"]["exists"], true);
  EXPECT_EQ(r.details["socket_file"]["is_socket"], true);
}

TEST_F(ZtunnelCheckTest, RegularFileWithoutListenerIsCniAgentDown) {
  std::ofstream(config.ztunnel_socket) << "not a socket";
  auto r = run();
  EXPECT_EQ(r.status, CheckStatus::kFail);
  EXPECT_TRUE(contains(r.summary, "not a socket")) << r.summary;
  EXPECT_NE(findingWith(r, codes::kCniAgentDown), nullptr);
}

TEST_F(ZtunnelCheckTest, ListenerWithConnectionIsOkMatchedByFileInode) {
  makeStaleSocketFile();
  // Bound under another spelling of the path (e.g. the host's view): the inode decides.
  UnixSocket l = listener(100, "/var/run/ztunnel/ztunnel.sock");
  diag.unix_sockets = std::vector<UnixSocket>{l, accepted(l, 101, 200), client(200, 101)};
  auto r = run();
  EXPECT_EQ(r.status, CheckStatus::kOk) << r.summary;
  EXPECT_TRUE(contains(r.summary, "1 ztunnel connection")) << r.summary;
  EXPECT_TRUE(r.findings.empty());
  EXPECT_EQ(r.details["listener"]["matched_by"], "socket file inode");
  EXPECT_EQ(r.details["listener"]["inode"], 100);
  EXPECT_EQ(r.details["established"], 1);
  ASSERT_EQ(r.details["connections"].size(), 1u);
  EXPECT_EQ(r.details["connections"][0]["inode"], 101);
  EXPECT_EQ(r.details["connections"][0]["peer_inode"], 200);
  EXPECT_EQ(r.details["connections"][0]["peer_seen"], true);
}

TEST_F(ZtunnelCheckTest, CountsOnlyConnectionsOnThisSocket) {
  makeStaleSocketFile();
  UnixSocket l = listener(100, config.ztunnel_socket);
  UnixSocket elsewhere = accepted(l, 300, 301);
  elsewhere.path = "/run/other.sock";
  elsewhere.vfs_inode = *l.vfs_inode + 1;
  UnixSocket stream_conn = accepted(l, 302, 303);
  stream_conn.type = SOCK_STREAM;
  diag.unix_sockets = std::vector<UnixSocket>{l, accepted(l, 101, 200), accepted(l, 102, 201), elsewhere, stream_conn};
  auto r = run();
  EXPECT_EQ(r.status, CheckStatus::kOk) << r.summary;
  EXPECT_EQ(r.details["established"], 2);
  EXPECT_TRUE(contains(r.summary, "2 ztunnel connections")) << r.summary;
}

TEST_F(ZtunnelCheckTest, ListenerWithoutConnectionIsZtunnelNotConnected) {
  makeStaleSocketFile();
  diag.unix_sockets = std::vector<UnixSocket>{listener(100, config.ztunnel_socket)};
  auto r = run();
  EXPECT_EQ(r.status, CheckStatus::kFail);
  EXPECT_TRUE(contains(r.summary, "new ambient pods will fail: no ztunnel connection")) << r.summary;
  const Finding* f = findingWith(r, codes::kZtunnelNotConnected);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->layer, Layer::kAmbient);
  EXPECT_EQ(f->severity, Severity::kCritical);
  EXPECT_TRUE(contains(f->summary, "new ambient pods will fail: no ztunnel connection")) << f->summary;
  EXPECT_EQ(f->remedy, "fix ztunnel connectivity first (ztunnel must reach istiod:15012), then new pods start");
  EXPECT_EQ(findingWith(r, codes::kCniAgentDown), nullptr);
  EXPECT_EQ(r.details["established"], 0);
}

TEST_F(ZtunnelCheckTest, PendingButNotAcceptedIsNotConnected) {
  makeStaleSocketFile();
  UnixSocket l = listener(100, config.ztunnel_socket);
  l.pending_peer_inodes = {200};
  l.pending_connections = 1;
  l.rqueue = 1;
  diag.unix_sockets = std::vector<UnixSocket>{l, client(200, 0)};
  auto r = run();
  EXPECT_EQ(r.status, CheckStatus::kFail);
  const Finding* f = findingWith(r, codes::kZtunnelNotConnected);
  ASSERT_NE(f, nullptr);
  bool queue_named = false;
  for (const auto& e : f->evidence) queue_named |= contains(e, "accept queue");
  EXPECT_TRUE(queue_named);
}

TEST_F(ZtunnelCheckTest, ListenerOfTheWrongTypeFailsWithExplanation) {
  makeStaleSocketFile();
  UnixSocket l = listener(100, config.ztunnel_socket, SOCK_STREAM);
  diag.unix_sockets = std::vector<UnixSocket>{l, accepted(l, 101, 200)};
  auto r = run();
  EXPECT_EQ(r.status, CheckStatus::kFail);
  EXPECT_TRUE(contains(r.summary, "SOCK_STREAM") && contains(r.summary, "SOCK_SEQPACKET")) << r.summary;
  const Finding* f = findingWith(r, codes::kCniAgentDown);
  ASSERT_NE(f, nullptr);
  EXPECT_TRUE(contains(f->summary, "SOCK_STREAM")) << f->summary;
}

TEST_F(ZtunnelCheckTest, SeqpacketListenerPreferredOverAnotherTypeOnTheSameName) {
  makeStaleSocketFile();
  UnixSocket stream = listener(90, config.ztunnel_socket, SOCK_STREAM);
  UnixSocket l = listener(100, config.ztunnel_socket);
  diag.unix_sockets = std::vector<UnixSocket>{stream, l, accepted(l, 101, 200)};
  auto r = run();
  EXPECT_EQ(r.status, CheckStatus::kOk) << r.summary;
  EXPECT_EQ(r.details["listener"]["inode"], 100);
}

TEST_F(ZtunnelCheckTest, SockDiagFailureFailsWithTheError) {
  diag.unix_sockets = Error{"unix_diag dump: sock_diag dump timed out after 500ms", ETIMEDOUT};
  auto r = run();
  EXPECT_EQ(r.status, CheckStatus::kFail);
  EXPECT_TRUE(contains(r.summary, "timed out after 500ms")) << r.summary;
  EXPECT_TRUE(r.findings.empty());
}

TEST_F(ZtunnelCheckTest, ListenerWhoseFileWasDeletedWarnsWhileConnected) {
  // No file at the path; the listener is found by its bound name.
  UnixSocket l;
  l.inode = 100;
  l.type = SOCK_SEQPACKET;
  l.state = TCP_LISTEN;
  l.path = config.ztunnel_socket;
  l.vfs_inode = 4242;
  l.vfs_dev = 1;
  diag.unix_sockets = std::vector<UnixSocket>{l, accepted(l, 101, 200)};
  auto r = run();
  EXPECT_EQ(r.status, CheckStatus::kWarn) << r.summary;
  EXPECT_TRUE(contains(r.summary, "deleted")) << r.summary;
  EXPECT_EQ(r.details["listener"]["matched_by"], "bound name");

  diag.unix_sockets = std::vector<UnixSocket>{l};
  r = run();
  EXPECT_EQ(r.status, CheckStatus::kFail);
  EXPECT_NE(findingWith(r, codes::kZtunnelNotConnected), nullptr);
}

TEST_F(ZtunnelCheckTest, ListenerOnAReplacedFileWarns) {
  makeStaleSocketFile();
  UnixSocket l = listener(100, config.ztunnel_socket);
  l.vfs_inode = *l.vfs_inode + 1000;  // listens on an older, unlinked file
  diag.unix_sockets = std::vector<UnixSocket>{l, accepted(l, 101, 200)};
  auto r = run();
  EXPECT_EQ(r.status, CheckStatus::kWarn) << r.summary;
  EXPECT_TRUE(contains(r.summary, "another file")) << r.summary;
}

TEST_F(ZtunnelCheckTest, UnstatablePathWithoutListenerFailsWithTheReason) {
  std::ofstream(dir_ + "/file") << "x";
  config.ztunnel_socket = dir_ + "/file/ztunnel.sock";  // ENOTDIR
  auto r = run();
  EXPECT_EQ(r.status, CheckStatus::kFail);
  EXPECT_TRUE(contains(r.summary, "Not a directory")) << r.summary;
}

// ---- ztunnel's end of a connection gone while istio-cni still holds its accepted socket ----

// What the kernel reports for istio-cni's accepted socket after ztunnel's process died:
// still ESTABLISHED, peer inode 0, both shutdown bits (tests/data/sockdiag/unix_stale.bin).
UnixSocket peerGone(const UnixSocket& accepted_side) {
  UnixSocket s = accepted_side;
  s.peer_inode = 0;
  s.shutdown = kUnixRcvShutdown | kUnixSendShutdown;
  return s;
}

TEST_F(ZtunnelCheckTest, HeldConnectionWhosePeerIsGoneIsZtunnelNotConnected) {
  makeStaleSocketFile();
  UnixSocket l = listener(100, config.ztunnel_socket);
  diag.unix_sockets = std::vector<UnixSocket>{l, peerGone(accepted(l, 101, 200))};
  auto r = run();
  EXPECT_EQ(r.status, CheckStatus::kFail) << r.summary;
  EXPECT_TRUE(contains(r.summary, "ztunnel is not connected")) << r.summary;
  EXPECT_TRUE(contains(r.summary, "1 connection still held by istio-cni, ztunnel's end gone")) << r.summary;
  const Finding* f = findingWith(r, codes::kZtunnelNotConnected);
  ASSERT_NE(f, nullptr);
  bool named = false;
  for (const auto& e : f->evidence) named |= contains(e, "accepted socket inode 101: ztunnel's end is released (peer inode 0, shut down for read+write)");
  EXPECT_TRUE(named) << ::testing::PrintToString(f->evidence);
  EXPECT_EQ(r.details["established"], 0);
  EXPECT_EQ(r.details["stale"], 1);
  ASSERT_EQ(r.details["connections"].size(), 1u);
  EXPECT_EQ(r.details["connections"][0]["peer_alive"], false);
  EXPECT_EQ(r.details["connections"][0]["shutdown"], "read+write");
}

TEST_F(ZtunnelCheckTest, PeerInodeZeroAloneMeansGoneEvenWithoutAShutdownAttribute) {
  makeStaleSocketFile();
  UnixSocket l = listener(100, config.ztunnel_socket);
  UnixSocket held = accepted(l, 101, 0);  // a kernel that sends no UNIX_DIAG_SHUTDOWN
  ASSERT_FALSE(held.shutdown.has_value());
  diag.unix_sockets = std::vector<UnixSocket>{l, held};
  auto r = run();
  EXPECT_EQ(r.status, CheckStatus::kFail) << r.summary;
  EXPECT_NE(findingWith(r, codes::kZtunnelNotConnected), nullptr);
}

TEST_F(ZtunnelCheckTest, ShutDownConnectionWithAPeerInodeIsNotCounted) {
  makeStaleSocketFile();
  UnixSocket l = listener(100, config.ztunnel_socket);
  // ztunnel called shutdown(SHUT_WR): istio-cni's end can no longer receive; the peer inode stays.
  UnixSocket closing = accepted(l, 101, 200);
  closing.shutdown = kUnixRcvShutdown;
  UnixSocket write_shut = accepted(l, 102, 201);
  write_shut.shutdown = kUnixSendShutdown;
  diag.unix_sockets = std::vector<UnixSocket>{l, closing, write_shut};
  auto r = run();
  EXPECT_EQ(r.status, CheckStatus::kFail) << r.summary;
  EXPECT_NE(findingWith(r, codes::kZtunnelNotConnected), nullptr);
  EXPECT_EQ(r.details["stale"], 2);
  EXPECT_TRUE(contains(r.details["connections"][0]["not_counted"].get<std::string>(), "shut down for read (peer inode 200)"));
  EXPECT_TRUE(contains(r.details["connections"][1]["not_counted"].get<std::string>(), "shut down for write"));
}

TEST_F(ZtunnelCheckTest, PeerInAnotherNetnsIsAliveThoughNotSeen) {
  // ztunnel's client socket lives in ztunnel's own netns: sock_diag here never lists it.
  makeStaleSocketFile();
  UnixSocket l = listener(100, config.ztunnel_socket);
  UnixSocket live = accepted(l, 101, 999);
  live.shutdown = 0;
  diag.unix_sockets = std::vector<UnixSocket>{l, live};
  auto r = run();
  EXPECT_EQ(r.status, CheckStatus::kOk) << r.summary;
  EXPECT_EQ(r.details["established"], 1);
  EXPECT_EQ(r.details["connections"][0]["peer_seen"], false);
  EXPECT_EQ(r.details["connections"][0]["peer_alive"], true);
}

TEST_F(ZtunnelCheckTest, NewZtunnelNextToAStaleConnectionIsOk) {
  makeStaleSocketFile();
  UnixSocket l = listener(100, config.ztunnel_socket);
  UnixSocket live = accepted(l, 103, 300);
  live.shutdown = 0;
  diag.unix_sockets = std::vector<UnixSocket>{l, peerGone(accepted(l, 101, 200)), live};
  auto r = run();
  EXPECT_EQ(r.status, CheckStatus::kOk) << r.summary;
  EXPECT_TRUE(contains(r.summary, "1 ztunnel connection")) << r.summary;
  EXPECT_TRUE(contains(r.summary, "1 stale (ztunnel's end gone) not counted")) << r.summary;
  EXPECT_TRUE(r.findings.empty());
  EXPECT_EQ(r.details["established"], 1);
  EXPECT_EQ(r.details["stale"], 1);
}

// The captured dump (tests/data/sockdiag): the capture's socket file is gone now, so
// the listener is found by its bound name, with ztunnel's connection and a pending one.
TEST_F(ZtunnelCheckTest, CapturedDumpListenerWithConnection) {
  const std::string data = std::string(MESHPROBE_TEST_DATA) + "/sockdiag/";
  std::map<std::string, std::string> facts;
  std::ifstream ff(data + "facts.txt");
  for (std::string line; std::getline(ff, line);) {
    if (auto eq = line.find('='); eq != std::string::npos) facts[line.substr(0, eq)] = line.substr(eq + 1);
  }
  std::ifstream in(data + "unix.bin", std::ios::binary);
  std::vector<uint8_t> bytes(std::istreambuf_iterator<char>(in), {});
  auto parsed = parseUnixDiagDump(bytes);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  diag.unix_sockets = *parsed;
  config.ztunnel_socket = facts.at("seqpacket_path");
  ASSERT_FALSE(std::filesystem::exists(config.ztunnel_socket));
  auto r = run();
  EXPECT_EQ(r.status, CheckStatus::kWarn) << r.summary;  // connected, but the file is gone
  EXPECT_EQ(r.details["listener"]["inode"], std::stoull(facts.at("listener_inode")));
  EXPECT_EQ(r.details["established"], 1);
  EXPECT_EQ(r.details["connections"][0]["inode"], std::stoull(facts.at("accepted_inode")));
  EXPECT_EQ(r.details["connections"][0]["peer_inode"], std::stoull(facts.at("client_inode")));
  EXPECT_EQ(r.details["pending_peer_inodes"][0], std::stoull(facts.at("pending_client_inode")));

  config.ztunnel_socket = facts.at("stream_path");
  r = run();
  EXPECT_EQ(r.status, CheckStatus::kFail);
  EXPECT_NE(findingWith(r, codes::kCniAgentDown), nullptr);
}

std::map<std::string, std::string> readFacts(const std::string& file) {
  std::map<std::string, std::string> facts;
  std::ifstream ff(std::string(MESHPROBE_TEST_DATA) + "/sockdiag/" + file);
  for (std::string line; std::getline(ff, line);) {
    if (auto eq = line.find('='); eq != std::string::npos) facts[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return facts;
}

std::vector<UnixSocket> readStaleCapture() {
  std::ifstream in(std::string(MESHPROBE_TEST_DATA) + "/sockdiag/unix_stale.bin", std::ios::binary);
  std::vector<uint8_t> bytes(std::istreambuf_iterator<char>(in), {});
  auto parsed = parseUnixDiagDump(bytes);
  EXPECT_TRUE(parsed.ok()) << parsed.error().message;
  return parsed.ok() ? *parsed : std::vector<UnixSocket>{};
}

// The captured stale case: one live ztunnel, one whose process died (its accepted socket
// still held), one half-closed. Only the live one counts.
TEST_F(ZtunnelCheckTest, CapturedStaleDumpCountsOnlyTheLiveConnection) {
  auto facts = readFacts("facts_stale.txt");
  diag.unix_sockets = readStaleCapture();
  config.ztunnel_socket = facts.at("seqpacket_path");
  auto r = run();
  EXPECT_EQ(r.status, CheckStatus::kWarn) << r.summary;  // connected, but the capture's file is gone
  EXPECT_EQ(r.details["established"], 1);
  EXPECT_EQ(r.details["stale"], 2);
  EXPECT_TRUE(r.findings.empty());
  std::map<uint64_t, nlohmann::json> by_inode;
  for (const auto& c : r.details["connections"]) by_inode[c["inode"].get<uint64_t>()] = c;
  const auto alive = by_inode.at(std::stoull(facts.at("alive_accepted_inode")));
  EXPECT_EQ(alive["peer_alive"], true);
  EXPECT_EQ(alive["peer_inode"], std::stoull(facts.at("alive_client_inode")));
  const auto gone = by_inode.at(std::stoull(facts.at("gone_accepted_inode")));
  EXPECT_EQ(gone["peer_alive"], false);
  EXPECT_EQ(gone["peer_inode"], 0);
  const auto half = by_inode.at(std::stoull(facts.at("halfclosed_accepted_inode")));
  EXPECT_EQ(half["peer_alive"], false);
  EXPECT_EQ(half["peer_inode"], std::stoull(facts.at("halfclosed_client_inode")));
}

// The same capture without the live connection: what the agent sees on a quiet node after
// ztunnel died under an istio-cni that has not closed its socket.
TEST_F(ZtunnelCheckTest, CapturedStaleDumpWithoutTheLiveOneIsZtunnelNotConnected) {
  auto facts = readFacts("facts_stale.txt");
  auto sockets = readStaleCapture();
  const uint64_t live = std::stoull(facts.at("alive_accepted_inode"));
  std::erase_if(sockets, [live](const UnixSocket& s) { return s.inode == live; });
  diag.unix_sockets = sockets;
  config.ztunnel_socket = facts.at("seqpacket_path");
  auto r = run();
  EXPECT_EQ(r.status, CheckStatus::kFail) << r.summary;
  EXPECT_NE(findingWith(r, codes::kZtunnelNotConnected), nullptr);
  EXPECT_TRUE(contains(r.summary, "2 connections still held by istio-cni")) << r.summary;
}

}  // namespace
