// The process CommandRunner with real, harmless programs.
#include "agent/kernel/command_runner.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <string>
#include <thread>

using namespace meshprobe::agent;
using namespace std::chrono_literals;

namespace {

TEST(ProcessCommandRunner, CapturesStdoutAndExitZero) {
  auto r = makeProcessCommandRunner();
  CommandOutput o = r->run({"/bin/echo", "hello", "a b"}, 5s);
  EXPECT_TRUE(o.succeeded()) << o.describe();
  EXPECT_EQ(o.exit_code, 0);
  EXPECT_EQ(o.out, "hello a b\n");
  EXPECT_EQ(o.err, "");
  EXPECT_FALSE(o.not_found);
  EXPECT_FALSE(o.timed_out);
  EXPECT_EQ(o.describe(), "/bin/echo: ok");
}

TEST(ProcessCommandRunner, LooksUpThePath) {
  auto r = makeProcessCommandRunner();
  CommandOutput o = r->run({"echo", "via-path"}, 5s);
  EXPECT_TRUE(o.succeeded()) << o.describe();
  EXPECT_EQ(o.out, "via-path\n");
}

TEST(ProcessCommandRunner, ReportsNonZeroExit) {
  auto r = makeProcessCommandRunner();
  CommandOutput o = r->run({"/bin/false"}, 5s);
  EXPECT_FALSE(o.succeeded());
  EXPECT_EQ(o.exit_code, 1);
  EXPECT_FALSE(o.not_found);
  EXPECT_FALSE(o.timed_out);
  EXPECT_EQ(o.describe(), "/bin/false exited 1");
}

TEST(ProcessCommandRunner, CapturesStderrSeparatelyAndNamesItInDescribe) {
  auto r = makeProcessCommandRunner();
  CommandOutput o = r->run({"/bin/sh", "-c", "echo out; echo 'boom: Permission denied' >&2; exit 4"}, 5s);
  EXPECT_EQ(o.exit_code, 4);
  EXPECT_EQ(o.out, "out\n");
  EXPECT_EQ(o.err, "boom: Permission denied\n");
  EXPECT_EQ(o.describe(), "/bin/sh exited 4: boom: Permission denied");
}

TEST(ProcessCommandRunner, MissingBinaryInPathIsNotFound) {
  auto r = makeProcessCommandRunner();
  CommandOutput o = r->run({"meshprobe-no-such-binary-xyz", "-t", "mangle"}, 5s);
  EXPECT_TRUE(o.not_found);
  EXPECT_FALSE(o.succeeded());
  EXPECT_EQ(o.describe().rfind("meshprobe-no-such-binary-xyz: not found", 0), 0u) << o.describe();
}

TEST(ProcessCommandRunner, ExecFailureIsReportedThroughThePipe) {
  // An absolute path skips the lookup: the child's execve fails with ENOENT and says so
  // through the CLOEXEC pipe.
  auto r = makeProcessCommandRunner();
  CommandOutput o = r->run({"/nonexistent/meshprobe-missing"}, 5s);
  EXPECT_TRUE(o.not_found);
  EXPECT_NE(o.error.find("No such file or directory"), std::string::npos) << o.error;
  EXPECT_EQ(o.exit_code, -1);
}

TEST(ProcessCommandRunner, NonExecutableFileIsNotFound) {
  char path[] = "/tmp/mph-firewall-noexec-XXXXXX";
  int fd = ::mkstemp(path);  // mode 0600: not executable, even for root
  ASSERT_GE(fd, 0);
  ::close(fd);
  auto r = makeProcessCommandRunner();
  CommandOutput o = r->run({path}, 5s);
  ::unlink(path);
  EXPECT_TRUE(o.not_found);
  EXPECT_NE(o.error.find("Permission denied"), std::string::npos) << o.error;
}

TEST(ProcessCommandRunner, KillsAndReapsTheChildAtTheDeadline) {
  auto r = makeProcessCommandRunner();
  auto start = std::chrono::steady_clock::now();
  CommandOutput o = r->run({"sleep", "10"}, 200ms);  // the child the deadline must kill
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(o.timed_out);
  EXPECT_FALSE(o.succeeded());
  EXPECT_EQ(o.term_signal, SIGKILL);
  EXPECT_EQ(o.exit_code, -1);
  // A real deadline on a real child process: killed at 200 ms (not earlier, and well
  // before `sleep 10` would end; 3 s is generous for a loaded box).
  EXPECT_LT(took, 3s);
  EXPECT_GE(took, 190ms);
  EXPECT_EQ(o.describe(), "sleep: timed out after 200ms (killed)");
}

TEST(ProcessCommandRunner, KillsGrandchildrenHoldingThePipe) {
  // The shell forks a sleeper that keeps stdout open; the deadline still holds.
  auto r = makeProcessCommandRunner();
  auto start = std::chrono::steady_clock::now();
  CommandOutput o = r->run({"/bin/sh", "-c", "sleep 10 & echo started"}, 300ms);  // the child hangs; the 300 ms deadline must end it
  EXPECT_TRUE(o.timed_out);
  EXPECT_EQ(o.out, "started\n");
  // A real deadline: the run ends near 300 ms although the grandchild keeps the pipe open
  // for 10 s (3 s is generous for a loaded box).
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
}

TEST(ProcessCommandRunner, LargeOutputIsReadCompletely) {
  auto r = makeProcessCommandRunner();
  CommandOutput o = r->run({"/bin/sh", "-c", "head -c 3000000 /dev/zero"}, 10s);
  EXPECT_TRUE(o.succeeded()) << o.describe();
  EXPECT_EQ(o.out.size(), 3000000u);
}

TEST(ProcessCommandRunner, RunsWithCLocale) {
  auto r = makeProcessCommandRunner();
  CommandOutput o = r->run({"/bin/sh", "-c", "echo $LC_ALL"}, 5s);
  EXPECT_EQ(o.out, "C\n");
}

TEST(ProcessCommandRunner, EmptyArgvIsAnError) {
  auto r = makeProcessCommandRunner();
  CommandOutput o = r->run({}, 1s);
  EXPECT_FALSE(o.succeeded());
  EXPECT_FALSE(o.error.empty());
}

}  // namespace

