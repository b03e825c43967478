// The firewall check and the firewall reader with a fake CommandRunner replaying
// captured tool output, and a fake netlink snapshot for the VXLAN device's port.
#include "agent/checks/firewall_check.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <csignal>
#include <map>
#include <nlohmann/json.hpp>

#include "agent/firewall/iptables_mode.h"
#include "tests/support/fakes/command_runner.h"
#include "tests/support/fakes/netlink.h"
#include "tests/unit/agent/firewall/fake_node.h"
#include "tests/unit/agent/firewall/testdata.h"

using namespace meshprobe;
using namespace meshprobe::agent;
using meshprobe::test::FakeCommandRunner;
using meshprobe::test::FakeNetlinkReader;
using meshprobe::agent::testing::addVxlanDevice;
using meshprobe::agent::testing::firewallData;
using meshprobe::agent::testing::kEmptyNft;
using meshprobe::agent::testing::nftModeNode;
using meshprobe::agent::testing::scriptNft;
using namespace std::chrono_literals;

namespace {

struct Fixture : ::testing::Test {
  AgentConfig config;
  FakeNetlinkReader netlink;
  FakeCommandRunner runner;
  CheckResult run() {
    FirewallCheck check(config, netlink, runner);
    return check.run();
  }
  void SetUp() override { addVxlanDevice(netlink, "flannel.1", 4789); }
};

using FirewallCheckTest = Fixture;

TEST_F(FirewallCheckTest, HealthyFlannelIstioHost) {
  nftModeNode(runner, "host_flannel_istio_nft.txt", firewallData("nft_from_iptables_nft.json"));
  CheckResult r = run();
  EXPECT_EQ(r.name, "firewall");
  EXPECT_EQ(r.status, CheckStatus::kOk) << r.summary << "\n" << r.details.dump(2);
  EXPECT_NE(r.summary.find("no rule drops udp/4789, tcp/15012"), std::string::npos) << r.summary;
  EXPECT_TRUE(r.findings.empty());
  EXPECT_EQ(r.details["mode"], "nft");
  EXPECT_EQ(r.details["flannel_chains"].size(), 2u);
  ASSERT_EQ(r.details["istio_chains"].size(), 1u);
  EXPECT_EQ(r.details["istio_chains"][0]["chain"], "ISTIO_POSTRT");
  EXPECT_EQ(r.details["istio_chains"][0]["table"], "nat");
  // The nft tables iptables-nft created are not analysed twice.
  auto skipped = r.details["nft_tables_skipped_as_iptables_nft"].get<std::vector<std::string>>();
  EXPECT_EQ(skipped, (std::vector<std::string>{"ip mangle", "ip nat", "ip filter"}));
  EXPECT_EQ(r.details["targets"][0]["port"], 4789);
  EXPECT_EQ(r.details["targets"][0]["from"], "dstport of flannel.1");
  EXPECT_EQ(r.details["targets"][1]["port"], 15012);
  EXPECT_EQ(r.details["sources"][0]["rules"], 15u);  // iptables-nft-save
}

TEST_F(FirewallCheckTest, KubeProxySizedNodeIsHealthy) {
  nftModeNode(runner, "kube_proxy_large_nft.txt");
  CheckResult r = run();
  EXPECT_EQ(r.status, CheckStatus::kOk) << r.summary;
  EXPECT_GT(r.details["rules_total"].get<size_t>(), 5000u);
}

TEST_F(FirewallCheckTest, DropUdp4789ViaIptablesLegacy) {
  runner.ok("iptables-nft-save -t mangle", "");
  runner.ok("iptables-legacy-save -t mangle", firewallData("mangle_hint_legacy.txt"));
  runner.ok("iptables-legacy-save", firewallData("drop_udp_4789_legacy.txt"));
  runner.ok("ip6tables-legacy-save", "");
  runner.ok("iptables-nft-save", firewallData("mixed_nft_empty.txt"));
  runner.ok("ip6tables-nft-save", "");
  scriptNft(runner, kEmptyNft);
  CheckResult r = run();
  ASSERT_EQ(r.status, CheckStatus::kFail) << r.summary;
  EXPECT_EQ(r.summary,
            "udp/4789 dropped by iptables-legacy-save ip filter INPUT: -A INPUT -p udp -m udp --dport 4789 -j DROP");
  EXPECT_EQ(r.details["mode"], "legacy");
  ASSERT_EQ(r.findings.size(), 1u);
  const Finding& f = r.findings[0];
  EXPECT_EQ(f.code, "VXLAN_PORT_FILTERED");
  EXPECT_EQ(f.severity, Severity::kCritical);
  EXPECT_EQ(f.layer, Layer::kOverlay);
  EXPECT_TRUE(f.nodes.empty());
  ASSERT_EQ(f.evidence.size(), 1u);
  EXPECT_EQ(f.evidence[0],
            "iptables-legacy-save ip filter INPUT: -A INPUT -p udp -m udp --dport 4789 -j DROP [DROP udp/4789]");
  EXPECT_NE(f.remedy.find("UDP 4789 must be open between nodes"), std::string::npos) << f.remedy;
  EXPECT_NE(f.remedy.find("iptables -D INPUT -p udp -m udp --dport 4789 -j DROP"), std::string::npos) << f.remedy;
}

TEST_F(FirewallCheckTest, DropUdp4789ViaIptablesNft) {
  nftModeNode(runner, "drop_udp_4789_nft.txt");
  CheckResult r = run();
  ASSERT_EQ(r.status, CheckStatus::kFail);
  ASSERT_EQ(r.findings.size(), 1u);
  EXPECT_NE(r.findings[0].remedy.find("iptables -D INPUT -p udp -m udp --dport 4789 -j DROP"), std::string::npos);
}

TEST_F(FirewallCheckTest, LegacyRulesAreReadInNftModeWhenPresent) {
  nftModeNode(runner, "host_flannel_istio_nft.txt");
  runner.ok("iptables-legacy-save", firewallData("mixed_legacy.txt"));
  CheckResult r = run();
  ASSERT_EQ(r.status, CheckStatus::kFail) << r.summary;
  ASSERT_EQ(r.findings.size(), 1u);
  // The remedy names the legacy tool, since plain iptables is the nft one on this node.
  EXPECT_NE(r.findings[0].remedy.find("iptables-legacy -D INPUT -p udp -m udp --dport 4789 -j DROP"), std::string::npos)
      << r.findings[0].remedy;
}

TEST_F(FirewallCheckTest, MultiportRangeAndProtocolWideDrops) {
  for (const char* file :
       {"drop_multiport.txt", "drop_port_range.txt", "drop_udp_protocol_wide.txt", "drop_via_jump.txt"}) {
    FakeCommandRunner fresh;
    nftModeNode(fresh, file);
    FirewallCheck check(config, netlink, fresh);
    CheckResult r = check.run();
    EXPECT_EQ(r.status, CheckStatus::kFail) << file;
    ASSERT_EQ(r.findings.size(), 1u) << file;
    EXPECT_EQ(r.findings[0].layer, Layer::kOverlay) << file;
  }
}

TEST_F(FirewallCheckTest, RejectTcp15012InOutputIsAnIstiodFinding) {
  nftModeNode(runner, "reject_tcp_15012_output.txt");
  CheckResult r = run();
  ASSERT_EQ(r.status, CheckStatus::kFail);
  ASSERT_EQ(r.findings.size(), 1u);
  EXPECT_EQ(r.findings[0].layer, Layer::kIstiod);
  EXPECT_EQ(r.findings[0].code, "VXLAN_PORT_FILTERED");
  EXPECT_NE(r.findings[0].summary.find("rejects TCP 15012"), std::string::npos) << r.findings[0].summary;
  EXPECT_NE(r.findings[0].remedy.find("TCP 15012 must be open from every node to istiod"), std::string::npos);
  EXPECT_NE(
      r.findings[0].remedy.find("iptables -D OUTPUT -p tcp -m tcp --dport 15012 -j REJECT --reject-with tcp-reset"),
      std::string::npos)
      << r.findings[0].remedy;
}

TEST_F(FirewallCheckTest, NativeNftDrop) {
  nftModeNode(runner, "host_flannel_istio_nft.txt", firewallData("nft_drop_udp_set.json"));
  CheckResult r = run();
  ASSERT_EQ(r.status, CheckStatus::kFail);
  ASSERT_EQ(r.findings.size(), 1u);
  EXPECT_EQ(r.findings[0].evidence.size(), 2u);  // input (anonymous set) and forward (named set)
  EXPECT_NE(r.findings[0].remedy.find("nft delete rule inet filter input handle 5"), std::string::npos);
  EXPECT_NE(r.findings[0].remedy.find("nft delete rule inet filter forward handle 6"), std::string::npos);
}

TEST_F(FirewallCheckTest, DevicePortDecidesWhatIsChecked) {
  // flannel's Linux default: the device listens on 8472, so a DROP of 4789 is harmless.
  netlink.snap->links.clear();
  addVxlanDevice(netlink, "flannel.1", 8472);
  nftModeNode(runner, "drop_port_range.txt");
  CheckResult r = run();
  EXPECT_EQ(r.status, CheckStatus::kOk) << r.summary;
  // ...unless --vxlan-port says the cluster expects 4789.
  config.vxlan_port = 4789;
  CheckResult r2 = run();
  EXPECT_EQ(r2.status, CheckStatus::kFail);
  EXPECT_EQ(r2.details["targets"][1]["from"], "--vxlan-port");
}

TEST_F(FirewallCheckTest, NoDeviceChecksBothDefaultPorts) {
  netlink.snap = Error{"netlink: not implemented"};
  nftModeNode(runner, "drop_multiport.txt");
  CheckResult r = run();
  ASSERT_EQ(r.status, CheckStatus::kFail);
  EXPECT_EQ(r.details["blocking_rules"].size(), 2u);  // udp/4789 and udp/8472
  EXPECT_NE(r.details["vxlan_device_note"].get<std::string>().find("not implemented"), std::string::npos);
}

TEST_F(FirewallCheckTest, IstiodPortFromConfig) {
  config.istiod = "istiod.example:15443";
  nftModeNode(runner, "reject_tcp_15012_output.txt");
  CheckResult r = run();
  EXPECT_EQ(r.status, CheckStatus::kOk) << r.summary;
  EXPECT_EQ(r.details["targets"][1]["port"], 15443);
}

TEST_F(FirewallCheckTest, PolicyDropIsAWarning) {
  nftModeNode(runner, "host_flannel_istio_nft.txt", firewallData("nft_reject_and_jump.json"));
  // The nft ruleset also has blocking rules; use a policy-only ruleset instead.
  scriptNft(runner, R"({"nftables":[{"table":{"family":"inet","name":"fw"}},
    {"chain":{"family":"inet","table":"fw","name":"output","type":"filter","hook":"output","prio":0,"policy":"drop"}},
    {"rule":{"family":"inet","table":"fw","chain":"output","handle":4,"expr":[
      {"match":{"op":"==","left":{"payload":{"protocol":"udp","field":"dport"}},"right":4789}},{"accept":null}]}}]})");
  CheckResult r = run();
  EXPECT_EQ(r.status, CheckStatus::kWarn) << r.summary;
  EXPECT_TRUE(r.findings.empty());
  EXPECT_EQ(r.summary, "nft fw output policy DROP applies to tcp/15012 (no rule accepts it first)");
}

