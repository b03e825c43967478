#include "agent/doctor/doctor.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>

#include "agent/doctor/render.h"

using namespace meshprobe;
using namespace meshprobe::agent;
using namespace std::chrono_literals;

namespace {

class FixedCheck final : public Check {
 public:
  FixedCheck(std::string name, CheckStatus status, std::vector<Finding> findings = {})
      : name_(std::move(name)), status_(status), findings_(std::move(findings)) {}
  std::string_view name() const override { return name_; }
  CheckResult run() override {
    auto r = result(status_, "fixed " + name_);
    r.findings = findings_;
    return r;
  }

 private:
  std::string name_;
  CheckStatus status_;
  std::vector<Finding> findings_;
};

// Blocks until released: stands in for a hung kernel read.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  void release() {
    std::lock_guard l(mu);
    open = true;
    cv.notify_all();
  }
};

class HangingCheck final : public Check {
 public:
  explicit HangingCheck(std::shared_ptr<Gate> gate) : gate_(std::move(gate)) {}
  std::string_view name() const override { return "hangs"; }
  CheckResult run() override {
    std::unique_lock l(gate_->mu);
    gate_->cv.wait(l, [&] { return gate_->open; });
    return result(CheckStatus::kOk, "released");
  }

 private:
  std::shared_ptr<Gate> gate_;
};

class ThrowingCheck final : public Check {
 public:
  std::string_view name() const override { return "throws"; }
  CheckResult run() override { throw std::runtime_error("boom"); }
};

}  // namespace

TEST(Doctor, KeepsRegistryOrderAndAttributesFindingsToTheNode) {
  Finding f{"VXLAN_SOCKET_MISSING", Severity::kCritical, {}, Layer::kOverlay, "no socket", {"e"}, "restart flannel"};
  std::vector<CheckPtr> checks;
  checks.push_back(std::make_unique<FixedCheck>("a", CheckStatus::kOk));
  checks.push_back(std::make_unique<FixedCheck>("b", CheckStatus::kFail, std::vector<Finding>{f}));
  checks.push_back(std::make_unique<FixedCheck>("c", CheckStatus::kSkip));
  SystemClock clock;
  auto report = runDoctor("node-7", checks, 5s, clock);
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
  auto checks = std::make_shared<std::vector<CheckPtr>>();
  checks->push_back(std::make_unique<FixedCheck>("fast", CheckStatus::kOk));
  checks->push_back(std::make_unique<HangingCheck>(gate));
  // The detached check thread may still use the clock and the checks after the test (and
  // during exit): keep both alive for the life of the process, reachable from a global.
  static auto* clock = new SystemClock();
  static auto* keep_checks = new std::vector<std::shared_ptr<std::vector<CheckPtr>>>();
  keep_checks->push_back(checks);
  auto report = runDoctor("n", *checks, 200ms, *clock);
  ASSERT_EQ(report.checks.size(), 2u);
  EXPECT_EQ(report.checks[0].status, CheckStatus::kOk);
  EXPECT_EQ(report.checks[1].status, CheckStatus::kFail);
  EXPECT_NE(report.checks[1].summary.find("timed out"), std::string::npos);
  gate->release();  // let the detached thread finish
}

TEST(Doctor, AThrowingCheckIsAFailureNotACrash) {
  std::vector<CheckPtr> checks;
  checks.push_back(std::make_unique<ThrowingCheck>());
  SystemClock clock;
  auto report = runDoctor("n", checks, 5s, clock);
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
