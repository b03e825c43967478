#include "aggregator/cluster_state.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>

namespace meshprobe::aggregator {

namespace v1 = meshprobe::v1;
using google::protobuf::util::TimeUtil;

namespace {

google::protobuf::Timestamp toTimestamp(std::chrono::system_clock::time_point t) {
  return TimeUtil::NanosecondsToTimestamp(
      std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
}

std::string layerLabel(v1::Layer layer) {
  const std::string& name = v1::Layer_Name(layer);
  return name.empty() ? std::to_string(static_cast<int>(layer)) : name;
}

}  // namespace

ClusterState::ClusterState(const Clock& clock, ClusterOptions options)
    : clock_(clock), options_([&] {
        if (options.forget_after.count() <= 0) options.forget_after = 10 * options.stale_after;
        return options;
      }()) {}

MembershipDiff ClusterState::applyHello(const v1::Hello& hello, bool new_session) {
  const auto now = clock_.monotonicNow();
  std::lock_guard lock(mu_);
  const v1::PeerList before = peerListLocked();
  v1::Hello normalized = normalizedHello(hello);  // idempotent: the Collector normalized it already
  NodeRecord& rec = nodes_[normalized.node_name()];
  rec.hello = std::move(normalized);
  rec.last_heard = now;
  if (new_session) {
    rec.has_sequence = false;
    rec.last_sequence = 0;
  }
  return diffPeers(before, peerListLocked());
}

ReportOutcome ClusterState::applyReport(const std::string& node, const v1::Report& report) {
  const auto now = clock_.monotonicNow();
  const auto wall = clock_.wallNow();
  std::lock_guard lock(mu_);
  auto it = nodes_.find(node);
  if (it == nodes_.end()) return ReportOutcome::kUnknownNode;
  NodeRecord& rec = it->second;
  if (rec.has_sequence && report.sequence() <= rec.last_sequence) return ReportOutcome::kOldSequence;
  rec.has_sequence = true;
  rec.last_sequence = report.sequence();
  rec.last_heard = now;
  rec.has_report = true;
  rec.report_received_mono = now;
  rec.report_received_wall = wall;
  rec.report = report;
  if (!rec.report.has_time()) *rec.report.mutable_time() = toTimestamp(wall);
  rec.probe_index.clear();
  for (int i = 0; i < rec.report.probes_size(); ++i) {
    const auto& p = rec.report.probes(i);
    rec.probe_index[{static_cast<int>(p.layer()), p.dst()}] = i;  // a later duplicate wins
  }
  return ReportOutcome::kAccepted;
}

MembershipDiff ClusterState::sweep() {
  const auto now = clock_.monotonicNow();
  std::lock_guard lock(mu_);
  const v1::PeerList before = peerListLocked();
  std::erase_if(nodes_, [&](const auto& entry) { return now - entry.second.last_heard >= options_.forget_after; });
  return diffPeers(before, peerListLocked());
}

v1::PeerList ClusterState::peerList() const {
  std::lock_guard lock(mu_);
  return peerListLocked();
}

v1::PeerList ClusterState::peerListLocked() const {
  v1::PeerList list;
  for (const auto& [name, rec] : nodes_) *list.add_peers() = peerFromHello(rec.hello);
  return list;
}

bool ClusterState::isUpLocked(const NodeRecord& rec, std::chrono::steady_clock::time_point now) const {
  return now - rec.last_heard < options_.stale_after;
}

v1::NodeSummary ClusterState::summaryLocked(const NodeRecord& rec, std::chrono::steady_clock::time_point now) const {
  v1::NodeSummary s;
  const auto& h = rec.hello;
  s.set_name(h.node_name());
  s.set_node_ip(h.node_ip());
  s.set_overlay_ip(h.overlay_ip());
  s.set_vtep_mac(h.vtep_mac());
  s.set_vxlan_vni(h.vxlan_vni());
  s.set_vxlan_port(h.vxlan_port());
  s.set_pod_cidr(h.pod_cidr());
  s.set_agent_version(h.agent_version());
  s.set_vxlan_mtu(h.vxlan_mtu());
  *s.mutable_identity() = identityOf(h);  // the same facts as one message
  s.set_up(isUpLocked(rec, now));
  if (rec.has_report) *s.mutable_last_report() = toTimestamp(rec.report_received_wall);
  return s;
}

std::vector<v1::NodeSummary> ClusterState::listNodes() const {
  const auto now = clock_.monotonicNow();
  std::lock_guard lock(mu_);
  std::vector<v1::NodeSummary> out;
  out.reserve(nodes_.size());
  for (const auto& [name, rec] : nodes_) out.push_back(summaryLocked(rec, now));
  return out;
}

Result<v1::GetNodeResponse> ClusterState::getNode(const std::string& name) const {
  const auto now = clock_.monotonicNow();
  std::lock_guard lock(mu_);
  auto it = nodes_.find(name);
  if (it == nodes_.end()) return Error{"no node named '" + name + "' has said Hello to this aggregator"};
  const NodeRecord& rec = it->second;
  v1::GetNodeResponse resp;
  *resp.mutable_node() = summaryLocked(rec, now);
  if (rec.has_report) {
    *resp.mutable_checks() = rec.report.checks();
    *resp.mutable_probes() = rec.report.probes();
    *resp.mutable_findings() = rec.report.findings();
  }
  return resp;
}

Result<v1::GetMatrixResponse> ClusterState::matrix(v1::Layer layer) const {
  if (!hasMatrix(layer)) {
    return Error{"layer " + layerLabel(layer) + " has no matrix; ask for UNDERLAY, OVERLAY or ISTIOD"};
  }
  const auto now = clock_.monotonicNow();
  std::lock_guard lock(mu_);
  v1::GetMatrixResponse resp;
  resp.set_layer(layer);
  for (const auto& [name, rec] : nodes_) resp.add_nodes(name);

  auto fillFromProbe = [&](v1::Cell& cell, const NodeRecord& src, bool src_up, const std::string& dst) {
    if (!src.has_report) {
      cell.set_state(v1::Cell::UNKNOWN);
      return false;
    }
    auto it = src.probe_index.find({static_cast<int>(layer), dst});
    if (it == src.probe_index.end()) return false;
    const auto& probe = src.report.probes(it->second);
    *cell.mutable_rtt() = probe.rtt_p50();
    cell.set_loss(probe.loss());
    *cell.mutable_last_update() = src.report.time();
    cell.set_state(src_up ? classifyProbe(probe, options_.matrix) : v1::Cell::UNKNOWN);
    return true;
  };

  for (const auto& [src_name, src] : nodes_) {
    const bool src_up = isUpLocked(src, now);
    if (layer == v1::ISTIOD) {
      v1::Cell* cell = resp.add_cells();
      cell->set_src(src_name);
      cell->set_dst(std::string(kIstiodDst));
      cell->set_layer(layer);
      cell->set_state(v1::Cell::UNKNOWN);
      if (fillFromProbe(*cell, src, src_up, std::string(kIstiodDst))) continue;
      if (!src.has_report) continue;
      const v1::CheckResult* check = nullptr;
      for (const auto& c : src.report.checks()) {
        if (c.name() == "istiod") check = &c;
      }
      if (check != nullptr) *cell->mutable_last_update() = src.report.time();
      cell->set_state(src_up ? classifyIstiodCheck(check) : v1::Cell::UNKNOWN);
      continue;
    }
    for (const auto& [dst_name, dst] : nodes_) {
      if (dst_name == src_name) continue;
      v1::Cell* cell = resp.add_cells();
      cell->set_src(src_name);
      cell->set_dst(dst_name);
      cell->set_layer(layer);
      cell->set_state(v1::Cell::UNKNOWN);
      fillFromProbe(*cell, src, src_up, dst_name);
    }
  }
  return resp;
}

Result<MatrixSummary> ClusterState::matrixSummary(v1::Layer layer) const {
  if (!hasMatrix(layer)) {
    return Error{"layer " + layerLabel(layer) + " has no matrix; ask for UNDERLAY, OVERLAY or ISTIOD"};
  }
  const auto now = clock_.monotonicNow();
  std::lock_guard lock(mu_);
  MatrixSummary out;
  out.nodes.reserve(nodes_.size());
  out.reachable.reserve(nodes_.size());
  for (const auto& [src_name, src] : nodes_) {
    out.nodes.push_back(src_name);
    uint32_t reachable = 0;
    const auto count = [&](v1::Cell::State st, const std::string& dst) {
      if (st == v1::Cell::OK || st == v1::Cell::DEGRADED) ++reachable;
      if (st == v1::Cell::FAIL) out.failed.emplace_back(src_name, dst);
    };
    // A down source's cells are all UNKNOWN, as are those of a source without a report.
    if (src.has_report && isUpLocked(src, now)) {
      if (layer == v1::ISTIOD) {
        const std::string dst(kIstiodDst);
        auto it = src.probe_index.find({static_cast<int>(layer), dst});
        if (it != src.probe_index.end()) {
          count(classifyProbe(src.report.probes(it->second), options_.matrix), dst);
        } else {
          const v1::CheckResult* check = nullptr;
          for (const auto& c : src.report.checks()) {
            if (c.name() == "istiod") check = &c;
          }
          count(classifyIstiodCheck(check), dst);
        }
      } else {
        // probe_index is ordered by (layer, dst): this layer's probes are one sorted run,
        // walked together with the (sorted) members, so the cells come out in matrix order
        // without a lookup per cell. Only members other than the source have cells.
        auto member = nodes_.begin();
        for (auto it = src.probe_index.lower_bound({static_cast<int>(layer), std::string()});
             it != src.probe_index.end() && it->first.first == static_cast<int>(layer); ++it) {
          const std::string& dst = it->first.second;
          while (member != nodes_.end() && member->first < dst) ++member;
          if (member == nodes_.end()) break;
          if (member->first != dst || dst == src_name) continue;
          count(classifyProbe(src.report.probes(it->second), options_.matrix), dst);
        }
      }
    }
    out.reachable.push_back(reachable);
  }
  return out;
}

ClusterSnapshot ClusterState::diagnosisSnapshot() const {
  ClusterSnapshot snap;
  if (auto m = matrix(v1::UNDERLAY); m.ok()) snap.underlay = std::move(m.value());
  if (auto m = matrix(v1::OVERLAY); m.ok()) snap.overlay = std::move(m.value());
  if (auto m = matrix(v1::ISTIOD); m.ok()) snap.istiod = std::move(m.value());
  snap.vxlan_mismatches = vxlanMismatches();
  const auto now = clock_.monotonicNow();
  std::lock_guard lock(mu_);
  snap.nodes.reserve(nodes_.size());
  for (const auto& [name, rec] : nodes_) {
    NodeEvidence ev;
    ev.summary = summaryLocked(rec, now);
    if (rec.has_report && ev.summary.up()) {
      ev.has_report = true;
      ev.checks.assign(rec.report.checks().begin(), rec.report.checks().end());
      ev.findings.assign(rec.report.findings().begin(), rec.report.findings().end());
      ev.probes.assign(rec.report.probes().begin(), rec.report.probes().end());
    }
    snap.nodes.push_back(std::move(ev));
  }
  return snap;
}

std::vector<VxlanMismatch> ClusterState::vxlanMismatches() const { return findVxlanMismatches(peerList()); }

size_t ClusterState::memberCount() const {
  std::lock_guard lock(mu_);
  return nodes_.size();
}

bool ClusterState::isUp(const std::string& name) const {
  const auto now = clock_.monotonicNow();
  std::lock_guard lock(mu_);
  auto it = nodes_.find(name);
  return it != nodes_.end() && isUpLocked(it->second, now);
}

}  // namespace meshprobe::aggregator
