#include "agent/checks/ambient_redirection_check.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>

#include "tests/support/fakes/command_runner.h"
#include "tests/support/fakes/sock_diag.h"

using namespace meshprobe;
using namespace meshprobe::agent;
using meshprobe::test::FakeCommandRunner;
using meshprobe::test::FakeSockDiag;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

IstioRules ambientRules() {
  IstioRules r;
  r.present = true;
  r.mode = RedirectMode::kRedirect;
  r.chains = {"nat/ISTIO_OUTPUT", "nat/ISTIO_PRERT"};
  r.ports = {15001, 15006};
  r.rule_count = 7;
  return r;
}

PodInspection seen(bool rules, std::vector<uint16_t> listeners) {
  PodInspection in;
  in.rules = rules ? ambientRules() : IstioRules{};
  in.iptables_tool = "iptables-nft-save";
  in.listeners = std::move(listeners);
  return in;
}

PodInspection captured() { return seen(true, {15001, 15006, 15008}); }
PodInspection uncaptured() { return seen(false, {}); }
PodInspection rulesOnly() { return seen(true, {}); }
PodInspection listenersOnly() { return seen(false, {15001, 15006, 15008}); }
PodInspection cannotEnter(const std::string& path) {
  PodInspection in;
  in.error = "setns " + path +
             ": Operation not permitted (joining a network namespace needs CAP_SYS_ADMIN: run the "
             "agent as root)";
  in.error_errno = EPERM;
  return in;
}

PodReport report(const std::string& name, PodInspection in) {
  PodReport r;
  r.pod = PodNetns{name, "/var/run/netns/" + name, {}};
  r.inspection = std::move(in);
  r.verdict = classifyPod(r.inspection);
  return r;
}

const NetnsSources kSources{"/var/run/netns", "/proc", "/proc/self/ns/net", "/proc/1/ns/net"};

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST(EvaluateAmbientRedirection, NoPodNetnsIsSkipWithTheReason) {
  NetnsEnumeration found;
  found.notes = {"netns dir /var/run/netns does not exist"};
  auto r = evaluateAmbientRedirection(kSources, found, {});
  EXPECT_EQ(r.name, "ambient_redirection");
  EXPECT_EQ(r.status, CheckStatus::kSkip);
  EXPECT_TRUE(contains(r.summary, "no pod network namespaces")) << r.summary;
  EXPECT_TRUE(contains(r.summary, "/var/run/netns does not exist")) << r.summary;
  EXPECT_TRUE(r.findings.empty());
}

TEST(EvaluateAmbientRedirection, UnreadableSourcesWithNoPodsFail) {
  NetnsEnumeration found;
  found.errors = {"cannot read netns dir /var/run/netns: Permission denied"};
  auto r = evaluateAmbientRedirection(kSources, found, {});
  EXPECT_EQ(r.status, CheckStatus::kFail);
  EXPECT_TRUE(contains(r.summary, "cannot read netns dir /var/run/netns: Permission denied")) << r.summary;
}

TEST(EvaluateAmbientRedirection, AllCapturedIsOk) {
  auto r = evaluateAmbientRedirection(kSources, {}, {report("cni-a", captured()), report("cni-b", captured())});
  EXPECT_EQ(r.status, CheckStatus::kOk);
  EXPECT_EQ(r.summary, "2 pod netns: 2 captured by ambient");
  EXPECT_EQ(r.details["counts"]["captured"], 2);
  EXPECT_TRUE(r.findings.empty());
}

TEST(EvaluateAmbientRedirection, MixOfCapturedAndUncapturedIsOk) {
  auto r = evaluateAmbientRedirection(kSources, {}, {report("cni-a", captured()), report("cni-b", uncaptured())});
  EXPECT_EQ(r.status, CheckStatus::kOk);
  EXPECT_EQ(r.summary, "2 pod netns: 1 captured by ambient, 1 not in ambient");
}

