#include "aggregator/cluster_state.h"

#include <google/protobuf/util/message_differencer.h>
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

Error noMatrix(v1::Layer layer) {
  return Error{"layer " + layerLabel(layer) + " has no matrix; ask for UNDERLAY, OVERLAY or ISTIOD"};
}

v1::NodeSummary summaryOf(const v1::Hello& h) {
  v1::NodeSummary s;
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
  return s;
}

// The agent check whose reports carry Report.pod_netns.
constexpr std::string_view kAmbientRedirectionCheck = "ambient_redirection";

bool reachableState(v1::Cell::State s) { return s == v1::Cell::OK || s == v1::Cell::DEGRADED; }

// The cell's state from a report's probe result: classified, or UNKNOWN when its last probe
// is older than the report's coverage window — coverage_period + 2 × probe_interval at the
// report's own time (report_ns), so the agent's and the aggregator's clocks need not agree.
// Without coverage_period (an older agent) no age rule applies; without probe_interval the
// interval is at most the coverage period.
class CellClassifier {
 public:
  CellClassifier(const v1::Report& report, int64_t report_ns, const MatrixOptions& matrix)
      : report_ns_(report_ns), matrix_(matrix) {
    if (!report.has_coverage_period()) return;
    const int64_t coverage = TimeUtil::DurationToNanoseconds(report.coverage_period());
    const int64_t interval =
        report.has_probe_interval() ? TimeUtil::DurationToNanoseconds(report.probe_interval()) : coverage;
    if (coverage > 0) max_age_ns_ = coverage + 2 * std::max<int64_t>(interval, 0);
  }
  v1::Cell::State operator()(const v1::ProbeResult& p) const {
    if (max_age_ns_ && p.has_last_probe() &&
        report_ns_ - TimeUtil::TimestampToNanoseconds(p.last_probe()) > *max_age_ns_) {
      return v1::Cell::UNKNOWN;
    }
    return classifyProbe(p, matrix_);
  }

 private:
  int64_t report_ns_;
  const MatrixOptions& matrix_;
  std::optional<int64_t> max_age_ns_;
};

}  // namespace

ClusterState::ClusterState(const Clock& clock, ClusterOptions options)
    : clock_(clock), options_([&] {
        if (options.forget_after.count() <= 0) options.forget_after = 10 * options.stale_after;
        return options;
      }()) {}

MembershipDiff ClusterState::applyHello(const v1::Hello& hello, bool new_session) {
  const auto now = clock_.monotonicNow();
  std::lock_guard lock(mu_);
  v1::Hello normalized = normalizedHello(hello);  // idempotent: the Collector normalized it already
  bool added = false;
  const uint32_t slot = index_.add(normalized.node_name(), &added);
  if (slot >= members_.size()) members_.resize(slot + 1);
  Member& m = members_[slot];
  // Only this member's Peer can change: compare it alone (O(1), not two whole lists).
  MembershipDiff diff;
  if (added) {
    m = Member{};
    m.stamp = ++counter_;
    last_slot_change_ = m.stamp;
    diff.added.push_back(normalized.node_name());
  } else if (!google::protobuf::util::MessageDifferencer::Equals(peerFromHello(m.hello), peerFromHello(normalized))) {
    diff.changed.push_back(normalized.node_name());
  }
  auto info = m.info ? std::make_shared<NodeInfo>(*m.info) : std::make_shared<NodeInfo>();
  v1::NodeSummary summary = summaryOf(normalized);
  if (info->has_report) *summary.mutable_last_report() = info->summary.last_report();
  info->summary = std::move(summary);
  m.info = std::move(info);
  m.hello = std::move(normalized);
  m.last_heard = now;
  if (new_session) {
    m.has_sequence = false;
    m.last_sequence = 0;
  }
  dirty_ = true;
  facts_dirty_ = true;
  return diff;
}

