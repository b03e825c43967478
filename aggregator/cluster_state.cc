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

// A layer view over a protobuf matrix and the sources' probe lists (first version: built
// from the whole matrix; the dense snapshot replaces it).
class GridLayerView final : public LayerView {
 public:
  GridLayerView(const v1::GetMatrixResponse& m, const std::vector<NodeEvidence>& nodes) : n_(static_cast<uint32_t>(m.nodes_size())) {
    std::map<std::string, uint32_t> index;
    for (int i = 0; i < m.nodes_size(); ++i) index[m.nodes(i)] = static_cast<uint32_t>(i);
    state_.assign(static_cast<size_t>(n_) * n_, v1::Cell::UNKNOWN);
    for (const auto& c : m.cells()) {
      auto s = index.find(c.src()), d = index.find(c.dst());
      if (s == index.end() || d == index.end()) continue;
      state_[static_cast<size_t>(s->second) * n_ + d->second] = c.state();
    }
    for (uint32_t s = 0; s < n_; ++s) {
      for (uint32_t d = 0; d < n_; ++d) {
        if (s != d && state(s, d) == v1::Cell::FAIL) failing_.emplace_back(s, d);
      }
    }
    measured_.assign(n_, 0);
    for (uint32_t x = 0; x < n_; ++x) {
      for (uint32_t y = 0; y < n_; ++y) {
        if (x != y && (state(x, y) != v1::Cell::UNKNOWN || state(y, x) != v1::Cell::UNKNOWN)) ++measured_[x];
      }
    }
    for (uint32_t s = 0; s < n_ && s < nodes.size(); ++s) {
      for (const auto& p : nodes[s].probes) {
        if (p.layer() != m.layer()) continue;
        auto d = index.find(p.dst());
        if (d == index.end() || d->second == s) continue;
        const bool mtu_trouble = p.has_path_mtu() && (p.path_mtu().consecutive_failures() > 0 ||
                                                      p.path_mtu().sent() > p.path_mtu().received());
        if (state(s, d->second) != v1::Cell::OK || p.consecutive_failures() > 0 || !p.error().empty() ||
            p.failure() != v1::PROBE_FAILURE_UNSPECIFIED || p.tcp_failure() != v1::PROBE_FAILURE_UNSPECIFIED ||
            mtu_trouble) {
          details_[{s, d->second}] = p;
        }
      }
    }
    for (const auto& [k, p] : details_) detailed_.push_back(k);
  }
  uint32_t size() const override { return n_; }
  v1::Cell::State state(uint32_t src, uint32_t dst) const override {
    if (src >= n_ || dst >= n_ || src == dst) return v1::Cell::UNKNOWN;
    return state_[static_cast<size_t>(src) * n_ + dst];
  }
  const std::vector<CellPair>& failing() const override { return failing_; }
  uint32_t measuredPeers(uint32_t x) const override { return x < n_ ? measured_[x] : 0; }
  const v1::ProbeResult* detail(uint32_t src, uint32_t dst) const override {
    auto it = details_.find({src, dst});
    return it == details_.end() ? nullptr : &it->second;
  }
  const std::vector<CellPair>& detailed() const override { return detailed_; }

 private:
  uint32_t n_;
  std::vector<v1::Cell::State> state_;
  std::vector<CellPair> failing_, detailed_;
  std::vector<uint32_t> measured_;
  std::map<CellPair, v1::ProbeResult> details_;
};

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
  ++generation_;
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
  ++generation_;
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
  ++generation_;
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

DiagnosisInput ClusterState::diagnosisInput() const {
  ClusterSnapshot snap = diagnosisSnapshot();
  DiagnosisInput in;
  in.underlay = std::make_shared<GridLayerView>(snap.underlay, snap.nodes);
  in.overlay = std::make_shared<GridLayerView>(snap.overlay, snap.nodes);
  for (const auto& c : snap.istiod.cells()) in.istiod.push_back(c.state());
  in.vxlan_mismatches = std::move(snap.vxlan_mismatches);
  // First version: the generation mixes the change counter with the up/down pattern, so a
  // node going stale changes it too.
  uint64_t up_hash = 1469598103934665603ull;
  for (auto& ev : snap.nodes) {
    up_hash = (up_hash ^ (ev.summary.up() ? 0x9e37u : 0x51u)) * 1099511628211ull;
    ev.probes.clear();
    in.nodes.push_back(std::move(ev));
  }
  {
    std::lock_guard lock(mu_);
    in.generation = (generation_ << 16) ^ up_hash;
  }
  return in;
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
