#include "aggregator/diagnosis/rules.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <utility>

#include <google/protobuf/util/time_util.h>

#include "common/finding.h"
#include "common/finding_catalogue.h"

namespace meshprobe::aggregator {

namespace v1 = meshprobe::v1;

namespace {

using State = v1::Cell::State;
constexpr size_t kMaxEvidence = 12;

v1::Severity toProto(Severity s) {
  switch (s) {
    case Severity::kInfo: return v1::INFO;
    case Severity::kWarning: return v1::WARNING;
    case Severity::kCritical: return v1::CRITICAL;
  }
  return v1::SEVERITY_UNSPECIFIED;
}

v1::Layer toProto(Layer l) {
  switch (l) {
    case Layer::kUnderlay: return v1::UNDERLAY;
    case Layer::kOverlay: return v1::OVERLAY;
    case Layer::kIstiod: return v1::ISTIOD;
    case Layer::kAmbient: return v1::AMBIENT;
    case Layer::kUnspecified: break;
  }
  return v1::LAYER_UNSPECIFIED;
}

// A finding of `code` with the catalogue's severity and layer (kept unspecified when the
// catalogue has none: the caller sets the layer it saw).
v1::Finding newFinding(std::string_view code) {
  v1::Finding f;
  f.set_code(std::string(code));
  if (const FindingSpec* spec = findFinding(code)) {
    f.set_severity(toProto(spec->severity));
    f.set_layer(toProto(spec->layer));
  }
  return f;
}

// Whether an agent's own finding is on its code's catalogue layer (or has none). The
// firewall check reports VXLAN_PORT_FILTERED on ISTIOD for a rule on 15012: that rule
// explains the node's istiod failure, not its overlay.
bool onCatalogueLayer(const v1::Finding& f) {
  const FindingSpec* spec = findFinding(f.code());
  return spec != nullptr && (f.layer() == v1::LAYER_UNSPECIFIED || spec->layer == Layer::kUnspecified ||
                             f.layer() == toProto(spec->layer));
}

// Codes an agent reports about its own VXLAN datapath: each explains overlay failures of
// that node (the catalogue says it supersedes OVERLAY_PARTITION) and, through them, of
// istiod, which other nodes reach through VXLAN.
bool explainsOverlay(const v1::Finding& f) {
  return supersedes(f.code(), codes::kOverlayPartition) && onCatalogueLayer(f);
}

// Whether the TCP connect to a peer's probe port was refused: the host is up and answers,
// nothing listens (its agent is down). Agents fill tcp_failure; older agents only say it
// in the error text ("(TCP connect failed: connection refused)").
bool tcpRefused(const v1::ProbeResult& p) {
  if (p.failure() != v1::PROBE_FAILURE_UNSPECIFIED || p.tcp_failure() != v1::PROBE_FAILURE_UNSPECIFIED) {
    return p.tcp_failure() == v1::PROBE_FAILURE_REFUSED;
  }
  return p.error().find("refused") != std::string::npos;
}

std::string layerText(v1::Layer l) { return v1::Layer_Name(l); }

std::string percent(double x) {
  std::ostringstream o;
  o << static_cast<int>(std::lround(x * 100)) << "%";
  return o.str();
}

std::string durationText(const google::protobuf::Duration& d) {
  const double ms = static_cast<double>(d.seconds()) * 1e3 + d.nanos() / 1e6;
  std::ostringstream o;
  o.precision(ms < 10 ? 2 : 0);
  o << std::fixed << ms << "ms";
  return o.str();
}

// One probe layer's cells as a grid over the snapshot's node order.
struct Grid {
  const std::vector<std::string>* names = nullptr;
  std::vector<std::vector<State>> state;  // [src][dst]
  bool failed(size_t s, size_t d) const { return state[s][d] == v1::Cell::FAIL; }
  bool known(size_t s, size_t d) const {
    return state[s][d] != v1::Cell::UNKNOWN && state[s][d] != v1::Cell::STATE_UNSPECIFIED;
  }
};

Grid gridOf(const v1::GetMatrixResponse& m, const std::vector<std::string>& names,
            const std::map<std::string, size_t>& index) {
  Grid g;
  g.names = &names;
  g.state.assign(names.size(), std::vector<State>(names.size(), v1::Cell::UNKNOWN));
  for (const auto& c : m.cells()) {
    auto s = index.find(c.src()), d = index.find(c.dst());
    if (s == index.end() || d == index.end()) continue;
    g.state[s->second][d->second] = c.state();
  }
  return g;
}

// Row/column blame over one layer: see rules.h.
struct Blame {
  std::vector<size_t> nodes;                         // blamed, in pick order
  std::vector<std::pair<size_t, size_t>> pairs;      // failing pairs no blamed node explains (i < j)
  bool everything = false;                           // every measured pair fails (>= 3 nodes)
};

Blame blame(const std::vector<std::vector<bool>>& failed, const std::vector<std::vector<bool>>& known,
            const RuleOptions& options) {
  const size_t n = failed.size();
  Blame out;
  std::set<std::pair<size_t, size_t>> failing, measured;
  std::set<size_t> measured_nodes;
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = i + 1; j < n; ++j) {
      if (known[i][j] || known[j][i]) {
        measured.insert({i, j});
        measured_nodes.insert(i);
        measured_nodes.insert(j);
      }
      if (failed[i][j] || failed[j][i]) failing.insert({i, j});
    }
  }
  if (failing.empty()) return out;
  if (measured_nodes.size() >= 3 && failing.size() == measured.size()) {
    out.everything = true;
    return out;
  }
  std::vector<bool> blamed(n, false);
  while (true) {
    std::optional<size_t> pick;
    size_t pick_fail = 0;
    for (size_t x = 0; x < n; ++x) {
      if (blamed[x]) continue;
      size_t fail = 0, meas = 0;
      for (size_t y = 0; y < n; ++y) {
        if (y == x || blamed[y]) continue;
        const auto key = std::minmax(x, y);
        if (failing.count(key)) ++fail;
        if (measured.count(key) || failing.count(key)) ++meas;
      }
      if (fail < options.min_witnesses) continue;
      if (static_cast<double>(fail) < options.blame_ratio * static_cast<double>(meas)) continue;
      if (!pick || fail > pick_fail) {
        pick = x;
        pick_fail = fail;
      }
    }
    if (!pick) break;
    blamed[*pick] = true;
    out.nodes.push_back(*pick);
    std::erase_if(failing, [&](const auto& p) { return p.first == *pick || p.second == *pick; });
  }
  out.pairs.assign(failing.begin(), failing.end());
  return out;
}

