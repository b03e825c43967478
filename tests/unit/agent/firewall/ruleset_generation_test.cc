// The firewall check re-reads the rules only when the kernel's ruleset fingerprint moved
// (a fake RulesetGeneration here; the kernel's own is exercised in the e2e suite), and
// the pieces of the kernel reader: the NFT_MSG_NEWGEN parser and the x_tables hash that
// ignores traffic counters.
#include "agent/firewall/ruleset_generation.h"

// glibc's netinet/in.h before the kernel's headers.
#include <netinet/in.h>

#include <gtest/gtest.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter_ipv4/ip_tables.h>
#include <linux/netfilter_ipv6/ip6_tables.h>

#include <array>
#include <cstring>
#include <vector>

#include "agent/checks/firewall_check.h"
#include "tests/support/fakes/command_runner.h"
#include "tests/support/fakes/netlink.h"
#include "tests/unit/agent/firewall/fake_node.h"

using namespace meshprobe;
using namespace meshprobe::agent;
using meshprobe::agent::testing::addVxlanDevice;
using meshprobe::agent::testing::nftModeNode;
using meshprobe::test::FakeCommandRunner;
using meshprobe::test::FakeNetlinkReader;
using namespace std::chrono_literals;

namespace {

// The answer nf_tables gives to NFT_MSG_GETGEN: nfgenmsg, then NFTA_GEN_ID (big endian),
// NFTA_GEN_PROC_PID and NFTA_GEN_PROC_NAME, as nf_tables_fill_gen_info writes them.
std::vector<uint8_t> newGen(uint32_t gen, bool with_id = true) {
  std::vector<uint8_t> buf(256);
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
  nlh->nlmsg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN;
  auto* nfg = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
  nfg->nfgen_family = AF_UNSPEC;
  nfg->version = NFNETLINK_V0;
  nfg->res_id = htons(gen & 0xffff);
  if (with_id) mnl_attr_put_u32(nlh, NFTA_GEN_ID, htonl(gen));
  mnl_attr_put_u32(nlh, NFTA_GEN_PROC_PID, htonl(4242));
  mnl_attr_put_strz(nlh, NFTA_GEN_PROC_NAME, "nft");
  buf.resize(nlh->nlmsg_len);
  return buf;
}

TEST(NftGeneration, ReadsTheGenerationId) {
  auto gen = parseNftGeneration(newGen(0x01020304));
  ASSERT_TRUE(gen.ok()) << gen.error().message;
  EXPECT_EQ(*gen, 0x01020304u);
}

TEST(NftGeneration, AnAnswerWithoutTheIdIsAnError) {
  EXPECT_FALSE(parseNftGeneration(newGen(7, false)).ok());
  EXPECT_FALSE(parseNftGeneration({}).ok());
}

// Two x_tables entries as IPT_SO_GET_ENTRIES returns them: each an ipt_entry followed by
// its target, next_offset leading to the next.
template <typename Entry>
std::vector<uint8_t> twoEntries(uint64_t packets, uint8_t verdict_byte) {
  constexpr size_t kTarget = 40;
  const size_t one = sizeof(Entry) + kTarget;
  std::vector<uint8_t> blob(2 * one, 0);
  for (size_t i = 0; i < 2; ++i) {
    Entry e{};
    e.target_offset = sizeof(Entry);
    e.next_offset = static_cast<uint16_t>(one);
    e.counters.pcnt = packets * (i + 1);
    e.counters.bcnt = packets * 1500;
    std::memcpy(blob.data() + i * one, &e, sizeof(e));
    blob[i * one + sizeof(Entry) + 3] = verdict_byte;
  }
  return blob;
}

TEST(LegacyEntries, TrafficCountersDoNotChangeTheHashTheRulesDo) {
  for (bool v6 : {false, true}) {
    auto blob = [v6](uint64_t pk, uint8_t verdict) {
      return v6 ? twoEntries<ip6t_entry>(pk, verdict) : twoEntries<ipt_entry>(pk, verdict);
    };
    auto a = hashLegacyEntries(blob(1, 1), v6, 1);
    auto b = hashLegacyEntries(blob(999999, 1), v6, 1);
    auto c = hashLegacyEntries(blob(1, 2), v6, 1);
    ASSERT_TRUE(a.ok() && b.ok() && c.ok());
    EXPECT_EQ(*a, *b) << "v6=" << v6;
    EXPECT_NE(*a, *c) << "v6=" << v6;
    EXPECT_NE(*a, *hashLegacyEntries(blob(1, 1), v6, 2)) << "the seed (what came before) counts";
  }
}

TEST(LegacyEntries, AnEntryRunningPastTheEndIsAnError) {
  auto blob = twoEntries<ipt_entry>(1, 1);
  auto bad = blob;
  ipt_entry e{};
  std::memcpy(&e, bad.data(), sizeof(e));
  e.next_offset = 0;  // would loop forever
  std::memcpy(bad.data(), &e, sizeof(e));
  EXPECT_FALSE(hashLegacyEntries(bad, false, 1).ok());
  blob.resize(blob.size() - 8);  // the second entry cut short
  EXPECT_FALSE(hashLegacyEntries(blob, false, 1).ok());
}

class FakeGeneration final : public RulesetGeneration {
 public:
  Result<uint64_t> fingerprint() override {
    ++calls;
    if (fail) return Error{"nf_tables generation (NFT_MSG_GETGEN): Operation not permitted", EPERM};
    return value;
  }
  uint64_t value = 1;
  bool fail = false;
  int calls = 0;
};

struct ReuseFixture : ::testing::Test {
  AgentConfig config;
  FakeNetlinkReader netlink;
  FakeCommandRunner runner;
  FakeGeneration generation;
  FakeClock clock;
  FirewallCheck check{config, netlink, runner, &generation, &clock};

