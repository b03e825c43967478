#include "agent/config.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/support/mtls_pki.h"

namespace meshprobe::agent {
namespace {

Result<ConfigOutcome> parse(std::vector<std::string> args, AgentConfig& config) {
  args.insert(args.begin(), "meshprobe-agent");
  args.push_back("--node-name=n1");  // no hostname or environment lookups
  args.push_back("--node-ip=198.51.100.1");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  return parseAgentConfig(static_cast<int>(argv.size()), argv.data(), config);
}

TEST(AgentConfig, ProbeBudgetDefaultsTo200PerSecond) {
  AgentConfig c;
  ASSERT_TRUE(parse({"--insecure"}, c).ok());
  EXPECT_EQ(c.probe_budget, 200.0);
}

TEST(AgentConfig, ProbeBudgetTakesAPositiveRate) {
  AgentConfig c;
  ASSERT_TRUE(parse({"--insecure", "--probe-budget", "50"}, c).ok());
  EXPECT_EQ(c.probe_budget, 50.0);
  AgentConfig d;
  ASSERT_TRUE(parse({"--insecure", "--probe-budget=0.5"}, d).ok());
  EXPECT_EQ(d.probe_budget, 0.5);
}

TEST(AgentConfig, ProbeBudgetRejectsZeroNegativeAndText) {
  for (const char* bad : {"0", "-5", "abc", "10/s", "inf", "nan", ""}) {
    AgentConfig c;
    auto r = parse({std::string("--probe-budget=") + bad}, c);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.error().message.find("--probe-budget"), std::string::npos) << r.error().message;
  }
}

bool mentions(const Result<ConfigOutcome>& r, const std::string& what) {
  return !r.ok() && r.error().message.find(what) != std::string::npos;
}

TEST(AgentConfig, DaemonNeedsProbeKeyUnlessInsecure) {
  AgentConfig c;
  auto r = parse({}, c);
  EXPECT_TRUE(mentions(r, "--probe-key-file")) << (r.ok() ? "accepted" : r.error().message);
  EXPECT_TRUE(mentions(r, "--insecure"));
  AgentConfig keyed;
  EXPECT_TRUE(parse({"--probe-key-file", "/etc/meshprobe/probe-key/key"}, keyed).ok());
  AgentConfig insecure;
  EXPECT_TRUE(parse({"--insecure"}, insecure).ok());
  AgentConfig once;  // the node doctor reads the node only
  EXPECT_TRUE(parse({"--once"}, once).ok());
}

TEST(AgentConfig, AggregatorNeedsMutualTlsUnlessInsecure) {
  const std::vector<std::string> keyed = {"--aggregator", "10.0.0.1:9470", "--probe-key-file", "/k"};
  AgentConfig c;
  auto r = parse(keyed, c);
  for (const char* flag : {"--aggregator-ca", "--tls-cert", "--tls-key", "--insecure"})
    EXPECT_TRUE(mentions(r, flag)) << flag << ": " << (r.ok() ? "accepted" : r.error().message);
  using meshprobe::test::mtlsFile;
  auto tls = keyed;
  tls.insert(tls.end(), {"--aggregator-ca", mtlsFile("ca.pem"), "--tls-cert", mtlsFile("node1.pem"), "--tls-key",
                         mtlsFile("node1.key"), "--tls-server-name", "meshprobe-aggregator", "--tls-refresh", "30s"});
  AgentConfig t;
  auto ok = parse(tls, t);
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_TRUE(t.tls.enabled());
  EXPECT_EQ(t.tls.server_name, "meshprobe-aggregator");
  EXPECT_EQ(t.tls.refresh, std::chrono::seconds(30));
  AgentConfig insecure;
  EXPECT_TRUE(parse({"--aggregator", "10.0.0.1:9470", "--insecure"}, insecure).ok());
  auto both = tls;
  both.push_back("--insecure");
  AgentConfig b;
  EXPECT_TRUE(mentions(parse(both, b), "--insecure cannot be combined"));
}

}  // namespace
}  // namespace meshprobe::agent
