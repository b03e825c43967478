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

constexpr std::array<FindingSpec, 14> kCatalogue{{
    {kIstiodUnreachable, Severity::kCritical, Layer::kIstiod, "istiod", RunbookRow::kZtunnelNotReady,
     "MeshprobeIstiodUnreachable", kIstiodSupersedes, {},
     "Check network connectivity from {node} to istiod:15012 and the istiod Service.", kIstiodVariants},
    {kVxlanDeviceMissing, Severity::kCritical, Layer::kOverlay, "vxlan_device", RunbookRow::kCrossNodeFailure,
     "MeshprobeOverlayPartition", kDeviceSupersedes, kExplainsIstiod,
     "Restart the flannel pod on {node} (kubectl delete pod <flannel-pod> -n kube-system), then confirm flannel.1 is "
     "back and up.",
     {}},
    {kVxlanSocketMissing, Severity::kCritical, Layer::kOverlay, "vxlan_socket", RunbookRow::kCrossNodeFailure,
     "MeshprobeOverlayPartition", kOverlayGuesses, kExplainsIstiod,
     "Restart flannel on {node}: the kernel opens the VXLAN UDP socket with the device.", {}},
    {kVxlanPortFiltered, Severity::kCritical, Layer::kOverlay, "firewall", RunbookRow::kCrossNodeFailure,
     "MeshprobeOverlayPartition", kOverlayGuesses, kExplainsIstiod,
     "Delete the rule that drops or rejects the VXLAN port on {node} (the evidence quotes it) and allow UDP to the "
     "VXLAN port between all nodes, cloud security groups included.",
     {}},
    {kOverlayFdbStale, Severity::kCritical, Layer::kOverlay, "vxlan_fdb", RunbookRow::kCrossNodeFailure,
     "MeshprobeOverlayPartition", kOverlayGuesses, kExplainsIstiod,
     "Restart flannel on {node} so it reprograms its peers' FDB, neighbour and route entries; if a peer's VTEP MAC "
     "changed, restart flannel on that peer too.",
     {}},
    {kOverlayPartition, Severity::kCritical, Layer::kOverlay, "", RunbookRow::kCrossNodeFailure,
     "MeshprobeOverlayPartition", {}, kExplainsIstiod,
     "Restart the flannel pod on {node} and check UDP to the VXLAN port on the path to {node} (network ACLs, "
     "security groups, filters outside the node).",
     kOverlayPartitionVariants},
    {kPairUnreachable, Severity::kWarning, Layer::kUnspecified, "", RunbookRow::kNone, "MeshprobePairUnreachable",
     {}, {},
     "Compare what flannel programmed for each other on {node} and {peer} (bridge fdb / ip neigh / ip route on "
     "flannel.1) and any filter on the VXLAN port between their node IPs.",
     kPairVariants},
    {kUnderlayUnreachable, Severity::kCritical, Layer::kUnderlay, "", RunbookRow::kNone,
     "MeshprobeUnderlayUnreachable", kUnderlaySupersedes, kExplainsIstiod,
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
     "MeshprobeOverlayPartition", kOverlayGuesses, kExplainsIstiod,
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
