#include "agent/daemon/report_builder.h"

#include <arpa/inet.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>

#include <algorithm>

#include "agent/checks/vxlan_facts.h"
#include "common/version.h"

namespace meshprobe::agent {

using google::protobuf::util::TimeUtil;

meshprobe::v1::Layer toProto(Layer layer) {
  switch (layer) {
    case Layer::kUnderlay: return meshprobe::v1::UNDERLAY;
    case Layer::kOverlay: return meshprobe::v1::OVERLAY;
    case Layer::kIstiod: return meshprobe::v1::ISTIOD;
    case Layer::kAmbient: return meshprobe::v1::AMBIENT;
    case Layer::kUnspecified: break;
  }
  return meshprobe::v1::LAYER_UNSPECIFIED;
}

meshprobe::v1::ProbeFailure toProto(ProbeFailure f) {
  switch (f) {
    case ProbeFailure::kTimeout: return meshprobe::v1::PROBE_FAILURE_TIMEOUT;
    case ProbeFailure::kRefused: return meshprobe::v1::PROBE_FAILURE_REFUSED;
    case ProbeFailure::kUnreachable: return meshprobe::v1::PROBE_FAILURE_UNREACHABLE;
    case ProbeFailure::kMessageTooLong: return meshprobe::v1::PROBE_FAILURE_MESSAGE_TOO_LONG;
    case ProbeFailure::kBadReply: return meshprobe::v1::PROBE_FAILURE_BAD_REPLY;
    case ProbeFailure::kOther: return meshprobe::v1::PROBE_FAILURE_OTHER;
    case ProbeFailure::kNone: break;
  }
  return meshprobe::v1::PROBE_FAILURE_UNSPECIFIED;
}

meshprobe::v1::Finding toProto(const Finding& f) {
  meshprobe::v1::Finding out;
  out.set_code(f.code);
  switch (f.severity) {
    case Severity::kInfo: out.set_severity(meshprobe::v1::INFO); break;
    case Severity::kWarning: out.set_severity(meshprobe::v1::WARNING); break;
    case Severity::kCritical: out.set_severity(meshprobe::v1::CRITICAL); break;
  }
  for (const auto& n : f.nodes) out.add_nodes(n);
  out.set_layer(toProto(f.layer));
  out.set_summary(f.summary);
  for (const auto& e : f.evidence) out.add_evidence(e);
  out.set_remedy(f.remedy);
  return out;
}

meshprobe::v1::CheckResult toProto(const CheckResult& c) {
  meshprobe::v1::CheckResult out;
  out.set_name(c.name);
  switch (c.status) {
    case CheckStatus::kOk: out.set_status(meshprobe::v1::CheckResult::OK); break;
    case CheckStatus::kWarn: out.set_status(meshprobe::v1::CheckResult::WARN); break;
    case CheckStatus::kFail: out.set_status(meshprobe::v1::CheckResult::FAIL); break;
    case CheckStatus::kSkip: out.set_status(meshprobe::v1::CheckResult::SKIP); break;
  }
  out.set_summary(c.summary);
  if (c.details.is_object()) {
    // Struct is JSON's own model; a detail that does not convert is dropped, not fatal.
    auto st = google::protobuf::util::JsonStringToMessage(c.details.dump(), out.mutable_details());
    if (!st.ok()) out.clear_details();
  }
  *out.mutable_duration() = TimeUtil::NanosecondsToDuration(c.duration.count());
  return out;
}

meshprobe::v1::PodNetnsCapture::State toProto(PodState state) {
  using P = meshprobe::v1::PodNetnsCapture;
  switch (state) {
    case PodState::kCaptured: return P::CAPTURED;
    case PodState::kUncaptured: return P::UNCAPTURED;
    case PodState::kSidecar: return P::SIDECAR;
    case PodState::kRulesWithoutListeners: return P::RULES_WITHOUT_LISTENERS;
    case PodState::kListenersWithoutRules: return P::LISTENERS_WITHOUT_RULES;
    case PodState::kUnknown: return P::UNKNOWN;
  }
  return P::UNKNOWN;
}

meshprobe::v1::PodNetnsCaptures toProto(const PodCaptures& captures) {
  meshprobe::v1::PodNetnsCaptures out;
  out.set_total(static_cast<uint32_t>(captures.total));
  for (const auto& c : captures.entries) {
    auto* e = out.add_entries();
    e->set_netns(c.netns);
    for (const auto& ip : c.ips) e->add_ips(ip);
    e->set_state(toProto(c.state));
    e->set_reason(c.reason);
    e->set_ips_error(c.ips_error);
  }
  return out;
}

void setPodNetns(meshprobe::v1::Report& report, const std::vector<CheckResult>& checks) {
  for (const auto& c : checks) {
    if (!c.pod_captures) continue;
    *report.mutable_pod_netns() = toProto(*c.pod_captures);
    return;
  }
}

meshprobe::v1::ProbeResult toProto(const TargetStats& s) {
  meshprobe::v1::ProbeResult out;
  out.set_dst(s.target.peer);
  out.set_layer(toProto(s.target.layer));
  out.set_sent(static_cast<uint32_t>(s.window_probes));
  out.set_received(static_cast<uint32_t>(
      static_cast<double>(s.window_probes) * (1.0 - s.loss) + 0.5));
  out.set_loss(s.loss);
  out.set_recent_loss(s.recent_loss);
  out.set_consecutive_failures(s.consecutive_failures);
  if (s.rtt_p50) *out.mutable_rtt_p50() = TimeUtil::NanosecondsToDuration(s.rtt_p50->count());
  if (s.rtt_p99) *out.mutable_rtt_p99() = TimeUtil::NanosecondsToDuration(s.rtt_p99->count());
  if (s.jitter) *out.mutable_jitter() = TimeUtil::NanosecondsToDuration(s.jitter->count());
  if (s.last_success) {
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(s.last_success->time_since_epoch()).count();
    *out.mutable_last_success() = TimeUtil::NanosecondsToTimestamp(ns);
  }
  if (s.last_probe) {
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(s.last_probe->time_since_epoch()).count();
    *out.mutable_last_probe() = TimeUtil::NanosecondsToTimestamp(ns);
  }
  out.set_tcp_reachable(s.tcp_reachable.value_or(false));
  std::string error = s.last_error;
  if (s.consecutive_failures > 0 && s.tcp_reachable.has_value()) {
    error += *s.tcp_reachable ? " (TCP connect works: UDP filtered)" : " (TCP connect failed: " + s.tcp_error + ")";
  }
  if (s.consecutive_failures > 0) {
    out.set_error(error);
    // A failure with no reason recorded (none should be) still says it is a failure, so
    // readers do not fall back to the text.
    out.set_failure(s.last_failure == ProbeFailure::kNone ? meshprobe::v1::PROBE_FAILURE_OTHER
                                                          : toProto(s.last_failure));
    if (s.tcp_reachable.has_value() && !*s.tcp_reachable) out.set_tcp_failure(toProto(s.tcp_failure));
  }
  if (s.path_mtu.size > 0) {
    const PathMtuStats& m = s.path_mtu;
    auto* pm = out.mutable_path_mtu();
    pm->set_size(m.size);
    pm->set_sent(static_cast<uint32_t>(m.sent));
    pm->set_received(static_cast<uint32_t>(m.received));
    pm->set_consecutive_failures(m.consecutive_failures);
    if (m.last_success) {
      auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(m.last_success->time_since_epoch()).count();
      *pm->mutable_last_success() = TimeUtil::NanosecondsToTimestamp(ns);
    }
    if (m.consecutive_failures > 0) {
      pm->set_error(m.last_error);
      pm->set_failure(toProto(m.last_failure));
    }
  }
  return out;
}

void setCoverage(meshprobe::v1::Report& report, const ProbeRotationStatus& rotation, Duration interval) {
  const auto rounds = static_cast<int64_t>(std::max<size_t>(rotation.coverage_rounds, 1));
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(interval).count();
  *report.mutable_coverage_period() = TimeUtil::NanosecondsToDuration(ns * rounds);
  *report.mutable_probe_interval() = TimeUtil::NanosecondsToDuration(ns);
}

namespace {

// "10.244.3.1/24" -> "10.244.3.0/24"; empty when not an IPv4 CIDR.
std::string networkOf(const std::string& cidr) {
  auto slash = cidr.find('/');
  if (slash == std::string::npos) return "";
  in_addr addr{};
  if (inet_pton(AF_INET, cidr.substr(0, slash).c_str(), &addr) != 1) return "";
  int prefix = std::atoi(cidr.c_str() + slash + 1);
  if (prefix < 0 || prefix > 32) return "";
  uint32_t mask = prefix == 0 ? 0 : htonl(~uint32_t{0} << (32 - prefix));
  addr.s_addr &= mask;
  char buf[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &addr, buf, sizeof buf);
  return std::string(buf) + "/" + std::to_string(prefix);
}

}  // namespace

meshprobe::v1::Hello buildHello(const AgentConfig& config, const NetlinkSnapshot* snapshot,
                                const std::string& flannel_subnet) {
  meshprobe::v1::Hello h;
  h.set_node_name(config.node_name);
  h.set_node_ip(config.node_ip);
  h.set_agent_version(kVersion);
  if (snapshot) {
    auto choice = chooseVxlanDevice(*snapshot, config);
    if (choice.link && choice.link->vxlan) {
      h.set_overlay_ip(deviceIPv4(*snapshot, choice.link->ifindex));
      h.set_vtep_mac(choice.link->mac);
      h.set_vxlan_vni(choice.link->vxlan->vni);
      h.set_vxlan_port(choice.link->vxlan->port);
      h.set_vxlan_mtu(choice.link->mtu);
    }
  }
  std::string cidr = networkOf(flannel_subnet);
  if (cidr.empty() && !h.overlay_ip().empty()) cidr = networkOf(h.overlay_ip() + "/24");
  h.set_pod_cidr(cidr);
  // The same facts as one message; the flat fields stay filled for older aggregators.
  auto* id = h.mutable_identity();
  id->set_name(h.node_name());
  id->set_node_ip(h.node_ip());
  id->set_overlay_ip(h.overlay_ip());
  id->set_vtep_mac(h.vtep_mac());
  id->set_vxlan_vni(h.vxlan_vni());
  id->set_vxlan_port(h.vxlan_port());
  id->set_pod_cidr(h.pod_cidr());
  id->set_vxlan_mtu(h.vxlan_mtu());
  return h;
}

uint32_t overlayPathMtu(uint32_t local_vxlan_mtu, uint32_t peer_vxlan_mtu) {
  if (local_vxlan_mtu == 0) return peer_vxlan_mtu;
  if (peer_vxlan_mtu == 0) return local_vxlan_mtu;
  return std::min(local_vxlan_mtu, peer_vxlan_mtu);
}

meshprobe::v1::NodeIdentity identityOf(const meshprobe::v1::Peer& peer) {
  meshprobe::v1::NodeIdentity id = peer.identity();
  if (!peer.has_identity()) {  // an aggregator that predates NodeIdentity
    id.set_name(peer.node_name());
    id.set_node_ip(peer.node_ip());
    id.set_overlay_ip(peer.overlay_ip());
    id.set_vtep_mac(peer.vtep_mac());
    id.set_vxlan_vni(peer.vxlan_vni());
    id.set_vxlan_port(peer.vxlan_port());
    id.set_pod_cidr(peer.pod_cidr());
    id.set_vxlan_mtu(peer.vxlan_mtu());
  }
  return id;
}

namespace {
// Each peer's facts (identityOf): kept in `store`, pointed to by the result.
std::vector<const meshprobe::v1::NodeIdentity*> identitiesOf(const meshprobe::v1::PeerList& list,
                                                            std::vector<meshprobe::v1::NodeIdentity>& store) {
  store.clear();
  store.reserve(static_cast<size_t>(list.peers_size()));
  for (const auto& p : list.peers()) store.push_back(identityOf(p));
  std::vector<const meshprobe::v1::NodeIdentity*> out;
  out.reserve(store.size());
  for (const auto& id : store) out.push_back(&id);
  return out;
}
}  // namespace

std::vector<ProbeTarget> targetsFromPeers(const meshprobe::v1::PeerList& peers, const std::string& self,
                                          uint32_t local_vxlan_mtu) {
  std::vector<meshprobe::v1::NodeIdentity> store;
  return targetsFromPeers(identitiesOf(peers, store), self, local_vxlan_mtu);
}

std::vector<ProbeTarget> targetsFromPeers(const std::vector<const meshprobe::v1::NodeIdentity*>& peers,
                                          const std::string& self, uint32_t local_vxlan_mtu) {
  std::vector<ProbeTarget> targets;
  for (const auto* p : peers) {
    if (p->name() == self) continue;
    if (!p->node_ip().empty()) targets.push_back({p->name(), Layer::kUnderlay, p->node_ip()});
    if (!p->overlay_ip().empty()) {
      targets.push_back({p->name(), Layer::kOverlay, p->overlay_ip(), overlayPathMtu(local_vxlan_mtu, p->vxlan_mtu())});
    }
  }
  return targets;
}

std::vector<PeerExpectation> expectationsFromPeers(const meshprobe::v1::PeerList& peers, const std::string& self) {
  std::vector<meshprobe::v1::NodeIdentity> store;
  return expectationsFromPeers(identitiesOf(peers, store), self);
}

std::vector<PeerExpectation> expectationsFromPeers(const std::vector<const meshprobe::v1::NodeIdentity*>& peers,
                                                   const std::string& self) {
  std::vector<PeerExpectation> out;
  for (const auto* p : peers) {
    if (p->name() == self || p->overlay_ip().empty() || p->vtep_mac().empty()) continue;
    out.push_back({p->name(), p->node_ip(), p->overlay_ip(), p->vtep_mac(), p->pod_cidr()});
  }
  return out;
}

std::vector<ProbeTarget> targetsFromStaticPeers(const std::vector<std::string>& peers) {
  std::vector<ProbeTarget> targets;
  for (const auto& ip : peers) targets.push_back({ip, Layer::kUnderlay, ip});
  return targets;
}

}  // namespace meshprobe::agent