TEST_F(FirewallCheckTest, ConditionalDropIsAWarning) {
  nftModeNode(runner, "accept_then_drop.txt");
  // accept_then_drop also drops all OUTPUT: keep only its INPUT side.
  std::string text = firewallData("accept_then_drop.txt");
  text.erase(text.find("-A OUTPUT -j DROP\n"), std::string("-A OUTPUT -j DROP\n").size());
  runner.ok("iptables-nft-save", text);
  CheckResult r = run();
  EXPECT_EQ(r.status, CheckStatus::kWarn) << r.summary;
  EXPECT_EQ(r.details["conditional_rules"].size(), 1u);
  EXPECT_EQ(r.details["policy_drop"].size(), 1u);
}

TEST_F(FirewallCheckTest, NoFirewallToolsIsSkip) {
  CheckResult r = run();  // nothing scripted: every binary is missing
  EXPECT_EQ(r.status, CheckStatus::kSkip);
  EXPECT_EQ(r.summary, "no iptables or nft tools on this node: the firewall cannot be read");
  EXPECT_EQ(r.details["sources"].size(), 5u);
  EXPECT_NE(r.details["sources"][0]["error"].get<std::string>().find("not installed"), std::string::npos);
}

TEST_F(FirewallCheckTest, PermissionDeniedIsFailWithTheReason) {
  // What a non-root caller sees (captured with setpriv as nobody).
  auto firstLine = [](const std::string& s) { return s.substr(0, s.find("\nexit=")); };
  runner.fail("iptables-nft-save -t mangle", 4, firstLine(firewallData("eperm_iptables_nft_save.txt")));
  runner.fail("iptables-legacy-save -t mangle", 1, firstLine(firewallData("eperm_iptables_legacy_save.txt")));
  runner.fail("iptables-nft-save", 4, firstLine(firewallData("eperm_iptables_nft_save.txt")));
  runner.fail("ip6tables-nft-save", 4, firstLine(firewallData("eperm_iptables_nft_save.txt")));
  runner.fail("iptables-legacy-save", 1, firstLine(firewallData("eperm_iptables_legacy_save.txt")));
  runner.fail("ip6tables-legacy-save", 1, firstLine(firewallData("eperm_iptables_legacy_save.txt")));
  runner.fail("nft -j list chains", 1, firstLine(firewallData("eperm_nft.txt")));
  CheckResult r = run();
  EXPECT_EQ(r.status, CheckStatus::kFail);
  EXPECT_EQ(
      r.summary.rfind("cannot read the firewall: iptables-nft-save: permission denied (needs root / CAP_NET_ADMIN)", 0),
      0u)
      << r.summary;
  EXPECT_EQ(r.details["mode"], "nft");
}

