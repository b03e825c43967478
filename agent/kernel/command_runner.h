#pragma once
// Seam for the one place the agent execs tools: iptables-save / nft (docs/architecture.md, design rule 6).
// The real runner forks and execs with a deadline (killing the child on expiry) in the
// calling thread's network namespace; tests substitute canned output.

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace meshprobe::agent {

struct CommandOutput {
  std::string program;  // argv[0], for messages
  int exit_code = -1;   // -1 when it did not exit normally
  int term_signal = 0;  // the signal that ended it, 0 when it exited
  std::string out;
  std::string err;
  bool not_found = false;  // the binary is not installed / not executable
  bool timed_out = false;
  std::string error;                     // fork/exec/pipe failure text, empty when it ran
  std::chrono::milliseconds timeout{0};  // the deadline it ran under

  bool succeeded() const { return error.empty() && !not_found && !timed_out && exit_code == 0; }
  // One line naming the binary: "iptables-save: not found", "nft exited 1: <first stderr
  // line>", "sleep: timed out after 200ms (killed)", "iptables-save: ok".
  std::string describe() const;
};

class CommandRunner {
 public:
  virtual ~CommandRunner() = default;
  virtual CommandOutput run(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) = 0;
  // For shutdown: kill every command running now (with anything it started) and refuse
  // new ones, so a check abandoned mid-command leaves no tool behind when the agent exits.
  // A run() in progress returns as killed by SIGKILL; later ones fail without running.
  virtual void shutdown() {}
};

// fork + execve with stdin from /dev/null and stdout/stderr captured through pipes read
// with poll() until the deadline; on expiry the child's process group is SIGKILLed and
// the child reaped. The binary is looked up in $PATH plus the sbin directories (where
// iptables lives even when a pod's PATH lacks them); a missing binary is reported as
// not_found, including exec failures reported by the child through a CLOEXEC pipe.
// The child runs with LC_ALL=C (stable messages) in the forking thread's namespaces.
std::unique_ptr<CommandRunner> makeProcessCommandRunner();

}  // namespace meshprobe::agent
