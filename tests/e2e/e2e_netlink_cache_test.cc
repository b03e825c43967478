// The agent's notification-fed rtnetlink cache against a real kernel: netlink_cache_watch
// (tests/tools) runs the cache in a namespace with a flannel.1 VXLAN device and prints
// each snapshot it publishes; `ip neigh` / `bridge fdb` changes made in that namespace must
// show up without a new dump (the tool prints the cache's dump counter), and a link going
// down must make the cache dump again.

#include <gtest/gtest.h>

#include <functional>
#include <sstream>
#include <thread>

#include "tests/e2e/harness.h"
#include "tests/support/eventually.h"

namespace meshprobe::e2e {
namespace {

using Json = nlohmann::json;

class NetlinkCacheE2e : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!havePrivileges(&why)) GTEST_SKIP() << why;
    ns_ = std::make_unique<TestNetns>("nlcache");
    ns_->sh(
        "ip link add eth0 mtu 1500 type veth peer name eth0-peer\n"
        "ip addr add 198.51.100.11/24 dev eth0\n"
        "ip link set eth0 up\n"
        "ip link set eth0-peer up\n"
        "ip link add flannel.1 mtu 1450 type vxlan id 1 local 198.51.100.11 dev eth0 dstport 4789 nolearning\n"
        "ip addr add 10.244.1.0/32 dev flannel.1\n"
        "ip link set flannel.1 up\n");
    dir_ = std::make_unique<TempDir>("nlcache");
    watch_ = std::make_unique<Process>(ns_->name(), std::vector<std::string>{MESHPROBE_NETLINK_CACHE_WATCH_BIN, "flannel.1"},
                                       dir_->sub("watch.log"));
  }
  void TearDown() override {
    if (watch_) watch_->stop();
    watch_.reset();
    dir_.reset();
    ns_.reset();
  }

  // Polls the tool's output (every 10 ms, up to 5 s) for the first snapshot line after the
  // one the previous call returned that satisfies `want`; throws with the log when none does.
  Json waitFor(const std::string& what, const std::function<bool(const Json&)>& want) {
    Json found;
    bool exited = false;
    const bool seen = test::pollUntil(
        [&] {
          std::istringstream lines(watch_->log());
          int index = 0;
          for (std::string line; std::getline(lines, line); ++index) {
            if (index <= matched_) continue;
            Json j = Json::parse(line, nullptr, false);
            if (!j.is_discarded() && j.is_object() && want(j)) {
              matched_ = index;
              found = std::move(j);
              return true;
            }
          }
          exited = !watch_->alive();
          return exited;  // nothing more will come
        },
        5s, 10ms);
    if (seen && !exited) return found;
    throw HarnessError("cache never showed " + what + "; " + watch_->describe());
  }

  static bool contains(const Json& list, const std::string& entry) {
    for (const auto& e : list)
      if (e == entry) return true;
    return false;
  }
  // Entries for IPv4 neighbours / the peer MAC (the kernel adds IPv6 multicast ones of its own).
  static bool hasPrefix(const Json& list, const std::string& prefix) {
    for (const auto& e : list)
      if (e.get<std::string>().rfind(prefix, 0) == 0) return true;
    return false;
  }

  std::unique_ptr<TestNetns> ns_;
  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<Process> watch_;
  int matched_ = -1;
};

TEST_F(NetlinkCacheE2e, NeighbourAndFdbChangesAreSeenWithoutADump) {
  auto first = waitFor("its first snapshot", [](const Json& j) { return j["dumps"] == 1; });
  EXPECT_FALSE(hasPrefix(first["neighbours"], "10.244."));

  ns_->sh("ip neigh replace 10.244.7.0 lladdr 6e:1f:00:00:07:00 dev flannel.1 nud permanent");
  auto added = waitFor("the new neighbour", [](const Json& j) {
    return contains(j["neighbours"], "10.244.7.0 6e:1f:00:00:07:00 PERMANENT");
  });
  EXPECT_EQ(added["dumps"], 1);

  ns_->sh("bridge fdb append 6e:1f:00:00:07:00 dev flannel.1 dst 198.51.100.17 self permanent");
  auto fdb = waitFor("the new FDB entry", [](const Json& j) { return contains(j["fdb"], "6e:1f:00:00:07:00 198.51.100.17"); });
  EXPECT_EQ(fdb["dumps"], 1);

  ns_->sh("ip neigh replace 10.244.7.0 lladdr 6e:1f:00:00:07:01 dev flannel.1 nud permanent");
  auto changed = waitFor("the changed neighbour", [](const Json& j) {
    return contains(j["neighbours"], "10.244.7.0 6e:1f:00:00:07:01 PERMANENT");
  });
  EXPECT_FALSE(contains(changed["neighbours"], "10.244.7.0 6e:1f:00:00:07:00 PERMANENT"));
  EXPECT_EQ(changed["dumps"], 1);

  ns_->sh("ip neigh del 10.244.7.0 dev flannel.1\n"
          "bridge fdb del 6e:1f:00:00:07:00 dev flannel.1 dst 198.51.100.17 self");
  auto gone = waitFor("both entries deleted", [](const Json& j) {
    return !hasPrefix(j["neighbours"], "10.244.7.0 ") && !hasPrefix(j["fdb"], "6e:1f:00:00:07:00 ");
  });
  EXPECT_EQ(gone["dumps"], 1);
  EXPECT_GE(gone["notifications"].get<int>(), 5);
  EXPECT_EQ(gone["losses"], 0);
}

TEST_F(NetlinkCacheE2e, LinkGoingDownMakesTheCacheDumpAgain) {
  waitFor("its first snapshot", [](const Json& j) { return j["dumps"] == 1; });
  ns_->sh("ip neigh replace 10.244.8.0 lladdr 6e:1f:00:00:08:00 dev flannel.1 nud permanent");
  waitFor("the new neighbour", [](const Json& j) { return hasPrefix(j["neighbours"], "10.244.8.0 "); });
  ns_->sh("ip link set flannel.1 down");
  // Down flushes the device's routes and neighbours without announcing each; the cache re-dumps
  // and then agrees with the kernel.
  auto after = waitFor("a second dump", [](const Json& j) { return j["dumps"] == 2; });
  const bool kernel_has = ns_->sh("ip neigh show dev flannel.1 to 10.244.8.0").find("10.244.8.0") != std::string::npos;
  EXPECT_EQ(hasPrefix(after["neighbours"], "10.244.8.0 "), kernel_has);
}

}  // namespace
}  // namespace meshprobe::e2e
