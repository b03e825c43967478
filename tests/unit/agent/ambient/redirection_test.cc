#include "agent/ambient/redirection.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <fstream>
#include <sstream>

using namespace meshprobe;
using namespace meshprobe::agent;

namespace {

IptablesRule rule(const std::string& chain, const std::string& target, std::vector<std::string> target_args = {}) {
  IptablesRule r;
  r.chain = chain;
  r.target = target;
  r.target_args = std::move(target_args);
  r.text = "-A " + chain + " -j " + target;
  return r;
}

IptablesChain chain(const std::string& name, std::vector<IptablesRule> rules, std::string policy = "-") {
  return IptablesChain{name, std::move(policy), std::move(rules)};
}

// Istio 1.24 in-pod: nat REDIRECT 15001 / 15006 / 15053, mangle CONNMARK only.
IptablesRuleset istio124() {
  IptablesRuleset rs;
  rs.tables.push_back(
      IptablesTable{"mangle",
                    {chain("PREROUTING", {rule("PREROUTING", "ISTIO_PRERT")}, "ACCEPT"),
                     chain("ISTIO_OUTPUT", {rule("ISTIO_OUTPUT", "CONNMARK", {"--restore-mark"})}),
                     chain("ISTIO_PRERT", {rule("ISTIO_PRERT", "CONNMARK", {"--set-xmark", "0x111/0xfff"})})}});
  rs.tables.push_back(IptablesTable{
      "nat",
      {chain("OUTPUT", {rule("OUTPUT", "ISTIO_OUTPUT")}, "ACCEPT"),
       chain("ISTIO_OUTPUT", {rule("ISTIO_OUTPUT", "ACCEPT"), rule("ISTIO_OUTPUT", "REDIRECT", {"--to-ports", "15053"}),
                              rule("ISTIO_OUTPUT", "REDIRECT", {"--to-ports", "15001"})}),
       chain("ISTIO_PRERT",
             {rule("ISTIO_PRERT", "ACCEPT"), rule("ISTIO_PRERT", "REDIRECT", {"--to-ports", "15006"})})}});
  return rs;
}

// Istio 1.22-1.23: mangle TPROXY 15008 / 15006, nat REDIRECT 15001.
IptablesRuleset istio123() {
  IptablesRuleset rs;
  rs.tables.push_back(IptablesTable{
      "mangle",
      {chain("ISTIO_PRERT", {rule("ISTIO_PRERT", "CONNMARK", {"--set-xmark", "0x111/0xfff"}),
                             rule("ISTIO_PRERT", "TPROXY",
                                  {"--on-port", "15008", "--on-ip", "0.0.0.0", "--tproxy-mark", "0x111/0xfff"}),
                             rule("ISTIO_PRERT", "TPROXY", {"--on-port", "15006", "--on-ip", "0.0.0.0"})})}});
  rs.tables.push_back(
      IptablesTable{"nat", {chain("ISTIO_OUTPUT", {rule("ISTIO_OUTPUT", "REDIRECT", {"--to-ports", "15001"})})}});
  return rs;
}

InetSocket listener(uint16_t port, int family = AF_INET, uint8_t state = 10) {
  InetSocket s;
  s.family = family;
  s.protocol = IPPROTO_TCP;
  s.state = state;
  s.local_address = family == AF_INET ? "0.0.0.0" : "::";
  s.local_port = port;
  return s;
}

PodInspection inspection(std::optional<IstioRules> rules, std::optional<std::vector<uint16_t>> listeners) {
  PodInspection in;
  in.rules = std::move(rules);
  in.listeners = std::move(listeners);
  return in;
}

}  // namespace

TEST(AnalyzeIstioRules, Istio124RedirectMode) {
  auto r = analyzeIstioRules(istio124());
  EXPECT_TRUE(r.present);
  EXPECT_FALSE(r.sidecar);
  EXPECT_EQ(r.mode, RedirectMode::kRedirect);
  EXPECT_EQ(r.ports, (std::vector<uint16_t>{15001, 15006, 15053}));
  EXPECT_EQ(r.chains, (std::vector<std::string>{"mangle/ISTIO_OUTPUT", "mangle/ISTIO_PRERT", "nat/ISTIO_OUTPUT",
                                                "nat/ISTIO_PRERT"}));
  EXPECT_EQ(r.rule_count, 7u);
}

TEST(AnalyzeIstioRules, Istio123TproxyMode) {
  auto r = analyzeIstioRules(istio123());
  EXPECT_TRUE(r.present);
  EXPECT_EQ(r.mode, RedirectMode::kTproxy);
  EXPECT_EQ(r.ports, (std::vector<uint16_t>{15001, 15006, 15008}));
}

TEST(AnalyzeIstioRules, TargetArgsAsOneTokenOrOnlyInArgs) {
  IptablesRuleset rs;
  IptablesRule joined = rule("ISTIO_OUTPUT", "REDIRECT", {"--to-ports 15001"});
  IptablesRule raw;  // a model that left target and target_args empty
  raw.chain = "ISTIO_PRERT";
  raw.args = {"-p", "tcp", "-j", "REDIRECT", "--to-ports", "15006-15007"};
  rs.tables.push_back(IptablesTable{"nat", {chain("ISTIO_OUTPUT", {joined}), chain("ISTIO_PRERT", {raw})}});
  auto r = analyzeIstioRules(rs);
  EXPECT_EQ(r.mode, RedirectMode::kRedirect);
  EXPECT_EQ(r.ports, (std::vector<uint16_t>{15001, 15006}));
}

