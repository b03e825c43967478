#include "agent/ambient/inspector.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/support/fakes/command_runner.h"
#include "tests/support/fakes/sock_diag.h"

using namespace meshprobe;
using namespace meshprobe::agent;
using meshprobe::test::FakeCommandRunner;
using meshprobe::test::FakeSockDiag;
using namespace std::chrono_literals;

namespace {

std::string readData(const std::string& name) {
  std::ifstream f(std::string(MESHPROBE_TEST_DATA) + "/ambient/" + name);
  EXPECT_TRUE(f.good()) << name;
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

CommandOutput ran(std::string out) {
  CommandOutput o;
  o.exit_code = 0;
  o.out = std::move(out);
  return o;
}

// A pod's sock_diag: nothing answers, or TCP listeners on `ports`.
constexpr const char* kNoAnswer = "sock_diag: no answer";
std::vector<InetSocket> listeningOn(const std::vector<uint16_t>& ports) {
  std::vector<InetSocket> out;
  for (auto p : ports) {
    InetSocket s;
    s.state = 10;
    s.local_port = p;
    out.push_back(s);
  }
  return out;
}

auto soon() { return std::chrono::steady_clock::now() + 5s; }

}  // namespace

TEST(ReadIstioRules, NftWithIstioChainsIsUsedAndLegacyNotRun) {
  FakeCommandRunner cmd(FakeCommandRunner::kTimeoutRequired);  // canned output per binary
  cmd.by_program["iptables-nft-save"] = ran(readData("inpod_1_24_redirect_nft.txt"));
  cmd.by_program["iptables-legacy-save"] = ran("");
  auto r = readIstioRules(cmd, soon());
  ASSERT_TRUE(r.rules) << r.error;
  EXPECT_EQ(r.tool, "iptables-nft-save");
  EXPECT_TRUE(r.rules->present);
  EXPECT_EQ(r.rules->mode, RedirectMode::kRedirect);
  EXPECT_EQ(cmd.programs, (std::vector<std::string>{"iptables-nft-save"}));
}

TEST(ReadIstioRules, LegacyIsUsedWhenOnlyItHoldsIstioChains) {
  FakeCommandRunner cmd(FakeCommandRunner::kTimeoutRequired);  // canned output per binary
  cmd.by_program["iptables-nft-save"] = ran(readData("empty_nft.txt"));
  cmd.by_program["iptables-legacy-save"] = ran(readData("inpod_1_23_tproxy_legacy.txt"));
  auto r = readIstioRules(cmd, soon());
  ASSERT_TRUE(r.rules) << r.error;
  EXPECT_EQ(r.tool, "iptables-legacy-save");
  EXPECT_EQ(r.rules->mode, RedirectMode::kTproxy);
  EXPECT_EQ(r.notes, (std::vector<std::string>{"iptables-nft-save: no ISTIO_ chains"}));
}

TEST(ReadIstioRules, NeitherHoldsIstioChainsMeansAnUncapturedPod) {
  FakeCommandRunner cmd(FakeCommandRunner::kTimeoutRequired);  // canned output per binary
  cmd.by_program["iptables-nft-save"] = ran(readData("empty_nft.txt"));
  cmd.by_program["iptables-legacy-save"] = ran(readData("empty_legacy.txt"));
  auto r = readIstioRules(cmd, soon());
  ASSERT_TRUE(r.rules) << r.error;
  EXPECT_EQ(r.tool, "iptables-nft-save");
  EXPECT_FALSE(r.rules->present);
  EXPECT_EQ(cmd.programs.size(), 2u);
}

TEST(ReadIstioRules, AMissingVariantIsNotedAndTheOtherUsed) {
  FakeCommandRunner cmd(FakeCommandRunner::kTimeoutRequired);  // canned output per binary
  cmd.by_program["iptables-legacy-save"] = ran(readData("inpod_1_24_redirect_legacy.txt"));
  auto r = readIstioRules(cmd, soon());
  ASSERT_TRUE(r.rules) << r.error;
  EXPECT_EQ(r.tool, "iptables-legacy-save");
  EXPECT_EQ(r.notes, (std::vector<std::string>{"iptables-nft-save: not found"}));
}

TEST(ReadIstioRules, PlainIptablesSaveWhenNeitherVariantIsInstalled) {
  FakeCommandRunner cmd(FakeCommandRunner::kTimeoutRequired);  // canned output per binary
  cmd.by_program["iptables-save"] = ran(readData("inpod_1_24_redirect_nft.txt"));
  auto r = readIstioRules(cmd, soon());
  ASSERT_TRUE(r.rules) << r.error;
  EXPECT_EQ(r.tool, "iptables-save");
  EXPECT_EQ(cmd.programs, (std::vector<std::string>{"iptables-nft-save", "iptables-legacy-save", "iptables-save"}));
}

TEST(ReadIstioRules, NoBinaryAtAllIsAnErrorListingEachAttempt) {
  FakeCommandRunner cmd(FakeCommandRunner::kTimeoutRequired);  // canned output per binary
  auto r = readIstioRules(cmd, soon());
  EXPECT_FALSE(r.rules);
  EXPECT_EQ(r.error,
            "no iptables-save variant could run: iptables-nft-save: not found; iptables-legacy-save: not found; "
            "iptables-save: not found");
}

TEST(ReadIstioRules, FailingVariantsAreDescribed) {
  FakeCommandRunner cmd(FakeCommandRunner::kTimeoutRequired);  // canned output per binary
  CommandOutput eperm;
  eperm.exit_code = 1;
  eperm.err = "iptables-nft-save v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied\n";
  cmd.by_program["iptables-nft-save"] = eperm;
  CommandOutput slow;
  slow.timed_out = true;
  cmd.by_program["iptables-legacy-save"] = slow;
  auto r = readIstioRules(cmd, soon());
  EXPECT_FALSE(r.rules);
  EXPECT_NE(r.error.find("iptables-nft-save: exited 1: iptables-nft-save v1.8.9 (nf_tables): Could not fetch rule "
                         "set generation id: Permission denied"),
            std::string::npos)
      << r.error;
  EXPECT_NE(r.error.find("iptables-legacy-save: timed out"), std::string::npos) << r.error;
  // Not every variant was "not found": the plain fallback is not tried.
  EXPECT_EQ(cmd.programs.size(), 2u);
}

TEST(ReadIstioRules, UnparsableOutputIsAnErrorNamingTheTool) {
  FakeCommandRunner cmd(FakeCommandRunner::kTimeoutRequired);  // canned output per binary
  cmd.by_program["iptables-nft-save"] = ran("*nat\n:ISTIO_OUTPUT - [0:0]\n-A ISTIO_OUTPUT -j\nthis is not iptables\n");
  auto r = readIstioRules(cmd, soon());
  EXPECT_FALSE(r.rules);
  EXPECT_NE(r.error.find("iptables-nft-save output could not be parsed"), std::string::npos) << r.error;
}

TEST(ReadIstioRules, PastTheDeadlineNothingRuns) {
  FakeCommandRunner cmd(FakeCommandRunner::kTimeoutRequired);  // canned output per binary
  auto r = readIstioRules(cmd, std::chrono::steady_clock::now() - 1ms);
  EXPECT_FALSE(r.rules);
  EXPECT_TRUE(cmd.programs.empty());
  EXPECT_NE(r.error.find("out of time"), std::string::npos) << r.error;
}

TEST(KernelPodNetnsInspector, RegularFileIsReportedWithThePathNotACrash) {
  auto dir = std::filesystem::path(::testing::TempDir()) / "mph-ambient-inspector-test";
  std::filesystem::create_directories(dir);
  auto file = (dir / "cni-fake").string();
  std::ofstream(file) << "x\n";
  FakeCommandRunner cmd(FakeCommandRunner::kTimeoutRequired);  // canned output per binary
  FakeSockDiag diag{Error{kNoAnswer}};
  auto inspector = makeKernelPodNetnsInspector(cmd, diag);
  auto in = inspector->inspect(PodNetns{"cni-fake", file, {}}, 2s);
  std::filesystem::remove_all(dir);
  EXPECT_EQ(in.error_errno, EINVAL);
  EXPECT_NE(in.error.find("setns " + file), std::string::npos) << in.error;
  EXPECT_TRUE(cmd.programs.empty()) << "nothing may run outside the pod's namespace";
  EXPECT_EQ(classifyPod(in).state, PodState::kUnknown);
}

TEST(KernelPodNetnsInspector, VanishedNetnsIsEnoent) {
  FakeCommandRunner cmd(FakeCommandRunner::kTimeoutRequired);  // canned output per binary
  FakeSockDiag diag{Error{kNoAnswer}};
  auto in = makeKernelPodNetnsInspector(cmd, diag)->inspect(PodNetns{"cni-gone", "/nonexistent/cni-gone", {}}, 2s);
  EXPECT_EQ(in.error_errno, ENOENT);
  EXPECT_NE(in.error.find("/nonexistent/cni-gone"), std::string::npos) << in.error;
}

TEST(KernelPodNetnsInspector, ReadsRulesAndListenersFromInsideTheNamespace) {
  FakeCommandRunner cmd(FakeCommandRunner::kTimeoutRequired);  // canned output per binary
  cmd.by_program["iptables-nft-save"] = ran(readData("inpod_1_24_redirect_nft.txt"));
  FakeSockDiag diag{Error{kNoAnswer}};
  diag.tcp_listeners = listeningOn({15001, 15006, 15008, 22});
  auto in = makeKernelPodNetnsInspector(cmd, diag)->inspect(PodNetns{"self", "/proc/self/ns/net", {}}, 2s);
  if (in.error_errno == EPERM) GTEST_SKIP() << "needs CAP_SYS_ADMIN";
  ASSERT_TRUE(in.error.empty()) << in.error;
  ASSERT_TRUE(in.rules);
  EXPECT_EQ(in.iptables_tool, "iptables-nft-save");
  ASSERT_TRUE(in.listeners);
  EXPECT_EQ(*in.listeners, (std::vector<uint16_t>{15001, 15006, 15008}));
  EXPECT_EQ(classifyPod(in).state, PodState::kCaptured);
}

TEST(KernelPodNetnsInspector, ListenerReadFailureIsKept) {
  FakeCommandRunner cmd(FakeCommandRunner::kTimeoutRequired);  // canned output per binary
  cmd.by_program["iptables-nft-save"] = ran(readData("inpod_1_24_redirect_nft.txt"));
  FakeSockDiag diag{Error{kNoAnswer}};  // answers with an error
  auto in = makeKernelPodNetnsInspector(cmd, diag)->inspect(PodNetns{"self", "/proc/self/ns/net", {}}, 2s);
  if (in.error_errno == EPERM) GTEST_SKIP() << "needs CAP_SYS_ADMIN";
  EXPECT_FALSE(in.listeners);
  EXPECT_EQ(in.listeners_error, "sock_diag: no answer");
  EXPECT_EQ(classifyPod(in).state, PodState::kUnknown);
}

namespace {

// The kernel's ruleset fingerprint of a pod namespace, as the test sets it.
class FakeGeneration final : public RulesetGeneration {
 public:
  Result<uint64_t> fingerprint() override {
    if (fail) return Error{"nf_tables generation (NFT_MSG_GETGEN): Operation not permitted", EPERM};
    return value;
  }
  uint64_t value = 1;
  bool fail = false;
};

struct ReusedRulesTest : ::testing::Test {
  FakeCommandRunner cmd;
  FakeGeneration gen;
  ReusedRules reused;
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  void SetUp() override {
    cmd.by_program["iptables-nft-save"] = ran(readData("inpod_1_24_redirect_nft.txt"));
    cmd.by_program["iptables-legacy-save"] = ran("");
  }
  RulesReading read(const std::string& key, std::chrono::seconds after) {
    return reused.read(key, gen, cmd, t0 + after, soon());
  }
};

}  // namespace

TEST_F(ReusedRulesTest, UnchangedRulesAreNotReadAgainChangedOnesAre) {
  auto first = read("/var/run/netns/cni-a 4:1", 0s);
  ASSERT_TRUE(first.rules) << first.error;
  ASSERT_EQ(cmd.calls.size(), 1u);
  auto again = read("/var/run/netns/cni-a 4:1", 2s);
  EXPECT_EQ(cmd.calls.size(), 1u) << "same fingerprint: no iptables-save";
  ASSERT_TRUE(again.rules);
  EXPECT_EQ(again.tool, first.tool);
  EXPECT_EQ(again.rules->mode, first.rules->mode);
  EXPECT_TRUE(again.rules->present);

  // istio-cni removes its rules: the kernel's fingerprint moves, the new rules are read.
  cmd.by_program["iptables-nft-save"] = ran(readData("empty_nft.txt"));
  gen.value = 2;
  auto removed = read("/var/run/netns/cni-a 4:1", 4s);
  EXPECT_EQ(cmd.calls.size(), 3u);  // both variants: neither holds ISTIO_ chains now
  ASSERT_TRUE(removed.rules);
  EXPECT_FALSE(removed.rules->present);
}

TEST_F(ReusedRulesTest, EachNamespaceHasItsOwnReading) {
  read("/var/run/netns/cni-a 4:1", 0s);
  read("/var/run/netns/cni-b 4:2", 0s);
  EXPECT_EQ(cmd.calls.size(), 2u);
  EXPECT_EQ(reused.size(), 2u);
  reused.retain({"/var/run/netns/cni-b 4:2"});  // pod a is gone
  EXPECT_EQ(reused.size(), 1u);
  read("/var/run/netns/cni-a 4:1", 1s);
  EXPECT_EQ(cmd.calls.size(), 3u) << "a forgotten namespace is read again";
}

TEST_F(ReusedRulesTest, ReadAgainAfterTheLongestReuse) {
  read("k", 0s);
  read("k", kPodRulesRereadEvery - 1s);
  EXPECT_EQ(cmd.calls.size(), 1u);
  read("k", kPodRulesRereadEvery);
  EXPECT_EQ(cmd.calls.size(), 2u);
}

TEST_F(ReusedRulesTest, WithoutAFingerprintOrAfterAFailureEveryRoundReads) {
  gen.fail = true;
  read("k", 0s);
  read("k", 1s);
  EXPECT_EQ(cmd.calls.size(), 2u) << "unknown fingerprint: read every time";
  EXPECT_EQ(reused.size(), 0u);

  gen.fail = false;
  cmd.by_program["iptables-nft-save"] = ran(readData("empty_nft.txt"));
  CommandOutput hung;
  hung.timed_out = true;
  hung.exit_code = -1;
  cmd.by_program["iptables-legacy-save"] = hung;
  auto r = read("k", 2s);
  ASSERT_TRUE(r.rules) << r.error;  // the nft variant ran, the legacy one timed out
  read("k", 3s);
  EXPECT_EQ(reused.size(), 0u) << "a reading with a timed-out variant is not complete";
  EXPECT_EQ(cmd.calls.size(), 6u);
}

TEST(InspectCurrentNetns, TheRulesComeFromTheGivenSource) {
  FakeCommandRunner cmd;
  FakeSockDiag diag;
  AddressSource none = [](std::chrono::steady_clock::time_point) -> Result<std::vector<AddressInfo>> {
    return std::vector<AddressInfo>{};
  };
  int asked = 0;
  RulesSource source = [&asked](std::chrono::steady_clock::time_point) {
    ++asked;
    RulesReading r;
    r.error = "from the source";
    return r;
  };
  PodInspection in = inspectCurrentNetns(cmd, diag, none, soon(), source);
  EXPECT_EQ(asked, 1);
  EXPECT_EQ(in.rules_error, "from the source");
  EXPECT_TRUE(cmd.calls.empty());
}
