// The daemon's schedule, driven by a FakeClock: every wait in the daemon goes through the
// Clock, so these tests advance time instead of sleeping. A test knows the daemon is idle
// when its three loops are parked on the clock (FakeClock::waiters() == 3) and only then
// advances it or reads the counters.
#include "agent/daemon/daemon.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

#include "tests/support/eventually.h"
#include "tests/support/fakes/checks.h"
#include "tests/support/fakes/clock.h"
#include "tests/support/fakes/command_runner.h"
#include "tests/support/fakes/netlink.h"
#include "tests/support/fakes/sock_diag.h"

using namespace meshprobe;
using namespace meshprobe::agent;
using namespace meshprobe::test;
using namespace std::chrono_literals;

namespace {

// The seams, owned through a shared_ptr handed to the daemon as deps_owner.
struct Seams {
  FakeNetlinkReader netlink{Error{"no rtnetlink in unit tests"}};
  FakeSockDiag sock_diag;
  FakeCommandRunner commands;  // nothing scripted: every binary is "not found"
  FakeClock clock;
  AgentDeps deps() { return AgentDeps{netlink, sock_diag, commands, clock}; }
};

// The shared polling helper with a 1 ms interval: these tests wait for worker threads to
// reach a fake-clock wait, which takes microseconds (5 s is a bound, not a synchronisation).
bool pollFast(const std::function<bool()>& cond) {
  return meshprobe::test::pollUntil(cond, std::chrono::seconds(5), std::chrono::milliseconds(1));
}

size_t processThreads() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/task")) ++n;
  return n;
}

// An "ambient_redirection" stand-in: OK with the given pod netns.
class PodCapturesCheck final : public Check {
 public:
  explicit PodCapturesCheck(PodCaptures captures) : captures_(std::move(captures)) {}
  std::string_view name() const override { return "ambient_redirection"; }
  CheckResult run() override {
    auto r = result(CheckStatus::kOk, "1 pod netns: 1 captured by ambient");
    r.pod_captures = captures_;
    return r;
  }

 private:
  PodCaptures captures_;
};

struct Fixture {
  std::shared_ptr<Seams> seams = std::make_shared<Seams>();
  std::shared_ptr<std::atomic<int>> local_runs = std::make_shared<std::atomic<int>>(0);
  std::shared_ptr<std::atomic<int>> network_runs = std::make_shared<std::atomic<int>>(0);
  std::shared_ptr<Gate> gate;  // set: a hanging "ztunnel" check joins the local group
  std::optional<PodCaptures> ambient;  // set: an "ambient_redirection" check returns these
  std::atomic<int> reports{0};
  std::mutex report_mu;
  meshprobe::v1::Report last_report;  // guarded by report_mu
  std::unique_ptr<Daemon> daemon;

  void start(Duration interval, Duration check_timeout = 1s) {
    AgentConfig config;
    config.node_name = "node-1";
    config.interval = interval;
    config.check_timeout = check_timeout;
    config.probe_port = 0;       // ephemeral
    config.http_listen.clear();  // no HTTP in these tests
    config.host_root = "/nonexistent-host-root";
    DaemonHooks hooks;
    hooks.make_checks = [this](const AgentConfig&, const AgentDeps&) {
      std::vector<CheckPtr> checks;
      checks.push_back(std::make_unique<CountingCheck>("vxlan_device", local_runs));
      if (gate) checks.push_back(std::make_unique<HangingCheck>(gate, "ztunnel"));
      if (ambient) checks.push_back(std::make_unique<PodCapturesCheck>(*ambient));
      checks.push_back(std::make_unique<CountingCheck>("istiod", network_runs));
      return checks;
    };
    hooks.on_report = [this](const meshprobe::v1::Report& r) {
      {
        std::lock_guard lock(report_mu);
        last_report = r;
      }
      ++reports;
    };
    daemon = std::make_unique<Daemon>(config, seams->deps(), seams, hooks);
    Status st = daemon->start();
    ASSERT_TRUE(st.ok()) << st.error().message;
  }
  // The three loops are parked on the clock: nothing moves until time or a poke does.
  bool settle() const { return pollFast([&] { return seams->clock.waiters() == 3; }); }
  void advance(Duration d) { seams->clock.advance(d); }
  // Both groups have published `n` rounds (a round still waiting on its checks is not done).
  bool rounds(uint64_t n) const {
    return pollFast([&] {
      auto c = daemon->counters();
      return c.local_rounds == n && c.network_rounds == n;
    });
  }
};

}  // namespace

