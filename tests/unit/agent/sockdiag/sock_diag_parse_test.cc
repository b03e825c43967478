// sock_diag parsers on bytes captured from the kernel (tests/data/sockdiag/README.md).
// Expected values come from facts.txt, written by user space (fstat/stat) at capture time.

#include "agent/kernel/sock_diag_parse.h"

#include <gtest/gtest.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <string>

using namespace meshprobe;
using namespace meshprobe::agent;

namespace {

const std::string kDir = std::string(MESHPROBE_TEST_DATA) + "/sockdiag/";

std::vector<uint8_t> readBytes(const std::string& name) {
  std::ifstream in(kDir + name, std::ios::binary);
  EXPECT_TRUE(in) << "missing fixture " << kDir + name;
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

std::map<std::string, std::string> readFacts() {
  std::map<std::string, std::string> facts;
  std::ifstream in(kDir + "facts.txt");
  std::string line;
  while (std::getline(in, line)) {
    const auto eq = line.find('=');
    if (eq != std::string::npos) facts[line.substr(0, eq)] = line.substr(eq + 1);
  }
  EXPECT_FALSE(facts.empty()) << "facts.txt missing or empty";
  return facts;
}

uint64_t num(const std::map<std::string, std::string>& facts, const std::string& key) {
  auto it = facts.find(key);
  EXPECT_NE(it, facts.end()) << key;
  return it == facts.end() ? 0 : std::stoull(it->second);
}

template <typename T, typename Pred>
const T* findOne(const std::vector<T>& v, Pred pred) {
  auto it = std::find_if(v.begin(), v.end(), pred);
  return it == v.end() ? nullptr : &*it;
}

// A netlink message built by hand, for the error paths the kernel rarely produces.
std::vector<uint8_t> message(uint16_t type, uint16_t flags, uint32_t seq, uint32_t pid,
                             const std::vector<uint8_t>& payload) {
  nlmsghdr h{};
  h.nlmsg_len = static_cast<uint32_t>(NLMSG_HDRLEN + payload.size());
  h.nlmsg_type = type;
  h.nlmsg_flags = flags;
  h.nlmsg_seq = seq;
  h.nlmsg_pid = pid;
  std::vector<uint8_t> out(NLMSG_ALIGN(h.nlmsg_len), 0);
  std::memcpy(out.data(), &h, sizeof(h));
  std::copy(payload.begin(), payload.end(), out.begin() + NLMSG_HDRLEN);
  return out;
}

std::vector<uint8_t> intPayload(int v) {
  std::vector<uint8_t> p(sizeof(int));
  std::memcpy(p.data(), &v, sizeof(v));
  return p;
}

std::vector<uint8_t> errorPayload(int err) {
  nlmsgerr e{};
  e.error = err;
  std::vector<uint8_t> p(sizeof(e));
  std::memcpy(p.data(), &e, sizeof(e));
  return p;
}

std::vector<uint8_t> concat(std::initializer_list<std::vector<uint8_t>> parts) {
  std::vector<uint8_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// --- requests -----------------------------------------------------------------------

TEST(SockDiagRequest, InetDumpRequestFields) {
  const auto bytes = buildInetDiagRequest(AF_INET6, IPPROTO_TCP, 1u << TCP_LISTEN, 77);
  ASSERT_EQ(bytes.size(), NLMSG_HDRLEN + sizeof(inet_diag_req_v2));
  nlmsghdr h;
  std::memcpy(&h, bytes.data(), sizeof(h));
  EXPECT_EQ(h.nlmsg_len, bytes.size());
  EXPECT_EQ(h.nlmsg_type, SOCK_DIAG_BY_FAMILY);
  EXPECT_EQ(h.nlmsg_flags, NLM_F_REQUEST | NLM_F_DUMP);
  EXPECT_EQ(h.nlmsg_seq, 77u);
  inet_diag_req_v2 req;
  std::memcpy(&req, bytes.data() + NLMSG_HDRLEN, sizeof(req));
  EXPECT_EQ(req.sdiag_family, AF_INET6);
  EXPECT_EQ(req.sdiag_protocol, IPPROTO_TCP);
  EXPECT_EQ(req.idiag_states, 1u << TCP_LISTEN);
  EXPECT_EQ(req.idiag_ext, 0);
  EXPECT_EQ(req.id.idiag_sport, 0);
}

TEST(SockDiagRequest, UnixDumpRequestAsksForNamePeerVfsIconsRqlen) {
  const auto bytes = buildUnixDiagRequest(defaultUnixDiagShow(), 5);
  ASSERT_EQ(bytes.size(), NLMSG_HDRLEN + sizeof(unix_diag_req));
  unix_diag_req req;
  std::memcpy(&req, bytes.data() + NLMSG_HDRLEN, sizeof(req));
  EXPECT_EQ(req.sdiag_family, AF_UNIX);
  EXPECT_EQ(req.udiag_states, ~0u);
  EXPECT_EQ(req.udiag_show, static_cast<uint32_t>(UDIAG_SHOW_NAME | UDIAG_SHOW_PEER | UDIAG_SHOW_VFS |
                                                  UDIAG_SHOW_ICONS | UDIAG_SHOW_RQLEN));
}

// --- captured inet dumps ------------------------------------------------------------

TEST(SockDiagParse, Udp4DumpHasTheVxlanKernelSocketAndBothUserSockets) {
  const auto facts = readFacts();
  auto parsed = parseInetDiagDump(readBytes("udp4.bin"), IPPROTO_UDP);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  ASSERT_EQ(parsed->size(), 3u);

  const auto* vxlan = findOne(*parsed, [](const InetSocket& s) { return s.local_port == 4789; });
  ASSERT_NE(vxlan, nullptr);
  EXPECT_EQ(vxlan->family, AF_INET);
  EXPECT_EQ(vxlan->protocol, IPPROTO_UDP);
  EXPECT_EQ(vxlan->state, TCP_CLOSE);
  EXPECT_EQ(vxlan->local_address, "0.0.0.0");
  EXPECT_EQ(vxlan->remote_address, "0.0.0.0");
  EXPECT_EQ(vxlan->remote_port, 0);
  EXPECT_EQ(vxlan->uid, 0u);
  EXPECT_EQ(vxlan->bound_ifindex, 0u);
  // No user-space socket of the capture has this inode: it is the device's kernel socket.
  for (const char* key : {"udp4_bound_inode", "udp4_connected_inode", "udp6_inode"}) {
    EXPECT_NE(vxlan->inode, num(facts, key)) << key;
  }

  const auto* bound = findOne(*parsed, [](const InetSocket& s) { return s.local_address == "198.51.100.1"; });
  ASSERT_NE(bound, nullptr);
  EXPECT_EQ(bound->local_port, 9473);
  EXPECT_EQ(bound->state, TCP_CLOSE);
  EXPECT_EQ(bound->inode, num(facts, "udp4_bound_inode"));

  const auto* connected = findOne(*parsed, [](const InetSocket& s) { return s.state == TCP_ESTABLISHED; });
  ASSERT_NE(connected, nullptr);
  EXPECT_EQ(connected->local_address, "127.0.0.1");
  EXPECT_EQ(connected->local_port, 40000);
  EXPECT_EQ(connected->remote_address, "127.0.0.1");
  EXPECT_EQ(connected->remote_port, 9473);
  EXPECT_EQ(connected->inode, num(facts, "udp4_connected_inode"));
}

TEST(SockDiagParse, Udp6DumpFormatsIPv6Addresses) {
  const auto facts = readFacts();
  auto parsed = parseInetDiagDump(readBytes("udp6.bin"), IPPROTO_UDP);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  ASSERT_EQ(parsed->size(), 1u);
  const auto& s = parsed->front();
  EXPECT_EQ(s.family, AF_INET6);
  EXPECT_EQ(s.local_address, "::");
  EXPECT_EQ(s.local_port, 9473);
  EXPECT_EQ(s.state, TCP_CLOSE);
  EXPECT_EQ(s.inode, num(facts, "udp6_inode"));
}

TEST(SockDiagParse, TcpListenDumpsHaveZtunnelPorts) {
  const auto facts = readFacts();
  auto v4 = parseInetDiagDump(readBytes("tcp4_listen.bin"), IPPROTO_TCP);
  auto v6 = parseInetDiagDump(readBytes("tcp6_listen.bin"), IPPROTO_TCP);
  ASSERT_TRUE(v4.ok()) << v4.error().message;
  ASSERT_TRUE(v6.ok()) << v6.error().message;
  ASSERT_EQ(v4->size(), 2u);
  ASSERT_EQ(v6->size(), 1u);
  const auto* p15001 = findOne(*v4, [](const InetSocket& s) { return s.local_port == 15001; });
  const auto* p15006 = findOne(*v4, [](const InetSocket& s) { return s.local_port == 15006; });
  ASSERT_NE(p15001, nullptr);
  ASSERT_NE(p15006, nullptr);
  EXPECT_EQ(p15001->local_address, "0.0.0.0");
  EXPECT_EQ(p15006->local_address, "127.0.0.1");
  EXPECT_EQ(p15001->inode, num(facts, "tcp15001_inode"));
  EXPECT_EQ(p15006->inode, num(facts, "tcp15006_inode"));
  const auto& p15008 = v6->front();
  EXPECT_EQ(p15008.local_port, 15008);
  EXPECT_EQ(p15008.local_address, "::");
  EXPECT_EQ(p15008.inode, num(facts, "tcp15008_inode"));
  for (const auto* s : {p15001, p15006, &p15008}) {
    EXPECT_EQ(s->state, TCP_LISTEN);
    EXPECT_EQ(s->protocol, IPPROTO_TCP);
  }
}

TEST(SockDiagParse, ProtocolComesFromTheRequestWhenTheReplyOmitsIt) {
  // This kernel's inet_diag replies carry no INET_DIAG_PROTOCOL for these dumps.
  auto parsed = parseInetDiagDump(readBytes("udp4.bin"));
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  ASSERT_FALSE(parsed->empty());
  EXPECT_EQ(parsed->front().protocol, 0);
}

// --- captured unix dump -------------------------------------------------------------

TEST(SockDiagParse, UnixDumpListenerAcceptedClientPendingStreamAbstract) {
  const auto facts = readFacts();
  auto parsed = parseUnixDiagDump(readBytes("unix.bin"));
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  ASSERT_EQ(parsed->size(), 6u);
  auto byInode = [&](const std::string& key) {
    const uint64_t ino = num(facts, key);
    return findOne(*parsed, [ino](const UnixSocket& s) { return s.inode == ino; });
  };
  const std::string path = facts.at("seqpacket_path");
  const uint64_t file_inode = num(facts, "seqpacket_file_inode");

  const auto* listener = byInode("listener_inode");
  ASSERT_NE(listener, nullptr);
  EXPECT_EQ(listener->type, SOCK_SEQPACKET);
  EXPECT_EQ(listener->state, TCP_LISTEN);
  EXPECT_EQ(listener->path, path);
  ASSERT_TRUE(listener->vfs_inode.has_value());
  EXPECT_EQ(*listener->vfs_inode, file_inode);
  ASSERT_TRUE(listener->vfs_dev.has_value());
  EXPECT_EQ(userDevFromKernelDev(*listener->vfs_dev), num(facts, "seqpacket_file_dev"));
  EXPECT_EQ(listener->peer_inode, 0u);
  EXPECT_EQ(listener->pending_peer_inodes, std::vector<uint64_t>{num(facts, "pending_client_inode")});
  EXPECT_EQ(listener->pending_connections, 1u);
  EXPECT_EQ(listener->rqueue, 1u);
  EXPECT_EQ(listener->wqueue, 8u);  // listen(8)

  const auto* accepted = byInode("accepted_inode");
  ASSERT_NE(accepted, nullptr);
  EXPECT_EQ(accepted->type, SOCK_SEQPACKET);
  EXPECT_EQ(accepted->state, TCP_ESTABLISHED);
  EXPECT_EQ(accepted->path, path);  // the accepted side carries the listener's address
  ASSERT_TRUE(accepted->vfs_inode.has_value());
  EXPECT_EQ(*accepted->vfs_inode, file_inode);
  EXPECT_EQ(accepted->peer_inode, num(facts, "client_inode"));
  EXPECT_EQ(accepted->pending_connections, 0u);

  const auto* client = byInode("client_inode");
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(client->state, TCP_ESTABLISHED);
  EXPECT_EQ(client->path, "");
  EXPECT_FALSE(client->vfs_inode.has_value());
  EXPECT_EQ(client->peer_inode, num(facts, "accepted_inode"));

  const auto* pending = byInode("pending_client_inode");
  ASSERT_NE(pending, nullptr);
  EXPECT_EQ(pending->state, TCP_ESTABLISHED);
  EXPECT_EQ(pending->peer_inode, 0u);  // its server side is an embryo without an inode

  const auto* stream = byInode("stream_listener_inode");
  ASSERT_NE(stream, nullptr);
  EXPECT_EQ(stream->type, SOCK_STREAM);
  EXPECT_EQ(stream->state, TCP_LISTEN);
  EXPECT_EQ(stream->path, facts.at("stream_path"));
  EXPECT_EQ(stream->vfs_inode, std::optional<uint64_t>(num(facts, "stream_file_inode")));
  EXPECT_EQ(stream->wqueue, 4u);
  EXPECT_TRUE(stream->pending_peer_inodes.empty());

  const auto* abstract = byInode("abstract_inode");
  ASSERT_NE(abstract, nullptr);
  EXPECT_EQ(abstract->type, SOCK_DGRAM);
  EXPECT_EQ(abstract->state, TCP_CLOSE);
  EXPECT_EQ(abstract->path, "@mph-sockdiag-abstract");
  EXPECT_FALSE(abstract->vfs_inode.has_value());
}

// The stale case (capture.py --stale): istio-cni's listener with three accepted
// connections, whose ztunnel end is alive / released (process died) / half-closed.
TEST(SockDiagParse, UnixStaleDumpShowsPeerInodeZeroAndShutdownBits) {
  std::map<std::string, std::string> facts;
  {
    std::ifstream in(kDir + "facts_stale.txt");
    for (std::string line; std::getline(in, line);) {
      if (const auto eq = line.find('='); eq != std::string::npos) facts[line.substr(0, eq)] = line.substr(eq + 1);
    }
  }
  ASSERT_FALSE(facts.empty()) << "facts_stale.txt missing or empty";
  auto parsed = parseUnixDiagDump(readBytes("unix_stale.bin"));
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  auto byInode = [&](const std::string& key) {
    const uint64_t ino = num(facts, key);
    return findOne(*parsed, [ino](const UnixSocket& s) { return s.inode == ino; });
  };
  const std::string path = facts.at("seqpacket_path");

  // Every socket carries UNIX_DIAG_SHUTDOWN (the kernel sends it without a show flag).
  for (const auto& s : *parsed) EXPECT_TRUE(s.shutdown.has_value()) << "inode " << s.inode;

  const auto* alive = byInode("alive_accepted_inode");
  ASSERT_NE(alive, nullptr);
  EXPECT_EQ(alive->state, TCP_ESTABLISHED);
  EXPECT_EQ(alive->peer_inode, num(facts, "alive_client_inode"));
  EXPECT_EQ(alive->shutdown, std::optional<uint8_t>(0));

  // ztunnel's process died: the accepted end is still ESTABLISHED, on the listener's name,
  // with no peer inode and both directions shut down.
  const auto* gone = byInode("gone_accepted_inode");
  ASSERT_NE(gone, nullptr);
  EXPECT_EQ(gone->state, TCP_ESTABLISHED);
  EXPECT_EQ(gone->path, path);
  EXPECT_EQ(gone->peer_inode, 0u);
  EXPECT_EQ(gone->shutdown, std::optional<uint8_t>(kUnixRcvShutdown | kUnixSendShutdown));
  EXPECT_EQ(byInode("gone_client_inode"), nullptr) << "the dead client's socket is released";

  // shutdown(SHUT_WR) by the client: the accepted end can no longer receive; the peer stays.
  const auto* half = byInode("halfclosed_accepted_inode");
  ASSERT_NE(half, nullptr);
  EXPECT_EQ(half->state, TCP_ESTABLISHED);
  EXPECT_EQ(half->peer_inode, num(facts, "halfclosed_client_inode"));
  EXPECT_EQ(half->shutdown, std::optional<uint8_t>(kUnixRcvShutdown));
  const auto* half_client = byInode("halfclosed_client_inode");
  ASSERT_NE(half_client, nullptr);
  EXPECT_EQ(half_client->shutdown, std::optional<uint8_t>(kUnixSendShutdown));

  const auto* listener = byInode("listener_inode");
  ASSERT_NE(listener, nullptr);
  EXPECT_EQ(listener->state, TCP_LISTEN);
  EXPECT_EQ(listener->shutdown, std::optional<uint8_t>(0));
}

TEST(SockDiagParse, KernelDevEncodingConvertsToStatEncoding) {
  EXPECT_EQ(userDevFromKernelDev((254u << 20) | 0u), makedev(254, 0));
  EXPECT_EQ(userDevFromKernelDev((8u << 20) | 300u), makedev(8, 300));
}

// --- bad input: an Error, never a crash ----------------------------------------------

TEST(SockDiagParse, EveryTruncationOfEveryCaptureIsAnError) {
  for (const char* name :
       {"udp4.bin", "udp6.bin", "tcp4_listen.bin", "tcp6_listen.bin", "unix.bin", "unix_stale.bin"}) {
    const auto bytes = readBytes(name);
    ASSERT_GT(bytes.size(), 20u) << name;
    const bool is_unix = std::string(name).rfind("unix", 0) == 0;
    for (size_t len = 0; len < bytes.size(); ++len) {
      std::span<const uint8_t> prefix(bytes.data(), len);
      const bool ok = is_unix ? parseUnixDiagDump(prefix).ok() : parseInetDiagDump(prefix).ok();
      EXPECT_FALSE(ok) << name << " truncated to " << len << " bytes parsed as complete";
    }
  }
}

TEST(SockDiagParse, EmptyInputIsAnErrorNamingTheMissingDone) {
  auto r = parseUnixDiagDump({});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("NLMSG_DONE"), std::string::npos) << r.error().message;
}

TEST(SockDiagParse, RandomCorruptionNeverCrashes) {
  std::mt19937 rng(1234);
  for (const char* name : {"udp4.bin", "unix.bin"}) {
    const auto original = readBytes(name);
    for (int round = 0; round < 2000; ++round) {
      auto bytes = original;
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int i = 0; i < flips; ++i) bytes[rng() % bytes.size()] = static_cast<uint8_t>(rng());
      // Either result is fine; reaching the end without a crash or sanitizer report is the test.
      (void)parseUnixDiagDump(bytes);
      (void)parseInetDiagDump(bytes);
    }
  }
  SUCCEED();
}

TEST(SockDiagParse, MessageLengthBeyondTheBufferIsAnError) {
  auto bytes = readBytes("unix.bin");
  uint32_t huge = 0x7fffffff;
  std::memcpy(bytes.data(), &huge, sizeof(huge));
  auto r = parseUnixDiagDump(bytes);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("truncated"), std::string::npos) << r.error().message;
}

