#include "agent/checks/istiod_check.h"

namespace meshprobe::agent {

IstiodCheck::IstiodCheck(const AgentConfig& config) : config_(config) {}

CheckResult IstiodCheck::run() { return result(CheckStatus::kSkip, "not implemented yet"); }

}  // namespace meshprobe::agent