class Diagnoser {
 public:
  Diagnoser(const ClusterSnapshot& snap, const RuleOptions& options) : snap_(snap), options_(options) {
    for (const auto& n : snap.nodes) {
      index_[n.summary.name()] = names_.size();
      names_.push_back(n.summary.name());
    }
    underlay_ = gridOf(snap.underlay, names_, index_);
    overlay_ = gridOf(snap.overlay, names_, index_);
  }

  std::vector<Candidate> run() {
    localFindings();
    configMismatch();
    underlayRules();
    overlayRules();
    mtuRules();
    istiodRules();
    staleRules();
    std::vector<Candidate> out;
    out.reserve(order_.size());
    for (const auto& id : order_) {
      auto& c = byId_.at(id);
      if (c.finding.evidence_size() > static_cast<int>(kMaxEvidence)) {
        const int more = c.finding.evidence_size() - static_cast<int>(kMaxEvidence);
        c.finding.mutable_evidence()->DeleteSubrange(static_cast<int>(kMaxEvidence), more);
        c.finding.add_evidence("... and " + std::to_string(more) + " more");
      }
      out.push_back(std::move(c));
    }
    return out;
  }

 private:
  const NodeEvidence& node(size_t i) const { return snap_.nodes[i]; }
  const std::string& name(size_t i) const { return names_[i]; }
  bool up(size_t i) const { return node(i).summary.up(); }

  static std::string idOf(const std::string& code, std::vector<std::string> nodes) {
    std::sort(nodes.begin(), nodes.end());
    std::string id = code + "/";
    for (size_t i = 0; i < nodes.size(); ++i) id += (i ? "," : "") + nodes[i];
    return id;
  }

