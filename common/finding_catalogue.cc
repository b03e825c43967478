#include "common/finding_catalogue.h"

#include <algorithm>
#include <array>

namespace meshprobe {

namespace {

using namespace codes;
using sv = std::string_view;

// ---- relations ----
// A node's own VXLAN fault: the overlay blame of that node (or of a pair with it) is a
// vaguer guess about it, and the node's istiod failure follows from it (istiod is a pod,
// reached through VXLAN from every other node).
constexpr std::array<sv, 2> kOverlayGuesses{kOverlayPartition, kPairUnreachable};
// With its VXLAN device gone or down the kernel closes the device's UDP socket and drops
// the routes through it: the node's socket and FDB findings are consequences.
constexpr std::array<sv, 4> kDeviceSupersedes{kVxlanSocketMissing, kOverlayFdbStale, kOverlayPartition,
                                              kPairUnreachable};
constexpr std::array<sv, 1> kExplainsIstiod{kIstiodUnreachable};
// A node whose overlay or underlay is broken cannot reach istiod, so its ztunnel (which
// needs istiod's configuration and certificates) does not become ready either.
constexpr std::array<sv, 2> kExplainsIstiodAndZtunnel{kIstiodUnreachable, kZtunnelNotReady};
constexpr std::array<sv, 1> kExplainsZtunnel{kZtunnelNotReady};
// A ztunnel that is not ready (crashing, restarting) leaves istio-cni without a connection.
constexpr std::array<sv, 1> kExplainsNotConnected{kZtunnelNotConnected};
// The Kubernetes view of a node with no agent says more than the matrix's silence.
constexpr std::array<sv, 1> kAgentMissingSupersedes{kAgentStale};
// The node is off the network (or its agent is): its overlay blame and its silence are
// the same fault seen from the matrix.
constexpr std::array<sv, 2> kUnderlaySupersedes{kOverlayPartition, kAgentStale};
constexpr std::array<sv, 2> kAgentStaleSupersedes{kUnderlayUnreachable, kOverlayPartition};
// The finding that blames istiod itself (no node) supersedes each node's own.
constexpr std::array<sv, 1> kIstiodSupersedes{kIstiodUnreachable};

// ---- remedies for other situations ----
constexpr std::array<RemedyVariant, 2> kIstiodVariants{{
    {"cluster",
     "Check istiod: its pod is Running and listening on 15012 (ss -ltnp in the pod), and the istiod Service's port "
     "15012 and endpoints (kubectl get svc,endpoints istiod -n istio-system)."},
    {"caused",
     "Fix {node}'s overlay first (see its other findings); istiod itself is reachable from the other nodes."},
}};
constexpr std::array<RemedyVariant, 1> kOverlayPartitionVariants{{
    {"cluster",
     "Check that UDP to the VXLAN port is allowed between all nodes on the underlay network, and that every node's "
     "flannel uses the same VNI and port; then restart flannel."},
}};
constexpr std::array<RemedyVariant, 1> kUnderlayVariants{{
    {"cluster",
     "Check the node network (switches, routes, security groups) and that UDP/TCP 9473 is allowed between nodes."},
}};
constexpr std::array<RemedyVariant, 1> kPairVariants{{
    {"underlay", "Check the network path between {node} and {peer} (routes, ACLs, security groups)."},
}};

constexpr std::array<RemedyVariant, 5> kAgentMissingVariants{{
    {"unscheduled",
     "No meshprobe agent pod is scheduled on {node}: check the meshprobe-agent DaemonSet's nodeSelector, affinity "
     "and tolerations against {node}'s labels and taints (kubectl -n meshprobe describe ds meshprobe-agent; kubectl "
     "describe node {node})."},
    {"pending",
     "The agent pod for {node} is Pending: the evidence quotes the scheduler's reason; free what it names (CPU, "
     "memory, ports) on {node} or lower the DaemonSet's requests, or fix its tolerations for {node}'s taints."},
    {"crashloop",
     "The agent on {node} keeps crashing: read its last run's log (kubectl -n meshprobe logs <pod> --previous); the "
     "evidence gives the last exit reason and code (OOMKilled: raise its memory limit)."},
    {"waiting",
     "The agent container on {node} cannot start: kubectl -n meshprobe describe pod <pod> shows why (image pull, "
     "a missing Secret or ConfigMap, a volume)."},
    {"running",
     "The agent pod on {node} runs but its reports do not arrive: check its --aggregator address and TLS files, its "
     "log (kubectl -n meshprobe logs <pod>), and that {node} reaches the aggregator's gRPC port."},
}};
constexpr std::array<RemedyVariant, 1> kPodNotCapturedVariants{{
    {"several",
     "Several pods on {node} are not captured: check the istio-cni node agent on {node} (kubectl -n istio-system "
     "get pods -l k8s-app=istio-cni-node -o wide --field-selector spec.nodeName={node}; its logs), then restart the "
     "workloads (<restart>)."},
}};
constexpr std::array<RemedyVariant, 2> kZtunnelNotReadyVariants{{
    {"istiod",
     "ztunnel on {node} cannot reach istiod:15012: fix that first (see ISTIOD_UNREACHABLE); ztunnel becomes ready "
     "once it connects, no restart needed."},
    {"overlay",
     "Fix {node}'s overlay first (see <finding>): ztunnel reaches istiod through it and becomes ready once it can."},
}};

constexpr std::array<FindingSpec, 18> kCatalogue{{
    {kIstiodUnreachable, Severity::kCritical, Layer::kIstiod, "istiod", RunbookRow::kZtunnelNotReady,
     "MeshprobeIstiodUnreachable", kIstiodSupersedes, kExplainsZtunnel,
     "Check network connectivity from {node} to istiod:15012 and the istiod Service.", kIstiodVariants},
    {kVxlanDeviceMissing, Severity::kCritical, Layer::kOverlay, "vxlan_device", RunbookRow::kCrossNodeFailure,
     "MeshprobeOverlayPartition", kDeviceSupersedes, kExplainsIstiodAndZtunnel,
     "Restart the flannel pod on {node} (kubectl delete pod <flannel-pod> -n kube-system), then confirm flannel.1 is "
     "back and up.",
     {}},
    {kVxlanSocketMissing, Severity::kCritical, Layer::kOverlay, "vxlan_socket", RunbookRow::kCrossNodeFailure,
     "MeshprobeOverlayPartition", kOverlayGuesses, kExplainsIstiodAndZtunnel,
     "Restart flannel on {node}: the kernel opens the VXLAN UDP socket with the device.", {}},
    {kVxlanPortFiltered, Severity::kCritical, Layer::kOverlay, "firewall", RunbookRow::kCrossNodeFailure,
     "MeshprobeOverlayPartition", kOverlayGuesses, kExplainsIstiodAndZtunnel,
     "Delete the rule that drops or rejects the VXLAN port on {node} (the evidence quotes it) and allow UDP to the "
     "VXLAN port between all nodes, cloud security groups included.",
     {}},
    {kOverlayFdbStale, Severity::kCritical, Layer::kOverlay, "vxlan_fdb", RunbookRow::kCrossNodeFailure,
     "MeshprobeOverlayPartition", kOverlayGuesses, kExplainsIstiodAndZtunnel,
     "Restart flannel on {node} so it reprograms its peers' FDB, neighbour and route entries; if a peer's VTEP MAC "
     "changed, restart flannel on that peer too.",
     {}},
    {kOverlayPartition, Severity::kCritical, Layer::kOverlay, "", RunbookRow::kCrossNodeFailure,
     "MeshprobeOverlayPartition", {}, kExplainsIstiodAndZtunnel,
     "Restart the flannel pod on {node} and check UDP to the VXLAN port on the path to {node} (network ACLs, "
     "security groups, filters outside the node).",
     kOverlayPartitionVariants},
    {kPairUnreachable, Severity::kWarning, Layer::kUnspecified, "", RunbookRow::kNone, "MeshprobePairUnreachable",
     {}, {},
     "Compare what flannel programmed for each other on {node} and {peer} (bridge fdb / ip neigh / ip route on "
     "flannel.1) and any filter on the VXLAN port between their node IPs.",
     kPairVariants},
    {kUnderlayUnreachable, Severity::kCritical, Layer::kUnderlay, "", RunbookRow::kNone,
     "MeshprobeUnderlayUnreachable", kUnderlaySupersedes, kExplainsIstiodAndZtunnel,
     "Check {node} itself: its network interface and link, routes, and whether the node is running at all; overlay "
     "and istiod failures of this node follow from it.",
     kUnderlayVariants},
    {kZtunnelNotConnected, Severity::kCritical, Layer::kAmbient, "ztunnel", RunbookRow::kPodCreationBlocked,
     "MeshprobeZtunnelNotConnected", {}, {},
     "Fix ztunnel on {node} first (usually its istiod or overlay connectivity, see its other findings); once ztunnel "
     "connects, new pods start normally.",
     {}},
    {kCniAgentDown, Severity::kCritical, Layer::kAmbient, "ztunnel", RunbookRow::kPodCreationBlocked,
     "MeshprobeZtunnelNotConnected", {}, {},
     "Check the istio-cni node agent on {node} (kubectl -n istio-system get pods -l k8s-app=istio-cni-node -o wide) "
     "and its logs.",
     {}},
    {kVxlanConfigMismatch, Severity::kCritical, Layer::kOverlay, "vxlan_socket", RunbookRow::kCrossNodeFailure,
     "MeshprobeOverlayPartition", kOverlayGuesses, kExplainsIstiodAndZtunnel,
     "Make {node}'s flannel backend use the cluster's VNI and port (flannel net-conf.json Backend.VNI / "
     "Backend.Port), then restart the flannel pod on {node}.",
     {}},
    {kAmbientRedirectionBroken, Severity::kCritical, Layer::kAmbient, "ambient_redirection", RunbookRow::kNoHbone,
     "MeshprobeAmbientRedirectionBroken", {}, {},
     "Make sure the namespace is labelled istio.io/dataplane-mode=ambient, then restart its workloads (kubectl "
     "rollout restart deployment -n <ns>); redirection rules without ztunnel listeners: restart ztunnel on {node}.",
     {}},
    {kMtuMismatch, Severity::kWarning, Layer::kOverlay, "vxlan_device", RunbookRow::kCrossNodeFailure,
     "MeshprobeOverlayMtu", {}, {},
     "Make the VXLAN device MTU the underlay MTU minus 50 on every node (flannel derives it from the underlay "
     "interface; restart flannel after an underlay MTU change), or raise the underlay MTU on {node}.",
     {}},
    {kAgentStale, Severity::kWarning, Layer::kUnspecified, "", RunbookRow::kNone, "MeshprobeAgentStale",
     kAgentStaleSupersedes, kExplainsIstiod,
     "Check the meshprobe agent pod on {node} (kubectl -n meshprobe get pods -o wide; its logs); until it reports, "
     "nothing is known about that node.",
     {}},
    {kAgentMissing, Severity::kWarning, Layer::kUnspecified, "", RunbookRow::kNone, "MeshprobeAgentMissing",
     kAgentMissingSupersedes, {},
     "Check the meshprobe agent pod on {node} (kubectl -n meshprobe get pods -o wide --field-selector "
     "spec.nodeName={node}; kubectl -n meshprobe describe pod; its logs): {node} is Ready but nothing is known "
     "about its datapath.",
     kAgentMissingVariants},
    {kNamespaceNotAmbient, Severity::kWarning, Layer::kAmbient, "", RunbookRow::kNoHbone,
     "MeshprobeNamespaceNotAmbient", {}, {},
     "kubectl label --overwrite namespace <namespace> istio.io/dataplane-mode=ambient (the pods already running "
     "there are added to the mesh without a restart).",
     {}},
    {kPodNotCaptured, Severity::kCritical, Layer::kAmbient, "", RunbookRow::kNoHbone, "MeshprobePodNotCaptured",
     {}, {},
     "Restart the pod's workload (<restart>) so istio-cni captures the new pod; if pods keep coming up uncaptured "
     "on {node}, check the istio-cni node agent there.",
     kPodNotCapturedVariants},
    {kZtunnelNotReady, Severity::kCritical, Layer::kAmbient, "", RunbookRow::kZtunnelNotReady,
     "MeshprobeZtunnelNotReady", {}, kExplainsNotConnected,
     "Look at the ztunnel pod <pod> on {node}: kubectl -n istio-system describe pod <pod> and its logs (kubectl -n "
     "istio-system logs <pod>; --previous after a crash).",
     kZtunnelNotReadyVariants},
}};

bool contains(std::span<const sv> list, sv code) { return std::find(list.begin(), list.end(), code) != list.end(); }

void replaceAll(std::string& s, sv from, sv to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) {
    s.replace(at, from.size(), to);
  }
}

}  // namespace

