#include "agent/ambient/inspector.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

using namespace meshprobe;
using namespace meshprobe::agent;
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

CommandOutput missing() {
  CommandOutput o;
  o.not_found = true;
  return o;
}

// Canned output per binary; any other binary is "not found". Records what ran.
class FakeCommands final : public CommandRunner {
 public:
  std::map<std::string, CommandOutput> outputs;
  std::vector<std::string> calls;

  CommandOutput run(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) override {
    std::lock_guard lock(mu_);
    calls.push_back(argv.at(0));
    EXPECT_GT(timeout.count(), 0);
    auto it = outputs.find(argv.at(0));
    return it == outputs.end() ? missing() : it->second;
  }

 private:
  std::mutex mu_;
};

class FakeSockDiag final : public SockDiag {
 public:
  std::vector<uint16_t> listening;
  Result<std::vector<InetSocket>> udpSockets() override { return Error{"unused"}; }
  Result<std::vector<InetSocket>> tcpListeners() override {
    if (listening.empty()) return Error{"sock_diag: no answer"};
    std::vector<InetSocket> out;
    for (auto p : listening) {
      InetSocket s;
      s.state = 10;
      s.local_port = p;
      out.push_back(s);
    }
    return out;
  }
  Result<std::vector<UnixSocket>> unixSockets() override { return Error{"unused"}; }
};

auto soon() { return std::chrono::steady_clock::now() + 5s; }

}  // namespace

TEST(ReadIstioRules, NftWithIstioChainsIsUsedAndLegacyNotRun) {
  FakeCommands cmd;
  cmd.outputs["iptables-nft-save"] = ran(readData("inpod_1_24_redirect_nft.txt"));
  cmd.outputs["iptables-legacy-save"] = ran("");
  auto r = readIstioRules(cmd, soon());
  ASSERT_TRUE(r.rules) << r.error;
  EXPECT_EQ(r.tool, "iptables-nft-save");
  EXPECT_TRUE(r.rules->present);
  EXPECT_EQ(r.rules->mode, RedirectMode::kRedirect);
  EXPECT_EQ(cmd.calls, (std::vector<std::string>{"iptables-nft-save"}));
}

TEST(ReadIstioRules, LegacyIsUsedWhenOnlyItHoldsIstioChains) {
  FakeCommands cmd;
  cmd.outputs["iptables-nft-save"] = ran(readData("empty_nft.txt"));
  cmd.outputs["iptables-legacy-save"] = ran(readData("inpod_1_23_tproxy_legacy.txt"));
  auto r = readIstioRules(cmd, soon());
  ASSERT_TRUE(r.rules) << r.error;
  EXPECT_EQ(r.tool, "iptables-legacy-save");
  EXPECT_EQ(r.rules->mode, RedirectMode::kTproxy);
  EXPECT_EQ(r.notes, (std::vector<std::string>{"iptables-nft-save: no ISTIO_ chains"}));
}

TEST(ReadIstioRules, NeitherHoldsIstioChainsMeansAnUncapturedPod) {
  FakeCommands cmd;
  cmd.outputs["iptables-nft-save"] = ran(readData("empty_nft.txt"));
  cmd.outputs["iptables-legacy-save"] = ran(readData("empty_legacy.txt"));
  auto r = readIstioRules(cmd, soon());
  ASSERT_TRUE(r.rules) << r.error;
  EXPECT_EQ(r.tool, "iptables-nft-save");
  EXPECT_FALSE(r.rules->present);
  EXPECT_EQ(cmd.calls.size(), 2u);
}

TEST(ReadIstioRules, AMissingVariantIsNotedAndTheOtherUsed) {
  FakeCommands cmd;
  cmd.outputs["iptables-legacy-save"] = ran(readData("inpod_1_24_redirect_legacy.txt"));
  auto r = readIstioRules(cmd, soon());
  ASSERT_TRUE(r.rules) << r.error;
  EXPECT_EQ(r.tool, "iptables-legacy-save");
  EXPECT_EQ(r.notes, (std::vector<std::string>{"iptables-nft-save: not found"}));
}

TEST(ReadIstioRules, PlainIptablesSaveWhenNeitherVariantIsInstalled) {
  FakeCommands cmd;
  cmd.outputs["iptables-save"] = ran(readData("inpod_1_24_redirect_nft.txt"));
  auto r = readIstioRules(cmd, soon());
  ASSERT_TRUE(r.rules) << r.error;
  EXPECT_EQ(r.tool, "iptables-save");
  EXPECT_EQ(cmd.calls, (std::vector<std::string>{"iptables-nft-save", "iptables-legacy-save", "iptables-save"}));
}