  // Adds a candidate, or merges it into the one with the same id (evidence appended
  // without duplicates, the higher severity and the shorter onset kept).
  v1::Finding& add(v1::Finding f, std::chrono::nanoseconds onset) {
    std::vector<std::string> nodes(f.nodes().begin(), f.nodes().end());
    std::sort(nodes.begin(), nodes.end());
    f.clear_nodes();
    for (const auto& n : nodes) f.add_nodes(n);
    if (f.id().empty()) f.set_id(idOf(f.code(), nodes));
    auto it = byId_.find(f.id());
    if (it == byId_.end()) {
      order_.push_back(f.id());
      auto& c = byId_[f.id()];
      c.finding = std::move(f);
      c.onset_after = onset;
      return c.finding;
    }
    Candidate& c = it->second;
    for (const auto& e : f.evidence()) addEvidence(c.finding, e);
    if (f.severity() > c.finding.severity()) c.finding.set_severity(f.severity());
    c.onset_after = std::min(c.onset_after, onset);
    return c.finding;
  }

  void supersede(const std::string& by_id, const std::string& superseded_id) {
    auto it = byId_.find(by_id);
    if (it == byId_.end()) return;
    auto& v = it->second.supersedes;
    if (std::find(v.begin(), v.end(), superseded_id) == v.end()) v.push_back(superseded_id);
  }

  // Finding `by_id` (of `code`) supersedes the catalogue's codes for node x.
  void supersedeFor(const std::string& by_id, std::string_view code, size_t x) {
    for (std::string_view s : findFinding(code)->supersedes) supersede(by_id, idOf(std::string(s), {name(x)}));
  }

  static void addEvidence(v1::Finding& f, const std::string& line) {
    if (std::find(f.evidence().begin(), f.evidence().end(), line) == f.evidence().end()) f.add_evidence(line);
  }

  const v1::ProbeResult* probe(size_t src, v1::Layer layer, const std::string& dst) const {
    for (const auto& p : node(src).probes) {
      if (p.layer() == layer && p.dst() == dst) return &p;
    }
    return nullptr;
  }

  // "OVERLAY node1 -> node3 FAIL: loss 100%, 4 missed in a row, timeout after 800ms"
  std::string cellEvidence(v1::Layer layer, size_t s, size_t d, State state) const {
    std::string line = layerText(layer) + " " + name(s) + " -> " + name(d) + " " + v1::Cell::State_Name(state);
    if (const auto* p = probe(s, layer, name(d))) {
      line += ": loss " + percent(p->has_recent_loss() ? p->recent_loss() : p->loss());
      if (p->consecutive_failures() > 0) line += ", " + std::to_string(p->consecutive_failures()) + " missed in a row";
      if (!p->error().empty()) line += ", " + p->error();
      if (p->consecutive_failures() == 0 && p->has_rtt_p50()) line += ", rtt p50 " + durationText(p->rtt_p50());
    }
    return line;
  }

  // Evidence for node x on a layer: its failing cells, both directions.
  std::vector<std::string> failingCells(const Grid& g, v1::Layer layer, size_t x) const {
    std::vector<std::string> out;
    for (size_t y = 0; y < names_.size(); ++y) {
      if (y == x) continue;
      if (g.failed(x, y)) out.push_back(cellEvidence(layer, x, y, g.state[x][y]));
      if (g.failed(y, x)) out.push_back(cellEvidence(layer, y, x, g.state[y][x]));
    }
    return out;
  }

  std::vector<std::vector<bool>> failedOf(const Grid& g) const {
    std::vector<std::vector<bool>> f(names_.size(), std::vector<bool>(names_.size(), false));
    for (size_t s = 0; s < names_.size(); ++s)
      for (size_t d = 0; d < names_.size(); ++d) f[s][d] = s != d && up(s) && g.failed(s, d);
    return f;
  }
  std::vector<std::vector<bool>> knownOf(const Grid& g) const {
    std::vector<std::vector<bool>> k(names_.size(), std::vector<bool>(names_.size(), false));
    for (size_t s = 0; s < names_.size(); ++s)
      for (size_t d = 0; d < names_.size(); ++d) k[s][d] = s != d && up(s) && g.known(s, d);
    return k;
  }

