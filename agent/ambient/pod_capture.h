#pragma once
// A pod netns' capture verdict and addresses, as the ambient_redirection check hands them
// to the report (Report.pod_netns). Plain values: the check result carries them without
// pulling in the inspector.

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace meshprobe::agent {

enum class PodState {
  kCaptured,               // ISTIO rules and all three ztunnel listeners
  kUncaptured,             // neither: the pod is not in ambient (no HBONE), by choice
  kSidecar,                // Istio sidecar chains: not ambient, not broken
  kRulesWithoutListeners,  // broken: redirected traffic has nowhere to go (blackholed)
  kListenersWithoutRules,  // broken: ztunnel serves the pod but nothing captures its traffic (no HBONE)
  kUnknown,                // could not enter the netns or read rules/listeners
};
// "captured" | "uncaptured" | "sidecar" | "rules_without_listeners" | "listeners_without_rules" | "unknown"
std::string_view podStateName(PodState s);
inline bool isBroken(PodState s) {
  return s == PodState::kRulesWithoutListeners || s == PodState::kListenersWithoutRules;
}

struct PodCapture {
  std::string netns;             // PodNetns::name
  std::vector<std::string> ips;  // global-scope addresses of its non-loopback interfaces, sorted
  std::string ips_error;         // the addresses could not be read (ips empty: unknown)
  PodState state = PodState::kUnknown;
  std::string reason;
};

// What one ambient_redirection run hands to the report: the first kMaxPodCaptures pod netns
// in enumeration order, and how many it inspected.
inline constexpr size_t kMaxPodCaptures = 1024;
struct PodCaptures {
  std::vector<PodCapture> entries;
  size_t total = 0;
};

}  // namespace meshprobe::agent
