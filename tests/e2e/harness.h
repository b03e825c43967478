#pragma once
// E2E harness: real network namespaces, processes and agent runs, all cleaned up by RAII
// (and by a SIGINT/SIGTERM handler). Everything this harness creates is named
// `mpe2e-<pid>-...`; it never touches anything without that prefix.
//
// Helpers that set things up throw HarnessError on failure; GoogleTest reports the
// exception (command, exit code, stderr) as the test's failure, and destructors clean up.

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "tests/support/test_pki.h"

namespace meshprobe::e2e {

using namespace std::chrono_literals;

struct HarnessError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Prefix of every namespace, temp dir and mount this process makes: "mpe2e-<pid>-".
std::string runPrefix();

// Root with CAP_NET_ADMIN and CAP_SYS_ADMIN (netns, mounts). `why` says what is missing.
bool havePrivileges(std::string* why);

// Installs the SIGINT/SIGTERM cleanup handler and removes leftovers of earlier runs
// whose process is gone (netns and mounts named mpe2e-<deadpid>-*). Called from main().
void initHarness();

// ---- commands ----

struct CmdResult {
  std::vector<std::string> argv;
  int exit_code = -1;  // -1: killed by a signal or timed out
  bool timed_out = false;
  std::string out;
  std::string err;
  std::string describe() const;  // "`cmd args` exited 1: <stderr>"
};

struct CmdOptions {
  std::string netns;                        // run inside this netns (ip netns exec)
  std::vector<std::string> env;             // extra/overriding KEY=VALUE
  std::chrono::milliseconds timeout = 30s;  // killed (SIGKILL) after this
  std::string stdin_data;                   // written to the child's stdin
  bool drop_meshprobe_env = false;          // remove MESHPROBE_* inherited from the test's environment
};

// Runs argv (no shell) and returns what happened; never throws.
CmdResult runCommand(const std::vector<std::string>& argv, const CmdOptions& options = {});
// Same, but throws HarnessError naming the command and its stderr unless it exits 0.
std::string mustRun(const std::vector<std::string>& argv, const CmdOptions& options = {});
// `sh -ec script` inside `netns` ("" = here); throws unless it exits 0.
std::string sh(const std::string& netns, const std::string& script);

// ---- files ----

std::string readFile(const std::string& path);  // "" when unreadable
void writeFile(const std::string& path, const std::string& text, mode_t mode = 0644);

// Runs `work` in a thread that joined the network namespace at `netns_path` and waits for
// it: sockets keep the namespace they were made in, and the caller's own threads never
// change namespace. Throws HarnessError when the namespace cannot be entered; an exception
// `work` throws is rethrown here.
void runInNetnsThread(const std::string& netns_path, const std::function<void()>& work);

// mkdtemp under /tmp named mpe2e-<pid>-<tag>-XXXXXX; removed (after detaching any mount
// under it) in the destructor.
class TempDir {
 public:
  explicit TempDir(const std::string& tag);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string sub(const std::string& rel) const { return path_ + "/" + rel; }
  std::string mkdir(const std::string& rel) const;  // mkdir -p, returns the path

 private:
  std::string path_;
};

// ---- namespaces and mounts ----

// `ip netns add mpe2e-<pid>-<short_name>` with lo up; `ip netns del` in the destructor.
class TestNetns {
 public:
  explicit TestNetns(const std::string& short_name);
  ~TestNetns();
  TestNetns(const TestNetns&) = delete;
  TestNetns& operator=(const TestNetns&) = delete;
  const std::string& name() const { return name_; }
  std::string path() const { return "/var/run/netns/" + name_; }
  // sh -ec script inside this netns; throws on failure.
  std::string sh(const std::string& script) const { return e2e::sh(name_, script); }

 private:
  std::string name_;
};

// mount --bind src dst (dst created as an empty file); detached in the destructor.
class BindMount {
 public:
  BindMount(const std::string& src, const std::string& dst);
  ~BindMount();
  BindMount(const BindMount&) = delete;
  BindMount& operator=(const BindMount&) = delete;

 private:
  std::string dst_;
};

// ---- processes ----

// A child spawned by fork/exec (inside a netns via `ip netns exec`, which execs in place,
// so the PID is the program's). Only this PID is ever signalled: SIGTERM, then SIGKILL
// after a grace period; reaped in the destructor. stdout+stderr go to a log file.
class Process {
 public:
  Process(const std::string& netns, const std::vector<std::string>& argv, const std::string& log_path);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  bool alive();  // not yet exited (reaps if it has)
  void stop();   // SIGTERM, SIGKILL after 2 s; reaps
  void kill9();  // SIGKILL now; reaps (a crash: files it made stay behind)
  std::string log() const { return readFile(log_path_); }
  std::string describe() const;  // argv + log tail

  // Sends `sig` to this PID only (no reaping; poll alive() for the exit). False when gone.
  bool signal(int sig);
  // Once reaped by alive(): the exit code (-1 when killed by a signal); nullopt before.
  std::optional<int> exitCode() const { return exit_code_; }

