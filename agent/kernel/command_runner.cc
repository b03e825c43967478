#include "agent/kernel/command_runner.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>

extern char** environ;

namespace meshprobe::agent {

std::string CommandOutput::describe() const {
  const std::string prog = program.empty() ? "command" : program;
  if (not_found) return prog + ": not found" + (error.empty() ? "" : " (" + error + ")");
  if (timed_out) return prog + ": timed out after " + std::to_string(timeout.count()) + "ms (killed)";
  if (!error.empty()) return prog + ": " + error;
  if (term_signal != 0) return prog + ": killed by signal " + std::to_string(term_signal);
  if (exit_code != 0) {
    std::string line;
    size_t pos = 0;
    const std::string& text = err.empty() ? out : err;
    while (pos < text.size() && line.empty()) {
      size_t nl = text.find('\n', pos);
      line = text.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
      pos = nl == std::string::npos ? text.size() : nl + 1;
      while (!line.empty() && (line.back() == ' ' || line.back() == '\r')) line.pop_back();
    }
    if (line.size() > 200) line = line.substr(0, 200) + "...";
    return prog + " exited " + std::to_string(exit_code) + (line.empty() ? "" : ": " + line);
  }
  return prog + ": ok";
}

namespace {

constexpr size_t kMaxOutput = 64u << 20;  // a kube-proxy ruleset with 10k services is ~10 MiB

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

bool isExecutableFile(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

// $PATH, then the directories iptables/nft live in even when $PATH lacks them.
std::string lookupPath(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  std::string path;
  if (const char* p = std::getenv("PATH")) path = p;
  for (const char* extra : {"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}) {
    path += std::string(":") + extra;
  }
  size_t start = 0;
  while (start <= path.size()) {
    size_t colon = path.find(':', start);
    std::string dir = path.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
    if (!dir.empty()) {
      std::string candidate = dir + "/" + name;
      if (isExecutableFile(candidate)) return candidate;
    }
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  return "";
}

std::string errnoText(int err) {
  char buf[128];
  // GNU strerror_r returns the message (possibly not in buf).
  return std::string(::strerror_r(err, buf, sizeof buf));
}

// posix_spawn's file actions and attributes, destroyed on every path.
struct SpawnSetup {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  bool ok = false;
  SpawnSetup() {
    if (posix_spawn_file_actions_init(&actions) != 0) return;
    if (posix_spawnattr_init(&attr) != 0) {
      posix_spawn_file_actions_destroy(&actions);
      return;
    }
    ok = true;
  }
  ~SpawnSetup() {
    if (!ok) return;
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
  SpawnSetup(const SpawnSetup&) = delete;
  SpawnSetup& operator=(const SpawnSetup&) = delete;
};

class ProcessCommandRunner final : public CommandRunner {
 public:
  void shutdown() override {
    std::lock_guard lock(mu_);
    shut_down_ = true;
    for (pid_t pgid : running_) ::kill(-pgid, SIGKILL);
  }

  CommandOutput run(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) override {
    CommandOutput o;
    o.timeout = timeout;
    if (argv.empty() || argv[0].empty()) {
      o.error = "empty command line";
      return o;
    }
    if (shuttingDown()) {
      o.program = argv[0];
      o.error = "not run: the agent is shutting down";
      return o;
    }
    o.program = argv[0];
    const std::string path = lookupPath(argv[0]);
    if (path.empty()) {
      o.not_found = true;
      o.error = "no executable " + argv[0] + " in PATH or the sbin directories";
      return o;
    }

    // posix_spawn, not fork: glibc spawns with CLONE_VM | CLONE_VFORK, so the agent's
    // address space is neither copied nor write-protected. A fork of the agent (tens of
    // MiB, several threads) costs a page-table copy plus copy-on-write faults and TLB
    // shootdowns on every other thread afterwards: with checks every 2 s it was about a
    // third of the daemon's CPU at 1,000 peers. Everything the child needs is prepared
    // here; an exec failure comes back as posix_spawn's return value.
    std::vector<char*> cargv;
    for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    std::vector<std::string> env_store;
    for (char** e = environ; e && *e; ++e) {
      if (std::strncmp(*e, "LC_ALL=", 7) != 0 && std::strncmp(*e, "LANG=", 5) != 0) env_store.emplace_back(*e);
    }
    env_store.emplace_back("LC_ALL=C");
    std::vector<char*> cenv;
    for (auto& e : env_store) cenv.push_back(e.data());
    cenv.push_back(nullptr);

    int out_p[2], err_p[2];
    if (::pipe2(out_p, O_CLOEXEC) != 0) return fail(o, "pipe");
    Fd out_r(out_p[0]), out_w(out_p[1]);
    if (::pipe2(err_p, O_CLOEXEC) != 0) return fail(o, "pipe");
    Fd err_r(err_p[0]), err_w(err_p[1]);
    SpawnSetup setup;
    if (!setup.ok) return fail(o, "posix_spawn setup");
    // stdin /dev/null; stdout, stderr our pipes (dup2 clears O_CLOEXEC on the copies).
    posix_spawn_file_actions_addopen(&setup.actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&setup.actions, out_w.get(), 1);
    posix_spawn_file_actions_adddup2(&setup.actions, err_w.get(), 2);
    // Nothing but stdin/stdout/stderr crosses into the tool: the agent's own sockets
    // (the probe responder's, gRPC's) are opened by libraries without O_CLOEXEC.
    posix_spawn_file_actions_addclosefrom_np(&setup.actions, 3);
    // Its own process group (a kill on timeout reaches what it starts), every signal
    // unblocked, SIGPIPE back to its default.
    sigset_t none, pipe_default;
    sigemptyset(&none);
    sigemptyset(&pipe_default);
    sigaddset(&pipe_default, SIGPIPE);
    posix_spawnattr_setpgroup(&setup.attr, 0);
    posix_spawnattr_setsigmask(&setup.attr, &none);
    posix_spawnattr_setsigdefault(&setup.attr, &pipe_default);
    posix_spawnattr_setflags(&setup.attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

    pid_t pid = -1;
    const int spawn_errno = ::posix_spawn(&pid, path.c_str(), &setup.actions, &setup.attr, cargv.data(), cenv.data());
    if (spawn_errno != 0) {
      o.exit_code = -1;
      if (spawn_errno == ENOENT || spawn_errno == EACCES || spawn_errno == ENOEXEC || spawn_errno == ENOTDIR) {
        o.not_found = true;
      }
      o.error = "cannot execute " + path + ": " + errnoText(spawn_errno);
      return o;
    }
    track(pid);  // killed by shutdown() until reaped
    out_w.reset();
    err_w.reset();
    for (int fd : {out_r.get(), err_r.get()}) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);

    Fd pidfd;
#ifdef SYS_pidfd_open
    pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
#endif

    const auto deadline = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    bool exited = false;
    bool truncated = false;
    char buf[65536];
    while (true) {
      if (out_r.get() < 0 && err_r.get() < 0) {
        if (!exited && pidfd.get() < 0) {
          // No pidfd (old kernel): the child closed its output, so it is exiting.
          untrack(pid);
          while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
          }
          exited = true;
        }
        if (exited) break;
      }
      auto remaining = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (remaining.count() <= 0) {
        o.timed_out = true;
        break;
      }
      pollfd pfds[3];
      int n = 0;
      int idx_out = -1, idx_err = -1, idx_pid = -1;
      if (out_r.get() >= 0) pfds[idx_out = n++] = {out_r.get(), POLLIN, 0};
      if (err_r.get() >= 0) pfds[idx_err = n++] = {err_r.get(), POLLIN, 0};
      if (!exited && pidfd.get() >= 0) pfds[idx_pid = n++] = {pidfd.get(), POLLIN, 0};
      int pr = ::poll(pfds, static_cast<nfds_t>(n), static_cast<int>(std::min<int64_t>(remaining.count(), 60'000)));
      if (pr < 0) {
        if (errno == EINTR) continue;
        o.error = "poll: " + errnoText(errno);
        break;
      }
      auto drain = [&](int idx, Fd& fd, std::string& dst) {
        if (idx < 0 || !(pfds[idx].revents & (POLLIN | POLLHUP | POLLERR))) return;
        while (true) {
          ssize_t r = ::read(fd.get(), buf, sizeof buf);
          if (r > 0) {
            if (dst.size() + static_cast<size_t>(r) <= kMaxOutput) {
              dst.append(buf, static_cast<size_t>(r));
            } else {
              truncated = true;
            }
            continue;
          }
          if (r < 0 && errno == EINTR) continue;
          if (r < 0 && errno == EAGAIN) return;
          fd.reset();  // EOF or error
          return;
        }
      };
      drain(idx_out, out_r, o.out);
      drain(idx_err, err_r, o.err);
      if (idx_pid >= 0 && (pfds[idx_pid].revents & POLLIN)) {
        pid_t w;
        untrack(pid);  // the child has exited (pidfd readable): reaping it frees its pid
        do {
          w = ::waitpid(pid, &status, WNOHANG);
        } while (w < 0 && errno == EINTR);
        if (w == pid) {
          exited = true;
          pidfd.reset();
        }
      }
    }

    if (!exited) {
      // Timed out (or poll failed): kill the child and anything it started, then reap it.
      ::kill(-pid, SIGKILL);
      ::kill(pid, SIGKILL);
      untrack(pid);
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
    } else if (o.timed_out) {
      ::kill(-pid, SIGKILL);  // the child exited but its descendants kept the pipes open
    }

    if (WIFEXITED(status)) {
      o.exit_code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
      o.term_signal = WTERMSIG(status);
    }
    if (truncated && o.error.empty()) {
      o.error = "output larger than " + std::to_string(kMaxOutput >> 20) + " MiB";
    }
    return o;
  }

 private:
  bool shuttingDown() const {
    std::lock_guard lock(mu_);
    return shut_down_;
  }
  // A child forked while shutdown() ran is killed at once (it was not in running_ yet).
  void track(pid_t pid) {
    std::lock_guard lock(mu_);
    if (shut_down_) ::kill(-pid, SIGKILL);
    running_.insert(pid);
  }
  // Before the child is reaped: after that its pid (the group's id) may be reused.
  void untrack(pid_t pid) {
    std::lock_guard lock(mu_);
    running_.erase(pid);
  }

  mutable std::mutex mu_;
  bool shut_down_ = false;
  std::set<pid_t> running_;  // process groups (= child pids) of the commands running now

  static CommandOutput& fail(CommandOutput& o, const char* what) {
    o.error = std::string(what) + ": " + errnoText(errno);
    return o;
  }
};

}  // namespace

std::unique_ptr<CommandRunner> makeProcessCommandRunner() { return std::make_unique<ProcessCommandRunner>(); }

}  // namespace meshprobe::agent