TEST(EvaluateAmbientRedirection, PodsButNoneInAmbientIsOkWithANote) {
  auto r = evaluateAmbientRedirection(
      kSources, {}, {report("cni-a", uncaptured()), report("cni-b", uncaptured()), report("cni-c", uncaptured())});
  EXPECT_EQ(r.status, CheckStatus::kOk);
  EXPECT_EQ(r.summary, "3 pods, none in ambient");
  ASSERT_TRUE(r.details.contains("note"));
  EXPECT_TRUE(contains(r.details["note"].get<std::string>(), "istio.io/dataplane-mode=ambient"));
}

TEST(EvaluateAmbientRedirection, RulesWithoutListenersFailWithAFinding) {
  auto r = evaluateAmbientRedirection(kSources, {}, {report("cni-a", captured()), report("cni-b", rulesOnly())});
  EXPECT_EQ(r.status, CheckStatus::kFail);
  EXPECT_TRUE(contains(r.summary,
                       "1 of 2 pod netns broken: cni-b (ISTIO rules, no ztunnel listener on "
                       "15001,15006,15008)"))
      << r.summary;
  ASSERT_EQ(r.findings.size(), 1u);
  const Finding& f = r.findings[0];
  EXPECT_EQ(f.code, "AMBIENT_REDIRECTION_BROKEN");
  EXPECT_EQ(f.layer, Layer::kAmbient);
  EXPECT_EQ(f.severity, Severity::kCritical);
  EXPECT_TRUE(f.nodes.empty());
  EXPECT_TRUE(contains(f.summary, "cni-b")) << f.summary;
  EXPECT_TRUE(contains(f.summary, "blackholed")) << f.summary;
  ASSERT_EQ(f.evidence.size(), 1u);
  EXPECT_TRUE(contains(f.evidence[0], "/var/run/netns/cni-b")) << f.evidence[0];
  EXPECT_TRUE(contains(f.remedy, "fix ztunnel first")) << f.remedy;
  EXPECT_TRUE(contains(f.remedy, "restart ztunnel on this node")) << f.remedy;
}

TEST(EvaluateAmbientRedirection, ListenersWithoutRulesFailWithTheLabelRemedy) {
  auto r = evaluateAmbientRedirection(kSources, {}, {report("cni-x", listenersOnly())});
  EXPECT_EQ(r.status, CheckStatus::kFail);
  EXPECT_TRUE(contains(r.summary, "cni-x (ztunnel listeners, no ISTIO rules)")) << r.summary;
  ASSERT_EQ(r.findings.size(), 1u);
  EXPECT_TRUE(contains(r.findings[0].summary, "no HBONE"));
  EXPECT_TRUE(contains(r.findings[0].remedy, "kubectl label namespace <namespace> istio.io/dataplane-mode=ambient"));
  EXPECT_TRUE(contains(r.findings[0].remedy, "restart the pods"));
}

TEST(EvaluateAmbientRedirection, BothKindsGiveOneFindingEach) {
  auto r = evaluateAmbientRedirection(
      kSources, {}, {report("cni-a", rulesOnly()), report("cni-b", rulesOnly()), report("cni-c", listenersOnly())});
  EXPECT_EQ(r.status, CheckStatus::kFail);
  ASSERT_EQ(r.findings.size(), 2u);
  EXPECT_EQ(r.findings[0].evidence.size(), 2u);
  EXPECT_EQ(r.findings[1].evidence.size(), 1u);
  EXPECT_EQ(r.details["counts"]["broken"], 3);
}

TEST(EvaluateAmbientRedirection, ManyBrokenPodsAreAbbreviatedInTheSummary) {
  std::vector<PodReport> pods;
  for (int i = 0; i < 5; ++i) pods.push_back(report("cni-" + std::to_string(i), rulesOnly()));
  auto r = evaluateAmbientRedirection(kSources, {}, pods);
  EXPECT_TRUE(contains(r.summary, "5 of 5 pod netns broken")) << r.summary;
  EXPECT_TRUE(contains(r.summary, "+2 more")) << r.summary;
  EXPECT_EQ(r.findings.at(0).evidence.size(), 5u);
}

