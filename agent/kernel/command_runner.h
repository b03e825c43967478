#pragma once
// Seam for the one place the agent execs tools: iptables-save / nft (DESIGN §2 rule 6).
// The real runner forks and execs with a deadline (killing the child on expiry) in the
// calling thread's network namespace; tests substitute canned output.

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace meshprobe::agent {

struct CommandOutput {
  int exit_code = -1;         // -1 when it did not exit normally
  std::string out;
  std::string err;
  bool not_found = false;     // the binary is not installed / not executable
  bool timed_out = false;
  std::string error;          // fork/exec/pipe failure text, empty when it ran

  bool succeeded() const { return error.empty() && !not_found && !timed_out && exit_code == 0; }
  std::string describe() const;  // "iptables-save: not found", "... exited 1: <stderr>"
};

class CommandRunner {
 public:
  virtual ~CommandRunner() = default;
  virtual CommandOutput run(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) = 0;
};

std::unique_ptr<CommandRunner> makeProcessCommandRunner();

}  // namespace meshprobe::agent