TEST(Daemon, ChecksEveryTwoSecondsAtLeastAndReportsEveryInterval) {
  Fixture f;
  f.start(1s);
  ASSERT_TRUE(f.rounds(1));
  ASSERT_TRUE(f.settle());
  EXPECT_EQ(*f.local_runs, 1);
  EXPECT_EQ(*f.network_runs, 1);
  ASSERT_TRUE(f.daemon->doctor().has_value());
  EXPECT_EQ(f.daemon->doctor()->checks.size(), 2u);  // registry order; the Hello facts job is not a check
  EXPECT_EQ(f.daemon->doctor()->checks[0].name, "vxlan_device");
  EXPECT_EQ(f.daemon->doctor()->checks[1].name, "istiod");

  for (int round = 2; round <= 6; ++round) {
    // 1 s: a report, no check round (the check interval is max(1 s, 2 s)).
    int reports = f.reports;
    f.advance(1s);
    ASSERT_TRUE(pollFast([&] { return f.reports == reports + 1; }));
    ASSERT_TRUE(f.settle());
    EXPECT_EQ(f.reports, reports + 1);
    EXPECT_EQ(*f.local_runs, round - 1);
    EXPECT_EQ(*f.network_runs, round - 1);
    // 2 s: both groups run once, and each finished round is reported at once.
    reports = f.reports;
    f.advance(1s);
    ASSERT_TRUE(f.rounds(round));
    ASSERT_TRUE(f.settle());
    EXPECT_EQ(*f.local_runs, round);
    EXPECT_EQ(*f.network_runs, round);
    EXPECT_EQ(f.seams->netlink.rounds, round);  // one pinned rtnetlink snapshot per local round
    EXPECT_GE(f.reports, reports + 1);
    EXPECT_LE(f.reports, reports + 3);  // the interval's report and at most one per finished round
  }
}

TEST(Daemon, ALongerIntervalIsTheCheckInterval) {
  Fixture f;
  f.start(3s);
  ASSERT_TRUE(f.rounds(1));
  ASSERT_TRUE(f.settle());
  f.advance(2s);
  ASSERT_TRUE(f.settle());
  EXPECT_EQ(*f.local_runs, 1);  // not at 2 s
  f.advance(1s);
  ASSERT_TRUE(f.rounds(2));
  EXPECT_EQ(*f.local_runs, 2);
  EXPECT_EQ(*f.network_runs, 2);
}

TEST(Daemon, AProberTransitionRerunsBothGroupsAndReportsAtOnce) {
  Fixture f;
  f.start(1s);
  ASSERT_TRUE(f.rounds(1));
  ASSERT_TRUE(f.settle());
  const int reports = f.reports;
  f.daemon->proberTransition();  // what the prober's on_transition calls; no time passes
  ASSERT_TRUE(f.rounds(2));
  EXPECT_EQ(*f.local_runs, 2);
  EXPECT_EQ(*f.network_runs, 2);
  ASSERT_TRUE(pollFast([&] { return f.reports > reports; }));
  ASSERT_TRUE(f.settle());
  // Back on the 2 s cadence, counted from the re-run.
  f.advance(1s);
  ASSERT_TRUE(f.settle());
  EXPECT_EQ(*f.local_runs, 2);
  f.advance(1s);
  ASSERT_TRUE(f.rounds(3));
  EXPECT_EQ(*f.local_runs, 3);
}

TEST(Daemon, AHungCheckNeverCostsAThreadPerRound) {
  Fixture f;
  f.gate = std::make_shared<Gate>();
  f.start(1s, 1s);
  // Round 1 waits the check timeout (1 s) for the hung check; every other check has
  // returned (else the advance below would time it out too).
  ASSERT_TRUE(pollFast([&] {
    auto c = f.daemon->counters();
    return f.gate->read([&] { return f.gate->starts; }) == 1 && c.network_rounds == 1 && c.checks_running == 1;
  }));
  ASSERT_TRUE(f.settle());
  const size_t threads_before = processThreads();
  const size_t daemon_threads = f.daemon->counters().threads;
  EXPECT_EQ(daemon_threads, 3u + 3u + 0u + 1u);  // three loops; workers: 2 local checks + Hello facts, istiod

  for (uint64_t round = 1; round <= 100; ++round) {
    // Round 1 ends at its 1 s timeout, every later one at once (the hung check is not
    // started again); a round begins every 2 s.
    f.advance(1s);
    ASSERT_TRUE(f.rounds(round)) << round;
    ASSERT_TRUE(f.settle());
    f.advance(1s);
    ASSERT_TRUE(f.rounds(round + 1)) << round;
    ASSERT_TRUE(f.settle());
    auto d = f.daemon->doctor();
    ASSERT_TRUE(d && d->checks.size() == 3);
    ASSERT_EQ(d->checks[0].status, CheckStatus::kOk) << round << ": " << d->checks[0].summary;
  }
  EXPECT_EQ(processThreads(), threads_before);
  EXPECT_EQ(f.daemon->counters().threads, daemon_threads);
  EXPECT_EQ(f.gate->read([&] { return f.gate->starts; }), 1);
  EXPECT_EQ(f.daemon->counters().checks_running, 1u);
  EXPECT_EQ(*f.local_runs, 101);
  auto doctor = f.daemon->doctor();
  ASSERT_TRUE(doctor.has_value());
  ASSERT_EQ(doctor->checks.size(), 3u);
  EXPECT_EQ(doctor->checks[1].name, "ztunnel");
  EXPECT_EQ(doctor->checks[1].status, CheckStatus::kFail);
  EXPECT_NE(doctor->checks[1].summary.find("previous run still in progress"), std::string::npos)
      << doctor->checks[1].summary;
  EXPECT_EQ(doctor->checks[0].status, CheckStatus::kOk);
  EXPECT_EQ(doctor->checks[2].status, CheckStatus::kOk);

  // Released, the check runs again at the next round.
  f.gate->release();
  ASSERT_TRUE(pollFast([&] { return f.daemon->counters().checks_running == 0; }));
  f.advance(2s);
  ASSERT_TRUE(pollFast([&] { return f.gate->read([&] { return f.gate->starts; }) == 2; }));
  ASSERT_TRUE(pollFast([&] {
    auto d = f.daemon->doctor();
    return d && d->checks[1].status == CheckStatus::kOk;
  }));
}

