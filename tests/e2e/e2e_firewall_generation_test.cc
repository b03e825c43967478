// The kernel's ruleset fingerprint (agent/firewall/ruleset_generation.h) in a namespace of
// this test: it stays put while traffic moves the rules' counters, and moves with every
// kind of rule change the firewall check reads — native nft, iptables-nft, and
// iptables-legacy / ip6tables-legacy, including a rule replaced by one of the same size —
// and asking does not make the kernel create legacy tables in the namespace.

#include <gtest/gtest.h>

#include "agent/firewall/ruleset_generation.h"
#include "agent/kernel/netns.h"
#include "tests/e2e/harness.h"

namespace meshprobe::e2e {
namespace {

using namespace std::chrono_literals;

class RulesetGenerationE2e : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!havePrivileges(&why)) GTEST_SKIP() << why;
    ns_ = std::make_unique<TestNetns>("fwgen");
    ns_->sh("ip link set lo up\n");
    generation_ = agent::makeKernelRulesetGeneration(2000ms);
  }

  uint64_t fingerprint() {
    auto fp = agent::runInNetns(ns_->path(), 5000ms, [this] { return generation_->fingerprint(); });
    if (!fp.ok()) throw HarnessError("fingerprint in " + ns_->name() + ": " + fp.error().message);
    return *fp;
  }
  // The legacy tables the kernel holds in the namespace (empty when none or not loaded).
  std::string legacyTables() {
    return ns_->sh("cat /proc/net/ip_tables_names /proc/net/ip6_tables_names 2>/dev/null || true");
  }

  std::unique_ptr<TestNetns> ns_;
  std::unique_ptr<agent::RulesetGeneration> generation_;
};

TEST_F(RulesetGenerationE2e, MovesWithEveryRuleChangeAndNotWithTraffic) {
  const std::string tables_before = legacyTables();
  const uint64_t empty = fingerprint();
  EXPECT_EQ(fingerprint(), empty) << "nothing changed";
  EXPECT_EQ(legacyTables(), tables_before) << "asking created legacy tables";

  ns_->sh("nft add table inet mp_gen_test\n");
  const uint64_t nft_table = fingerprint();
  EXPECT_NE(nft_table, empty) << "native nft table added";

  ns_->sh("iptables-nft -A INPUT -p udp --dport 4789 -j DROP\n");
  const uint64_t ipt_nft = fingerprint();
  EXPECT_NE(ipt_nft, nft_table) << "iptables-nft rule added";

  ns_->sh("iptables-legacy -A INPUT -p tcp --dport 9 -j ACCEPT\n");
  const uint64_t legacy = fingerprint();
  EXPECT_NE(legacy, ipt_nft) << "iptables-legacy rule added";

  // Traffic through the legacy rule: its counters move, the rules do not.
  // (bash: sh has no /dev/tcp; nothing listens on port 9, each try is a SYN and a reset.)
  ns_->sh("bash -c 'for i in 1 2 3; do (exec 3<>/dev/tcp/127.0.0.1/9) 2>/dev/null || true; done'\n");
  const std::string counted = ns_->sh("iptables-legacy -L INPUT -v -n -x | awk '$NF ~ /dpt:9/ {print $1}'");
  ASSERT_NE(counted, "0\n") << "the rule saw no packets: the counters were not exercised";
  EXPECT_EQ(fingerprint(), legacy) << "only counters moved";

  ns_->sh("iptables-legacy -R INPUT 1 -p tcp --dport 9 -j DROP\n");  // same size, other verdict
  const uint64_t replaced = fingerprint();
  EXPECT_NE(replaced, legacy) << "iptables-legacy rule replaced in place";

  ns_->sh("ip6tables-legacy -A INPUT -p udp --dport 4789 -j DROP\n");
  const uint64_t v6 = fingerprint();
  EXPECT_NE(v6, replaced) << "ip6tables-legacy rule added";

  ns_->sh("nft delete table inet mp_gen_test\n");
  EXPECT_NE(fingerprint(), v6) << "native nft table removed";
}

}  // namespace
}  // namespace meshprobe::e2e
