#pragma once
// What makes a pod "captured" by Istio ambient (docs/architecture.md, "Domain facts"), as pure
// functions over data: the ISTIO_* chains istio-cni installs in the pod's netns, the
// ztunnel listeners inside it, and the verdict for the pod.
//
//   Istio 1.24:       nat ISTIO_OUTPUT  REDIRECT --to-ports 15001, nat ISTIO_PRERT REDIRECT
//                     --to-ports 15006 (mangle holds only CONNMARK bookkeeping)
//   Istio 1.22-1.23:  mangle ISTIO_PRERT TPROXY --on-port 15006 / 15008, nat ISTIO_OUTPUT
//                     REDIRECT --to-ports 15001
//   ztunnel (in-pod): TCP listeners on 15001 (outbound), 15006 (inbound plaintext) and
//                     15008 (inbound HBONE) inside the pod's netns.
// Sidecar pods (istio-init / istio-cni in sidecar mode) have ISTIO_INBOUND / ISTIO_OUTPUT
// and Envoy listening on 15001/15006: they are not ambient and not broken.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/ambient/pod_capture.h"
#include "agent/firewall/iptables_ruleset.h"
#include "agent/kernel/netlink_types.h"
#include "agent/kernel/sock_diag_types.h"

namespace meshprobe::agent {

inline constexpr std::array<uint16_t, 3> kZtunnelInpodPorts = {15001, 15006, 15008};

enum class RedirectMode { kNone, kRedirect, kTproxy };
std::string_view redirectModeName(RedirectMode m);  // "none" | "REDIRECT" | "TPROXY"

struct IstioRules {
  bool present = false;  // ISTIO_PRERT or ISTIO_OUTPUT with rules in nat or mangle
  bool sidecar = false;  // sidecar-mode chains (ISTIO_INBOUND) and no ISTIO_PRERT
  RedirectMode mode = RedirectMode::kNone;
  std::vector<std::string> chains;  // "nat/ISTIO_OUTPUT", ... (those with rules)
  std::vector<uint16_t> ports;      // REDIRECT --to-ports / TPROXY --on-port targets, sorted, unique
  size_t rule_count = 0;            // rules in the ISTIO_PRERT/ISTIO_OUTPUT chains
};

// Finds istio-cni's in-pod chains in a parsed iptables-save ruleset.
IstioRules analyzeIstioRules(const IptablesRuleset& ruleset);

// The in-pod ztunnel ports (15001/15006/15008) among TCP sockets in LISTEN state, sorted.
std::vector<uint16_t> ztunnelListenerPorts(const std::vector<InetSocket>& tcp_sockets);

// Everything the inspector learned inside one pod netns.
struct PodInspection {
  std::string error;  // the netns could not be entered: nothing else is set
  int error_errno = 0;
  std::optional<IstioRules> rules;  // unset when the rules could not be read
  std::string rules_error;
  std::string iptables_tool;                       // which iptables-save produced `rules`
  std::vector<std::string> tool_notes;             // e.g. "iptables-legacy-save: not found"
  std::optional<std::vector<uint16_t>> listeners;  // ztunnel ports listening; unset on error
  std::string listeners_error;
  // Global-scope addresses of the netns' non-loopback interfaces (podAddresses); unset when
  // they could not be read.
  std::optional<std::vector<std::string>> addresses;
  std::string addresses_error;
};

// The pod's own addresses in an rtnetlink address dump of its netns: IPv4 and IPv6 of
// global scope (RT_SCOPE_UNIVERSE) on any interface but the loopback (ifindex 1 in every
// netns), sorted and unique. Link-local (fe80::/10, 169.254/16) and host-scope addresses
// are left out.
std::vector<std::string> podAddresses(const std::vector<AddressInfo>& addresses);

struct PodVerdict {
  PodState state = PodState::kUnknown;
  std::vector<uint16_t> missing_listeners;  // for kRulesWithoutListeners (and kCaptured: empty)
  std::string reason;                       // one line: what was found / what is missing
};

PodVerdict classifyPod(const PodInspection& inspection);

// "15001,15006"
std::string joinPorts(const std::vector<uint16_t>& ports);

}  // namespace meshprobe::agent