TEST(Daemon, StopReturnsWithinASecondWhileACheckHangsAndTheCheckEndsSafelyLater) {
  Fixture f;
  f.gate = std::make_shared<Gate>();
  f.start(1s, 5s);
  ASSERT_TRUE(pollFast([&] { return f.gate->read([&] { return f.gate->starts; }) == 1; }));
  // The network round is done and only the hung check is still running; the local loop
  // waits on its round (5 s timeout) for it.
  ASSERT_TRUE(pollFast([&] {
    auto c = f.daemon->counters();
    return c.network_rounds == 1 && c.checks_running == 1;
  }));
  ASSERT_TRUE(f.settle());

  const auto t0 = std::chrono::steady_clock::now();
  f.daemon->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
  EXPECT_EQ(f.daemon->counters().threads, 0u);
  EXPECT_EQ(f.daemon->counters().checks_running, 1u);  // abandoned, still inside run()

  // Destroy the daemon and drop the test's own hold on the seams: the abandoned worker
  // keeps them (and its check) alive. Releasing the check now must touch nothing freed;
  // the ASan build of this test says so.
  f.daemon.reset();
  std::weak_ptr<Seams> seams = f.seams;
  f.seams.reset();
  EXPECT_FALSE(seams.expired());
  f.gate->release();
  EXPECT_TRUE(pollFast([&] { return f.gate->read([&] { return f.gate->destroyed; }); }));
  EXPECT_TRUE(pollFast([&] { return seams.expired(); }));
}

TEST(Daemon, ReportsCarryTheLatestAmbientRunsPodNetns) {
  Fixture f;
  f.ambient = PodCaptures{{PodCapture{"cni-a", {"10.244.1.7"}, "", PodState::kCaptured, "captured"}}, 1};
  f.start(1s);
  ASSERT_TRUE(f.rounds(1));
  ASSERT_TRUE(f.settle());
  // The report after the round carries the check and its list; so does every later one.
  for (int i = 0; i < 2; ++i) {
    const int reports = f.reports;
    f.advance(1s);
    ASSERT_TRUE(pollFast([&] { return f.reports > reports; }));
    ASSERT_TRUE(f.settle());
    std::lock_guard lock(f.report_mu);
    ASSERT_TRUE(f.last_report.has_pod_netns());
    ASSERT_EQ(f.last_report.pod_netns().entries_size(), 1);
    EXPECT_EQ(f.last_report.pod_netns().total(), 1u);
    EXPECT_EQ(f.last_report.pod_netns().entries(0).netns(), "cni-a");
    EXPECT_EQ(f.last_report.pod_netns().entries(0).ips(0), "10.244.1.7");
    EXPECT_EQ(f.last_report.pod_netns().entries(0).state(), meshprobe::v1::PodNetnsCapture::CAPTURED);
  }
  f.daemon->stop();
}

TEST(Daemon, ReportsWithoutAnAmbientCheckHaveNoPodNetns) {
  Fixture f;
  f.start(1s);
  ASSERT_TRUE(f.rounds(1));
  ASSERT_TRUE(f.settle());
  const int reports = f.reports;
  f.advance(1s);
  ASSERT_TRUE(pollFast([&] { return f.reports > reports; }));
  ASSERT_TRUE(f.settle());
  std::lock_guard lock(f.report_mu);
  EXPECT_GT(f.last_report.checks_size(), 0);
  EXPECT_FALSE(f.last_report.has_pod_netns());
  f.daemon->stop();
}