TEST(EvaluateAmbientRedirection, NetnsThatCannotBeEnteredFailsWithTheReason) {
  auto r = evaluateAmbientRedirection(
      kSources, {}, {report("cni-a", cannotEnter("/var/run/netns/cni-a")), report("cni-b", uncaptured())});
  EXPECT_EQ(r.status, CheckStatus::kFail);
  EXPECT_TRUE(contains(r.summary,
                       "cannot inspect 1 pod netns: cni-a: setns /var/run/netns/cni-a: Operation not "
                       "permitted"))
      << r.summary;
  EXPECT_TRUE(r.findings.empty()) << "an uninspected pod is not a diagnosed fault";
  EXPECT_EQ(r.details["counts"]["unknown"], 1);
}

TEST(EvaluateAmbientRedirection, EnumerationErrorsFailEvenWhenPodsAreFine) {
  NetnsEnumeration found;
  found.errors = {
      "cannot read the network namespace of 40 of 90 processes under /proc (permission denied: run "
      "the agent as root)"};
  auto r = evaluateAmbientRedirection(kSources, found, {report("cni-a", captured())});
  EXPECT_EQ(r.status, CheckStatus::kFail);
  EXPECT_TRUE(contains(r.summary, "40 of 90 processes")) << r.summary;
}

TEST(EvaluateAmbientRedirection, SidecarPodsAreCountedNotBroken) {
  PodInspection side = seen(false, {15001, 15006});
  side.rules->sidecar = true;
  auto r = evaluateAmbientRedirection(kSources, {}, {report("cni-s", side), report("cni-a", captured())});
  EXPECT_EQ(r.status, CheckStatus::kOk);
  EXPECT_EQ(r.summary, "2 pod netns: 1 captured by ambient, 1 with Istio sidecars");
}

TEST(EvaluateAmbientRedirection, DetailsCarryEachPodsFacts) {
  auto r = evaluateAmbientRedirection(kSources, {}, {report("cni-b", rulesOnly())});
  ASSERT_EQ(r.details["pods"].size(), 1u);
  const auto& p = r.details["pods"][0];
  EXPECT_EQ(p["name"], "cni-b");
  EXPECT_EQ(p["path"], "/var/run/netns/cni-b");
  EXPECT_EQ(p["state"], "rules_without_listeners");
  EXPECT_EQ(p["rules"]["mode"], "REDIRECT");
  EXPECT_EQ(p["rules"]["ports"], nlohmann::json::array({15001, 15006}));
  EXPECT_EQ(p["rules"]["tool"], "iptables-nft-save");
  EXPECT_EQ(p["listeners"], nlohmann::json::array());
  EXPECT_EQ(p["missing_listeners"], nlohmann::json::array({15001, 15006, 15008}));
  EXPECT_EQ(r.details["netns_dir"], "/var/run/netns");
}

namespace {

// Answers per pod name; records the timeouts it was given.
class FakeInspector final : public PodNetnsInspector {
 public:
  explicit FakeInspector(std::map<std::string, PodInspection> by_name) : by_name_(std::move(by_name)) {}
  PodInspection inspect(const PodNetns& pod, std::chrono::milliseconds timeout) override {
    std::lock_guard lock(mu_);
    timeouts.push_back(timeout);
    inspected.push_back(pod.name);
    auto it = by_name_.find(pod.name);
    if (it == by_name_.end()) return uncaptured();
    return it->second;
  }
  std::vector<std::chrono::milliseconds> timeouts;
  std::vector<std::string> inspected;

 private:
  std::mutex mu_;
  std::map<std::string, PodInspection> by_name_;
};

// A fake node: <root>/netns holds regular files named like CNI netns; <root>/host is a
// --host-root without /proc.
class AmbientCheckOnFakeNode : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(::testing::TempDir()) / ("mph-ambient-check-" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_ / "netns");
    fs::create_directories(root_ / "host");
    config_.netns_dir = (root_ / "netns").string();
    config_.host_root = (root_ / "host").string();
    config_.check_timeout = 2s;
  }
  void TearDown() override { fs::remove_all(root_); }
  void pod(const std::string& name) { std::ofstream(root_ / "netns" / name) << name << "\n"; }

  fs::path root_;
  AgentConfig config_;
};

}  // namespace

