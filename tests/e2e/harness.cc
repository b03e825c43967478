#include "tests/e2e/harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "tests/support/eventually.h"

extern char** environ;

namespace meshprobe::e2e {
namespace {

// ---- what the signal handler cleans up: fixed slots, no allocation in the handler ----

constexpr int kSlots = 128;
constexpr size_t kTextLen = 256;
struct Slot {
  std::atomic<bool> used{false};
  char text[kTextLen] = {};
};
Slot g_netns[kSlots];
Slot g_mounts[kSlots];
std::atomic<pid_t> g_pids[kSlots];
char g_ip_bin[64] = "/usr/sbin/ip";

void registerText(Slot* slots, const std::string& text) {
  for (int i = 0; i < kSlots; ++i) {
    if (!slots[i].used.load()) {
      std::snprintf(slots[i].text, kTextLen, "%s", text.c_str());
      slots[i].used.store(true);
      return;
    }
  }
}

void unregisterText(Slot* slots, const std::string& text) {
  for (int i = 0; i < kSlots; ++i) {
    if (slots[i].used.load() && text == slots[i].text) {
      slots[i].used.store(false);
      return;
    }
  }
}

void registerPid(pid_t pid) {
  for (auto& p : g_pids) {
    pid_t zero = 0;
    if (p.compare_exchange_strong(zero, pid)) return;
  }
}

void unregisterPid(pid_t pid) {
  for (auto& p : g_pids) {
    pid_t expected = pid;
    if (p.compare_exchange_strong(expected, 0)) return;
  }
}

// Async-signal-safe: kill/waitpid/umount2/fork/execv only.
void onFatalSignal(int sig) {
  for (auto& p : g_pids) {
    pid_t pid = p.load();
    if (pid > 0) kill(pid, SIGKILL);
  }
  for (auto& p : g_pids) {
    pid_t pid = p.load();
    if (pid > 0) waitpid(pid, nullptr, 0);
  }
  for (int i = kSlots - 1; i >= 0; --i) {
    if (g_mounts[i].used.load()) umount2(g_mounts[i].text, MNT_DETACH);
  }
  for (auto& slot : g_netns) {
    if (!slot.used.load()) continue;
    pid_t child = fork();
    if (child == 0) {
      char a0[] = "ip", a1[] = "netns", a2[] = "del";
      char* argv[] = {a0, a1, a2, slot.text, nullptr};
      execv(g_ip_bin, argv);
      _exit(127);
    }
    if (child > 0) waitpid(child, nullptr, 0);
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

bool pidAlive(pid_t pid) { return kill(pid, 0) == 0 || errno == EPERM; }

// "mpe2e-<pid>-rest" -> pid, or -1.
pid_t prefixPid(std::string_view name) {
  constexpr std::string_view kPrefix = "mpe2e-";
  if (name.substr(0, kPrefix.size()) != kPrefix) return -1;
  name.remove_prefix(kPrefix.size());
  size_t dash = name.find('-');
  if (dash == 0 || dash == std::string_view::npos) return -1;
  pid_t pid = 0;
  for (char c : name.substr(0, dash)) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return -1;
    pid = pid * 10 + (c - '0');
  }
  return pid;
}

std::vector<std::string> mountPoints() {
  std::vector<std::string> points;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, devno, root, point;
    fields >> id >> parent >> devno >> root >> point;
    points.push_back(point);
  }
  return points;
}

void detachMountsUnder(const std::string& dir) {
  auto points = mountPoints();
  for (auto it = points.rbegin(); it != points.rend(); ++it) {
    if (it->rfind(dir + "/", 0) == 0) umount2(it->c_str(), MNT_DETACH);
  }
}

std::vector<std::string> listDir(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(n);
    }
    closedir(d);
  }
  return names;
}

std::vector<std::string> buildEnv(const std::vector<std::string>& overrides, bool drop_meshprobe) {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    if (drop_meshprobe && kv.rfind("MESHPROBE_", 0) == 0) continue;
    bool overridden = false;
    for (const auto& o : overrides) {
      auto eq = o.find('=');
      if (eq != std::string::npos && kv.compare(0, eq + 1, o, 0, eq + 1) == 0) overridden = true;
    }
    if (!overridden) env.push_back(kv);
  }
  for (const auto& o : overrides) env.push_back(o);
  return env;
}

std::vector<char*> cStrings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

std::vector<std::string> inNetns(const std::string& netns, const std::vector<std::string>& argv) {
  if (netns.empty()) return argv;
  std::vector<std::string> full = {g_ip_bin, "netns", "exec", netns};
  full.insert(full.end(), argv.begin(), argv.end());
  return full;
}