  void SetUp() override {
    addVxlanDevice(netlink, "flannel.1", 4789);
    node("host_flannel_istio_nft.txt");
  }
  // An nft-mode node whose iptables-nft filter table is `filter_file`, nothing else.
  void node(const std::string& filter_file) { nftModeNode(runner, filter_file); }
  size_t runsNow() { return runner.calls.size(); }
};

TEST_F(ReuseFixture, UnchangedRulesAreNotReadAgain) {
  CheckResult first = check.run();
  ASSERT_EQ(first.status, CheckStatus::kOk) << first.summary;
  const size_t after_first = runsNow();
  ASSERT_GE(after_first, 5u);
  EXPECT_EQ(first.details["rules_read"], "read now");

  clock.advance(2s);
  CheckResult second = check.run();
  EXPECT_EQ(runsNow(), after_first) << "no tool ran";
  EXPECT_EQ(second.status, first.status);
  EXPECT_EQ(second.summary, first.summary);
  EXPECT_EQ(second.details["sources"], first.details["sources"]);
  EXPECT_NE(second.details["rules_read"].get<std::string>().find("unchanged since the read 2s ago"), std::string::npos)
      << second.details["rules_read"];
  EXPECT_EQ(second.details["rules_reuses"], 1u);
}

TEST_F(ReuseFixture, AChangedGenerationIsReadAndJudged) {
  ASSERT_EQ(check.run().status, CheckStatus::kOk);
  node("drop_udp_4789_nft.txt");  // someone adds a DROP: the kernel's generation moves
  clock.advance(2s);
  EXPECT_EQ(check.run().status, CheckStatus::kOk) << "same generation: the earlier read stands";
  generation.value = 2;
  const size_t before = runsNow();
  CheckResult r = check.run();
  EXPECT_GT(runsNow(), before);
  ASSERT_EQ(r.status, CheckStatus::kFail) << r.summary;
  ASSERT_EQ(r.findings.size(), 1u);
  EXPECT_EQ(r.details["rules_read"], "read now");
}

TEST_F(ReuseFixture, EverythingIsReadAgainAfterTheLongestReuse) {
  check.run();
  clock.advance(kFirewallRereadEvery - 1s);
  size_t before = runsNow();
  check.run();
  EXPECT_EQ(runsNow(), before);
  clock.advance(1s);
  check.run();
  EXPECT_GT(runsNow(), before) << "a full read at least every " << kFirewallRereadEvery.count() << "s";
}

TEST_F(ReuseFixture, WhenTheKernelCannotSayTheRulesAreRead) {
  generation.fail = true;
  check.run();
  size_t before = runsNow();
  CheckResult r = check.run();
  EXPECT_GT(runsNow(), before);
  EXPECT_NE(r.details["rules_read"].get<std::string>().find("Operation not permitted"), std::string::npos)
      << r.details["rules_read"];
  // Known again, but the last read was taken without a fingerprint: read once more first.
  generation.fail = false;
  before = runsNow();
  check.run();
  EXPECT_GT(runsNow(), before);
  before = runsNow();
  check.run();
  EXPECT_EQ(runsNow(), before);
}

TEST_F(ReuseFixture, AnIncompleteReadIsNotReused) {
  runner.fail("ip6tables-nft-save", 4, "ip6tables-nft-save: some transient failure");
  CheckResult r = check.run();
  ASSERT_EQ(r.status, CheckStatus::kWarn) << r.summary;
  size_t before = runsNow();
  check.run();
  EXPECT_GT(runsNow(), before) << "a source failed: read again next round";
}

TEST(FirewallCheckWithoutGeneration, ReadsEveryRound) {
  AgentConfig config;
  FakeNetlinkReader netlink;
  FakeCommandRunner runner;
  FirewallCheck check(config, netlink, runner);
  check.run();
  const size_t one = runner.calls.size();
  check.run();
  EXPECT_EQ(runner.calls.size(), 2 * one);
  EXPECT_FALSE(check.run().details.contains("rules_read"));
}

}  // namespace