  // ---- the node's own check findings ----
  // A finding of the node that another of its own findings supersedes (the catalogue: no
  // VXLAN device means no socket and no FDB entries) is a consequence: it is folded into
  // the cause as evidence, not reported.
  const v1::Finding* causeOf(size_t i, const v1::Finding& f) const {
    for (const auto& g : node(i).findings) {
      if (&g != &f && g.code() != f.code() && supersedes(g.code(), f.code())) return &g;
    }
    return nullptr;
  }

  void localFindings() {
    for (size_t i = 0; i < names_.size(); ++i) {
      if (!up(i)) continue;  // a silent node's last words are not evidence
      std::map<std::string, std::vector<std::string>> folded;  // cause code -> lines
      for (const auto& f : node(i).findings) {
        if (const v1::Finding* cause = causeOf(i, f)) {
          folded[cause->code()].push_back(f.code() + ": " + f.summary());
          continue;
        }
        v1::Finding copy = f;
        copy.clear_nodes();
        copy.add_nodes(name(i));
        copy.clear_id();
        addEvidence(copy, "reported by the agent on " + name(i));
        if (copy.remedy().empty()) copy.set_remedy(remedyFor(copy.code(), "", name(i)));
        if (explainsOverlay(f)) overlay_cause_[i].push_back(idOf(f.code(), {name(i)}));
        if (f.code() == codes::kIstiodUnreachable) {
          local_istiod_[i] = copy;  // decided in istiodRules()
          continue;
        }
        add(std::move(copy), options_.onset_local);
      }
      for (const auto& [code, lines] : folded) {
        const std::string id = idOf(code, {name(i)});
        auto it = byId_.find(id);
        if (it == byId_.end()) continue;  // the cause itself folded into another: its lines are gone with it
        for (const auto& line : lines) addEvidence(it->second.finding, "follows from it: " + line);
        // Its consequences that a node's own check raises end at once, present or not
        // (they come back while the cause heals).
        for (std::string_view s : findFinding(code)->supersedes) {
          const FindingSpec* other = findFinding(s);
          if (other != nullptr && !other->check.empty()) supersede(id, idOf(std::string(s), {name(i)}));
        }
      }
    }
  }

  // ---- nodes whose VXLAN VNI or port disagree with the majority ----
  void configMismatch() {
    for (const auto& m : snap_.vxlan_mismatches) {
      auto it = index_.find(m.node);
      if (it == index_.end() || !up(it->second)) continue;
      v1::Finding f = newFinding(codes::kVxlanConfigMismatch);
      f.add_nodes(m.node);
      std::string what;
      if (m.port_differs) {
        what = "UDP port " + std::to_string(m.port) + " while the other nodes use " + std::to_string(m.majority_port);
      }
      if (m.vni_differs) {
        what += std::string(what.empty() ? "" : " and ") + "VNI " + std::to_string(m.vni) +
                " while the other nodes use " + std::to_string(m.majority_vni);
      }
      f.set_summary(m.node + "'s VXLAN device uses " + what + ": VXLAN packets between it and the rest are dropped");
      f.add_evidence("Hello from " + m.node + ": vni " + std::to_string(m.vni) + ", port " + std::to_string(m.port) +
                     "; cluster majority: vni " + std::to_string(m.majority_vni) + ", port " +
                     std::to_string(m.majority_port));
      f.set_remedy(remedyFor(codes::kVxlanConfigMismatch, "", m.node));
      overlay_cause_[it->second].push_back(add(std::move(f), options_.onset_local).id());
    }
  }

