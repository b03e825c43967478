// parseNftJson on captured `nft -j list ruleset` output.
#include "agent/firewall/nft_ruleset.h"

#include <gtest/gtest.h>

#include "tests/unit/agent/firewall/testdata.h"

using namespace meshprobe::agent;
using meshprobe::agent::testing::firewallData;

namespace {

TEST(ParseNftJson, SingleDportDrop) {
  auto rs = parseNftJson(firewallData("nft_drop_udp_single.json"));
  ASSERT_TRUE(rs.ok()) << rs.error().message;
  ASSERT_EQ(rs->tables.size(), 1u);
  const NftTable& t = rs->tables[0];
  EXPECT_EQ(t.family, "inet");
  EXPECT_EQ(t.name, "filter");
  const NftChain* in = t.chain("input");
  ASSERT_NE(in, nullptr);
  EXPECT_TRUE(in->base());
  EXPECT_EQ(in->hook, "input");
  EXPECT_EQ(in->type, "filter");
  EXPECT_EQ(in->policy, "accept");
  ASSERT_EQ(in->rules.size(), 1u);
  const NftRule& r = in->rules[0];
  EXPECT_EQ(r.text, "udp dport 4789 counter drop");
  EXPECT_EQ(r.verdict, NftVerdict::kDrop);
  ASSERT_EQ(r.dports.size(), 1u);
  ASSERT_EQ(r.dports[0].ranges.size(), 1u);
  EXPECT_EQ(r.dports[0].ranges[0].first, 4789);
  ASSERT_EQ(r.protocols.size(), 1u);  // implied by "udp dport"
  EXPECT_EQ(r.protocols[0].protocols, std::vector<std::string>{"udp"});
  EXPECT_TRUE(r.restrictions.empty());
  EXPECT_FALSE(r.has_other_matches);
  EXPECT_EQ(r.handle, 2u);
  EXPECT_EQ(rs->ruleCount(), 1u);
}

TEST(ParseNftJson, AnonymousAndNamedSets) {
  auto rs = parseNftJson(firewallData("nft_drop_udp_set.json"));
  ASSERT_TRUE(rs.ok()) << rs.error().message;
  const NftTable* t = rs->table("inet", "filter");
  ASSERT_NE(t, nullptr);
  const NftSet* s = t->set("vxlan_ports");
  ASSERT_NE(s, nullptr);
  EXPECT_TRUE(s->ports_known);
  EXPECT_EQ(s->ports.size(), 2u);
  const NftRule& anon = t->chain("input")->rules[0];
  EXPECT_EQ(anon.text, "udp dport { 4789, 8472 } drop");
  EXPECT_EQ(anon.dports[0].ranges.size(), 2u);
  const NftRule& named = t->chain("forward")->rules[0];
  EXPECT_EQ(named.text, "udp dport @vxlan_ports drop");
  EXPECT_EQ(named.dports[0].set_name, "vxlan_ports");
  EXPECT_FALSE(named.dports[0].unresolved);
  ASSERT_EQ(named.dports[0].ranges.size(), 2u);
  EXPECT_EQ(named.dports[0].ranges[1].first, 8472);
}

TEST(ParseNftJson, RangeAndCommentAndInterface) {
  auto rs = parseNftJson(firewallData("nft_drop_udp_range.json"));
  ASSERT_TRUE(rs.ok()) << rs.error().message;
  const NftChain* c = rs->table("ip", "talos")->chain("ingress");
  ASSERT_EQ(c->rules.size(), 2u);
  EXPECT_EQ(c->rules[0].text, "iifname lo accept");
  EXPECT_EQ(c->rules[0].restrictions, std::vector<std::string>{"iifname lo"});
  EXPECT_EQ(c->rules[0].verdict, NftVerdict::kAccept);
  const NftRule& r = c->rules[1];
  EXPECT_EQ(r.comment, "no overlay");
  EXPECT_EQ(r.text, "udp dport 4000-5000 counter drop comment \"no overlay\"");
  EXPECT_EQ(r.dports[0].ranges[0].first, 4000);
  EXPECT_EQ(r.dports[0].ranges[0].last, 5000);
}

TEST(ParseNftJson, RejectJumpAndPolicy) {
  auto rs = parseNftJson(firewallData("nft_reject_and_jump.json"));
  ASSERT_TRUE(rs.ok()) << rs.error().message;
  const NftTable* t = rs->table("inet", "fw");
  ASSERT_NE(t, nullptr);
  const NftRule& jump = t->chain("input")->rules[0];
  EXPECT_EQ(jump.verdict, NftVerdict::kJump);
  EXPECT_EQ(jump.verdict_target, "block_overlay");
  EXPECT_EQ(jump.text, "ip saddr 198.51.100.0/24 jump block_overlay");
  EXPECT_FALSE(t->chain("block_overlay")->base());
  const NftRule& rej = t->chain("output")->rules[0];
  EXPECT_EQ(rej.verdict, NftVerdict::kReject);
  EXPECT_EQ(rej.text, "tcp dport 15012 reject with tcp reset");
  EXPECT_EQ(t->chain("forward")->policy, "drop");
  const NftRule& l4 = t->chain("forward")->rules[0];
  EXPECT_EQ(l4.text, "meta l4proto udp drop");
  EXPECT_EQ(l4.protocols[0].protocols, std::vector<std::string>{"udp"});
  EXPECT_TRUE(l4.dports.empty());
}

TEST(ParseNftJson, NegationsAndCtState) {
  auto rs = parseNftJson(firewallData("nft_negated_no_match.json"));
  ASSERT_TRUE(rs.ok()) << rs.error().message;
  const auto& rules = rs->table("inet", "fw")->chain("input")->rules;
  ASSERT_EQ(rules.size(), 5u);
  EXPECT_EQ(rules[0].text, "udp dport != 4789 drop");
  EXPECT_TRUE(rules[0].dports[0].negated);
  EXPECT_TRUE(rules[2].dports[0].negated);
  EXPECT_EQ(rules[2].dports[0].ranges.size(), 2u);
  EXPECT_EQ(rules[4].text, "ct state invalid drop");
  EXPECT_TRUE(rules[4].ct_invalid_only);
  EXPECT_TRUE(rules[4].has_other_matches);
}

TEST(ParseNftJson, IptablesNftTablesCarryXtExpressions) {
  auto rs = parseNftJson(firewallData("nft_from_iptables_nft.json"));
  ASSERT_TRUE(rs.ok()) << rs.error().message;
  const NftTable* nat = rs->table("ip", "nat");
  ASSERT_NE(nat, nullptr);
  const NftRule& snat = nat->chain("ISTIO_POSTRT")->rules[0];
  EXPECT_TRUE(snat.has_xt);
  EXPECT_EQ(snat.text, "meta l4proto tcp xt match \"owner\" xt match \"set\" counter xt target \"SNAT\"");
  const NftTable* filter = rs->table("ip", "filter");
  ASSERT_NE(filter, nullptr);
  const NftRule& ct = filter->chain("INPUT")->rules[1];
  EXPECT_TRUE(ct.has_xt);  // -m conntrack --ctstate INVALID became an xt match
  EXPECT_EQ(ct.verdict, NftVerdict::kDrop);
  // A comment-only xt match does not make a rule unmodelled.
  const NftRule& fwd = filter->chain("FORWARD")->rules[0];
  EXPECT_FALSE(fwd.has_xt);
  EXPECT_EQ(fwd.verdict, NftVerdict::kJump);
}

TEST(ParseNftJson, ComparisonOperatorsBecomeRanges) {
  auto rs = parseNftJson(R"({"nftables":[{"table":{"family":"inet","name":"t"}},
    {"chain":{"family":"inet","table":"t","name":"c","type":"filter","hook":"input","prio":0,"policy":"accept"}},
    {"rule":{"family":"inet","table":"t","chain":"c","handle":3,"expr":[
      {"match":{"op":">=","left":{"payload":{"protocol":"th","field":"dport"}},"right":4000}},
      {"match":{"op":"==","left":{"meta":{"key":"l4proto"}},"right":{"set":["tcp","udp"]}}},
      {"drop":null}]}}]})");
  ASSERT_TRUE(rs.ok()) << rs.error().message;
  const NftRule& r = rs->tables[0].chains[0].rules[0];
  ASSERT_EQ(r.dports.size(), 1u);
  EXPECT_EQ(r.dports[0].ranges[0].first, 4000);
  EXPECT_EQ(r.dports[0].ranges[0].last, 65535);
  EXPECT_EQ(r.protocols[0].protocols, (std::vector<std::string>{"tcp", "udp"}));
  EXPECT_EQ(r.text, "th dport >= 4000 meta l4proto { tcp, udp } drop");
}

TEST(ParseNftJson, Errors) {
  auto a = parseNftJson("Error: syntax error\n");
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.error().message.find("nft -j list ruleset"), std::string::npos);
  EXPECT_NE(a.error().message.find("parse error"), std::string::npos) << a.error().message;
  auto b = parseNftJson(R"({"something":[]})");
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.error().message.find("no \"nftables\" array"), std::string::npos);
  auto c = parseNftJson(R"({"nftables":[{"rule":{"family":"ip","table":"x","chain":"y","expr":[]}}]})");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find("rule for unknown chain ip x y"), std::string::npos) << c.error().message;
  auto d = parseNftJson(firewallData("nft_drop_udp_single.json").substr(0, 200));
  EXPECT_FALSE(d.ok());
}

TEST(ParseNftJson, EmptyRuleset) {
  auto rs = parseNftJson(R"({"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}]})");
  ASSERT_TRUE(rs.ok());
  EXPECT_TRUE(rs->tables.empty());
}

}  // namespace
