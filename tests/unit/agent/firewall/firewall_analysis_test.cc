// The walk from the hooked chains to every DROP/REJECT that can hit the overlay or
// istiod traffic, on captured rulesets.
#include "agent/firewall/firewall_analysis.h"

#include <gtest/gtest.h>

#include "tests/unit/agent/firewall/testdata.h"

using namespace meshprobe::agent;
using meshprobe::agent::testing::firewallData;

namespace {

const FirewallTarget kVxlan{"udp", 4789};
const FirewallTarget kFlannelDefault{"udp", 8472};
const FirewallTarget kIstiod{"tcp", 15012};

FirewallAnalysis iptables(const std::string& file, const std::vector<FirewallTarget>& targets,
                          const std::string& family = "ip") {
  auto rs = parseIptablesSave(firewallData(file));
  EXPECT_TRUE(rs.ok()) << (rs.ok() ? "" : rs.error().message);
  if (!rs.ok()) return {};
  return analyzeIptables(*rs, "iptables-nft-save", family == "ip" ? "iptables" : "ip6tables", family, targets);
}

FirewallAnalysis nft(const std::string& file, const std::vector<FirewallTarget>& targets,
                     const std::function<bool(const NftTable&)>& skip = nullptr) {
  auto rs = parseNftJson(firewallData(file));
  EXPECT_TRUE(rs.ok()) << (rs.ok() ? "" : rs.error().message);
  if (!rs.ok()) return {};
  return analyzeNft(*rs, targets, skip);
}

std::vector<std::string> labels(const std::vector<FirewallHit>& hits) {
  std::vector<std::string> out;
  for (const auto& h : hits) out.push_back(h.target.label() + " " + h.table + "/" + h.chain);
  return out;
}

TEST(FirewallAnalysis, DropUdpDport) {
  auto a = iptables("drop_udp_4789_legacy.txt", {kVxlan, kIstiod});
  ASSERT_EQ(a.blocking.size(), 1u);
  const FirewallHit& h = a.blocking[0];
  EXPECT_EQ(h.table, "filter");
  EXPECT_EQ(h.chain, "INPUT");
  EXPECT_EQ(h.path, std::vector<std::string>{"INPUT"});
  EXPECT_EQ(h.verdict, "DROP");
  EXPECT_EQ(h.target, kVxlan);
  EXPECT_EQ(h.rule, "-A INPUT -p udp -m udp --dport 4789 -j DROP");
  EXPECT_EQ(h.remedy, "iptables -D INPUT -p udp -m udp --dport 4789 -j DROP");
  EXPECT_FALSE(h.conditional);
  EXPECT_TRUE(a.conditional.empty());
  EXPECT_TRUE(a.policies.empty());
}

TEST(FirewallAnalysis, Multiport) {
  auto a = iptables("drop_multiport.txt", {kVxlan, kFlannelDefault, kIstiod});
  EXPECT_EQ(labels(a.blocking), (std::vector<std::string>{"udp/4789 filter/INPUT", "udp/8472 filter/INPUT"}));
}

TEST(FirewallAnalysis, PortRangeContainsOnlyWhatItContains) {
  auto a = iptables("drop_port_range.txt", {kVxlan, kFlannelDefault, kIstiod});
  EXPECT_EQ(labels(a.blocking), (std::vector<std::string>{"udp/4789 filter/INPUT"}));
}

TEST(FirewallAnalysis, ProtocolWideUdpDropInRaw) {
  auto a = iptables("drop_udp_protocol_wide.txt", {kVxlan, kFlannelDefault, kIstiod});
  EXPECT_EQ(labels(a.blocking), (std::vector<std::string>{"udp/4789 raw/PREROUTING", "udp/8472 raw/PREROUTING"}));
  EXPECT_EQ(a.blocking[0].remedy, "iptables -t raw -D PREROUTING -p udp -j DROP");
}

TEST(FirewallAnalysis, RejectTcp15012InOutput) {
  auto a = iptables("reject_tcp_15012_output.txt", {kVxlan, kIstiod});
  ASSERT_EQ(labels(a.blocking), (std::vector<std::string>{"tcp/15012 filter/OUTPUT"}));
  EXPECT_EQ(a.blocking[0].verdict, "REJECT");
}

TEST(FirewallAnalysis, DropThroughAJumpToAUserChain) {
  auto a = iptables("drop_via_jump.txt", {kVxlan, kIstiod});
  // UNUSED's tcp/15012 DROP is not reachable from any hook: not reported.
  ASSERT_EQ(labels(a.blocking), (std::vector<std::string>{"udp/4789 filter/BLOCK-OVERLAY"}));
  EXPECT_EQ(a.blocking[0].path, (std::vector<std::string>{"INPUT", "BLOCK-OVERLAY"}));
  EXPECT_EQ(
      a.blocking[0].remedy,
      "iptables -D BLOCK-OVERLAY -p udp -m udp --dport 4789 -m comment --comment \"say \\\"no\\\" to vxlan\" -j DROP");
}

TEST(FirewallAnalysis, NegatedRulesDoNotMatch) {
  auto a = iptables("negated_no_match.txt", {kVxlan});
  EXPECT_TRUE(a.blocking.empty()) << labels(a.blocking).front();
  EXPECT_TRUE(a.conditional.empty());
  // "! -p udp" in FORWARD does hit TCP; "! --dport 15012" and "! --dports 15010:15014" do not.
  auto t = iptables("negated_no_match.txt", {kIstiod});
  EXPECT_EQ(labels(t.blocking), (std::vector<std::string>{"tcp/15012 filter/FORWARD"}));
  // And "-p udp ! --dport 4789" does drop flannel's default port.
  auto f = iptables("negated_no_match.txt", {kFlannelDefault});
  EXPECT_EQ(labels(f.blocking), (std::vector<std::string>{"udp/8472 filter/INPUT"}));
}

TEST(FirewallAnalysis, AcceptShadowsLaterDropsAndPolicy) {
  auto a = iptables("accept_then_drop.txt", {kVxlan, kIstiod});
  // OUTPUT -j DROP drops everything; INPUT accepts udp/4789 before its DROP policy.
  EXPECT_EQ(labels(a.blocking), (std::vector<std::string>{"udp/4789 filter/OUTPUT", "tcp/15012 filter/OUTPUT"}));
  ASSERT_EQ(labels(a.conditional), (std::vector<std::string>{"tcp/15012 filter/INPUT"}));
  EXPECT_EQ(a.conditional[0].conditions, "-s 198.51.100.0/24");
  ASSERT_EQ(a.policies.size(), 1u);
  EXPECT_EQ(a.policies[0].chain, "INPUT");
  EXPECT_EQ(a.policies[0].policy, "DROP");
  EXPECT_EQ(a.policies[0].targets, std::vector<FirewallTarget>{kIstiod});
}

TEST(FirewallAnalysis, HealthyFlannelHostHasNothing) {
  auto a = iptables("host_flannel_istio_nft.txt", {kVxlan, kFlannelDefault, kIstiod});
  EXPECT_TRUE(a.blocking.empty());
  EXPECT_TRUE(a.conditional.empty());  // ctstate INVALID drop is not a finding
  EXPECT_TRUE(a.policies.empty());
  auto rs = parseIptablesSave(firewallData("host_flannel_istio_nft.txt"));
  auto chains = findChains(*rs, "iptables-nft-save", {"FLANNEL-POSTRTG", "FLANNEL-FWD", "ISTIO_POSTRT"});
  ASSERT_EQ(chains.size(), 3u);
  EXPECT_EQ(chains[0].table, "filter");
  EXPECT_EQ(chains[0].chain, "FLANNEL-FWD");
  EXPECT_EQ(chains[0].rules, 2u);
}

TEST(FirewallAnalysis, KubeProxySizedRulesetIsHealthy) {
  auto a = iptables("kube_proxy_large_nft.txt", {kVxlan, kFlannelDefault, kIstiod});
  EXPECT_TRUE(a.blocking.empty()) << labels(a.blocking).front();
  EXPECT_TRUE(a.conditional.empty()) << labels(a.conditional).front();
}

TEST(FirewallAnalysis, KubeProxyRejectForIstiodWithoutEndpointsIsReported) {
  // Same ruleset, istiod's Service lost its endpoints: kube-proxy REJECTs its port.
  auto text = firewallData("kube_proxy_large_nft.txt");
  const std::string anchor = "-A KUBE-SERVICES -d 10.96.0.10/32";
  auto pos = text.find(anchor);
  ASSERT_NE(pos, std::string::npos);
  text.insert(pos,
              "-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m comment --comment \"istio-system/istiod:grpc-xds has no "
              "endpoints\" -m tcp --dport 15012 -j REJECT --reject-with icmp-port-unreachable\n");
  auto rs2 = parseIptablesSave(text);
  ASSERT_TRUE(rs2.ok()) << rs2.error().message;
  auto a = analyzeIptables(*rs2, "iptables-nft-save", "iptables", "ip", {kIstiod});
  // Reached from FORWARD and OUTPUT; reported once, with the first path.
  ASSERT_EQ(a.blocking.size(), 1u);
  EXPECT_EQ(a.blocking[0].table, "filter");
  EXPECT_EQ(a.blocking[0].chain, "KUBE-SERVICES");
  EXPECT_EQ(a.blocking[0].path, (std::vector<std::string>{"FORWARD", "KUBE-SERVICES"}));
  EXPECT_EQ(a.blocking[0].verdict, "REJECT");
}

TEST(FirewallAnalysis, Ip6tables) {
  auto a = iptables("ip6_drop_udp_4789.txt", {kVxlan}, "ip6");
  ASSERT_EQ(a.blocking.size(), 1u);
  EXPECT_EQ(a.blocking[0].family, "ip6");
  EXPECT_EQ(a.blocking[0].remedy, "ip6tables -D INPUT -p udp -m udp --dport 4789 -j DROP");
}

TEST(FirewallAnalysis, IstioInPodRulesNeverDrop) {
  for (const char* f : {"istio_1_24_inpod_redirect.txt", "istio_1_23_inpod_tproxy.txt"}) {
    auto a = iptables(f, {kVxlan, kIstiod});
    EXPECT_TRUE(a.blocking.empty()) << f;
    EXPECT_TRUE(a.conditional.empty()) << f;
  }
}

TEST(FirewallAnalysis, CycleGuard) {
  auto rs = parseIptablesSave(
      "*filter\n:INPUT ACCEPT [0:0]\n:A - [0:0]\n:B - [0:0]\n"
      "-A INPUT -j A\n-A A -i eth0 -j B\n-A B -j A\n-A B -p udp -m udp --dport 4789 -j DROP\nCOMMIT\n");
  ASSERT_TRUE(rs.ok()) << rs.error().message;
  auto a = analyzeIptables(*rs, "s", "iptables", "ip", {kVxlan});
  ASSERT_EQ(a.blocking.size(), 1u);
  EXPECT_EQ(a.blocking[0].path, (std::vector<std::string>{"INPUT", "A", "B"}));
}

TEST(FirewallAnalysis, GotoEndsTheCallingChain) {
  // INPUT -g SAFE: SAFE falls through, so the packet returns past INPUT (to its policy),
  // and the DROP after the goto is never reached.
  auto rs = parseIptablesSave(
      "*filter\n:INPUT ACCEPT [0:0]\n:SAFE - [0:0]\n"
      "-A INPUT -g SAFE\n-A INPUT -p udp -j DROP\n-A SAFE -p tcp -j ACCEPT\nCOMMIT\n");
  ASSERT_TRUE(rs.ok()) << rs.error().message;
  auto a = analyzeIptables(*rs, "s", "iptables", "ip", {kVxlan});
  EXPECT_TRUE(a.blocking.empty());
}

// --- nft ---

TEST(FirewallAnalysis, NftSingle) {
  auto a = nft("nft_drop_udp_single.json", {kVxlan, kIstiod});
  ASSERT_EQ(labels(a.blocking), (std::vector<std::string>{"udp/4789 filter/input"}));
  EXPECT_EQ(a.blocking[0].family, "inet");
  EXPECT_EQ(a.blocking[0].source, "nft");
  EXPECT_EQ(a.blocking[0].rule, "udp dport 4789 counter drop");
  EXPECT_EQ(a.blocking[0].remedy, "nft delete rule inet filter input handle 2");
}

TEST(FirewallAnalysis, NftSets) {
  auto a = nft("nft_drop_udp_set.json", {kVxlan, kFlannelDefault, kIstiod});
  EXPECT_EQ(labels(a.blocking), (std::vector<std::string>{"udp/4789 filter/input", "udp/4789 filter/forward",
                                                          "udp/8472 filter/input", "udp/8472 filter/forward"}));
}

TEST(FirewallAnalysis, NftRange) {
  auto a = nft("nft_drop_udp_range.json", {kVxlan, kFlannelDefault});
  ASSERT_EQ(labels(a.blocking), (std::vector<std::string>{"udp/4789 talos/ingress"}));
  EXPECT_EQ(a.blocking[0].rule, "udp dport 4000-5000 counter drop comment \"no overlay\"");
}

TEST(FirewallAnalysis, NftRejectJumpAndProtocolWide) {
  auto a = nft("nft_reject_and_jump.json", {kVxlan, kIstiod});
  EXPECT_EQ(labels(a.blocking),
            (std::vector<std::string>{"udp/4789 fw/block_overlay", "udp/4789 fw/forward", "tcp/15012 fw/output"}));
  EXPECT_EQ(a.blocking[0].path, (std::vector<std::string>{"input", "block_overlay"}));
  EXPECT_EQ(a.blocking[2].verdict, "REJECT");
  ASSERT_EQ(a.policies.size(), 1u);
  EXPECT_EQ(a.policies[0].chain, "forward");
  EXPECT_EQ(a.policies[0].targets, std::vector<FirewallTarget>{kIstiod});
}

TEST(FirewallAnalysis, NftNegatedDoNotMatch) {
  auto a = nft("nft_negated_no_match.json", {kVxlan, kIstiod});
  EXPECT_TRUE(a.blocking.empty()) << labels(a.blocking).front();
  EXPECT_TRUE(a.conditional.empty());
}

TEST(FirewallAnalysis, NftTablesOfIptablesNftAreSkippable) {
  auto all = nft("nft_from_iptables_nft.json", {kVxlan});
  // Without skipping, the xt conntrack DROP shows up as a conditional rule.
  ASSERT_EQ(all.conditional.size(), 1u);
  EXPECT_EQ(all.conditional[0].rule, "xt match \"conntrack\" counter drop");
  auto skipped = nft("nft_from_iptables_nft.json", {kVxlan}, [](const NftTable& t) { return t.family == "ip"; });
  EXPECT_TRUE(skipped.conditional.empty());
  EXPECT_TRUE(skipped.blocking.empty());
}

}  // namespace