TEST(SockDiagParse, AttributeLengthBeyondTheMessageIsAnError) {
  auto bytes = readBytes("unix.bin");
  // First message: header, unix_diag_msg, then the first attribute's nla_len.
  const size_t attr = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(unix_diag_msg));
  uint16_t bad = 0xfff0;
  std::memcpy(bytes.data() + attr, &bad, sizeof(bad));
  auto r = parseUnixDiagDump(bytes);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("attribute"), std::string::npos) << r.error().message;
}

TEST(SockDiagParse, ShortBodyIsAnError) {
  const auto dump = concat({message(SOCK_DIAG_BY_FAMILY, NLM_F_MULTI, 1, 9, {AF_INET, 7, 0, 0}),
                            message(NLMSG_DONE, NLM_F_MULTI, 1, 9, intPayload(0))});
  auto r = parseInetDiagDump(dump);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("too short"), std::string::npos) << r.error().message;
}

TEST(SockDiagParse, NlmsgErrorCarriesErrno) {
  auto r = parseInetDiagDump(message(NLMSG_ERROR, 0, 1, 9, errorPayload(-EPERM)));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().sys_errno, EPERM);
}

TEST(SockDiagParse, NegativeDoneStatusIsAnError) {
  auto r = parseUnixDiagDump(message(NLMSG_DONE, NLM_F_MULTI, 1, 9, intPayload(-ENOMEM)));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().sys_errno, ENOMEM);
}

