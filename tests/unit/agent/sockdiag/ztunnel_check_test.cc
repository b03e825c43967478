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

using namespace meshprobe;
using namespace meshprobe::agent;

namespace {

class FakeSockDiag final : public SockDiag {
 public:
  Result<std::vector<InetSocket>> udpSockets() override { return std::vector<InetSocket>{}; }
  Result<std::vector<InetSocket>> tcpListeners() override { return std::vector<InetSocket>{}; }
  Result<std::vector<UnixSocket>> unixSockets() override { return unix_sockets; }
  Result<std::vector<UnixSocket>> unix_sockets = std::vector<UnixSocket>{};
};

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

}  // namespace