TEST(ReadIstioRules, NoBinaryAtAllIsAnErrorListingEachAttempt) {
  FakeCommands cmd;
  auto r = readIstioRules(cmd, soon());
  EXPECT_FALSE(r.rules);
  EXPECT_EQ(r.error,
            "no iptables-save variant could run: iptables-nft-save: not found; iptables-legacy-save: not found; "
            "iptables-save: not found");
}

TEST(ReadIstioRules, FailingVariantsAreDescribed) {
  FakeCommands cmd;
  CommandOutput eperm;
  eperm.exit_code = 1;
  eperm.err = "iptables-nft-save v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied\n";
  cmd.outputs["iptables-nft-save"] = eperm;
  CommandOutput slow;
  slow.timed_out = true;
  cmd.outputs["iptables-legacy-save"] = slow;
  auto r = readIstioRules(cmd, soon());
  EXPECT_FALSE(r.rules);
  EXPECT_NE(r.error.find("iptables-nft-save: exited 1: iptables-nft-save v1.8.9 (nf_tables): Could not fetch rule "
                         "set generation id: Permission denied"),
            std::string::npos)
      << r.error;
  EXPECT_NE(r.error.find("iptables-legacy-save: timed out"), std::string::npos) << r.error;
  // Not every variant was "not found": the plain fallback is not tried.
  EXPECT_EQ(cmd.calls.size(), 2u);
}

TEST(ReadIstioRules, UnparsableOutputIsAnErrorNamingTheTool) {
  FakeCommands cmd;
  cmd.outputs["iptables-nft-save"] = ran("*nat\n:ISTIO_OUTPUT - [0:0]\n-A ISTIO_OUTPUT -j\nthis is not iptables\n");
  auto r = readIstioRules(cmd, soon());
  EXPECT_FALSE(r.rules);
  EXPECT_NE(r.error.find("iptables-nft-save output could not be parsed"), std::string::npos) << r.error;
}

TEST(ReadIstioRules, PastTheDeadlineNothingRuns) {
  FakeCommands cmd;
  auto r = readIstioRules(cmd, std::chrono::steady_clock::now() - 1ms);
  EXPECT_FALSE(r.rules);
  EXPECT_TRUE(cmd.calls.empty());
  EXPECT_NE(r.error.find("out of time"), std::string::npos) << r.error;
}

TEST(KernelPodNetnsInspector, RegularFileIsReportedWithThePathNotACrash) {
  auto dir = std::filesystem::path(::testing::TempDir()) / "mph-ambient-inspector-test";
  std::filesystem::create_directories(dir);
  auto file = (dir / "cni-fake").string();
  std::ofstream(file) << "x\n";
  FakeCommands cmd;
  FakeSockDiag diag;
  auto inspector = makeKernelPodNetnsInspector(cmd, diag);
  auto in = inspector->inspect(PodNetns{"cni-fake", file, {}}, 2s);
  std::filesystem::remove_all(dir);
  EXPECT_EQ(in.error_errno, EINVAL);
  EXPECT_NE(in.error.find("setns " + file), std::string::npos) << in.error;
  EXPECT_TRUE(cmd.calls.empty()) << "nothing may run outside the pod's namespace";
  EXPECT_EQ(classifyPod(in).state, PodState::kUnknown);
}

TEST(KernelPodNetnsInspector, VanishedNetnsIsEnoent) {
  FakeCommands cmd;
  FakeSockDiag diag;
  auto in = makeKernelPodNetnsInspector(cmd, diag)->inspect(PodNetns{"cni-gone", "/nonexistent/cni-gone", {}}, 2s);
  EXPECT_EQ(in.error_errno, ENOENT);
  EXPECT_NE(in.error.find("/nonexistent/cni-gone"), std::string::npos) << in.error;
}

TEST(KernelPodNetnsInspector, ReadsRulesAndListenersFromInsideTheNamespace) {
  FakeCommands cmd;
  cmd.outputs["iptables-nft-save"] = ran(readData("inpod_1_24_redirect_nft.txt"));
  FakeSockDiag diag;
  diag.listening = {15001, 15006, 15008, 22};
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
  FakeCommands cmd;
  cmd.outputs["iptables-nft-save"] = ran(readData("inpod_1_24_redirect_nft.txt"));
  FakeSockDiag diag;  // answers with an error
  auto in = makeKernelPodNetnsInspector(cmd, diag)->inspect(PodNetns{"self", "/proc/self/ns/net", {}}, 2s);
  if (in.error_errno == EPERM) GTEST_SKIP() << "needs CAP_SYS_ADMIN";
  EXPECT_FALSE(in.listeners);
  EXPECT_EQ(in.listeners_error, "sock_diag: no answer");
  EXPECT_EQ(classifyPod(in).state, PodState::kUnknown);
}