std::string joinArgs(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) {
    if (!s.empty()) s += ' ';
    bool quote = a.find_first_of(" \t'\"{};") != std::string::npos || a.empty();
    s += quote ? "'" + a + "'" : a;
  }
  return s;
}

std::string tail(const std::string& text, size_t max) {
  return text.size() <= max ? text : "..." + text.substr(text.size() - max);
}

// In the child after fork: die with the parent, never outlive the test.
void childCommon(pid_t parent) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(127);
  signal(SIGPIPE, SIG_DFL);
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
}

int decodeStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return -1;
}

}  // namespace

std::string runPrefix() { return "mpe2e-" + std::to_string(getpid()) + "-"; }

bool havePrivileges(std::string* why) {
  if (geteuid() != 0) {
    *why = "not root (e2e tests need CAP_NET_ADMIN and CAP_SYS_ADMIN for network namespaces)";
    return false;
  }
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("CapEff:", 0) == 0) {
      unsigned long long caps = std::stoull(line.substr(7), nullptr, 16);
      constexpr int kNetAdmin = 12, kSysAdmin = 21;
      if (!(caps & (1ULL << kNetAdmin)) || !(caps & (1ULL << kSysAdmin))) {
        *why = "missing CAP_NET_ADMIN or CAP_SYS_ADMIN";
        return false;
      }
    }
  }
  return true;
}

void initHarness() {
  for (const char* candidate : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"}) {
    if (access(candidate, X_OK) == 0) {
      std::snprintf(g_ip_bin, sizeof g_ip_bin, "%s", candidate);
      break;
    }
  }
  struct sigaction sa {};
  sa.sa_handler = onFatalSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::string why;
  if (!havePrivileges(&why)) return;
  // Leftovers of an interrupted earlier run: only mpe2e-<pid>-* whose pid is gone.
  auto dead = [](std::string_view name) {
    pid_t pid = prefixPid(name);
    return pid > 0 && pid != getpid() && !pidAlive(pid);
  };
  auto points = mountPoints();
  for (auto it = points.rbegin(); it != points.rend(); ++it) {
    constexpr std::string_view kTmp = "/tmp/";
    if (it->rfind(kTmp, 0) == 0 && dead(std::string_view(*it).substr(kTmp.size()))) {
      umount2(it->c_str(), MNT_DETACH);
    }
  }
  for (const auto& name : listDir("/var/run/netns")) {
    if (!dead(name)) continue;
    auto r = runCommand({g_ip_bin, "netns", "del", name});
    std::fprintf(stderr, "e2e: removed leftover netns %s (%s)\n", name.c_str(),
                 r.exit_code == 0 ? "ok" : r.err.c_str());
  }
  for (const auto& name : listDir("/tmp")) {
    if (!dead(name)) continue;
    std::error_code ec;
    std::filesystem::remove_all("/tmp/" + name, ec);
  }
}

// ---- commands ----

std::string CmdResult::describe() const {
  std::string s = "`" + joinArgs(argv) + "` ";
  s += timed_out ? "timed out" : (exit_code < 0 ? "was killed" : "exited " + std::to_string(exit_code));
  if (!err.empty()) s += "; stderr: " + tail(err, 2000);
  if (exit_code != 0 && err.empty() && !out.empty()) s += "; stdout: " + tail(out, 2000);
  return s;
}