TEST_F(FirewallCheckTest, HungModeProbeIsNamedAsTheCause) {
  // iptables-nft-save hangs and is killed at the deadline: the summary names it, not the
  // sources its hang left without time ("not run: ... budget ... used up").
  agent::CommandOutput hung;
  hung.timed_out = true;
  hung.term_signal = SIGKILL;
  runner.by_command["iptables-nft-save -t mangle"] = hung;
  for (const char* tool : {"iptables-legacy-save", "iptables-nft-save", "ip6tables-nft-save", "ip6tables-legacy-save",
                           "nft"}) {
    agent::CommandOutput skipped;
    skipped.error = "not run: the firewall check's time budget (1600ms) was used up";
    runner.by_program[tool] = skipped;
  }
  CheckResult r = run();
  EXPECT_EQ(r.status, CheckStatus::kFail);
  EXPECT_EQ(r.summary.rfind("cannot read the firewall: iptables-nft-save: timed out after ", 0), 0u) << r.summary;
  EXPECT_NE(r.details["mode_reason"].get<std::string>().find("could not be read"), std::string::npos)
      << r.details["mode_reason"];
}

TEST_F(FirewallCheckTest, GarbageOutputIsFailNotACrash) {
  runner.ok("iptables-nft-save -t mangle", "Segmentation fault\n");
  runner.ok("iptables-nft-save", "\x01\x02 garbage \xff\n");
  runner.ok("ip6tables-nft-save", "-A INPUT -j DROP\n");
  scriptNft(runner, "{\"nftables\": [");
  CheckResult r = run();
  EXPECT_EQ(r.status, CheckStatus::kFail);
  EXPECT_NE(r.summary.find("unparsable output: iptables-save line 1"), std::string::npos) << r.summary;
  auto sources = r.details["sources"];
  EXPECT_NE(sources[1]["error"].get<std::string>().find("rule outside a table"), std::string::npos);
  EXPECT_NE(sources[4]["error"].get<std::string>().find("nft -j list chains"), std::string::npos);
}