TEST(SockDiagParse, DumpInterruptedIsAnError) {
  auto r = parseUnixDiagDump(message(NLMSG_DONE, NLM_F_MULTI | NLM_F_DUMP_INTR, 1, 9, intPayload(0)));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("interrupted"), std::string::npos);
}

TEST(SockDiagParse, UnexpectedMessageTypeIsAnError) {
  auto r = parseUnixDiagDump(message(16 /* RTM_NEWLINK */, 0, 1, 9, {}));
  ASSERT_FALSE(r.ok());
}

TEST(SockDiagParse, WrongFamilyInUnixDumpIsAnError) {
  // An inet reply handed to the unix parser.
  auto r = parseUnixDiagDump(readBytes("udp4.bin"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("family"), std::string::npos) << r.error().message;
}

// --- the reader's chunk collection: seq/portid filtering ------------------------------

TEST(SockDiagCollect, KeepsOnlyMessagesOfThisDumpAndStopsAtDone) {
  const auto udp = readBytes("udp4.bin");  // seq/portid of the capture run
  nlmsghdr first;
  std::memcpy(&first, udp.data(), sizeof(first));
  const auto stale = message(SOCK_DIAG_BY_FAMILY, NLM_F_MULTI, first.nlmsg_seq - 1, first.nlmsg_pid, {1, 2, 3, 4});
  const auto foreign_error = message(NLMSG_ERROR, 0, first.nlmsg_seq, first.nlmsg_pid + 1, errorPayload(-EPERM));
  std::vector<uint8_t> kept;
  auto p = collectDumpChunk(concat({stale, foreign_error, udp}), first.nlmsg_seq, first.nlmsg_pid, kept);
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_TRUE(p->done);
  EXPECT_EQ(p->messages, 3u);
  EXPECT_EQ(kept, udp);  // exactly the dump, stale and foreign messages dropped
  auto parsed = parseInetDiagDump(kept, IPPROTO_UDP);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->size(), 3u);
}

TEST(SockDiagCollect, SplitAcrossChunksReportsDoneOnlyAtTheEnd) {
  const auto unix_dump = readBytes("unix.bin");
  nlmsghdr first;
  std::memcpy(&first, unix_dump.data(), sizeof(first));
  const size_t first_len = NLMSG_ALIGN(first.nlmsg_len);
  std::vector<uint8_t> kept;
  auto a = collectDumpChunk(std::span(unix_dump).first(first_len), first.nlmsg_seq, first.nlmsg_pid, kept);
  ASSERT_TRUE(a.ok());
  EXPECT_FALSE(a->done);
  EXPECT_EQ(a->messages, 1u);
  auto b = collectDumpChunk(std::span(unix_dump).subspan(first_len), first.nlmsg_seq, first.nlmsg_pid, kept);
  ASSERT_TRUE(b.ok());
  EXPECT_TRUE(b->done);
  EXPECT_EQ(kept, unix_dump);
}

TEST(SockDiagCollect, ErrorForThisDumpFails) {
  std::vector<uint8_t> kept;
  auto p = collectDumpChunk(message(NLMSG_ERROR, 0, 42, 7, errorPayload(-EINVAL)), 42, 7, kept);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().sys_errno, EINVAL);
}

}  // namespace
