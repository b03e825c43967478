#include "common/flags.h"

#include <gtest/gtest.h>
#include <stdlib.h>

namespace po = boost::program_options;
using namespace meshprobe;

TEST(Flags, EnvNameIsPrefixedUpperSnakeCase) {
  EXPECT_EQ(envNameForFlag("node-name"), "MESHPROBE_NODE_NAME");
  EXPECT_EQ(envNameForFlag("vxlan-port"), "MESHPROBE_VXLAN_PORT");
}

TEST(Flags, EnvironmentFillsFlagsAndCommandLineWins) {
  po::options_description desc;
  std::string a, b;
  desc.add_options()("alpha-one", po::value(&a))("beta-two", po::value(&b));
  setenv("MESHPROBE_ALPHA_ONE", "from-env", 1);
  setenv("MESHPROBE_BETA_TWO", "env-b", 1);
  const char* argv[] = {"prog", "--beta-two", "cli-b"};
  po::variables_map vm;
  auto r = parseFlags(3, argv, desc, vm);
  unsetenv("MESHPROBE_ALPHA_ONE");
  unsetenv("MESHPROBE_BETA_TWO");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(a, "from-env");
  EXPECT_EQ(b, "cli-b");
}

TEST(Flags, UnknownFlagIsAnErrorNamingIt) {
  po::options_description desc;
  desc.add_options()("known", "x");
  const char* argv[] = {"prog", "--bogus"};
  po::variables_map vm;
  auto r = parseFlags(2, argv, desc, vm);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("bogus"), std::string::npos);
}