TEST_F(FirewallCheckTest, OneUnreadableSourceIsAWarning) {
  nftModeNode(runner, "host_flannel_istio_nft.txt", "not json");
  CheckResult r = run();
  EXPECT_EQ(r.status, CheckStatus::kWarn);
  EXPECT_EQ(r.summary.rfind("could not read nft: unparsable output", 0), 0u) << r.summary;
}

TEST_F(FirewallCheckTest, TimedOutToolIsReported) {
  nftModeNode(runner, "host_flannel_istio_nft.txt");
  CommandOutput slow;
  slow.timed_out = true;
  runner.by_command["nft -j list chains"] = slow;
  CheckResult r = run();
  EXPECT_EQ(r.status, CheckStatus::kWarn);
  EXPECT_NE(r.summary.find("nft: timed out after"), std::string::npos) << r.summary;
}

// --- mode detection -----------------------------------------------------------------

TEST(IptablesMode, HintDetection) {
  EXPECT_TRUE(hasKubeHint(firewallData("mangle_hint_nft.txt")));
  EXPECT_TRUE(hasKubeHint(firewallData("mangle_hint_legacy.txt")));
  EXPECT_FALSE(hasKubeHint(firewallData("istio_1_23_inpod_tproxy.txt")));
  EXPECT_FALSE(hasKubeHint("-A X -m comment --comment \":KUBE-IPTABLES-HINT \" -j ACCEPT\n"));
  EXPECT_TRUE(hasKubeHint("*mangle\n:KUBE-KUBELET-CANARY - [0:0]\nCOMMIT\n"));
}

