#include "agent/kernel/netns.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

using namespace meshprobe;
using namespace meshprobe::agent;
using namespace std::chrono_literals;

namespace {

std::string nsLink(const std::string& path) {
  char buf[128] = {};
  ssize_t n = ::readlink(path.c_str(), buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

std::string threadNetns() { return nsLink("/proc/thread-self/ns/net"); }

bool joinOwnNetnsAllowed() {
  // setns into our own namespace still needs CAP_SYS_ADMIN.
  auto r = runInNetns("/proc/self/ns/net", 5s, [] { return Result<int>(0); });
  return r.ok();
}

struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  void release() {
    std::lock_guard l(mu);
    open = true;
    cv.notify_all();
  }
  void wait() {
    std::unique_lock l(mu);
    cv.wait(l, [&] { return open; });
  }
};

}  // namespace

TEST(RunInNetns, MissingPathIsEnoentNamingThePath) {
  bool ran = false;
  auto r = runInNetns("/nonexistent/mph-ambient/netns", 5s, [&ran] {
    ran = true;
    return Result<int>(1);
  });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().sys_errno, ENOENT);
  EXPECT_NE(r.error().message.find("/nonexistent/mph-ambient/netns"), std::string::npos) << r.error().message;
  EXPECT_FALSE(ran);
}

TEST(RunInNetns, RegularFileIsNotANetworkNamespace) {
  auto dir = std::filesystem::path(::testing::TempDir()) / "mph-ambient-netns-test";
  std::filesystem::create_directories(dir);
  auto file = (dir / "cni-regular").string();
  std::ofstream(file) << "not a namespace\n";
  bool ran = false;
  auto r = runInNetns(file, 5s, [&ran] {
    ran = true;
    return Result<int>(1);
  });
  std::filesystem::remove_all(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().sys_errno, EINVAL);
  EXPECT_NE(r.error().message.find(file), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("not a network namespace"), std::string::npos) << r.error().message;
  EXPECT_FALSE(ran);
}

TEST(RunInNetns, WithoutCapSysAdminIsEpermWithAHint) {
  // As root, drop to nobody in a child process; unprivileged, the call fails directly.
  auto check = [] {
    auto r = runInNetns("/proc/self/ns/net", 5s, [] { return Result<int>(1); });
    return !r.ok() && r.error().sys_errno == EPERM &&
           r.error().message.find("/proc/self/ns/net") != std::string::npos &&
           r.error().message.find("run the agent as root") != std::string::npos;
  };
  if (::geteuid() != 0) {
    EXPECT_TRUE(check());
    return;
  }
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0) ::_exit(2);
    ::_exit(check() ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "child could not drop privileges (2) or got a different error (1)";
}

TEST(RunInNetns, RunsInADedicatedThreadAndReturnsTheValue) {
  if (!joinOwnNetnsAllowed()) GTEST_SKIP() << "needs CAP_SYS_ADMIN";
  const auto caller = std::this_thread::get_id();
  auto r = runInNetns("/proc/self/ns/net", 5s, [caller] { return Result<bool>(std::this_thread::get_id() != caller); });
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(*r);
}

TEST(RunInNetns, ErrorsFromTheWorkComeBackAsIs) {
  if (!joinOwnNetnsAllowed()) GTEST_SKIP() << "needs CAP_SYS_ADMIN";
  auto r = runInNetns("/proc/self/ns/net", 5s, [] { return Result<int>(Error{"no listeners", EIO}); });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "no listeners");
  EXPECT_EQ(r.error().sys_errno, EIO);
}

TEST(RunInNetns, EntersAnotherNamespaceWithoutMovingTheCaller) {
  if (!joinOwnNetnsAllowed()) GTEST_SKIP() << "needs CAP_SYS_ADMIN";
  // A thread that unshares a fresh netns and stays alive while we join it by its /proc path.
  Gate ready, done;
  std::string other_path, other_link;
  bool unshared = false;
  std::thread holder([&] {
    unshared = ::unshare(CLONE_NEWNET) == 0;
    other_path = "/proc/" + std::to_string(::getpid()) + "/task/" + std::to_string(::syscall(SYS_gettid)) + "/ns/net";
    other_link = threadNetns();
    ready.release();
    done.wait();
  });
  ready.wait();
  const std::string before = threadNetns();
  auto r = runInNetns(other_path, 5s, [] { return Result<std::string>(threadNetns()); });
  const std::string after = threadNetns();
  done.release();
  holder.join();

  ASSERT_TRUE(unshared);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*r, other_link);
  EXPECT_NE(*r, before);
  EXPECT_EQ(before, after) << "the caller's thread must stay in its own netns";
}

TEST(RunInNetns, CallerStopsWaitingAtTheDeadline) {
  if (!joinOwnNetnsAllowed()) GTEST_SKIP() << "needs CAP_SYS_ADMIN";
  auto gate = std::make_shared<Gate>();
  auto r = runInNetns("/proc/self/ns/net", 50ms, [gate] {
    gate->wait();  // a hung read
    return Result<int>(1);
  });
  gate->release();  // let the detached thread finish
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().sys_errno, ETIMEDOUT);
  EXPECT_NE(r.error().message.find("/proc/self/ns/net"), std::string::npos);
  EXPECT_NE(r.error().message.find("50ms"), std::string::npos) << r.error().message;
}
