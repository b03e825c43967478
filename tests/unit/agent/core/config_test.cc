#include "agent/config.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

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
  ASSERT_TRUE(parse({}, c).ok());
  EXPECT_EQ(c.probe_budget, 200.0);
}

TEST(AgentConfig, ProbeBudgetTakesAPositiveRate) {
  AgentConfig c;
  ASSERT_TRUE(parse({"--probe-budget", "50"}, c).ok());
  EXPECT_EQ(c.probe_budget, 50.0);
  AgentConfig d;
  ASSERT_TRUE(parse({"--probe-budget=0.5"}, d).ok());
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

}  // namespace
}  // namespace meshprobe::agent