TEST(IptablesMode, NftHintWins) {
  FakeCommandRunner r;
  r.ok("iptables-nft-save -t mangle", firewallData("mangle_hint_nft.txt"));
  r.ok("iptables-legacy-save -t mangle", firewallData("mangle_hint_legacy.txt"));
  auto d = detectIptablesMode(r, 1s);
  EXPECT_EQ(d.mode, IptablesBackend::kNft);
  EXPECT_EQ(r.calls, std::vector<std::string>{"iptables-nft-save -t mangle"});
}

TEST(IptablesMode, LegacyWhenOnlyLegacyHasTheHint) {
  FakeCommandRunner r;
  r.ok("iptables-nft-save -t mangle", "");
  r.ok("iptables-legacy-save -t mangle", firewallData("mangle_hint_legacy.txt"));
  auto d = detectIptablesMode(r, 1s);
  EXPECT_EQ(d.mode, IptablesBackend::kLegacy);
  EXPECT_EQ(d.reason, "iptables-legacy-save -t mangle shows kubelet's hint chain");
}

TEST(IptablesMode, TimedOutProbeIsNotReadAsNoHint) {
  FakeCommandRunner r;
  agent::CommandOutput hung;
  hung.timed_out = true;
  r.by_command["iptables-nft-save -t mangle"] = hung;
  r.ok("iptables-legacy-save -t mangle", "");
  auto d = detectIptablesMode(r, 1s);
  EXPECT_EQ(d.mode, IptablesBackend::kNft);
  EXPECT_EQ(d.timed_out, "iptables-nft-save: timed out after 1000ms (killed)");
  EXPECT_EQ(d.reason, "nft by default: a backend could not be read for kubelet's hint chain "
                      "(iptables-nft-save: timed out after 1000ms (killed))");
}