// The tool sees only stdin, stdout and stderr: a descriptor the agent holds without
// O_CLOEXEC (Asio opens the responder's socket that way) must not leak into it.
TEST(ProcessCommandRunner, ChildInheritsNoDescriptorBeyondStdio) {
  // A high number, so it cannot be confused with the descriptor ls opens for the listing.
  const int leaky = ::dup2(1, 200);  // dup2() never sets FD_CLOEXEC
  ASSERT_EQ(leaky, 200);
  auto r = makeProcessCommandRunner();
  CommandOutput o = r->run({"/bin/sh", "-c", "ls /proc/self/fd"}, 5s);
  ::close(leaky);
  ASSERT_EQ(o.exit_code, 0) << o.describe();
  // ls itself opens one descriptor for the directory it lists; sh may keep one for
  // the script on some shells, so allow 0,1,2 plus ls's own, and never the leaked one.
  EXPECT_EQ(o.out.find("\n" + std::to_string(leaky) + "\n"), std::string::npos) << o.out;
}

namespace {

// State letter of /proc/PID/stat ('Z' zombie), or 0 when the process is gone.
char procState(pid_t pid) {
  FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
  if (!f) return 0;
  char state = 0;
  if (std::fscanf(f, "%*d (%*[^)]) %c", &state) != 1) state = '?';
  std::fclose(f);
  return state;
}

}  // namespace

// On shutdown a command that would outlive the agent (a wedged iptables-save, and what it
// started) is killed: run() returns at once as killed, the whole group is gone, and a
// later run() refuses to start anything.
TEST(ProcessCommandRunner, ShutdownKillsRunningCommandsAndTheirChildren) {
  char dir[] = "/tmp/mp-runner-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string pids = std::string(dir) + "/pids";
  auto r = makeProcessCommandRunner();
  std::promise<CommandOutput> done;
  auto result = done.get_future();
  std::thread worker([&] {
    // Deadline 60 s: only shutdown() can end it within the test's bounds below. `sleep 1000`
    // is the grandchild shutdown() must kill, not a wait of the test's.
    done.set_value(r->run({"/bin/sh", "-c", "sleep 1000 & echo $$ $! >" + pids + "; wait"}, 60s));
  });
  // Poll (10 ms steps, 10 s deadline) until the shell has written its pid and its child's.
  pid_t sh = 0, child = 0;
  for (int i = 0; i < 1000 && child == 0; ++i) {
    if (FILE* f = std::fopen(pids.c_str(), "r")) {
      if (std::fscanf(f, "%d %d", &sh, &child) != 2) sh = child = 0;
      std::fclose(f);
    }
    if (child == 0) std::this_thread::sleep_for(10ms);  // poll step of the loop above (10 s deadline)
  }
  ASSERT_NE(child, 0) << "the command never started";

  const auto start = std::chrono::steady_clock::now();
  r->shutdown();
  if (result.wait_for(10s) != std::future_status::ready) {
    ::kill(-sh, SIGKILL);  // end the command ourselves so the worker can be joined
    worker.join();
    FAIL() << "run() still waiting 10 s after shutdown()";
  }
  worker.join();
  const CommandOutput o = result.get();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  EXPECT_FALSE(o.timed_out);
  EXPECT_EQ(o.term_signal, SIGKILL) << o.describe();
  EXPECT_EQ(procState(sh), 0) << "the shell was reaped";
  // The grandchild was reparented when the shell died: gone, or a zombie of whoever
  // reaps orphans here (poll 10 ms steps, 10 s deadline).
  char state = procState(child);
  for (int i = 0; i < 1000 && state != 0 && state != 'Z'; ++i) {
    std::this_thread::sleep_for(10ms);  // poll step (10 s deadline)
    state = procState(child);
  }
  EXPECT_TRUE(state == 0 || state == 'Z') << "sleep " << child << " still running (state " << state << ")";
  if (state != 0 && state != 'Z') ::kill(child, SIGKILL);

  const CommandOutput later = r->run({"/bin/echo", "late"}, 5s);
  EXPECT_FALSE(later.succeeded());
  EXPECT_EQ(later.out, "");
  EXPECT_EQ(later.describe(), "/bin/echo: not run: the agent is shutting down");
  std::remove(pids.c_str());
  ::rmdir(dir);
}
