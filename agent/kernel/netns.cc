#include "agent/kernel/netns.h"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>

namespace meshprobe::agent::netns_detail {
namespace {

// Shared between the caller and the namespace thread; outlives whichever finishes last.
struct Slot {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  Status status = okStatus();
};

std::string setnsHint(int err) {
  switch (err) {
    case EPERM:
      return " (joining a network namespace needs CAP_SYS_ADMIN: run the agent as root)";
    case EINVAL:
      return " (not a network namespace)";
    default:
      return "";
  }
}

Status enterAndRun(const std::string& path, std::function<void()>& work) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    return Error::fromErrno("open netns " + path, err);
  }
  // CLONE_NEWNET makes the kernel reject any other namespace type with EINVAL.
  int rc = ::setns(fd, CLONE_NEWNET);
  int err = errno;
  ::close(fd);
  if (rc != 0) {
    Error e = Error::fromErrno("setns " + path, err);
    e.message += setnsHint(err);
    return e;
  }
  try {
    work();
  } catch (const std::exception& ex) {
    return Error{"work in netns " + path + " failed: " + ex.what()};
  } catch (...) {
    return Error{"work in netns " + path + " failed with an unknown exception"};
  }
  return okStatus();
}

}  // namespace

Status runInThread(const std::string& path, std::function<void()> work, std::chrono::milliseconds timeout) {
  auto slot = std::make_shared<Slot>();
  std::thread worker;
  try {
    // The thread joins the namespace and exits afterwards, so no thread of the agent
    // ever returns to its pool in a foreign namespace.
    worker = std::thread([slot, path, work = std::move(work)]() mutable {
      Status st = enterAndRun(path, work);
      std::lock_guard lock(slot->mu);
      slot->status = std::move(st);
      slot->done = true;
      slot->cv.notify_all();
    });
  } catch (const std::system_error& e) {
    return Error{"netns " + path + ": cannot start a thread: " + e.what(), e.code().value()};
  }

  std::unique_lock lock(slot->mu);
  bool done = slot->cv.wait_for(lock, timeout, [&] { return slot->done; });
  if (!done) {
    lock.unlock();
    worker.detach();  // holds only the shared slot and its own captures
    return Error{"netns " + path + ": did not finish within " + std::to_string(timeout.count()) + "ms", ETIMEDOUT};
  }
  Status st = std::move(slot->status);
  lock.unlock();
  worker.join();
  return st;
}

}  // namespace meshprobe::agent::netns_detail