CmdResult runCommand(const std::vector<std::string>& argv_in, const CmdOptions& options) {
  CmdResult result;
  result.argv = inNetns(options.netns, argv_in);
  int out_pipe[2], err_pipe[2], in_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0 || pipe2(in_pipe, O_CLOEXEC) != 0) {
    result.err = std::string("pipe: ") + std::strerror(errno);
    return result;
  }
  auto args = result.argv;
  auto cargs = cStrings(args);
  auto env = buildEnv(options.env, options.drop_meshprobe_env);
  auto cenv = cStrings(env);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    childCommon(parent);
    dup2(in_pipe[0], 0);
    dup2(out_pipe[1], 1);
    dup2(err_pipe[1], 2);
    execvpe(cargs[0], cargs.data(), cenv.data());
    std::fprintf(stderr, "exec %s: %s\n", cargs[0], std::strerror(errno));
    _exit(127);
  }
  close(in_pipe[0]);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (pid < 0) {
    result.err = std::string("fork: ") + std::strerror(errno);
    close(in_pipe[1]);
    close(out_pipe[0]);
    close(err_pipe[0]);
    return result;
  }
  registerPid(pid);
  if (!options.stdin_data.empty()) {
    // Small inputs (rulesets); the pipe buffer holds them.
    (void)!write(in_pipe[1], options.stdin_data.data(), options.stdin_data.size());
  }
  close(in_pipe[1]);

  const auto deadline = std::chrono::steady_clock::now() + options.timeout;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_fds = 2;
  while (open_fds > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      result.timed_out = true;
      kill(pid, SIGKILL);
      break;
    }
    int n = poll(fds, 2, static_cast<int>(left.count()));
    if (n < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[8192];
      ssize_t got = read(fds[i].fd, buf, sizeof buf);
      if (got > 0) {
        sinks[i]->append(buf, static_cast<size_t>(got));
      } else if (got == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (auto& f : fds) {
    if (f.fd >= 0) close(f.fd);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  unregisterPid(pid);
  result.exit_code = result.timed_out ? -1 : decodeStatus(status);
  return result;
}

std::string mustRun(const std::vector<std::string>& argv, const CmdOptions& options) {
  auto r = runCommand(argv, options);
  if (r.exit_code != 0) throw HarnessError("command failed: " + r.describe());
  return r.out;
}

std::string sh(const std::string& netns, const std::string& script) {
  CmdOptions options;
  options.netns = netns;
  return mustRun({"sh", "-ec", script}, options);
}

// ---- files ----

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void writeFile(const std::string& path, const std::string& text, mode_t mode) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out) throw HarnessError("cannot write " + path);
  }
  chmod(path.c_str(), mode);
}

void runInNetnsThread(const std::string& netns_path, const std::function<void()>& work) {
  std::string error;
  std::exception_ptr thrown;
  std::thread([&] {
    const int fd = ::open(netns_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) {
      error = "cannot enter the network namespace " + netns_path + ": " + std::strerror(errno);
      if (fd >= 0) ::close(fd);
      return;
    }
    ::close(fd);
    try {
      work();
    } catch (...) {
      thrown = std::current_exception();
    }
  }).join();
  if (!error.empty()) throw HarnessError(error);
  if (thrown) std::rethrow_exception(thrown);
}

TempDir::TempDir(const std::string& tag) {
  std::string tmpl = "/tmp/" + runPrefix() + tag + "-XXXXXX";
  if (!mkdtemp(tmpl.data())) throw HarnessError("mkdtemp " + tmpl + ": " + std::strerror(errno));
  path_ = tmpl;
}

TempDir::~TempDir() {
  detachMountsUnder(path_);
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string TempDir::mkdir(const std::string& rel) const {
  std::string p = sub(rel);
  std::filesystem::create_directories(p);
  return p;
}

// ---- namespaces ----

TestNetns::TestNetns(const std::string& short_name) : name_(runPrefix() + short_name) {
  registerText(g_netns, name_);
  auto r = runCommand({g_ip_bin, "netns", "add", name_});
  if (r.exit_code != 0) {
    unregisterText(g_netns, name_);
    throw HarnessError("command failed: " + r.describe());
  }
  auto up = runCommand({g_ip_bin, "-n", name_, "link", "set", "lo", "up"});
  if (up.exit_code != 0) {
    runCommand({g_ip_bin, "netns", "del", name_});
    unregisterText(g_netns, name_);
    throw HarnessError("command failed: " + up.describe());
  }
}

TestNetns::~TestNetns() {
  auto r = runCommand({g_ip_bin, "netns", "del", name_});
  if (r.exit_code != 0) std::fprintf(stderr, "e2e: cleanup: %s\n", r.describe().c_str());
  unregisterText(g_netns, name_);
}

BindMount::BindMount(const std::string& src, const std::string& dst) : dst_(dst) {
  writeFile(dst, "");
  registerText(g_mounts, dst);
  if (mount(src.c_str(), dst.c_str(), nullptr, MS_BIND, nullptr) != 0) {
    int e = errno;
    unregisterText(g_mounts, dst);
    throw HarnessError("mount --bind " + src + " " + dst + ": " + std::strerror(e));
  }
}

BindMount::~BindMount() {
  if (umount2(dst_.c_str(), MNT_DETACH) != 0) {
    std::fprintf(stderr, "e2e: cleanup: umount %s: %s\n", dst_.c_str(), std::strerror(errno));
  }
  unregisterText(g_mounts, dst_);
  unlink(dst_.c_str());
}

// ---- processes ----

Process::Process(const std::string& netns, const std::vector<std::string>& argv, const std::string& log_path)
    : argv_(inNetns(netns, argv)), log_path_(log_path) {
  auto args = argv_;
  auto cargs = cStrings(args);
  int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) throw HarnessError("open " + log_path + ": " + std::strerror(errno));
  pid_t parent = getpid();
  pid_ = fork();
  if (pid_ == 0) {
    childCommon(parent);
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    execvp(cargs[0], cargs.data());
    std::fprintf(stderr, "exec %s: %s\n", cargs[0], std::strerror(errno));
    _exit(127);
  }
  close(log_fd);
  if (pid_ < 0) throw HarnessError(std::string("fork: ") + std::strerror(errno));
  registerPid(pid_);
}

