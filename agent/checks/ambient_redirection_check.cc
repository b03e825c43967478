#include "agent/checks/ambient_redirection_check.h"

namespace meshprobe::agent {

AmbientRedirectionCheck::AmbientRedirectionCheck(const AgentConfig& config) : config_(config) {}

CheckResult AmbientRedirectionCheck::run() { return result(CheckStatus::kSkip, "not implemented yet"); }

}  // namespace meshprobe::agent
