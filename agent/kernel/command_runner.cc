#include "agent/kernel/command_runner.h"

namespace meshprobe::agent {
namespace {
class Unimplemented final : public CommandRunner {
 public:
  CommandOutput run(const std::vector<std::string>&, std::chrono::milliseconds) override {
    CommandOutput o;
    o.error = "command runner not implemented";
    return o;
  }
};
}  // namespace

std::string CommandOutput::describe() const { return error; }

std::unique_ptr<CommandRunner> makeProcessCommandRunner() { return std::make_unique<Unimplemented>(); }

}  // namespace meshprobe::agent