TEST(AnalyzeIstioRules, EmptyDeclaredChainsAreNotRules) {
  IptablesRuleset rs;
  rs.tables.push_back(IptablesTable{"nat", {chain("ISTIO_OUTPUT", {}), chain("ISTIO_PRERT", {})}});
  auto r = analyzeIstioRules(rs);
  EXPECT_FALSE(r.present);
  EXPECT_TRUE(r.chains.empty());
  EXPECT_EQ(r.mode, RedirectMode::kNone);
}

TEST(AnalyzeIstioRules, IstioChainsOutsideNatAndMangleDoNotCount) {
  IptablesRuleset rs;
  rs.tables.push_back(IptablesTable{"filter", {chain("ISTIO_OUTPUT", {rule("ISTIO_OUTPUT", "ACCEPT")})}});
  EXPECT_FALSE(analyzeIstioRules(rs).present);
}

TEST(AnalyzeIstioRules, NoRulesetIsNotCaptured) {
  auto r = analyzeIstioRules(IptablesRuleset{});
  EXPECT_FALSE(r.present);
  EXPECT_FALSE(r.sidecar);
}

TEST(AnalyzeIstioRules, SidecarChainsAreNotAmbient) {
  IptablesRuleset rs;
  rs.tables.push_back(
      IptablesTable{"nat",
                    {chain("ISTIO_INBOUND", {rule("ISTIO_INBOUND", "ISTIO_IN_REDIRECT")}),
                     chain("ISTIO_IN_REDIRECT", {rule("ISTIO_IN_REDIRECT", "REDIRECT", {"--to-ports", "15006"})}),
                     chain("ISTIO_OUTPUT", {rule("ISTIO_OUTPUT", "ISTIO_REDIRECT")}),
                     chain("ISTIO_REDIRECT", {rule("ISTIO_REDIRECT", "REDIRECT", {"--to-ports", "15001"})})}});
  auto r = analyzeIstioRules(rs);
  EXPECT_TRUE(r.sidecar);
  EXPECT_FALSE(r.present);
}

TEST(ZtunnelListenerPorts, PicksListeningZtunnelPortsOnce) {
  std::vector<InetSocket> socks = {listener(15001),
                                   listener(15001, AF_INET6),
                                   listener(15006, AF_INET6),
                                   listener(15008),
                                   listener(8080),
                                   listener(15053),
                                   listener(15006, AF_INET, 1 /* ESTABLISHED */)};
  EXPECT_EQ(ztunnelListenerPorts(socks), (std::vector<uint16_t>{15001, 15006, 15008}));
  EXPECT_TRUE(ztunnelListenerPorts({listener(8080), listener(15006, AF_INET, 1)}).empty());
}

TEST(ClassifyPod, CapturedWhenRulesAndAllListeners) {
  auto v = classifyPod(inspection(analyzeIstioRules(istio124()), std::vector<uint16_t>{15001, 15006, 15008}));
  EXPECT_EQ(v.state, PodState::kCaptured);
  EXPECT_TRUE(v.missing_listeners.empty());
  EXPECT_NE(v.reason.find("REDIRECT to 15001,15006,15053"), std::string::npos) << v.reason;
}

TEST(ClassifyPod, TproxyCaptured) {
  auto v = classifyPod(inspection(analyzeIstioRules(istio123()), std::vector<uint16_t>{15001, 15006, 15008}));
  EXPECT_EQ(v.state, PodState::kCaptured);
  EXPECT_NE(v.reason.find("TPROXY"), std::string::npos) << v.reason;
}

TEST(ClassifyPod, UncapturedWhenNeither) {
  auto v = classifyPod(inspection(analyzeIstioRules(IptablesRuleset{}), std::vector<uint16_t>{}));
  EXPECT_EQ(v.state, PodState::kUncaptured);
  EXPECT_NE(v.reason.find("no HBONE"), std::string::npos);
  EXPECT_FALSE(isBroken(v.state));
}

TEST(ClassifyPod, RulesWithoutAnyListenerIsBroken) {
  auto v = classifyPod(inspection(analyzeIstioRules(istio124()), std::vector<uint16_t>{}));
  EXPECT_EQ(v.state, PodState::kRulesWithoutListeners);
  EXPECT_TRUE(isBroken(v.state));
  EXPECT_EQ(v.missing_listeners, (std::vector<uint16_t>{15001, 15006, 15008}));
  EXPECT_NE(v.reason.find("blackholed"), std::string::npos);
}

