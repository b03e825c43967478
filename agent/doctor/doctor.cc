#include "agent/doctor/doctor.h"

#include <condition_variable>
#include <exception>
#include <mutex>
#include <optional>

#include "common/duration.h"
#include "common/thread_name.h"

namespace meshprobe::agent {

// One round's results; shared by the runner and the workers it started, so a worker that
// returns after the round was given up on still writes into live memory.
struct CheckRunner::Round {
  std::mutex mu;
  std::vector<std::optional<CheckResult>> results;
  size_t pending = 1;       // runs not yet returned, +1 while the runner is still starting them
  std::stop_source done;    // stopped when pending reaches 0 (or the caller stops)
};

// One check and its worker's mailbox. Shared by the runner and the worker thread: an
// abandoned worker keeps it (and through it the check and keep_alive) until it ends.
struct CheckRunner::Worker {
  std::string name;
  std::shared_ptr<const void> keep_alive;  // declared before `check`: outlives it
  CheckPtr check;
  const Clock* clock;  // read only under mu while !abandoned

  std::mutex mu;
  std::condition_variable_any cv;
  std::shared_ptr<Round> job;  // the round of the run in progress; null when idle
  size_t job_index = 0;
  std::chrono::steady_clock::time_point started{};
  bool abandoned = false;
};

namespace {

CheckResult runGuarded(Check& c) {
  try {
    return c.run();
  } catch (const std::exception& e) {
    // A check must not throw; if one does, it is a bug reported as a failure, not a crash.
    CheckResult r;
    r.name = std::string(c.name());
    r.status = CheckStatus::kFail;
    r.summary = std::string("internal error: ") + e.what();
    return r;
  } catch (...) {
    CheckResult r;
    r.name = std::string(c.name());
    r.status = CheckStatus::kFail;
    r.summary = "internal error: unknown exception";
    return r;
  }
}

CheckResult failed(const std::string& name, std::string summary, Duration duration) {
  CheckResult r;
  r.name = name;
  r.status = CheckStatus::kFail;
  r.summary = std::move(summary);
  r.duration = duration;
  return r;
}

}  // namespace

bool DoctorReport::anyFailed() const {
  for (const auto& c : checks) {
    if (c.status == CheckStatus::kFail) return true;
  }
  return false;
}

CheckRunner::CheckRunner(std::vector<CheckPtr> checks, const Clock& clock, std::shared_ptr<const void> keep_alive)
    : clock_(clock) {
  for (auto& c : checks) {
    auto w = std::make_shared<Worker>();
    w->name = std::string(c->name());
    w->keep_alive = keep_alive;
    w->check = std::move(c);
    w->clock = &clock;
    workers_.push_back(w);
    // The thread holds its own reference to the worker: see shutdown().
    threads_.emplace_back([w](std::stop_token stop) {
      nameThisThread("mp-chk-" + w->name);  // cut to 15 bytes: "mp-chk-vxlan_fd"
      std::unique_lock lock(w->mu);
      for (;;) {
        w->cv.wait(lock, stop, [&] { return w->job != nullptr; });
        if (!w->job) return;  // stop requested while idle
        const auto started = w->started;
        lock.unlock();
        CheckResult r = runGuarded(*w->check);
        lock.lock();
        if (w->abandoned) return;  // the runner is gone: touch nothing but what we own
        r.duration = w->clock->monotonicNow() - started;
        std::shared_ptr<Round> round = std::move(w->job);
        const size_t index = w->job_index;
        lock.unlock();
        {
          std::lock_guard round_lock(round->mu);
          round->results[index] = std::move(r);
          if (--round->pending == 0) round->done.request_stop();
        }
        lock.lock();
      }
    });
  }
  threads_owned_ = threads_.size();
}

CheckRunner::~CheckRunner() { shutdown(); }

DoctorReport CheckRunner::run(const std::string& node, std::chrono::nanoseconds timeout, std::stop_token stop) {
  DoctorReport report;
  report.node = node;
  auto round = std::make_shared<Round>();
  round->results.resize(workers_.size());
  const auto now = clock_.monotonicNow();
  const auto deadline = now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout);
  // When each check that was still busy from an earlier round started (not started now).
  std::vector<std::optional<std::chrono::steady_clock::time_point>> busy_since(workers_.size());
  const bool shut_down = shut_down_;
  for (size_t i = 0; i < workers_.size() && !shut_down; ++i) {
    Worker& w = *workers_[i];
    {
      std::lock_guard lock(w.mu);
      if (w.job || w.abandoned) {
        busy_since[i] = w.started;
        continue;
      }
      {
        std::lock_guard round_lock(round->mu);
        ++round->pending;
      }
      w.job = round;
      w.job_index = i;
      w.started = now;
    }
    w.cv.notify_one();
  }
  bool all_returned = false;
  {
    std::lock_guard round_lock(round->mu);
    all_returned = --round->pending == 0;
  }
  if (!all_returned) {
    std::stop_callback link(stop, [&round] { round->done.request_stop(); });
    clock_.waitUntil(deadline, round->done.get_token());
  }

  std::lock_guard round_lock(round->mu);
  for (size_t i = 0; i < workers_.size(); ++i) {
    const std::string& name = workers_[i]->name;
    if (shut_down) {
      report.checks.push_back(failed(name, "not run: the agent is stopping", Duration{}));
    } else if (busy_since[i]) {
      report.checks.push_back(failed(name,
                                     "timed out: previous run still in progress (started " +
                                         formatDuration(now - *busy_since[i]) + " ago, limit " +
                                         formatDuration(timeout) + ")",
                                     std::chrono::duration_cast<Duration>(now - *busy_since[i])));
    } else if (round->results[i]) {
      report.checks.push_back(std::move(*round->results[i]));
    } else {
      report.checks.push_back(
          failed(name, "check timed out after " + formatDuration(timeout), std::chrono::duration_cast<Duration>(timeout)));
    }
  }
  for (const auto& c : report.checks) {
    for (Finding f : c.findings) {
      if (f.nodes.empty()) f.nodes.push_back(node);
      report.findings.push_back(std::move(f));
    }
  }
  return report;
}

size_t CheckRunner::running() const {
  size_t n = 0;
  for (const auto& w : workers_) {
    std::lock_guard lock(w->mu);
    if (w->job) ++n;  // an abandoned worker keeps its job until it ends
  }
  return n;
}

size_t CheckRunner::threads() const { return threads_owned_; }

size_t CheckRunner::abandoned() const { return abandoned_; }

void CheckRunner::shutdown() {
  shut_down_ = true;
  for (size_t i = 0; i < threads_.size(); ++i) {
    if (!threads_[i].joinable()) continue;
    Worker& w = *workers_[i];
    bool abandon = false;
    {
      std::lock_guard lock(w.mu);
      abandon = w.job != nullptr;
      w.abandoned = abandon;
    }
    threads_[i].request_stop();
    if (abandon) {
      // Blocked in a check that cannot be interrupted: it owns what it touches from here
      // on (the Worker, through its own reference), so it may outlive the runner.
      threads_[i].detach();
      ++abandoned_;
    } else {
      threads_[i].join();  // idle: wakes on the stop request and ends at once
    }
    --threads_owned_;
  }
}

DoctorReport runDoctor(const std::string& node, std::vector<CheckPtr> checks, std::chrono::nanoseconds timeout,
                       const Clock& clock, std::shared_ptr<const void> keep_alive) {
  CheckRunner runner(std::move(checks), clock, std::move(keep_alive));
  return runner.run(node, timeout);
}

}  // namespace meshprobe::agent
