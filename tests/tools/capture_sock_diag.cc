// Captures raw NETLINK_SOCK_DIAG dump replies of the calling process's network
// namespace into files, for the parser tests (tests/data/sockdiag/README.md).
//
//   capture_sock_diag OUTDIR
//   capture_sock_diag OUTDIR --unix-only NAME
//
// writes OUTDIR/{udp4,udp6,tcp4_listen,tcp6_listen,unix}.bin (reply messages up to and
// including NLMSG_DONE, exactly what sockDiagDump returns) and prints what the parsers
// make of them. With --unix-only, only the AF_UNIX dump, as OUTDIR/NAME.bin.

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>

#include "agent/kernel/sock_diag_io.h"
#include "agent/kernel/sock_diag_parse.h"

using namespace meshprobe;
using namespace meshprobe::agent;

namespace {

constexpr std::chrono::milliseconds kTimeout{2000};

bool writeFile(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  return static_cast<bool>(out);
}

bool captureInet(const std::string& dir, const char* name, uint8_t family, uint8_t protocol, uint32_t states) {
  auto dump = sockDiagDump(buildInetDiagRequest(family, protocol, states, 0), kTimeout);
  if (!dump) {
    std::fprintf(stderr, "%s: %s\n", name, dump.error().message.c_str());
    return false;
  }
  if (!writeFile(dir + "/" + name + ".bin", *dump)) return false;
  auto parsed = parseInetDiagDump(*dump, protocol);
  if (!parsed) {
    std::fprintf(stderr, "%s: parse: %s\n", name, parsed.error().message.c_str());
    return false;
  }
  std::printf("%s: %zu bytes, %zu sockets\n", name, dump->size(), parsed->size());
  for (const auto& s : *parsed) {
    std::printf("  proto=%d state=%u %s:%u -> %s:%u inode=%llu uid=%u if=%u\n", s.protocol, s.state,
                s.local_address.c_str(), s.local_port, s.remote_address.c_str(), s.remote_port,
                static_cast<unsigned long long>(s.inode), s.uid, s.bound_ifindex);
  }
  return true;
}

bool captureUnix(const std::string& dir, const std::string& name = "unix") {
  auto dump = sockDiagDump(buildUnixDiagRequest(defaultUnixDiagShow(), 0), kTimeout);
  if (!dump) {
    std::fprintf(stderr, "unix: %s\n", dump.error().message.c_str());
    return false;
  }
  if (!writeFile(dir + "/" + name + ".bin", *dump)) return false;
  auto parsed = parseUnixDiagDump(*dump);
  if (!parsed) {
    std::fprintf(stderr, "unix: parse: %s\n", parsed.error().message.c_str());
    return false;
  }
  std::printf("%s: %zu bytes, %zu sockets\n", name.c_str(), dump->size(), parsed->size());
  for (const auto& s : *parsed) {
    std::printf(
        "  inode=%llu type=%u state=%u path=%s peer=%llu vfs=%lld dev=%lld pending=%u rq=%u wq=%u shutdown=%d\n",
        static_cast<unsigned long long>(s.inode), s.type, s.state, s.path.c_str(),
        static_cast<unsigned long long>(s.peer_inode), s.vfs_inode ? static_cast<long long>(*s.vfs_inode) : -1,
        s.vfs_dev ? static_cast<long long>(*s.vfs_dev) : -1, s.pending_connections, s.rqueue, s.wqueue,
        s.shutdown ? static_cast<int>(*s.shutdown) : -1);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 4 && std::string(argv[2]) == "--unix-only") return captureUnix(argv[1], argv[3]) ? 0 : 1;
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUTDIR [--unix-only NAME]\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  bool ok = captureInet(dir, "udp4", AF_INET, IPPROTO_UDP, ~0u);
  ok = captureInet(dir, "udp6", AF_INET6, IPPROTO_UDP, ~0u) && ok;
  ok = captureInet(dir, "tcp4_listen", AF_INET, IPPROTO_TCP, 1u << TCP_LISTEN) && ok;
  ok = captureInet(dir, "tcp6_listen", AF_INET6, IPPROTO_TCP, 1u << TCP_LISTEN) && ok;
  ok = captureUnix(dir) && ok;
  return ok ? 0 : 1;
}
