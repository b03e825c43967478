// Opt-in sanity check against the real kernel, run by hand as root:
//   MESHPROBE_AMBIENT_SANITY=1 build/tests/unit_ambient --gtest_filter='PrivilegedSanity.*'
// It creates four network namespaces (mph-ambient-*), loads captured Istio in-pod rules
// with iptables-restore (nft and legacy), starts python3 listeners on 15001/15006/15008
// where a "ztunnel" is wanted, and inspects them with the kernel seams (setns thread,
// iptables-save, sock_diag). Everything is removed afterwards. Skipped unless asked for:
// the e2e suite (tests/e2e) is where the datapath is proven in CI.

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>

#include "agent/ambient/inspector.h"
#include "agent/checks/ambient_redirection_check.h"

using namespace meshprobe;
using namespace meshprobe::agent;
using namespace std::chrono_literals;

namespace {

const char* kNamespaces[] = {"mph-ambient-cap", "mph-ambient-rules", "mph-ambient-lis", "mph-ambient-none"};

int sh(const std::string& cmd) { return std::system(cmd.c_str()); }

std::string pidFile(const std::string& ns) { return "/tmp/" + ns + ".listener.pid"; }

// Listens on the ztunnel ports inside `ns`; returns once the sockets are listening
// (the parent exits after listen(), the child keeps them open until killed).
bool startListeners(const std::string& ns) {
  std::string py =
      "import os,socket,signal\n"
      "socks=[]\n"
      "for p in (15001,15006,15008):\n"
      "  s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1); s.bind(('0.0.0.0',p)); "
      "s.listen(); socks.append(s)\n"
      "pid=os.fork()\n"
      "if pid:\n"
      "  open('" +
      pidFile(ns) +
      "','w').write(str(pid)); os._exit(0)\n"
      "signal.pause()\n";
  std::ofstream("/tmp/" + ns + ".listener.py") << py;
  return sh("ip netns exec " + ns + " python3 /tmp/" + ns + ".listener.py") == 0;
}

void stopListeners(const std::string& ns) {
  std::ifstream f(pidFile(ns));
  pid_t pid = 0;
  if (f >> pid && pid > 1) ::kill(pid, SIGTERM);  // only the listener this test started
  std::remove(pidFile(ns).c_str());
  std::remove(("/tmp/" + ns + ".listener.py").c_str());
}

class PrivilegedSanity : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* on = std::getenv("MESHPROBE_AMBIENT_SANITY");
    if (on == nullptr || std::string(on) != "1") GTEST_SKIP() << "set MESHPROBE_AMBIENT_SANITY=1 (root) to run";
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    TearDown();
    const std::string data = std::string(MESHPROBE_TEST_DATA) + "/ambient/";
    for (const char* ns : kNamespaces) {
      ASSERT_EQ(sh(std::string("ip netns add ") + ns + " && ip -n " + ns + " link set lo up"), 0) << ns;
    }
    ASSERT_EQ(sh("ip netns exec mph-ambient-cap iptables-nft-restore < " + data + "inpod_1_24_redirect_nft.txt"), 0);
    ASSERT_EQ(sh("ip netns exec mph-ambient-rules iptables-legacy-restore < " + data + "inpod_1_23_tproxy_legacy.txt"),
              0);
    ASSERT_TRUE(startListeners("mph-ambient-cap"));
    ASSERT_TRUE(startListeners("mph-ambient-lis"));
  }
  void TearDown() override {
    for (const char* ns : kNamespaces) {
      stopListeners(ns);
      sh(std::string("ip netns del ") + ns + " 2>/dev/null");
    }
  }
};

}  // namespace

TEST_F(PrivilegedSanity, KernelInspectionClassifiesEachPod) {
  auto sock_diag = makeKernelSockDiag(2000ms);
  auto commands = makeProcessCommandRunner();
  auto inspector = makeKernelPodNetnsInspector(*commands, *sock_diag);
  const std::map<std::string, PodState> want = {{"mph-ambient-cap", PodState::kCaptured},
                                                {"mph-ambient-rules", PodState::kRulesWithoutListeners},
                                                {"mph-ambient-lis", PodState::kListenersWithoutRules},
                                                {"mph-ambient-none", PodState::kUncaptured}};
  std::vector<PodReport> reports;
  for (const auto& [ns, state] : want) {
    PodReport r;
    r.pod = PodNetns{ns, "/var/run/netns/" + ns, {}};
    r.inspection = inspector->inspect(r.pod, 3s);
    r.verdict = classifyPod(r.inspection);
    EXPECT_EQ(podStateName(r.verdict.state), podStateName(state)) << ns << ": " << r.verdict.reason;
    reports.push_back(std::move(r));
  }
  EXPECT_EQ(reports[0].inspection.iptables_tool, "iptables-nft-save");     // mph-ambient-cap
  EXPECT_EQ(reports[3].inspection.iptables_tool, "iptables-legacy-save");  // mph-ambient-rules
  EXPECT_EQ(reports[3].inspection.rules->mode, RedirectMode::kTproxy);

  auto result = evaluateAmbientRedirection(NetnsSources{"/var/run/netns", "", "", ""}, {}, reports);
  EXPECT_EQ(result.status, CheckStatus::kFail);
  EXPECT_EQ(result.findings.size(), 2u);
  std::cout << result.summary << "\n" << result.details.dump(2) << "\n";
}

TEST_F(PrivilegedSanity, TheCheckOverANetnsDirOfBindMounts) {
  // A netns dir holding only this test's namespaces, and a host root without /proc.
  const std::string root = "/tmp/mph-ambient-sanity-root";
  sh("rm -rf " + root + " && mkdir -p " + root + "/netns " + root + "/host");
  for (const char* ns : kNamespaces) {
    const std::string target = root + "/netns/" + ns;
    ASSERT_EQ(sh("touch " + target + " && mount --bind /var/run/netns/" + ns + " " + target), 0) << ns;
  }
  AgentConfig config;
  config.netns_dir = root + "/netns";
  config.host_root = root + "/host";
  config.check_timeout = 5s;
  auto sock_diag = makeKernelSockDiag(2000ms);
  auto commands = makeProcessCommandRunner();
  AmbientRedirectionCheck check(config, *commands, *sock_diag);
  const auto start = std::chrono::steady_clock::now();
  auto r = check.run();
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  for (const char* ns : kNamespaces) sh("umount " + root + "/netns/" + ns);
  sh("rm -rf " + root);

  EXPECT_EQ(r.status, CheckStatus::kFail);
  EXPECT_EQ(r.details["counts"]["captured"], 1);
  EXPECT_EQ(r.details["counts"]["broken"], 2);
  EXPECT_EQ(r.details["counts"]["uncaptured"], 1);
  std::cout << "took " << took.count() << "ms: " << r.summary << "\n";
}