  // ---- underlay ----
  void underlayRules() {
    const Blame b = blame(failedOf(underlay_), knownOf(underlay_), options_);
    if (b.everything) {
      v1::Finding f = newFinding(codes::kUnderlayUnreachable);
      for (size_t i = 0; i < names_.size(); ++i) {
        if (up(i)) f.add_nodes(name(i));
      }
      f.set_summary("every measured underlay pair fails: the node network itself (or the probe port 9473 on it) "
                    "is down cluster-wide");
      for (size_t i = 0; i < names_.size(); ++i)
        for (const auto& e : failingCells(underlay_, v1::UNDERLAY, i)) addEvidence(f, e);
      f.set_remedy(remedyFor(codes::kUnderlayUnreachable, "cluster"));
      f.set_id(std::string(codes::kUnderlayUnreachable) + "/*");
      add(std::move(f), options_.onset_matrix);
      for (size_t i = 0; i < names_.size(); ++i) underlay_blamed_.insert(i);
      return;
    }
    for (size_t x : b.nodes) {
      underlay_blamed_.insert(x);
      const auto cells = failingCells(underlay_, v1::UNDERLAY, x);
      // Peers' TCP connects to the probe port refused: the host answers, the agent does not.
      size_t refused = 0, witnesses = 0;
      for (size_t y = 0; y < names_.size(); ++y) {
        if (y == x || !up(y) || !underlay_.failed(y, x)) continue;
        ++witnesses;
        if (const auto* p = probe(y, v1::UNDERLAY, name(x)); p && tcpRefused(*p)) ++refused;
      }
      if (witnesses > 0 && refused * 2 > witnesses) {
        agent_gone_.insert(x);
        agent_gone_evidence_[x] = cells;
        continue;
      }
      v1::Finding f = newFinding(codes::kUnderlayUnreachable);
      f.add_nodes(name(x));
      f.set_summary(name(x) + " is unreachable on the node network: underlay probes to and from it fail with " +
                    std::to_string(countPeers(underlay_, x)) + " peers" +
                    (up(x) ? "" : ", and its agent stopped reporting"));
      for (const auto& e : cells) f.add_evidence(e);
      f.set_remedy(remedyFor(codes::kUnderlayUnreachable, "", name(x)));
      const std::string id = add(std::move(f), options_.onset_matrix).id();
      supersedeFor(id, codes::kUnderlayUnreachable, x);
    }
    for (const auto& [i, j] : b.pairs) pairFinding(v1::UNDERLAY, underlay_, i, j);
  }

  size_t countPeers(const Grid& g, size_t x) const {
    size_t n = 0;
    for (size_t y = 0; y < names_.size(); ++y) {
      if (y != x && ((up(x) && g.failed(x, y)) || (up(y) && g.failed(y, x)))) ++n;
    }
    return n;
  }

  void pairFinding(v1::Layer layer, const Grid& g, size_t i, size_t j) {
    v1::Finding f = newFinding(codes::kPairUnreachable);
    f.add_nodes(name(i));
    f.add_nodes(name(j));
    f.set_layer(layer);
    f.set_summary(layerText(layer) + " probes between " + name(i) + " and " + name(j) +
                  " fail while both work with their other peers: the fault is on this pair's path, not in a node");
    if (up(i) && g.failed(i, j)) f.add_evidence(cellEvidence(layer, i, j, g.state[i][j]));
    if (up(j) && g.failed(j, i)) f.add_evidence(cellEvidence(layer, j, i, g.state[j][i]));
    f.set_remedy(remedyFor(codes::kPairUnreachable, layer == v1::OVERLAY ? "" : "underlay", name(i), name(j)));
    add(std::move(f), options_.onset_pair);
  }

  // ---- overlay ----
  void overlayRules() {
    const Blame b = blame(failedOf(overlay_), knownOf(overlay_), options_);
    if (b.everything) {
      // Every pair fails. Nodes with their own explanation keep it; if nobody has one, it
      // is one cluster-wide finding.
      bool all_explained = true;
      for (size_t i = 0; i < names_.size(); ++i) {
        if (!up(i)) continue;
        if (explainOverlay(i)) {
          overlay_broken_.insert(i);
        } else {
          all_explained = false;
        }
      }
      if (all_explained) return;
      v1::Finding f = newFinding(codes::kOverlayPartition);
      for (size_t i = 0; i < names_.size(); ++i) {
        if (up(i)) {
          f.add_nodes(name(i));
          overlay_broken_.insert(i);
        }
      }
      f.set_summary("every measured overlay pair fails while the underlay works: VXLAN is broken cluster-wide");
      for (size_t i = 0; i < names_.size(); ++i)
        for (const auto& e : failingCells(overlay_, v1::OVERLAY, i)) addEvidence(f, e);
      f.set_remedy(remedyFor(codes::kOverlayPartition, "cluster"));
      f.set_id(std::string(codes::kOverlayPartition) + "/*");
      add(std::move(f), options_.onset_matrix);
      return;
    }
    for (size_t x : b.nodes) {
      overlay_broken_.insert(x);
      if (explainOverlay(x)) continue;
      v1::Finding f = newFinding(codes::kOverlayPartition);
      f.add_nodes(name(x));
      f.set_summary(name(x) + "'s overlay is cut off: VXLAN probes to and from it fail with " +
                    std::to_string(countPeers(overlay_, x)) +
                    " peers while the underlay works, and its own VXLAN device, socket, firewall and FDB look right");
      for (const auto& e : failingCells(overlay_, v1::OVERLAY, x)) f.add_evidence(e);
      f.set_remedy(remedyFor(codes::kOverlayPartition, "", name(x)));
      add(std::move(f), options_.onset_matrix);
    }
    for (const auto& [i, j] : b.pairs) {
      // A pair is explained by either end's own overlay fault (e.g. a stale FDB entry for
      // the other) or by an underlay fault.
      if (explainOverlay(i) || explainOverlay(j)) {
        for (size_t e : {i, j}) attachOverlayPair(e, i, j);
        continue;
      }
      pairFinding(v1::OVERLAY, overlay_, i, j);
    }
  }