Process::~Process() { stop(); }

bool Process::alive() {
  if (reaped_ || pid_ <= 0) return false;
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    reaped_ = true;
    exit_code_ = decodeStatus(status);
    unregisterPid(pid_);
    return false;
  }
  return true;
}

void Process::reap(std::chrono::milliseconds grace) {
  if (test::pollUntil([this] { return !alive(); }, grace, 10ms)) return;
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  reaped_ = true;
  unregisterPid(pid_);
}

void Process::stop() {
  if (!alive()) return;
  kill(pid_, SIGTERM);
  reap(2s);
}

void Process::kill9() {
  if (!alive()) return;
  kill(pid_, SIGKILL);
  reap(5s);
}

bool Process::signal(int sig) {
  if (!alive()) return false;
  return kill(pid_, sig) == 0;
}

std::string Process::describe() const { return "`" + joinArgs(argv_) + "`; log: " + tail(log(), 2000); }

void waitFor(const std::function<bool()>& ready, std::chrono::milliseconds timeout, const std::string& what,
             Process* proc) {
  const bool ready_in_time = test::pollUntil(
      [&] {
        if (ready()) return true;
        if (proc && !proc->alive()) throw HarnessError(what + ": process exited: " + proc->describe());
        return false;
      },
      timeout, 10ms);
  if (!ready_in_time) {
    throw HarnessError(what + ": not ready within " + std::to_string(timeout.count()) + " ms" +
                       (proc ? "; " + proc->describe() : ""));
  }
}

bool tcpListening(pid_t pid, uint16_t port) {
  char want[8];
  std::snprintf(want, sizeof want, ":%04X", port);
  for (const char* table : {"tcp", "tcp6"}) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/net/" + table);
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string sl, local, remote, state;
      fields >> sl >> local >> remote >> state;
      if (state == "0A" && local.size() > 5 && local.compare(local.size() - 5, 5, want) == 0) return true;
    }
  }
  return false;
}

// ---- the agent ----

const nlohmann::json* AgentRun::check(std::string_view name) const {
  if (!json.is_object() || !json.contains("checks") || !json["checks"].is_array()) return nullptr;
  for (const auto& c : json["checks"]) {
    if (c.is_object() && c.value("name", "") == name) return &c;
  }
  return nullptr;
}

std::string AgentRun::status(std::string_view name) const {
  const auto* c = check(name);
  return c ? c->value("status", "") : "";
}

std::vector<const nlohmann::json*> AgentRun::findings(std::string_view code) const {
  std::vector<const nlohmann::json*> out;
  if (!json.is_object() || !json.contains("findings") || !json["findings"].is_array()) return out;
  for (const auto& f : json["findings"]) {
    if (f.is_object() && f.value("code", "") == code) out.push_back(&f);
  }
  return out;
}

bool AgentRun::anyFail() const {
  if (!json.is_object() || !json.contains("checks")) return false;
  for (const auto& c : json["checks"]) {
    if (c.is_object() && c.value("status", "") == "FAIL") return true;
  }
  return false;
}

std::string AgentRun::describe() const {
  std::ostringstream s;
  s << "agent exit " << exit_code << (cmd.timed_out ? " (timed out)" : "") << "\n";
  if (json.is_object() && json.contains("checks") && json["checks"].is_array()) {
    for (const auto& c : json["checks"]) {
      s << "  " << c.value("name", "?") << " = " << c.value("status", "?") << ": " << c.value("summary", "") << "\n";
    }
    if (json.contains("findings") && json["findings"].is_array()) {
      s << "  findings:";
      for (const auto& f : json["findings"]) s << " " << f.value("code", "?");
      s << "\n";
    }
  } else {
    s << "  stdout (not the JSON report): " << tail(cmd.out, 3000) << "\n";
  }
  if (!cmd.err.empty()) s << "  stderr: " << tail(cmd.err, 2000) << "\n";
  return s.str();
}

