#pragma once
// A diagnosed fault. Codes are contract strings; both the agent (local findings in
// --once) and the aggregator (cluster findings) produce them. Every code has a row in the
// finding catalogue (common/finding_catalogue.h): severity, layer, relations, remedy.

#include <string>
#include <string_view>
#include <vector>

namespace meshprobe {

namespace codes {
inline constexpr std::string_view kIstiodUnreachable = "ISTIOD_UNREACHABLE";
inline constexpr std::string_view kVxlanDeviceMissing = "VXLAN_DEVICE_MISSING";
inline constexpr std::string_view kVxlanSocketMissing = "VXLAN_SOCKET_MISSING";
inline constexpr std::string_view kVxlanPortFiltered = "VXLAN_PORT_FILTERED";
inline constexpr std::string_view kOverlayFdbStale = "OVERLAY_FDB_STALE";
inline constexpr std::string_view kOverlayPartition = "OVERLAY_PARTITION";
inline constexpr std::string_view kUnderlayUnreachable = "UNDERLAY_UNREACHABLE";
inline constexpr std::string_view kZtunnelNotConnected = "ZTUNNEL_NOT_CONNECTED";
inline constexpr std::string_view kCniAgentDown = "CNI_AGENT_DOWN";
inline constexpr std::string_view kVxlanConfigMismatch = "VXLAN_CONFIG_MISMATCH";
inline constexpr std::string_view kAmbientRedirectionBroken = "AMBIENT_REDIRECTION_BROKEN";
inline constexpr std::string_view kMtuMismatch = "MTU_MISMATCH";
inline constexpr std::string_view kAgentStale = "AGENT_STALE";
// One failing pair that no node explains: the pair is blamed, not a node.
inline constexpr std::string_view kPairUnreachable = "PAIR_UNREACHABLE";
// Kubernetes-aware (the aggregator's watch of Nodes, Namespaces and Pods joined with the agents).
inline constexpr std::string_view kAgentMissing = "AGENT_MISSING";
inline constexpr std::string_view kNamespaceNotAmbient = "NAMESPACE_NOT_AMBIENT";
inline constexpr std::string_view kPodNotCaptured = "POD_NOT_CAPTURED";
inline constexpr std::string_view kZtunnelNotReady = "ZTUNNEL_NOT_READY";
}  // namespace codes

enum class Severity { kInfo, kWarning, kCritical };
enum class Layer { kUnspecified, kUnderlay, kOverlay, kIstiod, kAmbient };

std::string_view severityName(Severity s);  // "INFO" | "WARNING" | "CRITICAL"
std::string_view layerName(Layer l);        // "UNDERLAY" | "OVERLAY" | "ISTIOD" | "AMBIENT" | "LAYER_UNSPECIFIED"

struct Finding {
  std::string code;
  Severity severity = Severity::kCritical;
  std::vector<std::string> nodes;
  Layer layer = Layer::kUnspecified;
  std::string summary;
  std::vector<std::string> evidence;
  std::string remedy;
};

}  // namespace meshprobe