  // Whether node x's overlay failures have a known cause; attaches them as evidence there.
  bool explainOverlay(size_t x) {
    if (underlay_blamed_.count(x) || agent_gone_.count(x)) return true;
    auto it = overlay_cause_.find(x);
    if (it == overlay_cause_.end() || it->second.empty()) return false;
    const auto cells = failingCells(overlay_, v1::OVERLAY, x);
    for (const auto& id : it->second) {
      auto c = byId_.find(id);
      if (c == byId_.end()) continue;
      for (const auto& e : cells) addEvidence(c->second.finding, e);
      supersede(id, idOf(std::string(codes::kOverlayPartition), {name(x)}));
    }
    return true;
  }

  void attachOverlayPair(size_t owner, size_t i, size_t j) {
    auto it = overlay_cause_.find(owner);
    if (it == overlay_cause_.end()) return;
    for (const auto& id : it->second) {
      auto c = byId_.find(id);
      if (c == byId_.end()) continue;
      if (supersedes(c->second.finding.code(), codes::kPairUnreachable))
        supersede(id, idOf(std::string(codes::kPairUnreachable), {name(i), name(j)}));
      if (up(i) && overlay_.failed(i, j)) addEvidence(c->second.finding, cellEvidence(v1::OVERLAY, i, j, overlay_.state[i][j]));
      if (up(j) && overlay_.failed(j, i)) addEvidence(c->second.finding, cellEvidence(v1::OVERLAY, j, i, overlay_.state[j][i]));
    }
  }

