#include "agent/doctor/doctor.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <mutex>
#include <set>
#include <thread>

#include "agent/doctor/render.h"
#include "tests/support/eventually.h"
#include "tests/support/fakes/checks.h"
#include "tests/support/fakes/clock.h"

using namespace meshprobe;
using namespace meshprobe::agent;
using namespace meshprobe::test;
using namespace std::chrono_literals;

namespace {

// The shared polling helper with a 1 ms interval: these tests wait for worker threads to
// reach a fake-clock wait, which takes microseconds (5 s is a bound, not a synchronisation).
bool pollFast(const std::function<bool()>& cond) {
  return meshprobe::test::pollUntil(cond, std::chrono::seconds(5), std::chrono::milliseconds(1));
}

}  // namespace

TEST(Doctor, KeepsRegistryOrderAndAttributesFindingsToTheNode) {
  Finding f{"VXLAN_SOCKET_MISSING", Severity::kCritical, {}, Layer::kOverlay, "no socket", {"e"}, "restart flannel"};
  std::vector<CheckPtr> checks;
  checks.push_back(std::make_unique<FixedCheck>("a", CheckStatus::kOk));
  checks.push_back(std::make_unique<FixedCheck>("b", CheckStatus::kFail, std::vector<Finding>{f}));
  checks.push_back(std::make_unique<FixedCheck>("c", CheckStatus::kSkip));
  SystemClock clock;
  auto report = runDoctor("node-7", std::move(checks), 5s, clock);
  ASSERT_EQ(report.checks.size(), 3u);
  EXPECT_EQ(report.checks[0].name, "a");
  EXPECT_EQ(report.checks[1].name, "b");
  EXPECT_EQ(report.checks[2].name, "c");
  EXPECT_TRUE(report.anyFailed());
  ASSERT_EQ(report.findings.size(), 1u);
  EXPECT_EQ(report.findings[0].nodes, std::vector<std::string>{"node-7"});
}

TEST(Doctor, AHungCheckTimesOutWithoutBlockingTheOthers) {
  auto gate = std::make_shared<Gate>();
  std::vector<CheckPtr> checks;
  checks.push_back(std::make_unique<FixedCheck>("fast", CheckStatus::kOk));
  checks.push_back(std::make_unique<HangingCheck>(gate));
  {
    SystemClock clock;  // destroyed before the hung check returns: the abandoned worker must not read it
    auto report = runDoctor("n", std::move(checks), 200ms, clock);
    ASSERT_EQ(report.checks.size(), 2u);
    EXPECT_EQ(report.checks[0].status, CheckStatus::kOk);
    EXPECT_EQ(report.checks[1].status, CheckStatus::kFail);
    EXPECT_NE(report.checks[1].summary.find("timed out after 200ms"), std::string::npos);
  }
  // The abandoned worker owns the check: releasing it lets the worker finish and destroy
  // it, touching nothing that is gone (ASan builds catch it if it did).
  EXPECT_FALSE(gate->isDestroyed());
  gate->release();
  EXPECT_TRUE(pollFast([&] { return gate->isDestroyed(); }));
}

TEST(CheckRunner, NamesEachWorkerThreadAfterItsCheck) {
  FakeClock clock;
  auto runs = std::make_shared<std::atomic<int>>(0);
  std::vector<CheckPtr> checks;
  checks.push_back(std::make_unique<CountingCheck>("vxlan_fdb", runs));
  checks.push_back(std::make_unique<CountingCheck>("istiod", runs));
  CheckRunner runner(std::move(checks), clock);
  // The names the kernel shows for this process's threads (`top -H`), at most 15 bytes.
  auto names = [] {
    std::set<std::string> out;
    for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
      std::ifstream comm(task.path() / "comm");
      std::string name;
      if (std::getline(comm, name)) out.insert(name);
    }
    return out;
  };
  // Each worker names itself when it starts.
  ASSERT_TRUE(pollFast([&] {
    const auto n = names();
    return n.count("mp-chk-vxlan_fd") == 1 && n.count("mp-chk-istiod") == 1;
  }));
}

