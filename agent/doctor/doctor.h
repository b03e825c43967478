#pragma once
// The node doctor: runs every check concurrently, each under its own deadline so one
// hung check never blocks the others, and gathers the verdict.
//
// Each check runs on a worker thread of its own that lives as long as the CheckRunner and
// runs that check only, one run at a time: a check that hangs ties up its own worker and
// nothing else, and is never started a second time while its run has not returned (the
// round reports it as FAIL, "previous run still in progress"). So a runner has exactly one
// thread per check, however many rounds time out.
//
// A check blocked in a system call cannot be interrupted. On shutdown an idle worker is
// joined; a worker still inside run() is abandoned: detached, and from then on it touches
// only what it owns — its Check object and the `keep_alive` handle, which must own
// whatever the checks reference (the kernel seams, the peer directory). When run() finally
// returns it drops them and ends; it never touches the runner, the clock or the round's
// caller again. If the process exits first, the thread ends with it.

#include <atomic>
#include <chrono>
#include <memory>
#include <stop_token>
#include <string>
#include <thread>
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

class CheckRunner {
 public:
  // Starts one worker thread per check. `clock` times the rounds and the checks; it must
  // outlive the runner (not an abandoned worker: see above).
  CheckRunner(std::vector<CheckPtr> checks, const Clock& clock, std::shared_ptr<const void> keep_alive = nullptr);
  ~CheckRunner();  // shutdown()
  CheckRunner(const CheckRunner&) = delete;
  CheckRunner& operator=(const CheckRunner&) = delete;

  // One round: starts every check whose previous run has returned and waits (on the clock)
  // until all of them return, `timeout` passes, or `stop` is requested. A check still
  // running then is reported FAIL "check timed out after ..."; one that had not returned
  // from an earlier round is not started again and is reported FAIL "timed out: previous
  // run still in progress ...". Results in the order of `checks`.
  DoctorReport run(const std::string& node, std::chrono::nanoseconds timeout, std::stop_token stop = {});

  size_t running() const;  // checks inside run() now, hung ones from earlier rounds included
  size_t threads() const;  // worker threads owned (one per check until shutdown, then 0)
  size_t abandoned() const;  // workers left inside run() by shutdown()

  // Joins the idle workers and abandons the busy ones (see above). Returns at once: it
  // never waits for a check. Idempotent; run() after it starts nothing and reports
  // every check as FAIL "not run".
  void shutdown();

 private:
  struct Worker;
  struct Round;
  const Clock& clock_;
  std::vector<std::shared_ptr<Worker>> workers_;
  std::vector<std::jthread> threads_;  // touched by the constructor and shutdown() only
  std::atomic<size_t> threads_owned_{0};
  std::atomic<size_t> abandoned_{0};
  std::atomic<bool> shut_down_{false};
};

// One round on a temporary runner (the --once mode): every check, concurrently, each
// under `timeout`; a check still running at the end is abandoned as described above.
DoctorReport runDoctor(const std::string& node, std::vector<CheckPtr> checks, std::chrono::nanoseconds timeout,
                       const Clock& clock, std::shared_ptr<const void> keep_alive = nullptr);

}  // namespace meshprobe::agent