AgentRun runAgentOnce(const std::string& netns, const std::vector<std::string>& args, const AgentOptions& options) {
  std::vector<std::string> argv = options.wrapper;
  argv.push_back(kAgentBin);
  argv.push_back("--once");
  argv.insert(argv.end(), args.begin(), args.end());
  AgentRun run;
  CmdOptions cmd;
  cmd.netns = netns;
  cmd.env = options.env;
  cmd.drop_meshprobe_env = true;  // only our flags configure the agent
  cmd.timeout = options.timeout;
  run.cmd = runCommand(argv, cmd);
  run.exit_code = run.cmd.exit_code;
  auto first = run.cmd.out.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && run.cmd.out[first] == '{') {
    run.json = nlohmann::json::parse(run.cmd.out, nullptr, /*allow_exceptions=*/false);
    if (run.json.is_discarded()) run.json = nullptr;
  }
  // MPE2E_VERBOSE=1 prints every verdict, =2 also the raw report (for debugging and reports).
  if (const char* verbose = std::getenv("MPE2E_VERBOSE"); verbose && *verbose) {
    std::fprintf(stderr, "[agent] %s%s\n", run.describe().c_str(),
                 std::string(verbose) == "2" ? run.cmd.out.c_str() : "");
  }
  return run;
}

// ---- assertions ----

bool containsNoCase(std::string_view haystack, std::string_view needle) {
  auto it = std::search(haystack.begin(), haystack.end(), needle.begin(), needle.end(), [](char a, char b) {
    return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
  });
  return it != haystack.end();
}

::testing::AssertionResult exitIs(const AgentRun& run, int code) {
  if (run.exit_code == code) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "expected exit " << code << ", got:\n" << run.describe();
}

::testing::AssertionResult exitMatchesChecks(const AgentRun& run) {
  if (run.json.is_null()) return ::testing::AssertionFailure() << "no JSON report:\n" << run.describe();
  int want = run.anyFail() ? 1 : 0;
  if (run.exit_code == want) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "exit code " << run.exit_code << " does not match the checks (want " << want
                                       << "):\n"
                                       << run.describe();
}

::testing::AssertionResult checkIs(const AgentRun& run, std::string_view name,
                                   std::initializer_list<std::string_view> statuses) {
  const auto* c = run.check(name);
  if (!c) return ::testing::AssertionFailure() << "no check '" << name << "' in the report:\n" << run.describe();
  std::string got = c->value("status", "");
  for (auto s : statuses) {
    if (got == s) return ::testing::AssertionSuccess();
  }
  std::string want;
  for (auto s : statuses) want += (want.empty() ? "" : "|") + std::string(s);
  return ::testing::AssertionFailure() << "check " << name << ": expected " << want << ", got " << got
                                       << "\n  check JSON: " << c->dump() << "\n"
                                       << run.describe();
}

::testing::AssertionResult checkMentions(const AgentRun& run, std::string_view name,
                                         std::initializer_list<std::string_view> words, bool in_details) {
  const auto* c = run.check(name);
  if (!c) return ::testing::AssertionFailure() << "no check '" << name << "' in the report:\n" << run.describe();
  std::string text = c->value("summary", "");
  if (in_details && c->contains("details")) text += " " + (*c)["details"].dump();
  for (auto w : words) {
    if (!containsNoCase(text, w)) {
      return ::testing::AssertionFailure()
             << "check " << name << " does not mention '" << w << "'\n  check JSON: " << c->dump() << "\n"
             << run.describe();
    }
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult hasFinding(const AgentRun& run, std::string_view code,
                                      std::initializer_list<std::string_view> mentions) {
  auto found = run.findings(code);
  if (found.empty()) return ::testing::AssertionFailure() << "no finding " << code << ":\n" << run.describe();
  for (const auto* f : found) {
    std::string text = f->value("summary", "") + " " + f->value("remedy", "");
    if (f->contains("evidence")) text += " " + (*f)["evidence"].dump();
    bool all = true;
    for (auto m : mentions) all = all && containsNoCase(text, m);
    if (all) return ::testing::AssertionSuccess();
  }
  std::string want;
  for (auto m : mentions) want += " '" + std::string(m) + "'";
  auto failure = ::testing::AssertionFailure() << "finding " << code << " does not mention" << want << ":";
  for (const auto* f : found) failure << "\n  " << f->dump();
  return failure << "\n" << run.describe();
}

::testing::AssertionResult noFinding(const AgentRun& run, std::string_view code) {
  auto found = run.findings(code);
  if (found.empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "unexpected finding " << code << ": " << found.front()->dump() << "\n"
                                       << run.describe();
}

}  // namespace meshprobe::e2e