TEST(CheckRunner, AHungCheckIsNotStartedAgainAndHoldsOnlyItsOwnWorker) {
  FakeClock clock;
  auto gate = std::make_shared<Gate>();
  auto runs = std::make_shared<std::atomic<int>>(0);
  std::vector<CheckPtr> checks;
  checks.push_back(std::make_unique<CountingCheck>("counts", runs));
  checks.push_back(std::make_unique<HangingCheck>(gate));
  CheckRunner runner(std::move(checks), clock);
  EXPECT_EQ(runner.threads(), 2u);

  // Round 1 waits on the clock for the hung check; time, not a sleep, ends it.
  auto first = std::async(std::launch::async, [&] { return runner.run("n", 5s); });
  // The other check has returned; only the hung one is still running.
  ASSERT_TRUE(pollFast([&] { return clock.waiters() == 1 && gate->startCount() == 1 && runner.running() == 1; }));
  clock.advance(4s);
  EXPECT_EQ(first.wait_for(50ms), std::future_status::timeout);  // 4 s of 5: still waiting
  ASSERT_TRUE(pollFast([&] { return clock.waiters() == 1; }));
  clock.advance(1s);
  auto r1 = first.get();
  ASSERT_EQ(r1.checks.size(), 2u);
  EXPECT_EQ(r1.checks[0].status, CheckStatus::kOk);
  EXPECT_EQ(r1.checks[1].status, CheckStatus::kFail);
  EXPECT_EQ(r1.checks[1].summary, "check timed out after 5s");
  EXPECT_EQ(runner.running(), 1u);

  // Rounds 2..21: the hung check is reported, not restarted; the other one runs every time,
  // and a round does not wait for a check it did not start.
  for (int i = 0; i < 20; ++i) {
    clock.advance(2s);
    auto r = runner.run("n", 5s);
    ASSERT_EQ(r.checks.size(), 2u);
    EXPECT_EQ(r.checks[0].status, CheckStatus::kOk);
    EXPECT_EQ(r.checks[1].status, CheckStatus::kFail);
    EXPECT_NE(r.checks[1].summary.find("previous run still in progress"), std::string::npos) << r.checks[1].summary;
  }
  EXPECT_NE(runner.run("n", 5s).checks[1].summary.find("started 45s ago"), std::string::npos);
  EXPECT_EQ(gate->startCount(), 1);
  EXPECT_EQ(runs->load(), 22);
  EXPECT_EQ(runner.threads(), 2u);
  EXPECT_EQ(runner.running(), 1u);

  // Once it returns, its worker is free and the next round starts it again.
  gate->release();
  ASSERT_TRUE(pollFast([&] { return runner.running() == 0; }));
  auto r = runner.run("n", 5s);
  EXPECT_EQ(r.checks[1].status, CheckStatus::kOk);
  EXPECT_EQ(gate->startCount(), 2);
  EXPECT_EQ(runner.abandoned(), 0u);
}

TEST(CheckRunner, ShutdownAbandonsAHungWorkerAtOnceAndItEndsSafelyLater) {
  auto gate = std::make_shared<Gate>();
  auto clock = std::make_unique<FakeClock>();
  auto runner = std::make_unique<CheckRunner>(
      [&] {
        std::vector<CheckPtr> checks;
        checks.push_back(std::make_unique<FixedCheck>("idle", CheckStatus::kOk));
        checks.push_back(std::make_unique<HangingCheck>(gate));
        return checks;
      }(),
      *clock);
  auto round = std::async(std::launch::async, [&] { return runner->run("n", 5s); });
  ASSERT_TRUE(pollFast([&] { return clock->waiters() == 1 && gate->startCount() == 1 && runner->running() == 1; }));
  clock->advance(5s);
  round.get();

  const auto t0 = std::chrono::steady_clock::now();
  runner->shutdown();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 100ms);  // joins the idle worker, never waits on the hung one
  EXPECT_EQ(runner->threads(), 0u);
  EXPECT_EQ(runner->abandoned(), 1u);
  auto after = runner->run("n", 5s);  // starts nothing (it would wait forever on the fake clock)
  EXPECT_EQ(after.checks[0].summary, "not run: the agent is stopping");
  runner.reset();
  clock.reset();
  // The runner and the clock are gone; the hung check returns now.
  gate->release();
  EXPECT_TRUE(pollFast([&] { return gate->isDestroyed(); }));
}

TEST(Doctor, AThrowingCheckIsAFailureNotACrash) {
  std::vector<CheckPtr> checks;
  checks.push_back(std::make_unique<ThrowingCheck>());
  SystemClock clock;
  auto report = runDoctor("n", std::move(checks), 5s, clock);
  ASSERT_EQ(report.checks.size(), 1u);
  EXPECT_EQ(report.checks[0].status, CheckStatus::kFail);
  EXPECT_NE(report.checks[0].summary.find("boom"), std::string::npos);
}

TEST(Render, JsonHasTheContractShape) {
  DoctorReport report;
  report.node = "n1";
  CheckResult c;
  c.name = "vxlan_device";
  c.status = CheckStatus::kWarn;
  c.summary = "s";
  c.details = {{"mtu", 1450}};
  report.checks.push_back(c);
  report.findings.push_back({"MTU_MISMATCH", Severity::kWarning, {"n1"}, Layer::kOverlay, "sum", {"ev"}, "fix"});
  auto j = reportToJson(report);
  EXPECT_EQ(j["node"], "n1");
  EXPECT_EQ(j["checks"][0]["name"], "vxlan_device");
  EXPECT_EQ(j["checks"][0]["status"], "WARN");
  EXPECT_EQ(j["checks"][0]["details"]["mtu"], 1450);
  EXPECT_EQ(j["findings"][0]["code"], "MTU_MISMATCH");
  EXPECT_EQ(j["findings"][0]["severity"], "WARNING");
  EXPECT_EQ(j["findings"][0]["layer"], "OVERLAY");
  EXPECT_EQ(j["findings"][0]["nodes"][0], "n1");
}

TEST(Render, TextColoursOnlyWhenAsked) {
  DoctorReport report;
  report.node = "n1";
  CheckResult c;
  c.name = "istiod";
  c.status = CheckStatus::kFail;
  c.summary = "connect refused";
  report.checks.push_back(c);
  auto plain = renderText(report, false);
  auto colored = renderText(report, true);
  EXPECT_EQ(plain.find("\033["), std::string::npos);
  EXPECT_NE(colored.find("\033[31"), std::string::npos);
  EXPECT_NE(plain.find("istiod"), std::string::npos);
  EXPECT_NE(plain.find("FAIL"), std::string::npos);
}