void ClusterState::writeRows(Member& m, uint32_t self, const v1::Report& report, NodeInfo& info) {
  const uint64_t stamp = ++counter_;
  const uint32_t width = index_.capacity();
  std::array<Row*, 2> rows{};
  for (size_t l = 0; l < 2; ++l) {
    auto& row = m.rows[l];
    if (!row || row.use_count() > 1) {
      row = std::make_shared<Row>();  // a snapshot holds the old one: write a new one
    } else {
      row->details.clear();
      row->failing.clear();
    }
    row->stamp = stamp;
    row->reachable = 0;
    row->clear(width);
    rows[l] = row.get();
  }

  const CellClassifier cellState(report, TimeUtil::TimestampToNanoseconds(info.report_time), options_.matrix);

  bool duplicates = false;
  const v1::ProbeResult* istiod_probe = nullptr;
  for (const auto& p : report.probes()) {
    const int l = rowLayerIndex(p.layer());
    if (l < 0) {
      if (p.layer() == v1::ISTIOD && p.dst() == kIstiodDst) {
        istiod_probe = &p;  // a later duplicate wins
      } else {
        info.other_probes.push_back(p);
      }
      continue;
    }
    const auto dst = index_.find(p.dst());
    if (!dst || *dst == self) {
      info.other_probes.push_back(p);
      continue;
    }
    const v1::Cell::State state = cellState(p);
    Row& row = *rows[static_cast<size_t>(l)];
    if (row.at(*dst).present()) duplicates = true;
    row.set(*dst, packProbe(p, state));
    if (reachableState(state)) ++row.reachable;
    if (needsDetail(p, state)) row.details.emplace_back(*dst, p);
  }
  for (Row* row : rows) {
    // Sorted by dst slot; with duplicate probes (not sent by agents) the last one wins.
    std::stable_sort(row->details.begin(), row->details.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    if (duplicates) {
      std::vector<std::pair<uint32_t, v1::ProbeResult>> kept;
      for (size_t i = 0; i < row->details.size(); ++i) {
        if (i + 1 < row->details.size() && row->details[i + 1].first == row->details[i].first) continue;
        kept.push_back(std::move(row->details[i]));
      }
      row->details = std::move(kept);
      row->reachable = 0;
      for (uint32_t slot = 0; slot < row->size(); ++slot) {
        const PackedCell c = row->at(slot);
        row->reachable += c.present() && reachableState(c.state());
      }
      // A detail whose slot was last written by a healthy probe is dropped.
      std::erase_if(row->details, [&](const auto& d) {
        const v1::ProbeResult* last = nullptr;
        for (const auto& p : report.probes()) {
          if (p.layer() == d.second.layer() && p.dst() == d.second.dst()) last = &p;
        }
        return last == nullptr || !needsDetail(*last, row->at(d.first).state());
      });
    }
    for (const auto& [slot, p] : row->details) {
      if (row->at(slot).state() == v1::Cell::FAIL) row->failing.push_back(slot);
    }
  }

  info.istiod_from_probe = istiod_probe != nullptr;
  info.has_istiod_check = false;
  if (istiod_probe != nullptr) {
    info.istiod_probe = *istiod_probe;
    info.istiod_state = classifyProbe(*istiod_probe, options_.matrix);
  } else {
    info.istiod_probe.Clear();
    const v1::CheckResult* check = nullptr;
    for (const auto& c : report.checks()) {
      if (c.name() == "istiod") check = &c;
    }
    info.has_istiod_check = check != nullptr;
    info.istiod_state = classifyIstiodCheck(check);
  }
}

void ClusterState::updateRows(Member& m, uint32_t self, const v1::Report& report, NodeInfo& info) {
  const uint64_t stamp = ++counter_;
  const uint32_t width = index_.capacity();
  const CellClassifier cellState(report, TimeUtil::TimestampToNanoseconds(info.report_time), options_.matrix);

  // A result re-sent unchanged (the agents' digest): same state, loss and RTT step as its
  // cell, healthy before and after, so only its last_probe moves. That is refreshed in
  // place, without copying the row or the cell's chunk for it. Only in a row written since
  // the last slot change: otherwise the cell may be an earlier occupant's (cleared below).
  std::vector<bool> refreshed(static_cast<size_t>(report.probes_size()));
  std::array<bool, 2> write{false, false};
  for (size_t l = 0; l < 2; ++l) write[l] = m.rows[l] && last_slot_change_ > m.rows[l]->stamp;
  for (int i = 0; i < report.probes_size(); ++i) {
    const auto& p = report.probes(i);
    const int l = rowLayerIndex(p.layer());
    if (l < 0) continue;
    const auto dst = index_.find(p.dst());
    if (!dst || *dst == self) continue;
    Row* row = m.rows[static_cast<size_t>(l)].get();
    if (row != nullptr && !write[static_cast<size_t>(l)] && *dst < row->size()) {
      const PackedCell old = row->at(*dst);
      const v1::Cell::State state = cellState(p);
      const PackedCell now = packProbe(p, state);
      if (old.present() && old.sameMeasure(now) && !needsDetail(p, state) && row->detail(*dst) == nullptr &&
          row->refreshLastProbe(*dst, now.last_probe)) {
        refreshed[static_cast<size_t>(i)] = true;
        continue;
      }
    }
    write[static_cast<size_t>(l)] = true;
  }

  std::array<Row*, 2> rows{};
  for (size_t l = 0; l < 2; ++l) {
    if (!write[l]) continue;  // nothing but refreshes: the row stays as it is
    auto& row = m.rows[l];
    if (!row) {
      row = std::make_shared<Row>();
    } else if (row.use_count() > 1) {
      row = std::make_shared<Row>(*row);  // a snapshot holds the old one: change a copy
    }
    const uint64_t written = row->stamp;
    row->stamp = stamp;
    row->grow(width);
    rows[l] = row.get();
    if (last_slot_change_ <= written) continue;
    // Slots given or freed since this row was written hold an earlier occupant's cells: a
    // whole report would have rewritten them, a delta must clear them.
    for (uint32_t slot = 0; slot < row->size(); ++slot) {
      const bool stale = slot >= members_.size() || members_[slot].stamp == 0 || members_[slot].stamp > written;
      const PackedCell old = row->at(slot);
      if (!stale || !old.present()) continue;
      if (reachableState(old.state())) --row->reachable;
      row->set(slot, PackedCell{});
    }
    std::erase_if(row->details, [&](const auto& d) {
      return d.first >= members_.size() || members_[d.first].stamp == 0 || members_[d.first].stamp > written;
    });
  }

  // The earlier report's probes that are no cell, with this one's on top (by layer + dst).
  const auto& before = *m.info;
  info.other_probes = before.other_probes;
  info.istiod_from_probe = before.istiod_from_probe;
  info.has_istiod_check = before.has_istiod_check;
  info.istiod_state = before.istiod_state;
  info.istiod_probe = before.istiod_probe;
  std::array<bool, 2> touched{false, false};
  for (int i = 0; i < report.probes_size(); ++i) {
    if (refreshed[static_cast<size_t>(i)]) continue;
    const auto& p = report.probes(i);
    const int l = rowLayerIndex(p.layer());
    std::optional<uint32_t> dst;
    if (l >= 0) dst = index_.find(p.dst());
    if (l < 0 || !dst || *dst == self) {
      if (p.layer() == v1::ISTIOD && p.dst() == kIstiodDst) {
        info.istiod_from_probe = true;
        info.istiod_probe = p;
        info.istiod_state = classifyProbe(p, options_.matrix);
        continue;
      }
      auto it = std::find_if(info.other_probes.begin(), info.other_probes.end(),
                             [&](const v1::ProbeResult& o) { return o.layer() == p.layer() && o.dst() == p.dst(); });
      if (it != info.other_probes.end()) {
        *it = p;
      } else {
        info.other_probes.push_back(p);
      }
      continue;
    }
    const v1::Cell::State state = cellState(p);
    Row& row = *rows[static_cast<size_t>(l)];
    const PackedCell old = row.at(*dst);
    if (old.present() && reachableState(old.state())) --row.reachable;
    row.set(*dst, packProbe(p, state));
    if (reachableState(state)) ++row.reachable;
    auto d = std::lower_bound(row.details.begin(), row.details.end(), *dst,
                              [](const auto& e, uint32_t slot) { return e.first < slot; });
    const bool had = d != row.details.end() && d->first == *dst;
    if (needsDetail(p, state)) {
      if (had) {
        d->second = p;
      } else {
        row.details.insert(d, {*dst, p});
      }
    } else if (had) {
      row.details.erase(d);
    }
    touched[static_cast<size_t>(l)] = true;
  }
  for (size_t l = 0; l < 2; ++l) {
    if (!touched[l]) continue;
    Row& row = *rows[l];
    row.failing.clear();
    for (const auto& [slot, p] : row.details) {
      if (row.at(slot).state() == v1::Cell::FAIL) row.failing.push_back(slot);
    }
  }
  if (!info.istiod_from_probe) {
    const v1::CheckResult* check = nullptr;
    for (const auto& c : info.checks) {
      if (c.name() == "istiod") check = &c;
    }
    info.has_istiod_check = check != nullptr;
    info.istiod_state = classifyIstiodCheck(check);
  }
}

ReportOutcome ClusterState::applyReport(const std::string& node, const v1::Report& report) {
  const auto now = clock_.monotonicNow();
  const auto wall = clock_.wallNow();
  std::lock_guard lock(mu_);
  const auto slot = index_.find(node);
  if (!slot) return ReportOutcome::kUnknownNode;
  Member& m = members_[*slot];
  if (m.has_sequence && report.sequence() <= m.last_sequence) return ReportOutcome::kOldSequence;
  m.has_sequence = true;
  m.last_sequence = report.sequence();
  m.last_heard = now;

  auto info = std::make_shared<NodeInfo>();
  info->summary = m.info->summary;
  *info->summary.mutable_last_report() = toTimestamp(wall);
  info->has_report = true;
  info->report_time = report.has_time() ? report.time() : toTimestamp(wall);
  info->findings.assign(report.findings().begin(), report.findings().end());
  if (report.delta() && m.info->has_report) {
    // Only what changed: checks by name on top of the last ones, pod netns unset = unchanged.
    info->checks = m.info->checks;
    for (const auto& c : report.checks()) {
      auto it = std::find_if(info->checks.begin(), info->checks.end(),
                             [&](const v1::CheckResult& k) { return k.name() == c.name(); });
      if (it != info->checks.end()) {
        *it = c;
      } else {
        info->checks.push_back(c);
      }
    }
    if (report.has_pod_netns()) {
      info->pod_netns = std::make_shared<const v1::PodNetnsCaptures>(report.pod_netns());
      info->pod_netns_time = info->report_time;
    } else {
      info->pod_netns = m.info->pod_netns;
      info->pod_netns_time = m.info->pod_netns_time;
    }
    updateRows(m, *slot, report, *info);
    ++deltas_applied_;
    m.info = std::move(info);
    dirty_ = true;
    return ReportOutcome::kAccepted;
  }
  info->checks.assign(report.checks().begin(), report.checks().end());
  if (report.has_pod_netns()) {
    info->pod_netns = std::make_shared<const v1::PodNetnsCaptures>(report.pod_netns());
    info->pod_netns_time = info->report_time;
  } else if (std::none_of(report.checks().begin(), report.checks().end(),
                          [](const v1::CheckResult& c) { return c.name() == kAmbientRedirectionCheck; })) {
    info->pod_netns = m.info->pod_netns;  // no ambient_redirection result in this report: keep the last list
    info->pod_netns_time = m.info->pod_netns_time;
  }  // else the check without the list: unknown (null)
  if (report.results_follow() && m.info->has_report) {
    // The rest of the results come in the deltas after it: the cells it leaves out keep
    // what they had.
    updateRows(m, *slot, report, *info);
  } else {
    writeRows(m, *slot, report, *info);
  }
  m.info = std::move(info);
  dirty_ = true;
  return ReportOutcome::kAccepted;
}

uint64_t ClusterState::deltasApplied() const {
  std::lock_guard lock(mu_);
  return deltas_applied_;
}

MembershipDiff ClusterState::sweep() {
  const auto now = clock_.monotonicNow();
  std::lock_guard lock(mu_);
  MembershipDiff diff;
  std::vector<uint32_t> gone;
  for (uint32_t slot : index_.sorted()) {
    if (now - members_[slot].last_heard >= options_.forget_after) gone.push_back(slot);
  }
  for (uint32_t slot : gone) {
    diff.removed.push_back(members_[slot].hello.node_name());  // in name order
    index_.remove(members_[slot].hello.node_name());
    members_[slot] = Member{};
  }
  if (!gone.empty()) {
    last_removal_ = ++counter_;
    last_slot_change_ = last_removal_;
    dirty_ = true;
    facts_dirty_ = true;
  }
  return diff;
}

v1::PeerList ClusterState::peerList() const {
  std::lock_guard lock(mu_);
  return peerListLocked();
}

v1::PeerList ClusterState::peerListLocked() const {
  v1::PeerList list;
  list.set_accepts_report_deltas(true);   // applyReport applies Report.delta
  list.set_accepts_results_follow(true);  // and Report.results_follow
  // Agents may leave out reports with no news this long: a node is heard from at least
  // four times before it would count as down.
  *list.mutable_quiet_report_interval() = TimeUtil::NanosecondsToDuration(options_.stale_after.count() / 4);
  for (uint32_t slot : index_.sorted()) *list.add_peers() = peerFromHello(members_[slot].hello);
  return list;
}

bool ClusterState::isUpLocked(const Member& m, std::chrono::steady_clock::time_point now) const {
  return now - m.last_heard < options_.stale_after;
}

// ---- publishing ----

std::shared_ptr<const StateSnapshot> ClusterState::snapshot() const {
  auto fresh = [&](const std::shared_ptr<const StateSnapshot>& s, std::chrono::steady_clock::time_point now) {
    if (!s) return false;
    if (now - s->built < options_.publish_interval) return true;  // rebuilt at most this often
    std::lock_guard lock(mu_);
    return !dirty_ && now < s->next_stale;
  };
  std::shared_ptr<const StateSnapshot> cur;
  {
    std::lock_guard lock(snap_mu_);
    cur = published_;
  }
  auto now = clock_.monotonicNow();
  if (fresh(cur, now)) return cur;
  std::lock_guard publish(publish_mu_);
  {
    std::lock_guard lock(snap_mu_);
    cur = published_;  // another reader may have just rebuilt it
  }
  now = clock_.monotonicNow();
  if (fresh(cur, now)) return cur;
  auto next = build(cur, now);
  std::lock_guard lock(snap_mu_);
  published_ = next;
  return next;
}

std::shared_ptr<const StateSnapshot> ClusterState::build(const std::shared_ptr<const StateSnapshot>& prev,
                                                         std::chrono::steady_clock::time_point now) const {
  auto s = std::make_shared<StateSnapshot>();
  bool changed = false;
  uint64_t last_removal = 0;
  {
    std::lock_guard lock(mu_);
    changed = dirty_;
    last_removal = last_removal_;
    dirty_ = false;
    if (facts_dirty_) {
      mismatches_ = findVxlanMismatches(peerListLocked());
      facts_dirty_ = false;
    }
    s->vxlan_mismatches = mismatches_;
    s->built = now;
    s->next_stale = std::chrono::steady_clock::time_point::max();
    const auto& order = index_.sorted();
    const uint32_t n = static_cast<uint32_t>(order.size());
    const uint32_t width = index_.capacity();
    s->slots = order;
    s->index_of_slot.assign(width, UINT32_MAX);
    s->slot_stamp.assign(width, 0);
    s->nodes.reserve(n);
    s->up.reserve(n);
    s->istiod.reserve(n);
    for (size_t l = 0; l < 2; ++l) {
      s->rows[l].reserve(n);
      s->reachable[l].reserve(n);
    }
    for (uint32_t i = 0; i < n; ++i) {
      const Member& m = members_[order[i]];
      s->index_of_slot[order[i]] = i;
      s->slot_stamp[order[i]] = m.stamp;
      const bool up = isUpLocked(m, now);
      if (up) s->next_stale = std::min(s->next_stale, m.last_heard + options_.stale_after);
      s->nodes.push_back(m.info);
      s->up.push_back(up ? 1 : 0);
      s->istiod.push_back(up && m.info->has_report ? m.info->istiod_state : v1::Cell::UNKNOWN);
      for (size_t l = 0; l < 2; ++l) s->rows[l].push_back(m.rows[l]);
    }
  }
  // Outside the lock: everything below reads immutable rows and the snapshot itself.
  const uint32_t n = s->size();
  for (size_t l = 0; l < 2; ++l) {
    SnapshotLayerView& view = s->views[l];
    view.snap_ = s.get();
    view.layer_ = l;
    for (uint32_t i = 0; i < n; ++i) {
      const Row* row = s->rows[l][i].get();
      if (row == nullptr || !s->up[i]) {
        s->reachable[l].push_back(0);
        continue;
      }
      auto validDst = [&](uint32_t slot) -> uint32_t {
        if (slot >= s->index_of_slot.size()) return UINT32_MAX;
        const uint32_t j = s->index_of_slot[slot];
        return j != UINT32_MAX && j != i && s->slot_stamp[slot] < row->stamp ? j : UINT32_MAX;
      };
      if (row->stamp < last_removal) {
        // A member was forgotten since this row was written: count its cells again.
        uint32_t reachable = 0;
        for (uint32_t slot = 0; slot < row->size(); ++slot) {
          if (validDst(slot) != UINT32_MAX && row->at(slot).present() && reachableState(row->at(slot).state())) {
            ++reachable;
          }
        }
        s->reachable[l].push_back(reachable);
      } else {
        s->reachable[l].push_back(row->reachable);
      }
      const size_t failing_from = view.failing_.size();
      for (uint32_t slot : row->failing) {
        if (const uint32_t j = validDst(slot); j != UINT32_MAX) view.failing_.emplace_back(i, j);
      }
      std::sort(view.failing_.begin() + static_cast<std::ptrdiff_t>(failing_from), view.failing_.end());
      const size_t detailed_from = view.detailed_.size();
      for (const auto& [slot, p] : row->details) {
        if (const uint32_t j = validDst(slot); j != UINT32_MAX) view.detailed_.emplace_back(i, j);
      }
      std::sort(view.detailed_.begin() + static_cast<std::ptrdiff_t>(detailed_from), view.detailed_.end());
    }
  }
  if (!prev || prev->up != s->up) changed = true;
  s->generation = changed ? ++generation_ : prev->generation;
  return s;
}

// ---- queries (all from a snapshot) ----

std::vector<v1::NodeSummary> ClusterState::listNodes() const {
  const auto snap = snapshot();
  std::vector<v1::NodeSummary> out;
  out.reserve(snap->size());
  for (uint32_t i = 0; i < snap->size(); ++i) out.push_back(snap->summary(i));
  return out;
}

Result<v1::GetNodeResponse> ClusterState::getNode(const std::string& name) const {
  const auto snap = snapshot();
  const auto i = snap->indexOf(name);
  if (!i) return Error{"no node named '" + name + "' has said Hello to this aggregator"};
  v1::GetNodeResponse resp;
  *resp.mutable_node() = snap->summary(*i);
  const NodeInfo& info = *snap->nodes[*i];
  if (info.has_report) {
    resp.mutable_checks()->Add(info.checks.begin(), info.checks.end());
    for (auto& p : snap->probes(*i)) *resp.add_probes() = std::move(p);
    resp.mutable_findings()->Add(info.findings.begin(), info.findings.end());
  }
  return resp;
}

Result<v1::GetMatrixResponse> ClusterState::matrix(v1::Layer layer) const {
  if (!hasMatrix(layer)) return noMatrix(layer);
  const auto snap = snapshot();
  const uint32_t n = snap->size();
  v1::GetMatrixResponse resp;
  resp.set_layer(layer);
  for (uint32_t i = 0; i < n; ++i) resp.add_nodes(snap->name(i));
  if (layer == v1::ISTIOD) {
    resp.mutable_cells()->Reserve(static_cast<int>(n));
    for (uint32_t i = 0; i < n; ++i) *resp.add_cells() = snap->cell(layer, i, 0);
    return resp;
  }
  resp.mutable_cells()->Reserve(static_cast<int>(n > 1 ? n * (n - 1) : 0));
  for (uint32_t i = 0; i < n; ++i) {
    for (uint32_t j = 0; j < n; ++j) {
      if (i != j) *resp.add_cells() = snap->cell(layer, i, j);
    }
  }
  return resp;
}

grpc::Status ClusterState::matrixPage(const v1::GetMatrixRequest& req, v1::GetMatrixResponse* out,
                                      const MatrixPageLimits& limits) const {
  if (!hasMatrix(req.layer())) return {grpc::StatusCode::INVALID_ARGUMENT, noMatrix(req.layer()).message};
  return queryMatrix(*snapshot(), req, out, limits);
}

Result<MatrixSummary> ClusterState::matrixSummary(v1::Layer layer) const {
  if (!hasMatrix(layer)) return noMatrix(layer);
  const auto snap = snapshot();
  const uint32_t n = snap->size();
  MatrixSummary out;
  out.nodes.reserve(n);
  for (uint32_t i = 0; i < n; ++i) out.nodes.push_back(snap->name(i));
  if (layer == v1::ISTIOD) {
    out.reachable.reserve(n);
    for (uint32_t i = 0; i < n; ++i) {
      out.reachable.push_back(reachableState(snap->istiod[i]) ? 1 : 0);
      if (snap->istiod[i] == v1::Cell::FAIL) out.failed.emplace_back(snap->name(i), std::string(kIstiodDst));
    }
    return out;
  }
  const size_t l = static_cast<size_t>(rowLayerIndex(layer));
  out.reachable = snap->reachable[l];
  const auto& failing = snap->views[l].failing();
  out.failed.reserve(failing.size());
  for (const auto& [src, dst] : failing) out.failed.emplace_back(snap->name(src), snap->name(dst));
  return out;
}

namespace {

NodeEvidence evidenceOf(const StateSnapshot& snap, uint32_t i, bool with_probes) {
  NodeEvidence ev;
  ev.summary = snap.summary(i);
  const NodeInfo& info = *snap.nodes[i];
  if (info.has_report && ev.summary.up()) {
    ev.has_report = true;
    ev.checks = info.checks;
    ev.findings = info.findings;
    if (with_probes) ev.probes = snap.probes(i);
  }
  return ev;
}

}  // namespace

ClusterSnapshot ClusterState::diagnosisSnapshot() const {
  const auto snap = snapshot();
  ClusterSnapshot out;
  for (auto [layer, dst] : {std::pair{v1::UNDERLAY, &out.underlay}, std::pair{v1::OVERLAY, &out.overlay},
                            std::pair{v1::ISTIOD, &out.istiod}}) {
    const uint32_t n = snap->size();
    dst->set_layer(layer);
    for (uint32_t i = 0; i < n; ++i) dst->add_nodes(snap->name(i));
    for (uint32_t i = 0; i < n; ++i) {
      if (layer == v1::ISTIOD) {
        *dst->add_cells() = snap->cell(layer, i, 0);
        continue;
      }
      for (uint32_t j = 0; j < n; ++j) {
        if (i != j) *dst->add_cells() = snap->cell(layer, i, j);
      }
    }
  }
  out.vxlan_mismatches = snap->vxlan_mismatches;
  out.nodes.reserve(snap->size());
  for (uint32_t i = 0; i < snap->size(); ++i) out.nodes.push_back(evidenceOf(*snap, i, true));
  return out;
}

DiagnosisInput ClusterState::diagnosisInput() const {
  const auto snap = snapshot();
  DiagnosisInput in;
  in.generation = snap->generation;
  in.nodes.reserve(snap->size());
  for (uint32_t i = 0; i < snap->size(); ++i) in.nodes.push_back(evidenceOf(*snap, i, false));
  in.underlay = layerView(snap, kUnderlayRows);
  in.overlay = layerView(snap, kOverlayRows);
  in.istiod = snap->istiod;
  in.vxlan_mismatches = snap->vxlan_mismatches;
  return in;
}

std::vector<VxlanMismatch> ClusterState::vxlanMismatches() const { return snapshot()->vxlan_mismatches; }

size_t ClusterState::memberCount() const {
  std::lock_guard lock(mu_);
  return index_.size();
}

bool ClusterState::isUp(const std::string& name) const {
  const auto now = clock_.monotonicNow();
  std::lock_guard lock(mu_);
  const auto slot = index_.find(name);
  return slot && isUpLocked(members_[*slot], now);
}

}  // namespace meshprobe::aggregator
