// capture_netlink OUTDIR: writes the raw rtnetlink dump replies of the calling network
// namespace to OUTDIR/{links,addresses,neighbours,fdb,routes}.bin, exactly the bytes
// makeKernelNetlinkReader() parses. Used to capture the fixtures under tests/data/netlink
// (see the README there); run it inside the namespace: `ip netns exec NS capture_netlink DIR`.
//
// capture_netlink --events FILE SCRIPT: joins the groups the notification cache joins
// (netlink_cache.h), runs `sh -ec SCRIPT`, then writes every notification datagram that
// arrives until 300 ms pass without one (at most 5 s) to FILE, concatenated.

#include <linux/rtnetlink.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "agent/kernel/netlink_dump.h"
#include "agent/kernel/netlink_socket.h"

using namespace meshprobe::agent;

namespace {

int captureEvents(const std::string& path, const std::string& script) {
  static constexpr unsigned kGroups[] = {RTNLGRP_LINK,        RTNLGRP_NEIGH,      RTNLGRP_IPV4_IFADDR,
                                         RTNLGRP_IPV6_IFADDR, RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_ROUTE};
  auto sock = NetlinkSocket::open(NETLINK_ROUTE, kGroups);
  if (!sock) {
    std::fprintf(stderr, "capture_netlink: %s\n", sock.error().message.c_str());
    return 1;
  }
  const std::string cmd = "sh -ec '" + script + "'";
  if (std::system(cmd.c_str()) != 0) {
    std::fprintf(stderr, "capture_netlink: script failed: %s\n", script.c_str());
    return 1;
  }
  std::vector<uint8_t> all;
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < give_up) {
    auto d = sock->receive(std::chrono::steady_clock::now() + std::chrono::milliseconds(300));
    if (!d) {
      std::fprintf(stderr, "capture_netlink: %s\n", d.error().message.c_str());
      return 1;
    }
    if (d->empty()) break;  // quiet for 300 ms
    all.insert(all.end(), d->begin(), d->end());
  }
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(all.data()), static_cast<std::streamsize>(all.size()));
  if (!f) {
    std::fprintf(stderr, "capture_netlink: cannot write %s\n", path.c_str());
    return 1;
  }
  std::printf("%s: %zu bytes\n", path.c_str(), all.size());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 4 && std::string(argv[1]) == "--events") return captureEvents(argv[2], argv[3]);
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUTDIR | --events FILE SCRIPT\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  auto dumper = RtnetlinkDumper::open();
  if (!dumper) {
    std::fprintf(stderr, "capture_netlink: %s\n", dumper.error().message.c_str());
    return 1;
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (DumpKind kind :
       {DumpKind::kLinks, DumpKind::kAddresses, DumpKind::kNeighbours, DumpKind::kFdb, DumpKind::kRoutes}) {
    auto bytes = dumper->dump(kind, deadline);
    if (!bytes) {
      std::fprintf(stderr, "capture_netlink: %s\n", bytes.error().message.c_str());
      return 1;
    }
    const std::string path = dir + "/" + std::string(dumpKindName(kind)) + ".bin";
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(bytes->data()), static_cast<std::streamsize>(bytes->size()));
    if (!f) {
      std::fprintf(stderr, "capture_netlink: cannot write %s\n", path.c_str());
      return 1;
    }
    std::printf("%s: %zu bytes\n", path.c_str(), bytes->size());
  }
  return 0;
}