 private:
  void reap(std::chrono::milliseconds grace);
  std::vector<std::string> argv_;
  std::string log_path_;
  pid_t pid_ = -1;
  bool reaped_ = false;
  std::optional<int> exit_code_;
};

// Polls `ready` until it returns true or `timeout` passes (then throws naming `what`).
// If `proc` is given and dies first, throws with its log. Poll interval 10 ms.
void waitFor(const std::function<bool()>& ready, std::chrono::milliseconds timeout, const std::string& what,
             Process* proc = nullptr);

// TCP LISTEN on `port` in the netns of process `pid` (reads /proc/<pid>/net/tcp{,6}).
bool tcpListening(pid_t pid, uint16_t port);

// ---- the agent ----

#ifndef MESHPROBE_AGENT_BIN
#error "MESHPROBE_AGENT_BIN must be defined by the build"
#endif
inline constexpr const char* kAgentBin = MESHPROBE_AGENT_BIN;
#ifdef MESHPROBE_FAKE_DAEMON_BIN
inline constexpr const char* kFakeDaemonBin = MESHPROBE_FAKE_DAEMON_BIN;
#endif

struct AgentRun {
  CmdResult cmd;
  int exit_code = -1;
  nlohmann::json json;  // null when stdout was not JSON

  const nlohmann::json* check(std::string_view name) const;  // nullptr when absent
  std::string status(std::string_view name) const;           // "" when absent
  std::vector<const nlohmann::json*> findings(std::string_view code) const;
  bool anyFail() const;
  std::string describe() const;  // exit code, each check's status and summary, finding codes, stderr
};

struct AgentOptions {
  std::vector<std::string> env;      // KEY=VALUE added to the agent's environment
  std::vector<std::string> wrapper;  // e.g. setpriv ... (between ip netns exec and the agent)
  std::chrono::milliseconds timeout = 60s;
};

// `ip netns exec <netns> [wrapper...] meshprobe-agent --once <args...>`; parses stdout as
// JSON when it looks like JSON. MESHPROBE_* variables of the test's environment are dropped.
// MPE2E_VERBOSE=1 in the environment prints each verdict to stderr (=2: also the raw report).
AgentRun runAgentOnce(const std::string& netns, const std::vector<std::string>& args, const AgentOptions& options = {});

// ---- assertions (messages carry the whole verdict) ----

::testing::AssertionResult exitIs(const AgentRun& run, int code);
// exit code 1 exactly when some check FAILs, else 0 (the contract's exit code rule).
::testing::AssertionResult exitMatchesChecks(const AgentRun& run);
::testing::AssertionResult checkIs(const AgentRun& run, std::string_view name,
                                   std::initializer_list<std::string_view> statuses);
// The check's summary (or, if `in_details`, summary + details) mentions every word (case-insensitive).
::testing::AssertionResult checkMentions(const AgentRun& run, std::string_view name,
                                         std::initializer_list<std::string_view> words, bool in_details = false);
// A finding with `code` exists; when `mentions` is not empty, one such finding's summary,
// evidence and remedy mention each of them (case-insensitive).
::testing::AssertionResult hasFinding(const AgentRun& run, std::string_view code,
                                      std::initializer_list<std::string_view> mentions = {});
::testing::AssertionResult noFinding(const AgentRun& run, std::string_view code);

bool containsNoCase(std::string_view haystack, std::string_view needle);

// ---- istiod's test certificates: the shared test PKI (tests/support/test_pki.h) ----

using test::kIstiodSan;
using test::TestCerts;
using test::testCerts;

// The Istio 1.24 in-pod rules (istio-cni, REDIRECT mode), as `iptables-save` shows them in
// an ambient pod's netns: what the e2e tests restore into their ambient "pods".
inline constexpr const char* kIstio124InPodRules = R"(*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:ISTIO_OUTPUT - [0:0]
:ISTIO_PRERT - [0:0]
-A PREROUTING -j ISTIO_PRERT
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_OUTPUT -p udp -m mark --mark 0x539/0xfff -m udp --dport 53 -j CT --zone 1
-A ISTIO_PRERT -p udp -m mark ! --mark 0x539/0xfff -m udp --sport 53 -j CT --zone 1
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:ISTIO_OUTPUT - [0:0]
:ISTIO_PRERT - [0:0]
-A PREROUTING -j ISTIO_PRERT
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_OUTPUT -m connmark --mark 0x111/0xfff -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff
-A ISTIO_PRERT -m mark --mark 0x539/0xfff -j CONNMARK --set-xmark 0x111/0xfff
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:ISTIO_OUTPUT - [0:0]
:ISTIO_PRERT - [0:0]
-A PREROUTING -j ISTIO_PRERT
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_OUTPUT -d 169.254.7.127/32 -p tcp -m tcp -j ACCEPT
-A ISTIO_OUTPUT ! -o lo -p udp -m mark ! --mark 0x539/0xfff -m udp --dport 53 -j REDIRECT --to-ports 15053
-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -p tcp -m tcp --dport 53 -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15053
-A ISTIO_OUTPUT -p tcp -m mark --mark 0x111/0xfff -j ACCEPT
-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -j ACCEPT
-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -p tcp -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15001
-A ISTIO_PRERT -s 169.254.7.127/32 -p tcp -m tcp -j ACCEPT
-A ISTIO_PRERT ! -d 127.0.0.1/32 -p tcp -m tcp ! --dport 15008 -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15006
COMMIT
)";

}  // namespace meshprobe::e2e
