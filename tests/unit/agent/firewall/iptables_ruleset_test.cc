// parseIptablesSave on captured iptables-save / iptables-legacy-save output.
#include "agent/firewall/iptables_ruleset.h"

#include <gtest/gtest.h>

#include "tests/unit/agent/firewall/testdata.h"

using namespace meshprobe::agent;
using meshprobe::agent::testing::firewallData;

namespace {

const IptablesRule& ruleAt(const IptablesRuleset& rs, const char* table, const char* chain, size_t i) {
  const IptablesTable* t = rs.table(table);
  EXPECT_NE(t, nullptr) << table;
  const IptablesChain* c = t ? t->chain(chain) : nullptr;
  EXPECT_NE(c, nullptr) << chain;
  static IptablesRule empty;
  if (!c || i >= c->rules.size()) return empty;
  return c->rules[i];
}

TEST(ParseIptablesSave, SimpleDropLegacy) {
  auto rs = parseIptablesSave(firewallData("drop_udp_4789_legacy.txt"));
  ASSERT_TRUE(rs.ok()) << rs.error().message;
  ASSERT_EQ(rs->tables.size(), 1u);
  const IptablesTable& f = rs->tables[0];
  EXPECT_EQ(f.name, "filter");
  ASSERT_EQ(f.chains.size(), 3u);
  EXPECT_EQ(f.chains[0].name, "INPUT");
  EXPECT_EQ(f.chains[0].policy, "ACCEPT");
  EXPECT_TRUE(f.chains[0].builtin());
  const IptablesRule& r = ruleAt(*rs, "filter", "INPUT", 0);
  EXPECT_EQ(r.text, "-A INPUT -p udp -m udp --dport 4789 -j DROP");
  EXPECT_EQ(r.chain, "INPUT");
  EXPECT_EQ(r.protocol, "udp");
  ASSERT_EQ(r.dports.size(), 1u);
  EXPECT_EQ(r.dports[0].first, 4789);
  EXPECT_EQ(r.dports[0].last, 4789);
  EXPECT_FALSE(r.dports_negated);
  EXPECT_EQ(r.target, "DROP");
  EXPECT_FALSE(r.is_goto);
  EXPECT_FALSE(r.has_other_matches);
  EXPECT_EQ(r.matches, std::vector<std::string>{"udp"});
  EXPECT_EQ(r.args.front(), "-p");
  EXPECT_EQ(rs->ruleCount(), 1u);
}

TEST(ParseIptablesSave, MultiportListAndComment) {
  auto rs = parseIptablesSave(firewallData("drop_multiport.txt"));
  ASSERT_TRUE(rs.ok()) << rs.error().message;
  const IptablesRule& r = ruleAt(*rs, "filter", "INPUT", 0);
  ASSERT_EQ(r.dports.size(), 3u);
  EXPECT_EQ(r.dports[0].first, 53);
  EXPECT_EQ(r.dports[1].first, 4789);
  EXPECT_EQ(r.dports[2].first, 8472);
  EXPECT_FALSE(r.has_other_matches);  // multiport and comment are modelled
  EXPECT_EQ(r.target, "DROP");
}

TEST(ParseIptablesSave, PortRange) {
  auto rs = parseIptablesSave(firewallData("drop_port_range.txt"));
  ASSERT_TRUE(rs.ok()) << rs.error().message;
  const IptablesRule& r = ruleAt(*rs, "filter", "INPUT", 0);
  ASSERT_EQ(r.dports.size(), 1u);
  EXPECT_EQ(r.dports[0].first, 4000);
  EXPECT_EQ(r.dports[0].last, 5000);
  EXPECT_TRUE(r.dports[0].contains(4789));
  EXPECT_FALSE(r.dports[0].contains(8472));
}

TEST(ParseIptablesSave, QuotedCommentWithEscapedQuotesAndUserChainJump) {
  auto rs = parseIptablesSave(firewallData("drop_via_jump.txt"));
  ASSERT_TRUE(rs.ok()) << rs.error().message;
  const IptablesChain* c = rs->table("filter")->chain("BLOCK-OVERLAY");
  ASSERT_NE(c, nullptr);
  EXPECT_FALSE(c->builtin());
  EXPECT_EQ(c->policy, "-");
  const IptablesRule& r = c->rules[0];
  auto it = std::find(r.args.begin(), r.args.end(), "--comment");
  ASSERT_NE(it, r.args.end());
  EXPECT_EQ(*(it + 1), "say \"no\" to vxlan");
  EXPECT_EQ(r.target, "DROP");
  const IptablesRule& jump = ruleAt(*rs, "filter", "INPUT", 0);
  EXPECT_EQ(jump.in_interface, "eth0");
  EXPECT_EQ(jump.target, "BLOCK-OVERLAY");
}

TEST(ParseIptablesSave, Negations) {
  auto rs = parseIptablesSave(firewallData("negated_no_match.txt"));
  ASSERT_TRUE(rs.ok()) << rs.error().message;
  const IptablesRule& a = ruleAt(*rs, "filter", "INPUT", 0);
  EXPECT_TRUE(a.dports_negated);
  EXPECT_FALSE(a.protocol_negated);
  const IptablesRule& f = ruleAt(*rs, "filter", "FORWARD", 0);
  EXPECT_EQ(f.text, "-A FORWARD ! -p udp -j DROP");
  EXPECT_EQ(f.protocol, "udp");
  EXPECT_TRUE(f.protocol_negated);
  const IptablesRule& o = ruleAt(*rs, "filter", "OUTPUT", 1);
  EXPECT_TRUE(o.dports_negated);
  ASSERT_EQ(o.dports.size(), 1u);
  EXPECT_EQ(o.dports[0].first, 15010);
  EXPECT_EQ(o.dports[0].last, 15014);
  EXPECT_EQ(o.target, "REJECT");
  EXPECT_EQ(o.target_args, (std::vector<std::string>{"--reject-with", "tcp-reset"}));
}

TEST(ParseIptablesSave, Istio124InPodRedirect) {
  auto rs = parseIptablesSave(firewallData("istio_1_24_inpod_redirect.txt"));
  ASSERT_TRUE(rs.ok()) << rs.error().message;
  const IptablesTable* nat = rs->table("nat");
  ASSERT_NE(nat, nullptr);
  const IptablesChain* prert = nat->chain("ISTIO_PRERT");
  const IptablesChain* output = nat->chain("ISTIO_OUTPUT");
  ASSERT_NE(prert, nullptr);
  ASSERT_NE(output, nullptr);
  const IptablesRule& inbound = prert->rules.back();
  EXPECT_EQ(inbound.target, "REDIRECT");
  EXPECT_EQ(inbound.target_args, (std::vector<std::string>{"--to-ports", "15006"}));
  EXPECT_EQ(inbound.destination, "127.0.0.1/32");
  EXPECT_TRUE(inbound.destination_negated);
  EXPECT_TRUE(inbound.has_other_matches);  // -m mark
  const IptablesRule& outbound = output->rules.back();
  EXPECT_EQ(outbound.target_args, (std::vector<std::string>{"--to-ports", "15001"}));
  const IptablesRule& dns = output->rules[1];
  EXPECT_EQ(dns.out_interface, "lo");
  EXPECT_TRUE(dns.out_interface_negated);
  EXPECT_EQ(dns.dports[0].first, 53);
  // PREROUTING -> ISTIO_PRERT in nat and mangle.
  EXPECT_EQ(nat->chain("PREROUTING")->rules[0].target, "ISTIO_PRERT");
  EXPECT_NE(rs->table("mangle")->chain("ISTIO_PRERT"), nullptr);
}

TEST(ParseIptablesSave, Istio123InPodTproxy) {
  auto rs = parseIptablesSave(firewallData("istio_1_23_inpod_tproxy.txt"));
  ASSERT_TRUE(rs.ok()) << rs.error().message;
  const IptablesChain* prert = rs->table("mangle")->chain("ISTIO_PRERT");
  ASSERT_NE(prert, nullptr);
  std::vector<std::string> ports;
  for (const auto& r : prert->rules) {
    if (r.target != "TPROXY") continue;
    auto it = std::find(r.target_args.begin(), r.target_args.end(), "--on-port");
    ASSERT_NE(it, r.target_args.end());
    ports.push_back(*(it + 1));
    EXPECT_NE(std::find(r.target_args.begin(), r.target_args.end(), "--tproxy-mark"), r.target_args.end());
  }
  EXPECT_EQ(ports, (std::vector<std::string>{"15008", "15006"}));
  EXPECT_EQ(rs->table("nat")->chain("ISTIO_OUTPUT")->rules.back().target, "REDIRECT");
}

TEST(ParseIptablesSave, HostFlannelAndIstioProbeSnat) {
  auto rs = parseIptablesSave(firewallData("host_flannel_istio_nft.txt"));
  ASSERT_TRUE(rs.ok()) << rs.error().message;
  const IptablesChain* postrt = rs->table("nat")->chain("ISTIO_POSTRT");
  ASSERT_NE(postrt, nullptr);
  ASSERT_EQ(postrt->rules.size(), 1u);
  const IptablesRule& snat = postrt->rules[0];
  EXPECT_EQ(snat.target, "SNAT");
  EXPECT_EQ(snat.target_args, (std::vector<std::string>{"--to-source", "169.254.7.127"}));
  EXPECT_EQ(snat.matches, (std::vector<std::string>{"owner", "set"}));
  EXPECT_NE(std::find(snat.args.begin(), snat.args.end(), "istio-inpod-probes-v4"), snat.args.end());
  EXPECT_TRUE(snat.has_other_matches);
  EXPECT_EQ(rs->table("nat")->chain("FLANNEL-POSTRTG")->rules.size(), 6u);
  const IptablesChain* fwd = rs->table("filter")->chain("FLANNEL-FWD");
  ASSERT_NE(fwd, nullptr);
  EXPECT_EQ(fwd->rules[0].source, "10.244.0.0/16");
  EXPECT_EQ(fwd->rules[0].target, "ACCEPT");
  EXPECT_NE(rs->table("mangle")->chain("KUBE-IPTABLES-HINT"), nullptr);
}

TEST(ParseIptablesSave, KubeProxySizedRuleset) {
  auto rs = parseIptablesSave(firewallData("kube_proxy_large_nft.txt"));
  ASSERT_TRUE(rs.ok()) << rs.error().message;
  EXPECT_GT(rs->ruleCount(), 5000u);
  const IptablesTable* nat = rs->table("nat");
  ASSERT_NE(nat, nullptr);
  size_t svc = 0, sep = 0;
  for (const auto& c : nat->chains) {
    if (c.name.rfind("KUBE-SVC-", 0) == 0) ++svc;
    if (c.name.rfind("KUBE-SEP-", 0) == 0) ++sep;
  }
  EXPECT_GT(svc, 700u);
  EXPECT_EQ(sep, svc * 2);
  // The istiod service rule: -d <ip> -p tcp ... --dport 15012 -j KUBE-SVC-...
  bool found = false;
  for (const auto& r : nat->chain("KUBE-SERVICES")->rules) {
    if (!r.dports.empty() && r.dports[0].first == 15012) {
      found = true;
      EXPECT_EQ(r.target.rfind("KUBE-SVC-", 0), 0u);
      EXPECT_EQ(r.protocol, "tcp");
    }
  }
  EXPECT_TRUE(found);
}

TEST(ParseIptablesSave, EmptyOutputIsAnEmptyRuleset) {
  auto rs = parseIptablesSave(firewallData("mixed_nft_empty.txt"));
  ASSERT_TRUE(rs.ok());
  EXPECT_TRUE(rs->tables.empty());
  EXPECT_EQ(rs->ruleCount(), 0u);
}

TEST(ParseIptablesSave, CountersPrefix) {
  auto rs = parseIptablesSave(
      "*filter\n:INPUT ACCEPT [10:200]\n[3:180] -A INPUT -p udp -m udp --dport 4789 -j DROP\nCOMMIT\n");
  ASSERT_TRUE(rs.ok()) << rs.error().message;
  const IptablesRule& r = ruleAt(*rs, "filter", "INPUT", 0);
  EXPECT_EQ(r.text, "-A INPUT -p udp -m udp --dport 4789 -j DROP");
  EXPECT_EQ(r.dports[0].first, 4789);
}

TEST(ParseIptablesSave, GotoAndSourcePortsAndNumericProtocol) {
  auto rs = parseIptablesSave(
      "*filter\n:INPUT ACCEPT [0:0]\n:X - [0:0]\n"
      "-A INPUT -p 17 -m multiport --sports 1:1023 -g X\n"
      "-A X -m conntrack --ctstate NEW -j ACCEPT\nCOMMIT\n");
  ASSERT_TRUE(rs.ok()) << rs.error().message;
  const IptablesRule& r = ruleAt(*rs, "filter", "INPUT", 0);
  EXPECT_EQ(r.protocol, "udp");
  EXPECT_TRUE(r.is_goto);
  EXPECT_EQ(r.target, "X");
  ASSERT_EQ(r.sports.size(), 1u);
  EXPECT_EQ(r.sports[0].last, 1023);
  const IptablesRule& x = ruleAt(*rs, "filter", "X", 0);
  EXPECT_TRUE(x.has_other_matches);
  EXPECT_EQ(x.line, 5);
}

struct BadInput {
  const char* text;
  const char* expect;  // substring of the error
};

class ParseIptablesSaveErrors : public ::testing::TestWithParam<BadInput> {};

TEST_P(ParseIptablesSaveErrors, NameTheLine) {
  auto rs = parseIptablesSave(GetParam().text);
  ASSERT_FALSE(rs.ok());
  EXPECT_NE(rs.error().message.find(GetParam().expect), std::string::npos) << rs.error().message;
}

INSTANTIATE_TEST_SUITE_P(
    Garbage, ParseIptablesSaveErrors,
    ::testing::Values(BadInput{"*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p udp --dport 99999 -j DROP\nCOMMIT\n",
                               "line 3: bad port '99999'"},
                      BadInput{"*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m comment --comment \"open\nCOMMIT\n",
                               "line 3: unterminated quote"},
                      BadInput{"*filter\n:INPUT ACCEPT [0:0]\n-A FOO -j DROP\nCOMMIT\n",
                               "line 3: rule for undeclared chain FOO"},
                      BadInput{"*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j DROP\n",
                               "line 1: table filter is not terminated by COMMIT"},
                      BadInput{"-A INPUT -j DROP\n", "line 1: rule outside a table"},
                      BadInput{"<html>502 Bad Gateway</html>\n", "line 1: unexpected line"},
                      BadInput{"*filter\n:INPUT\nCOMMIT\n", "line 2: chain declaration needs a name and a policy"},
                      BadInput{"*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p udp --dport\nCOMMIT\n",
                               "line 3: option --dport needs a value"},
                      BadInput{"COMMIT\n", "line 1: COMMIT outside a table"},
                      BadInput{"*filter\n*nat\n", "line 2: table nat starts before table filter"}));

}  // namespace