TEST_F(AmbientCheckOnFakeNode, EveryNetnsIsInspectedWithinTheBudget) {
  for (int i = 0; i < 9; ++i) pod("cni-" + std::to_string(i));
  std::map<std::string, PodInspection> answers;
  for (int i = 0; i < 9; ++i) answers["cni-" + std::to_string(i)] = captured();
  answers["cni-4"] = rulesOnly();
  auto inspector = std::make_unique<FakeInspector>(answers);
  FakeInspector* fake = inspector.get();
  AmbientRedirectionCheck check(config_, std::move(inspector));
  EXPECT_EQ(check.name(), "ambient_redirection");

  auto r = check.run();
  EXPECT_EQ(fake->inspected.size(), 9u);
  for (auto t : fake->timeouts) {
    EXPECT_GT(t.count(), 0);
    EXPECT_LE(t, 1600ms) << "inspections must end before the doctor's per-check timeout";
  }
  EXPECT_EQ(r.status, CheckStatus::kFail);
  EXPECT_TRUE(contains(r.summary, "1 of 9 pod netns broken: cni-4")) << r.summary;
  ASSERT_EQ(r.details["pods"].size(), 9u);
  EXPECT_EQ(r.details["pods"][4]["name"], "cni-4") << "pods are reported in enumeration order";
  // The fake host root has no /proc: said, not fatal.
  bool noted = false;
  for (const auto& n : r.details["notes"]) noted |= contains(n.get<std::string>(), "/host/proc does not exist");
  EXPECT_TRUE(noted) << r.details["notes"].dump();
}

TEST_F(AmbientCheckOnFakeNode, HealthyPodsAreOk) {
  pod("cni-a");
  pod("cni-b");
  AmbientRedirectionCheck check(
      config_, std::make_unique<FakeInspector>(std::map<std::string, PodInspection>{{"cni-a", captured()}}));
  auto r = check.run();
  EXPECT_EQ(r.status, CheckStatus::kOk) << r.summary;
  EXPECT_EQ(r.summary, "2 pod netns: 1 captured by ambient, 1 not in ambient");
}

TEST_F(AmbientCheckOnFakeNode, NoNetnsAnywhereIsSkip) {
  fs::remove_all(root_ / "netns");
  FakeInspector* fake = nullptr;
  auto inspector = std::make_unique<FakeInspector>(std::map<std::string, PodInspection>{});
  fake = inspector.get();
  AmbientRedirectionCheck check(config_, std::move(inspector));
  auto r = check.run();
  EXPECT_EQ(r.status, CheckStatus::kSkip);
  EXPECT_TRUE(contains(r.summary, config_.netns_dir + " does not exist")) << r.summary;
  EXPECT_TRUE(fake->inspected.empty());
}

TEST_F(AmbientCheckOnFakeNode, KernelInspectorOnFilesThatAreNotNamespacesFailsNamingThePath) {
  pod("cni-fake");
  FakeCommandRunner commands;
  FakeSockDiag diag{Error{"unused"}};
  AmbientRedirectionCheck check(config_, commands, diag);
  auto r = check.run();
  EXPECT_EQ(r.status, CheckStatus::kFail);
  const std::string path = (root_ / "netns" / "cni-fake").string();
  EXPECT_TRUE(contains(r.summary, "cni-fake: setns " + path + ": Invalid argument (not a network namespace)"))
      << r.summary;
  EXPECT_EQ(r.details["pods"][0]["state"], "unknown");
  EXPECT_TRUE(commands.calls.empty()) << "iptables-save must not run in the agent's own namespace";
}

// ---- /proc/1/ns/net unreadable: which netns is the host's is unknown ----

namespace {

// The fake node with a host /proc whose 1/ns/net fails stat() with `err`, for an agent with
// the given privileges.
NetnsProbe hostNetnsFails(const AgentConfig& config, int err, Privileges who) {
  NetnsProbe probe;
  probe.privileges = [who] { return who; };
  const std::string host = config.hostPath("/proc/1/ns/net");
  probe.stat = [host, err](const std::string& path, struct stat& st) {
    if (path == host) return err;
    return ::stat(path.c_str(), &st) == 0 ? 0 : errno;
  };
  return probe;
}

constexpr uint64_t kEveryCap = 0x000001ffffffffffull;

}  // namespace