TEST(IptablesMode, NftByDefault) {
  FakeCommandRunner r;  // neither tool exists
  auto d = detectIptablesMode(r, 1s);
  EXPECT_EQ(d.mode, IptablesBackend::kNft);
  EXPECT_EQ(r.calls.size(), 2u);
}

TEST(ReadFirewall, OtherBackendWithoutRulesIsReadButNotUsed) {
  FakeCommandRunner r;
  nftModeNode(r, "drop_udp_4789_nft.txt");
  auto snap = readFirewall(r);
  ASSERT_EQ(snap.iptables.size(), 2u);  // iptables-nft-save and ip6tables-nft-save
  EXPECT_EQ(snap.iptables[0].name, "iptables-nft-save");
  EXPECT_EQ(snap.iptables[0].tool, "iptables");
  bool legacy_seen = false;
  for (const auto& s : snap.sources) {
    if (s.name == "iptables-legacy-save") {
      legacy_seen = true;
      EXPECT_TRUE(s.read);
      EXPECT_FALSE(s.used);
    }
  }
  EXPECT_TRUE(legacy_seen);
  EXPECT_TRUE(snap.iptables_nft_tables.count({"ip", "filter"}));
  EXPECT_TRUE(snap.nft.has_value());
}

TEST(ReadFirewall, NftListsOnlyTablesIptablesNftDoesNotManage) {
  FakeCommandRunner r;
  nftModeNode(r, "host_flannel_istio_nft.txt", firewallData("nft_from_iptables_nft.json"));
  // A native table beside the iptables-nft ones.
  auto doc = nlohmann::json::parse(firewallData("nft_from_iptables_nft.json"));
  const auto native = nlohmann::json::parse(firewallData("nft_drop_udp_single.json"));
  for (const auto& item : native["nftables"]) {
    if (!item.contains("metainfo")) doc["nftables"].push_back(item);
  }
  scriptNft(r, doc.dump());
  auto snap = readFirewall(r);
  EXPECT_EQ(snap.nft_tables_skipped, (std::vector<std::string>{"ip mangle", "ip nat", "ip filter"}));
  for (const auto& c : r.calls) EXPECT_EQ(c.find("nft -j list table ip "), std::string::npos) << c;
  EXPECT_NE(std::find(r.calls.begin(), r.calls.end(), "nft -j list table inet filter"), r.calls.end());
  ASSERT_TRUE(snap.nft.has_value());
  ASSERT_EQ(snap.nft->tables.size(), 1u);
  EXPECT_EQ(snap.nft->tables[0].family, "inet");
  EXPECT_EQ(snap.nft->ruleCount(), 1u);
}

TEST(ReadFirewall, EveryCommandGetsABoundedTimeout) {
  FakeCommandRunner r;
  nftModeNode(r, "drop_udp_4789_nft.txt");
  struct Recording final : CommandRunner {
    explicit Recording(CommandRunner& in) : inner(in) {}
    CommandOutput run(const std::vector<std::string>& argv, std::chrono::milliseconds t) override {
      timeouts.push_back(t);
      return inner.run(argv, t);
    }
    CommandRunner& inner;
    std::vector<std::chrono::milliseconds> timeouts;
  } rec(r);
  FirewallReadOptions opt;
  opt.per_command = 300ms;
  opt.total = 1000ms;
  readFirewall(rec, opt);
  ASSERT_FALSE(rec.timeouts.empty());
  for (auto t : rec.timeouts) {
    EXPECT_GT(t.count(), 0);
    EXPECT_LE(t, 300ms);
  }
}

}  // namespace
