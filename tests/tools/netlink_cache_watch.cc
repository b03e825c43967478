// netlink_cache_watch DEVICE: runs the agent's notification-fed rtnetlink cache
// (agent/kernel/netlink_cache.h) in the calling network namespace and prints one JSON
// line each time the cache publishes a new snapshot: how many dumps and notifications
// it took so far, and DEVICE's neighbours and FDB entries. For tests/e2e: run it in a
// namespace (`ip netns exec NS netlink_cache_watch flannel.1`) and change that namespace.
// Ends on SIGTERM/SIGINT, or after 120 s.

#include <csignal>
#include <cstdio>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "agent/kernel/netlink_cache.h"

using namespace meshprobe::agent;

namespace {
volatile std::sig_atomic_t g_stop = 0;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DEVICE\n", argv[0]);
    return 2;
  }
  std::signal(SIGTERM, [](int) { g_stop = 1; });
  std::signal(SIGINT, [](int) { g_stop = 1; });
  const std::string device = argv[1];
  auto cache = NetlinkCache::start();
  if (!cache) {
    std::fprintf(stderr, "netlink_cache_watch: %s\n", cache.error().message.c_str());
    return 1;
  }
  const NetlinkSnapshot* last = nullptr;
  // Polls the cache's current pointer every 5 ms (cheap: an atomic load), up to 120 s.
  for (int i = 0; i < 24'000 && g_stop == 0; ++i) {
    auto snap = (*cache)->current();
    if (snap.ok() && snap->get() != last) {
      last = snap->get();
      const auto stats = (*cache)->stats();
      nlohmann::json line = {{"dumps", stats.dumps}, {"notifications", stats.notifications}, {"losses", stats.losses}};
      const LinkInfo* dev = (*snap)->linkByName(device);
      auto& neigh = line["neighbours"] = nlohmann::json::array();
      auto& fdb = line["fdb"] = nlohmann::json::array();
      if (dev != nullptr) {
        for (const auto& n : (*snap)->neighbours)
          if (n.ifindex == dev->ifindex) neigh.push_back(n.dst + " " + n.lladdr + " " + nudStateName(n.state));
        for (const auto& f : (*snap)->fdb)
          if (f.ifindex == dev->ifindex) fdb.push_back(f.mac + " " + f.dst);
      }
      std::printf("%s\n", line.dump().c_str());
      std::fflush(stdout);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // poll interval, not synchronisation
  }
  return 0;
}
