#pragma once
// The node doctor: runs every check concurrently, each under its own deadline so one
// hung check never blocks the others, and gathers the verdict.

#include <chrono>
#include <string>
#include <vector>

#include "agent/checks/check.h"
#include "common/clock.h"

namespace meshprobe::agent {

struct DoctorReport {
  std::string node;
  std::vector<CheckResult> checks;   // in registry order
  std::vector<Finding> findings;     // from the checks, blamed on `node`

  bool anyFailed() const;
};

// Runs `checks` concurrently. A check still running at `timeout` is reported as FAIL
// ("timed out after ..."); its thread is left to finish on its own (checks bound their
// own kernel reads and child processes, so it does not run forever). `checks` and `clock`
// must therefore outlive such a thread: callers keep them until the process exits.
DoctorReport runDoctor(const std::string& node, std::vector<CheckPtr>& checks, std::chrono::nanoseconds timeout,
                       const Clock& clock);

}  // namespace meshprobe::agent