std::string_view runbookRowName(RunbookRow row) {
  switch (row) {
    case RunbookRow::kZtunnelNotReady: return "ztunnel not ready";
    case RunbookRow::kCrossNodeFailure: return "cross-node failure";
    case RunbookRow::kPodCreationBlocked: return "pod creation blocked";
    case RunbookRow::kNoHbone: return "no HBONE";
    case RunbookRow::kNone: break;
  }
  return "";
}

std::span<const FindingSpec> findingCatalogue() { return kCatalogue; }

const FindingSpec* findFinding(std::string_view code) {
  for (const auto& spec : kCatalogue) {
    if (spec.code == code) return &spec;
  }
  return nullptr;
}

bool supersedes(std::string_view code, std::string_view other) {
  const FindingSpec* spec = findFinding(code);
  return spec != nullptr && contains(spec->supersedes, other);
}

bool explains(std::string_view code, std::string_view other) {
  const FindingSpec* spec = findFinding(code);
  return spec != nullptr && contains(spec->explains, other);
}

Finding findingOf(std::string_view code) {
  Finding f;
  f.code = std::string(code);
  if (const FindingSpec* spec = findFinding(code); spec != nullptr) {
    f.severity = spec->severity;
    f.layer = spec->layer;
  } else {
    f.severity = Severity::kCritical;
  }
  return f;
}

std::string remedyFor(std::string_view code, std::string_view when, std::string_view node, std::string_view peer) {
  const FindingSpec* spec = findFinding(code);
  if (spec == nullptr) return "";
  std::string text(spec->remedy);
  for (const auto& v : spec->variants) {
    if (!when.empty() && v.when == when) text = v.text;
  }
  replaceAll(text, "{node}", node);
  replaceAll(text, "{peer}", peer);
  return text;
}

}  // namespace meshprobe