TEST_F(AmbientCheckOnFakeNode, UnknownHostNetnsWithNoOtherPodsIsSkipWithTheRemedyNotAFailure) {
  fs::create_directories(root_ / "host/proc/1/ns");
  std::ofstream(root_ / "host/proc/1/ns/net") << "ns\n";
  auto inspector = std::make_unique<FakeInspector>(std::map<std::string, PodInspection>{});
  FakeInspector* fake = inspector.get();
  AmbientRedirectionCheck check(config_, std::move(inspector),
                                hostNetnsFails(config_, EACCES, Privileges{true, 0, kEveryCap}));
  auto r = check.run();
  EXPECT_EQ(r.status, CheckStatus::kSkip) << r.summary;
  EXPECT_TRUE(contains(r.summary, "not looked at")) << r.summary;
  EXPECT_TRUE(contains(r.summary, "Permission denied")) << r.summary;
  EXPECT_TRUE(contains(r.summary, "hostPID: true")) << r.summary;
  EXPECT_FALSE(contains(r.summary, "run it as root")) << r.summary;
  EXPECT_TRUE(r.findings.empty());
  EXPECT_TRUE(r.details["errors"].empty()) << r.details.dump();
  EXPECT_TRUE(contains(r.details["proc_skipped"].get<std::string>(), "hostPID: true"));
  EXPECT_TRUE(fake->inspected.empty()) << "the host's /proc/1 must not be inspected as a pod";
}

TEST_F(AmbientCheckOnFakeNode, UnknownHostNetnsStillJudgesTheNetnsDirPods) {
  pod("cni-a");
  fs::create_directories(root_ / "host/proc");
  AmbientRedirectionCheck check(
      config_, std::make_unique<FakeInspector>(std::map<std::string, PodInspection>{{"cni-a", captured()}}),
      hostNetnsFails(config_, EACCES, Privileges{true, 1000, 0}));
  auto r = check.run();
  EXPECT_EQ(r.status, CheckStatus::kOk) << r.summary;
  EXPECT_TRUE(contains(r.summary, "1 pod netns: 1 captured by ambient")) << r.summary;
  EXPECT_TRUE(contains(r.summary, "not looked at")) << r.summary;
  EXPECT_TRUE(contains(r.summary, "uid 1000, not root")) << r.summary;
}

TEST_F(AmbientCheckOnFakeNode, UnknownHostNetnsDoesNotHideABrokenPod) {
  pod("cni-a");
  fs::create_directories(root_ / "host/proc");
  AmbientRedirectionCheck check(
      config_, std::make_unique<FakeInspector>(std::map<std::string, PodInspection>{{"cni-a", rulesOnly()}}),
      hostNetnsFails(config_, EPERM, Privileges{true, 0, kEveryCap & ~(1ull << kCapSysPtrace)}));
  auto r = check.run();
  EXPECT_EQ(r.status, CheckStatus::kFail) << r.summary;
  ASSERT_EQ(r.findings.size(), 1u);
  EXPECT_EQ(r.findings[0].code, codes::kAmbientRedirectionBroken);
  EXPECT_TRUE(contains(r.summary, "lacks CAP_SYS_PTRACE")) << r.summary;
}

TEST_F(AmbientCheckOnFakeNode, HostProcWithoutPid1IsSkipSayingItIsNotTheHostsProc) {
  fs::create_directories(root_ / "host/proc/42/ns");
  std::ofstream(root_ / "host/proc/42/ns/net") << "ns\n";
  auto inspector = std::make_unique<FakeInspector>(std::map<std::string, PodInspection>{});
  FakeInspector* fake = inspector.get();
  AmbientRedirectionCheck check(config_, std::move(inspector));
  auto r = check.run();
  EXPECT_EQ(r.status, CheckStatus::kSkip) << r.summary;
  EXPECT_TRUE(contains(r.summary, "does not exist")) << r.summary;
  EXPECT_TRUE(contains(r.summary, "is not the host's /proc")) << r.summary;
  EXPECT_TRUE(fake->inspected.empty());
}