  // ---- path MTU: DF probes at the overlay MTU fail while small probes pass ----
  void mtuRules() {
    const size_t n = names_.size();
    std::vector<std::vector<bool>> failed(n, std::vector<bool>(n, false)), known(n, std::vector<bool>(n, false));
    std::map<std::pair<size_t, size_t>, const v1::PathMtuProbe*> df;
    for (size_t s = 0; s < n; ++s) {
      if (!up(s)) continue;
      for (const auto& p : node(s).probes) {
        if (p.layer() != v1::OVERLAY || !p.has_path_mtu() || p.path_mtu().size() == 0) continue;
        auto d = index_.find(p.dst());
        if (d == index_.end()) continue;
        const State small = overlay_.state[s][d->second];
        if (small != v1::Cell::OK && small != v1::Cell::DEGRADED) continue;  // small probes must pass
        if (p.path_mtu().sent() == 0) continue;
        known[s][d->second] = true;
        if (p.path_mtu().consecutive_failures() >= options_.mtu_failures) {
          failed[s][d->second] = true;
          df[{s, d->second}] = &p.path_mtu();
        }
      }
    }
    auto dfEvidence = [&](size_t s, size_t d) {
      const auto* m = df.at({s, d});
      std::string line = "DF probes of " + std::to_string(m->size()) + " bytes " + name(s) + " -> " + name(d) +
                         " fail (" + std::to_string(m->consecutive_failures()) +
                         " in a row) while small overlay probes pass";
      if (!m->error().empty()) line += ": " + m->error();
      return line;
    };
    auto sizesOf = [&](size_t x) {
      std::set<uint32_t> sizes;
      for (const auto& [k, m] : df) {
        if (k.first == x || k.second == x) sizes.insert(m->size());
      }
      std::string s;
      for (auto v : sizes) s += (s.empty() ? "" : "/") + std::to_string(v);
      return s;
    };
    const Blame b = blame(failed, known, options_);
    auto addMtu = [&](std::vector<size_t> nodes) {
      v1::Finding f = newFinding(codes::kMtuMismatch);
      for (size_t x : nodes) f.add_nodes(name(x));
      const size_t x = nodes.front();
      const uint32_t mtu = node(x).summary.vxlan_mtu();
      if (nodes.size() == 1) {
        f.set_summary("the overlay path MTU to and from " + name(x) + " is smaller than the VXLAN device MTU" +
                      (mtu ? " (" + std::to_string(mtu) + ")" : "") + ": full-size DF packets of " + sizesOf(x) +
                      " bytes are lost while small packets pass");
      } else {
        f.set_summary("the overlay path MTU between " + name(nodes[0]) + " and " + name(nodes[1]) +
                      " is smaller than the VXLAN device MTU: DF packets of " + sizesOf(x) + " bytes are lost");
      }
      for (const auto& [k, m] : df) {
        if (std::find(nodes.begin(), nodes.end(), k.first) != nodes.end() ||
            std::find(nodes.begin(), nodes.end(), k.second) != nodes.end())
          f.add_evidence(dfEvidence(k.first, k.second));
      }
      f.set_remedy(remedyFor(codes::kMtuMismatch, "", name(x)));
      add(std::move(f), options_.onset_matrix);
    };
    if (b.everything) {
      std::vector<size_t> all;
      for (size_t i = 0; i < n; ++i)
        if (up(i)) all.push_back(i);
      if (!all.empty()) addMtu(all);
      return;
    }
    for (size_t x : b.nodes) addMtu({x});
    for (const auto& [i, j] : b.pairs) addMtu({i, j});
  }

  // ---- istiod ----
  void istiodRules() {
    const size_t n = names_.size();
    std::vector<State> st(n, v1::Cell::UNKNOWN);
    for (const auto& c : snap_.istiod.cells()) {
      auto it = index_.find(c.src());
      if (it != index_.end()) st[it->second] = c.state();
    }
    std::vector<size_t> known, failing, unexplained_known, unexplained_failing;
    for (size_t i = 0; i < n; ++i) {
      if (!up(i) || st[i] == v1::Cell::UNKNOWN || st[i] == v1::Cell::STATE_UNSPECIFIED) continue;
      known.push_back(i);
      const bool failed = st[i] == v1::Cell::FAIL;
      if (failed) failing.push_back(i);
      if (!pathBroken(i)) {
        unexplained_known.push_back(i);
        if (failed) unexplained_failing.push_back(i);
      }
    }
    if (failing.empty()) return;
    // Every node whose own path is fine fails too: istiod itself (or its Service) is down.
    if (known.size() >= 2 && !unexplained_failing.empty() && unexplained_failing.size() == unexplained_known.size()) {
      v1::Finding f = newFinding(codes::kIstiodUnreachable);
      f.set_summary("istiod:15012 is unreachable from every node (" + std::to_string(failing.size()) + " of " +
                    std::to_string(known.size()) + "): istiod itself or its Service is down, so ztunnel on every "
                    "node cannot get certificates or configuration");
      for (size_t i : failing) f.add_evidence(istiodEvidence(i));
      f.set_remedy(remedyFor(codes::kIstiodUnreachable, "cluster"));
      f.set_id(std::string(codes::kIstiodUnreachable) + "/istiod");
      const std::string id = add(std::move(f), options_.onset_matrix).id();
      for (size_t i : failing) supersedeFor(id, codes::kIstiodUnreachable, i);
      for (size_t i : failing) {
        if (pathBroken(i)) nodeIstiod(i);
      }
      return;
    }
    for (size_t i : failing) nodeIstiod(i);
  }

