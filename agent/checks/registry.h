#pragma once

#include <vector>

#include "agent/checks/check.h"
#include "agent/checks/deps.h"

namespace meshprobe::agent {

// Every check, in display order. Adding a check: one new .h/.cc pair and one line in registry.cc.
std::vector<CheckPtr> makeChecks(const AgentConfig& config, const AgentDeps& deps);

}  // namespace meshprobe::agent