TEST(ClassifyPod, RulesWithSomeListenersMissingNamesTheMissingOnes) {
  auto v = classifyPod(inspection(analyzeIstioRules(istio123()), std::vector<uint16_t>{15001, 15006}));
  EXPECT_EQ(v.state, PodState::kRulesWithoutListeners);
  EXPECT_EQ(v.missing_listeners, (std::vector<uint16_t>{15008}));
  EXPECT_NE(v.reason.find("no ztunnel listener on 15008"), std::string::npos) << v.reason;
}

TEST(ClassifyPod, ListenersWithoutRulesIsBroken) {
  auto v = classifyPod(inspection(analyzeIstioRules(IptablesRuleset{}), std::vector<uint16_t>{15001, 15006, 15008}));
  EXPECT_EQ(v.state, PodState::kListenersWithoutRules);
  EXPECT_TRUE(isBroken(v.state));
  EXPECT_NE(v.reason.find("no HBONE"), std::string::npos);
}

TEST(ClassifyPod, OneStrayListenerWithoutRulesIsStillBroken) {
  auto v = classifyPod(inspection(analyzeIstioRules(IptablesRuleset{}), std::vector<uint16_t>{15008}));
  EXPECT_EQ(v.state, PodState::kListenersWithoutRules);
}

TEST(ClassifyPod, SidecarWithEnvoyListenersIsNotBroken) {
  IptablesRuleset rs;
  rs.tables.push_back(IptablesTable{"nat",
                                    {chain("ISTIO_INBOUND", {rule("ISTIO_INBOUND", "ISTIO_IN_REDIRECT")}),
                                     chain("ISTIO_OUTPUT", {rule("ISTIO_OUTPUT", "ISTIO_REDIRECT")})}});
  auto v = classifyPod(inspection(analyzeIstioRules(rs), std::vector<uint16_t>{15001, 15006}));
  EXPECT_EQ(v.state, PodState::kSidecar);
  EXPECT_FALSE(isBroken(v.state));
}

TEST(ClassifyPod, EnterFailureIsUnknownWithTheReason) {
  PodInspection in;
  in.error = "setns /var/run/netns/cni-1: Operation not permitted";
  auto v = classifyPod(in);
  EXPECT_EQ(v.state, PodState::kUnknown);
  EXPECT_EQ(v.reason, in.error);
}

TEST(ClassifyPod, UnreadableRulesOrListenersAreUnknown) {
  PodInspection no_rules = inspection(std::nullopt, std::vector<uint16_t>{15001});
  no_rules.rules_error = "no iptables-save variant could run";
  auto v = classifyPod(no_rules);
  EXPECT_EQ(v.state, PodState::kUnknown);
  EXPECT_NE(v.reason.find("no iptables-save variant could run"), std::string::npos);

  PodInspection no_listeners = inspection(analyzeIstioRules(istio124()), std::nullopt);
  no_listeners.listeners_error = "sock_diag: timed out";
  v = classifyPod(no_listeners);
  EXPECT_EQ(v.state, PodState::kUnknown);
  EXPECT_NE(v.reason.find("sock_diag: timed out"), std::string::npos);
}

// The same analysis on iptables-save output captured from real kernels
// (tests/data/ambient/generate.sh), through the shared parser.
class CapturedRulesets : public ::testing::Test {
 protected:
  static IstioRules analyzeFile(const std::string& name) {
    std::ifstream f(std::string(MESHPROBE_TEST_DATA) + "/ambient/" + name);
    EXPECT_TRUE(f.good()) << name;
    std::stringstream ss;
    ss << f.rdbuf();
    auto parsed = parseIptablesSave(ss.str());
    EXPECT_TRUE(parsed.ok()) << name << ": " << (parsed.ok() ? "" : parsed.error().message);
    return parsed.ok() ? analyzeIstioRules(*parsed) : IstioRules{};
  }
};

TEST_F(CapturedRulesets, Istio124BothBackends) {
  for (const char* f : {"inpod_1_24_redirect_nft.txt", "inpod_1_24_redirect_legacy.txt"}) {
    auto r = analyzeFile(f);
    EXPECT_TRUE(r.present) << f;
    EXPECT_EQ(r.mode, RedirectMode::kRedirect) << f;
    EXPECT_EQ(r.ports, (std::vector<uint16_t>{15001, 15006, 15053})) << f;
  }
}

TEST_F(CapturedRulesets, Istio123BothBackends) {
  for (const char* f : {"inpod_1_23_tproxy_nft.txt", "inpod_1_23_tproxy_legacy.txt"}) {
    auto r = analyzeFile(f);
    EXPECT_TRUE(r.present) << f;
    EXPECT_EQ(r.mode, RedirectMode::kTproxy) << f;
    EXPECT_EQ(r.ports, (std::vector<uint16_t>{15001, 15006, 15008, 15053})) << f;
  }
}

TEST_F(CapturedRulesets, SidecarAndEmpty) {
  auto sidecar = analyzeFile("sidecar_istio_init_nft.txt");
  EXPECT_TRUE(sidecar.sidecar);
  EXPECT_FALSE(sidecar.present);
  for (const char* f : {"empty_nft.txt", "empty_legacy.txt"}) {
    auto r = analyzeFile(f);
    EXPECT_FALSE(r.present) << f;
    EXPECT_FALSE(r.sidecar) << f;
  }
}
