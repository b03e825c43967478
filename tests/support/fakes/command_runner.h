#pragma once
// A scripted CommandRunner: canned output per full command line ("iptables-nft-save -t
// mangle") or per program (argv[0]); anything not scripted is "not found", as when the
// binary is not installed. Records what ran. Thread-safe (runners are called from check
// workers and from the netns thread).

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "agent/kernel/command_runner.h"

namespace meshprobe::test {

class FakeCommandRunner final : public agent::CommandRunner {
 public:
  enum Timeouts { kAnyTimeout, kTimeoutRequired };  // kTimeoutRequired: a run without a deadline fails the test
  explicit FakeCommandRunner(Timeouts timeouts = kAnyTimeout) : timeouts_(timeouts) {}

  agent::CommandOutput run(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) override {
    std::lock_guard lock(mu_);
    std::string line;
    for (const auto& a : argv) line += (line.empty() ? "" : " ") + a;
    const std::string program = argv.empty() ? "" : argv[0];
    calls.push_back(line);
    programs.push_back(program);
    if (timeouts_ == kTimeoutRequired) {
      EXPECT_GT(timeout.count(), 0) << line;
    }
    agent::CommandOutput o;
    if (auto it = by_command.find(line); it != by_command.end()) {
      o = it->second;
    } else if (auto p = by_program.find(program); p != by_program.end()) {
      o = p->second;
    } else {
      o.not_found = true;
    }
    o.program = program;
    o.timeout = timeout;
    return o;
  }

  // Scripts the full command line `cmd`: exits 0 with `out`, or `code` with `err`.
  void ok(const std::string& cmd, std::string out) {
    agent::CommandOutput o;
    o.exit_code = 0;
    o.out = std::move(out);
    by_command[cmd] = o;
  }
  void fail(const std::string& cmd, int code, std::string err) {
    agent::CommandOutput o;
    o.exit_code = code;
    o.err = std::move(err);
    by_command[cmd] = o;
  }

  std::map<std::string, agent::CommandOutput> by_command;  // full command line -> output
  std::map<std::string, agent::CommandOutput> by_program;  // argv[0] -> output (after by_command)
  std::vector<std::string> calls;                          // each run's command line, in order
  std::vector<std::string> programs;                       // each run's argv[0], in order

 private:
  Timeouts timeouts_;
  std::mutex mu_;
};

}  // namespace meshprobe::test
