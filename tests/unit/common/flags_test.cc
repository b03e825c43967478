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

// Found by the flags fuzz target: boost::program_options substitutes these placeholders in
// an error's text until none is left, so an argument containing one never returned.
TEST(Flags, ArgumentWithABoostPlaceholderIsRefusedNotLoopedOn) {
  po::options_description desc;
  std::string v;
  desc.add_options()("known", po::value(&v));
  for (const char* bad : {"--x%original_token%so", "--known=%value%", "%canonical_option%"}) {
    const char* argv[] = {"prog", "--known", "ok", bad};
    po::variables_map vm;
    auto r = parseFlags(4, argv, desc, vm);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.error().message.find("argument 3 contains %"), std::string::npos) << r.error().message;
  }
  setenv("MESHPROBE_KNOWN", "a%prefix%b", 1);
  const char* argv[] = {"prog"};
  po::variables_map vm;
  auto r = parseFlags(1, argv, desc, vm);
  unsetenv("MESHPROBE_KNOWN");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("MESHPROBE_KNOWN contains %prefix%"), std::string::npos) << r.error().message;
}
