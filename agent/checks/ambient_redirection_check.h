#pragma once
// ambient_redirection: in every pod network namespace on the node, are istio-cni's
// redirection rules (ISTIO_PRERT / ISTIO_OUTPUT) and ztunnel's in-pod listeners
// (15001/15006/15008) present together? Rules without listeners blackhole the pod;
// listeners without rules mean no capture (no HBONE). When the host's own netns cannot be
// identified, processes' namespaces under /proc are not looked at and the check says why and
// what to do (SKIP when nothing else is left to inspect), instead of failing the node.
// Each pod netns' addresses are read there too: the result's pod_captures (name, IPs,
// state) become the report's pod_netns, which the aggregator joins with pods by IP.

#include <memory>
#include <vector>

#include "agent/ambient/inspector.h"
#include "agent/ambient/pod_netns.h"
#include "agent/ambient/redirection.h"
#include "agent/checks/check.h"
#include "agent/config.h"
#include "agent/kernel/command_runner.h"
#include "agent/kernel/sock_diag.h"

namespace meshprobe::agent {

struct PodReport {
  PodNetns pod;
  PodInspection inspection;
  PodVerdict verdict;
};

class AmbientRedirectionCheck final : public Check {
 public:
  // Kernel inspection through the agent's seams (they must act on the calling thread's
  // netns). With `generation`, a pod's rules are read again only when they changed.
  AmbientRedirectionCheck(const AgentConfig& config, CommandRunner& commands, SockDiag& sock_diag,
                          RulesetGeneration* generation = nullptr);
  // Any inspector (tests: a fake), and what enumerating pod netns asks of the system
  // (tests: a fake stat and privileges).
  AmbientRedirectionCheck(const AgentConfig& config, std::unique_ptr<PodNetnsInspector> inspector,
                          NetnsProbe probe = {});

  std::string_view name() const override { return "ambient_redirection"; }
  CheckResult run() override;

  // Pod netns inspected at the same time (each one in its own setns thread).
  static constexpr size_t kMaxParallel = 4;

 private:
  const AgentConfig& config_;
  std::unique_ptr<PodNetnsInspector> inspector_;
  NetnsProbe probe_;
};

// Where the check looks for pod namespaces, from the config.
NetnsSources ambientNetnsSources(const AgentConfig& config);

// The report's view of the pods (pure): the first kMaxPodCaptures in order, with their
// addresses (ips_error when they were not read), state and reason, and the total.
PodCaptures podCaptures(const std::vector<PodReport>& pods);

// The verdict from what was found (pure): status, summary, details, findings, and
// pod_captures (always set, empty when no pod netns was found). When more pods were found
// than the report carries, details.pod_netns_truncated says so.
CheckResult evaluateAmbientRedirection(const NetnsSources& sources, const NetnsEnumeration& found,
                                       const std::vector<PodReport>& pods);

}  // namespace meshprobe::agent
