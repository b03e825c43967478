#include "agent/doctor/doctor.h"

#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "common/duration.h"

namespace meshprobe::agent {
namespace {

// Shared between the doctor and one check thread; outlives whichever finishes last.
struct Slot {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<CheckResult> result;
};

}  // namespace

bool DoctorReport::anyFailed() const {
  for (const auto& c : checks) {
    if (c.status == CheckStatus::kFail) return true;
  }
  return false;
}

DoctorReport runDoctor(const std::string& node, std::vector<CheckPtr>& checks, std::chrono::nanoseconds timeout,
                       const Clock& clock) {
  DoctorReport report;
  report.node = node;
  std::vector<std::shared_ptr<Slot>> slots;
  std::vector<std::thread> threads;
  const auto deadline = std::chrono::steady_clock::now() + timeout;

  for (auto& check : checks) {
    auto slot = std::make_shared<Slot>();
    slots.push_back(slot);
    Check* c = check.get();
    threads.emplace_back([slot, c, &clock] {
      auto start = clock.monotonicNow();
      CheckResult r;
      try {
        r = c->run();
      } catch (const std::exception& e) {
        // A check must not throw; if one does, it is a bug reported as a failure, not a crash.
        r.name = std::string(c->name());
        r.status = CheckStatus::kFail;
        r.summary = std::string("internal error: ") + e.what();
      }
      r.duration = clock.monotonicNow() - start;
      std::lock_guard lock(slot->mu);
      slot->result = std::move(r);
      slot->cv.notify_all();
    });
  }

  for (size_t i = 0; i < checks.size(); ++i) {
    std::unique_lock lock(slots[i]->mu);
    bool done = slots[i]->cv.wait_until(lock, deadline, [&] { return slots[i]->result.has_value(); });
    if (done) {
      report.checks.push_back(std::move(*slots[i]->result));
      lock.unlock();
      threads[i].join();
    } else {
      CheckResult r;
      r.name = std::string(checks[i]->name());
      r.status = CheckStatus::kFail;
      r.summary = "check timed out after " + formatDuration(timeout);
      r.duration = timeout;
      report.checks.push_back(std::move(r));
      lock.unlock();
      // The thread holds only the shared slot and the Check object; the caller keeps
      // `checks` alive until process exit (see main), so detaching is safe.
      threads[i].detach();
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

}  // namespace meshprobe::agent
