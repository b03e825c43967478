#pragma once
// Daemon mode: the probe responder and prober, the node checks on their own cadence, and
// (with --aggregator) the stream that carries reports out and peer lists in.

#include <atomic>

#include "agent/checks/deps.h"
#include "agent/config.h"
#include "common/result.h"

namespace meshprobe::agent {

// Runs until `stop` becomes true (SIGTERM/SIGINT), then shuts everything down within
// about a second. Returns an error when a listener cannot start (port in use, bad key).
Status runDaemon(const AgentConfig& config, const AgentDeps& deps, const std::atomic<bool>& stop);

}  // namespace meshprobe::agent