  // Whether node i's own path to istiod is broken: its underlay or overlay is blamed, its
  // agent is gone, or it has a finding the catalogue says explains ISTIOD_UNREACHABLE.
  bool pathBroken(size_t i) const {
    if (underlay_blamed_.count(i) || overlay_broken_.count(i) || agent_gone_.count(i)) return true;
    auto it = overlay_cause_.find(i);
    if (it == overlay_cause_.end()) return false;
    return std::any_of(it->second.begin(), it->second.end(), [&](const std::string& id) {
      auto c = byId_.find(id);
      return c != byId_.end() && explains(c->second.finding.code(), codes::kIstiodUnreachable);
    });
  }

  std::string istiodEvidence(size_t i) const {
    for (const auto& c : node(i).checks) {
      if (c.name() == "istiod") return name(i) + " istiod check " + v1::CheckResult::Status_Name(c.status()) + ": " + c.summary();
    }
    return name(i) + " -> istiod FAIL";
  }

  void nodeIstiod(size_t i) {
    v1::Finding f;
    auto local = local_istiod_.find(i);
    if (local != local_istiod_.end()) {
      f = local->second;
    } else {
      f = newFinding(codes::kIstiodUnreachable);
      f.add_nodes(name(i));
      f.set_summary(name(i) + " cannot reach istiod:15012");
    }
    f.set_layer(v1::ISTIOD);
    addEvidence(f, istiodEvidence(i));
    std::string cause;
    if (underlay_blamed_.count(i)) {
      cause = "its underlay is unreachable";
    } else if (pathBroken(i)) {
      cause = "its overlay is broken (istiod is reached through VXLAN)";
    }
    if (!cause.empty()) {
      f.set_summary(name(i) + " cannot reach istiod:15012 because " + cause +
                    "; ztunnel on " + name(i) + " stays not ready until that is fixed");
      f.set_remedy(remedyFor(codes::kIstiodUnreachable, "caused", name(i)));
    } else if (f.remedy().empty()) {
      f.set_remedy(remedyFor(codes::kIstiodUnreachable, "", name(i)));
    }
    add(std::move(f), cause.empty() ? options_.onset_istiod_node : options_.onset_local);
  }

  // ---- agents that stopped reporting or do not answer probes ----
  void staleRules() {
    for (size_t i = 0; i < names_.size(); ++i) {
      const bool gone = agent_gone_.count(i) > 0;
      if (up(i) && !gone) continue;
      if (underlay_blamed_.count(i) && !gone) continue;  // UNDERLAY_UNREACHABLE says it
      v1::Finding f = newFinding(codes::kAgentStale);
      f.add_nodes(name(i));
      if (!up(i)) {
        f.set_summary("the agent on " + name(i) + " stopped reporting: its cells are UNKNOWN, not healthy");
        if (node(i).summary.has_last_report()) {
          f.add_evidence("last report received at " +
                         google::protobuf::util::TimeUtil::ToString(node(i).summary.last_report()));
        } else {
          f.add_evidence("no report received since its Hello");
        }
      } else {
        f.set_summary("the agent on " + name(i) + " does not answer probes (its host refuses TCP on the probe " +
                      "port): the agent is down or restarting");
      }
      if (gone) {
        for (const auto& e : agent_gone_evidence_[i]) f.add_evidence(e);
      }
      f.set_remedy(remedyFor(codes::kAgentStale, "", name(i)));
      const std::string id = add(std::move(f), up(i) ? options_.onset_matrix : options_.onset_local).id();
      // Only an agent known to be gone (its host refuses the probe port) is the cause of
      // the node's failing cells; a silent one may just have lost its stream.
      if (gone) supersedeFor(id, codes::kAgentStale, i);
    }
  }

  const ClusterSnapshot& snap_;
  const RuleOptions& options_;
  std::vector<std::string> names_;
  std::map<std::string, size_t> index_;
  Grid underlay_, overlay_;

  std::map<std::string, Candidate> byId_;
  std::vector<std::string> order_;
  std::map<size_t, std::vector<std::string>> overlay_cause_;  // node -> ids of findings explaining its overlay
  std::map<size_t, v1::Finding> local_istiod_;
  std::set<size_t> underlay_blamed_, overlay_broken_, agent_gone_;
  std::map<size_t, std::vector<std::string>> agent_gone_evidence_;
};

}  // namespace

std::vector<Candidate> diagnose(const ClusterSnapshot& snapshot, const RuleOptions& options) {
  return Diagnoser(snapshot, options).run();
}

}  // namespace meshprobe::aggregator
