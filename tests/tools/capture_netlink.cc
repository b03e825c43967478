// capture_netlink OUTDIR: writes the raw rtnetlink dump replies of the calling network
// namespace to OUTDIR/{links,addresses,neighbours,fdb,routes}.bin, exactly the bytes
// makeKernelNetlinkReader() parses. Used to capture the fixtures under tests/data/netlink
// (see the README there); run it inside the namespace: `ip netns exec NS capture_netlink DIR`.

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>

#include "agent/kernel/netlink_dump.h"

using namespace meshprobe::agent;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
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
