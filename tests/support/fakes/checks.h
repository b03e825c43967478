#pragma once
// Fake checks for the doctor and daemon unit tests: fixed results, counting, throwing,
// and a check that hangs until released (a kernel read that never returns).

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/checks/check.h"

namespace meshprobe::test {

// Returns `status` with "fixed <name>" and the given findings.
class FixedCheck final : public agent::Check {
 public:
  FixedCheck(std::string name, agent::CheckStatus status, std::vector<Finding> findings = {})
      : name_(std::move(name)), status_(status), findings_(std::move(findings)) {}
  std::string_view name() const override { return name_; }
  agent::CheckResult run() override {
    auto r = result(status_, "fixed " + name_);
    r.findings = findings_;
    return r;
  }

 private:
  std::string name_;
  agent::CheckStatus status_;
  std::vector<Finding> findings_;
};

// OK, counting its runs in a counter the test keeps (the check may outlive the test's
// reference to it).
class CountingCheck final : public agent::Check {
 public:
  CountingCheck(std::string name, std::shared_ptr<std::atomic<int>> runs)
      : name_(std::move(name)), runs_(std::move(runs)) {}
  std::string_view name() const override { return name_; }
  agent::CheckResult run() override {
    ++*runs_;
    return result(agent::CheckStatus::kOk, "ran");
  }

 private:
  std::string name_;
  std::shared_ptr<std::atomic<int>> runs_;
};

class ThrowingCheck final : public agent::Check {
 public:
  std::string_view name() const override { return "throws"; }
  agent::CheckResult run() override { throw std::runtime_error("boom"); }
};

// What a HangingCheck blocks on: open it with release(). Counts the runs started and says
// when the check object is gone (an abandoned worker destroys it once run() returns).
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  int starts = 0;
  bool destroyed = false;
  void release() {
    std::lock_guard l(mu);
    open = true;
    cv.notify_all();
  }
  // f() under the gate's lock.
  template <typename F>
  auto read(F f) {
    std::lock_guard l(mu);
    return f();
  }
  int startCount() {
    return read([&] { return starts; });
  }
  bool isDestroyed() {
    return read([&] { return destroyed; });
  }
};

// Blocks in run() until its gate is released: stands in for a hung kernel read.
class HangingCheck final : public agent::Check {
 public:
  explicit HangingCheck(std::shared_ptr<Gate> gate, std::string name = "hangs")
      : gate_(std::move(gate)), name_(std::move(name)) {}
  ~HangingCheck() override {
    std::lock_guard l(gate_->mu);
    gate_->destroyed = true;
  }
  std::string_view name() const override { return name_; }
  agent::CheckResult run() override {
    std::unique_lock l(gate_->mu);
    ++gate_->starts;
    gate_->cv.wait(l, [&] { return gate_->open; });
    return result(agent::CheckStatus::kOk, "released");
  }

 private:
  std::shared_ptr<Gate> gate_;
  std::string name_;
};

}  // namespace meshprobe::test
