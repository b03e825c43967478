#include "agent/kernel/command_runner.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

extern char** environ;

#ifndef SYS_close_range
#define SYS_close_range 436
#endif

namespace meshprobe::agent {
constexpr unsigned kCloseRangeCloexec = 1U << 2;  // CLOSE_RANGE_CLOEXEC, linux/close_range.h


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

class ProcessCommandRunner final : public CommandRunner {
 public:
  CommandOutput run(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) override {
    CommandOutput o;
    o.timeout = timeout;
    if (argv.empty() || argv[0].empty()) {
      o.error = "empty command line";
      return o;
    }
    o.program = argv[0];
    const std::string path = lookupPath(argv[0]);
    if (path.empty()) {
      o.not_found = true;
      o.error = "no executable " + argv[0] + " in PATH or the sbin directories";
      return o;
    }

    // Everything the child needs is prepared before fork: between fork and exec only
    // async-signal-safe calls are allowed (other threads may hold malloc's locks).
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

    int out_p[2], err_p[2], exec_p[2];
    if (::pipe2(out_p, O_CLOEXEC) != 0) return fail(o, "pipe");
    Fd out_r(out_p[0]), out_w(out_p[1]);
    if (::pipe2(err_p, O_CLOEXEC) != 0) return fail(o, "pipe");
    Fd err_r(err_p[0]), err_w(err_p[1]);
    if (::pipe2(exec_p, O_CLOEXEC) != 0) return fail(o, "pipe");
    Fd exec_r(exec_p[0]), exec_w(exec_p[1]);
    Fd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (devnull.get() < 0) return fail(o, "open /dev/null");
    sigset_t all_unblocked;
    sigemptyset(&all_unblocked);

    const pid_t pid = ::fork();
    if (pid < 0) return fail(o, "fork");
    if (pid == 0) {
      // Child: async-signal-safe calls only.
      ::setpgid(0, 0);
      ::sigprocmask(SIG_SETMASK, &all_unblocked, nullptr);
      struct sigaction dfl {};
      dfl.sa_handler = SIG_DFL;
      ::sigaction(SIGPIPE, &dfl, nullptr);
      if (::dup2(devnull.get(), 0) < 0 || ::dup2(out_w.get(), 1) < 0 || ::dup2(err_w.get(), 2) < 0) {
        int e = errno;
        [[maybe_unused]] auto n = ::write(exec_w.get(), &e, sizeof e);
        ::_exit(127);
      }
      // Nothing but stdin/stdout/stderr crosses into the tool: the agent's own sockets
      // (the probe responder's, gRPC's) are opened by libraries without O_CLOEXEC.
      // close_range(CLOSE_RANGE_CLOEXEC) is Linux >= 5.11; on older kernels the call
      // fails and the exec goes on as before.
      [[maybe_unused]] long cr = ::syscall(SYS_close_range, 3U, ~0U, kCloseRangeCloexec);
      ::execve(path.c_str(), cargv.data(), cenv.data());
      int e = errno;
      [[maybe_unused]] auto n = ::write(exec_w.get(), &e, sizeof e);
      ::_exit(127);
    }
    ::setpgid(pid, pid);  // also from the parent, so a kill on timeout finds the group
    out_w.reset();
    err_w.reset();
    exec_w.reset();
    devnull.reset();
    for (int fd : {out_r.get(), err_r.get()}) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);

    Fd pidfd;
#ifdef SYS_pidfd_open
    pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
#endif

    const auto deadline = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    bool exited = false;
    int exec_errno = 0;
    bool truncated = false;
    char buf[65536];
    while (true) {
      if (out_r.get() < 0 && err_r.get() < 0 && exec_r.get() < 0) {
        if (!exited && pidfd.get() < 0) {
          // No pidfd (old kernel): the child closed its output, so it is exiting.
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
      pollfd pfds[4];
      int n = 0;
      int idx_out = -1, idx_err = -1, idx_exec = -1, idx_pid = -1;
      if (out_r.get() >= 0) pfds[idx_out = n++] = {out_r.get(), POLLIN, 0};
      if (err_r.get() >= 0) pfds[idx_err = n++] = {err_r.get(), POLLIN, 0};
      if (exec_r.get() >= 0) pfds[idx_exec = n++] = {exec_r.get(), POLLIN, 0};
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
      if (idx_exec >= 0 && (pfds[idx_exec].revents & (POLLIN | POLLHUP | POLLERR))) {
        int e = 0;
        ssize_t r;
        do {
          r = ::read(exec_r.get(), &e, sizeof e);
        } while (r < 0 && errno == EINTR);
        if (r == static_cast<ssize_t>(sizeof e)) exec_errno = e;
        exec_r.reset();  // EOF: exec succeeded (CLOEXEC closed it)
      }
      if (idx_pid >= 0 && (pfds[idx_pid].revents & POLLIN)) {
        pid_t w;
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
    if (exec_errno != 0) {
      o.exit_code = -1;
      if (exec_errno == ENOENT || exec_errno == EACCES || exec_errno == ENOEXEC || exec_errno == ENOTDIR) {
        o.not_found = true;
      }
      o.error = "cannot execute " + path + ": " + errnoText(exec_errno);
    } else if (truncated && o.error.empty()) {
      o.error = "output larger than " + std::to_string(kMaxOutput >> 20) + " MiB";
    }
    return o;
  }

 private:
  static CommandOutput& fail(CommandOutput& o, const char* what) {
    o.error = std::string(what) + ": " + errnoText(errno);
    return o;
  }
};

}  // namespace

std::unique_ptr<CommandRunner> makeProcessCommandRunner() { return std::make_unique<ProcessCommandRunner>(); }

}  // namespace meshprobe::agent
