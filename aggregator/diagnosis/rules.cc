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

namespace meshprobe::aggregator {

namespace v1 = meshprobe::v1;

namespace {

using State = v1::Cell::State;
constexpr size_t kMaxEvidence = 12;

// Codes an agent reports about its own VXLAN datapath: each explains overlay failures of
// that node (and of istiod, which other nodes reach through VXLAN).
bool explainsOverlay(const v1::Finding& f) {
  const std::string& c = f.code();
  if (c == codes::kVxlanPortFiltered) return f.layer() != v1::ISTIOD;  // 15012 rules explain istiod only
  return c == codes::kVxlanDeviceMissing || c == codes::kVxlanSocketMissing || c == codes::kOverlayFdbStale ||
         c == codes::kVxlanConfigMismatch;
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
  // With its VXLAN device gone or down, the kernel closes the device's UDP socket and
  // drops the routes through it: those findings of the same node are consequences.
  static bool consequenceOfMissingDevice(const std::string& code) {
    return code == codes::kVxlanSocketMissing || code == codes::kOverlayFdbStale;
  }

  void localFindings() {
    for (size_t i = 0; i < names_.size(); ++i) {
      if (!up(i)) continue;  // a silent node's last words are not evidence
      const bool device_missing =
          std::any_of(node(i).findings.begin(), node(i).findings.end(),
                      [](const v1::Finding& f) { return f.code() == codes::kVxlanDeviceMissing; });
      std::vector<std::string> folded;
      for (const auto& f : node(i).findings) {
        if (device_missing && consequenceOfMissingDevice(f.code())) {
          folded.push_back(f.code() + ": " + f.summary());
          continue;
        }
        v1::Finding copy = f;
        copy.clear_nodes();
        copy.add_nodes(name(i));
        copy.clear_id();
        addEvidence(copy, "reported by the agent on " + name(i));
        if (explainsOverlay(f)) overlay_cause_[i].push_back(idOf(f.code(), {name(i)}));
        if (f.code() == codes::kIstiodUnreachable) {
          local_istiod_[i] = copy;  // decided in istiodRules()
          continue;
        }
        add(std::move(copy), options_.onset_local);
      }
      if (!folded.empty()) {
        const std::string id = idOf(std::string(codes::kVxlanDeviceMissing), {name(i)});
        auto& device = byId_.at(id);
        for (const auto& line : folded) addEvidence(device.finding, "follows from it: " + line);
        supersede(id, idOf(std::string(codes::kVxlanSocketMissing), {name(i)}));
        supersede(id, idOf(std::string(codes::kOverlayFdbStale), {name(i)}));
      }
    }
  }

  // ---- nodes whose VXLAN VNI or port disagree with the majority ----
  void configMismatch() {
    for (const auto& m : snap_.vxlan_mismatches) {
      auto it = index_.find(m.node);
      if (it == index_.end() || !up(it->second)) continue;
      v1::Finding f;
      f.set_code(std::string(codes::kVxlanConfigMismatch));
      f.set_severity(v1::CRITICAL);
      f.add_nodes(m.node);
      f.set_layer(v1::OVERLAY);
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
      f.set_remedy("Make " + m.node + "'s flannel backend use the cluster's VNI and port (flannel net-conf.json " +
                   "Backend.VNI / Backend.Port), then restart the flannel pod on " + m.node + ".");
      overlay_cause_[it->second].push_back(add(std::move(f), options_.onset_local).id());
    }
  }

  // ---- underlay ----
  void underlayRules() {
    const Blame b = blame(failedOf(underlay_), knownOf(underlay_), options_);
    if (b.everything) {
      v1::Finding f;
      f.set_code(std::string(codes::kUnderlayUnreachable));
      f.set_severity(v1::CRITICAL);
      f.set_layer(v1::UNDERLAY);
      for (size_t i = 0; i < names_.size(); ++i) {
        if (up(i)) f.add_nodes(name(i));
      }
      f.set_summary("every measured underlay pair fails: the node network itself (or the probe port 9473 on it) "
                    "is down cluster-wide");
      for (size_t i = 0; i < names_.size(); ++i)
        for (const auto& e : failingCells(underlay_, v1::UNDERLAY, i)) addEvidence(f, e);
      f.set_remedy("Check the node network (switches, routes, security groups) and that UDP/TCP 9473 is allowed "
                   "between nodes.");
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
        if (const auto* p = probe(y, v1::UNDERLAY, name(x)); p && p->error().find("refused") != std::string::npos)
          ++refused;
      }
      if (witnesses > 0 && refused * 2 > witnesses) {
        agent_gone_.insert(x);
        agent_gone_evidence_[x] = cells;
        continue;
      }
      v1::Finding f;
      f.set_code(std::string(codes::kUnderlayUnreachable));
      f.set_severity(v1::CRITICAL);
      f.add_nodes(name(x));
      f.set_layer(v1::UNDERLAY);
      f.set_summary(name(x) + " is unreachable on the node network: underlay probes to and from it fail with " +
                    std::to_string(countPeers(underlay_, x)) + " peers" +
                    (up(x) ? "" : ", and its agent stopped reporting"));
      for (const auto& e : cells) f.add_evidence(e);
      f.set_remedy("Check " + name(x) + " itself: its network interface and link, routes, and whether the node is "
                   "running at all; overlay and istiod failures of this node follow from it.");
      const std::string id = add(std::move(f), options_.onset_matrix).id();
      supersede(id, idOf(std::string(codes::kOverlayPartition), {name(x)}));
      supersede(id, idOf(std::string(codes::kAgentStale), {name(x)}));
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
    v1::Finding f;
    f.set_code(kPairUnreachable);
    f.set_severity(v1::WARNING);
    f.add_nodes(name(i));
    f.add_nodes(name(j));
    f.set_layer(layer);
    f.set_summary(layerText(layer) + " probes between " + name(i) + " and " + name(j) +
                  " fail while both work with their other peers: the fault is on this pair's path, not in a node");
    if (up(i) && g.failed(i, j)) f.add_evidence(cellEvidence(layer, i, j, g.state[i][j]));
    if (up(j) && g.failed(j, i)) f.add_evidence(cellEvidence(layer, j, i, g.state[j][i]));
    f.set_remedy(layer == v1::OVERLAY
                     ? "Compare what flannel programmed for each other on " + name(i) + " and " + name(j) +
                           " (bridge fdb / ip neigh / ip route on flannel.1) and any filter on the VXLAN port "
                           "between their node IPs."
                     : "Check the network path between " + name(i) + " and " + name(j) +
                           " (routes, ACLs, security groups).");
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
      v1::Finding f;
      f.set_code(std::string(codes::kOverlayPartition));
      f.set_severity(v1::CRITICAL);
      f.set_layer(v1::OVERLAY);
      for (size_t i = 0; i < names_.size(); ++i) {
        if (up(i)) {
          f.add_nodes(name(i));
          overlay_broken_.insert(i);
        }
      }
      f.set_summary("every measured overlay pair fails while the underlay works: VXLAN is broken cluster-wide");
      for (size_t i = 0; i < names_.size(); ++i)
        for (const auto& e : failingCells(overlay_, v1::OVERLAY, i)) addEvidence(f, e);
      f.set_remedy("Check that UDP to the VXLAN port is allowed between all nodes on the underlay network, and "
                   "that every node's flannel uses the same VNI and port; then restart flannel.");
      f.set_id(std::string(codes::kOverlayPartition) + "/*");
      add(std::move(f), options_.onset_matrix);
      return;
    }
    for (size_t x : b.nodes) {
      overlay_broken_.insert(x);
      if (explainOverlay(x)) continue;
      v1::Finding f;
      f.set_code(std::string(codes::kOverlayPartition));
      f.set_severity(v1::CRITICAL);
      f.add_nodes(name(x));
      f.set_layer(v1::OVERLAY);
      f.set_summary(name(x) + "'s overlay is cut off: VXLAN probes to and from it fail with " +
                    std::to_string(countPeers(overlay_, x)) +
                    " peers while the underlay works, and its own VXLAN device, socket, firewall and FDB look right");
      for (const auto& e : failingCells(overlay_, v1::OVERLAY, x)) f.add_evidence(e);
      f.set_remedy("Restart the flannel pod on " + name(x) + " and check UDP to the VXLAN port on the path to " +
                   name(x) + " (network ACLs, security groups, filters outside the node).");
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
      supersede(id, idOf(kPairUnreachable, {name(i), name(j)}));
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
      v1::Finding f;
      f.set_code(std::string(codes::kMtuMismatch));
      f.set_severity(v1::WARNING);
      f.set_layer(v1::OVERLAY);
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
      f.set_remedy("Make the VXLAN device MTU the underlay MTU minus 50 on every node (flannel derives it from the "
                   "underlay interface; restart flannel after an underlay MTU change), or raise the underlay MTU on " +
                   name(x) + ".");
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
      v1::Finding f;
      f.set_code(std::string(codes::kIstiodUnreachable));
      f.set_severity(v1::CRITICAL);
      f.set_layer(v1::ISTIOD);
      f.set_summary("istiod:15012 is unreachable from every node (" + std::to_string(failing.size()) + " of " +
                    std::to_string(known.size()) + "): istiod itself or its Service is down, so ztunnel on every "
                    "node cannot get certificates or configuration");
      for (size_t i : failing) f.add_evidence(istiodEvidence(i));
      f.set_remedy("Check istiod: its pod is Running and listening on 15012 (ss -ltnp in the pod), and the istiod "
                   "Service's port 15012 and endpoints (kubectl get svc,endpoints istiod -n istio-system).");
      f.set_id(std::string(codes::kIstiodUnreachable) + "/istiod");
      const std::string id = add(std::move(f), options_.onset_matrix).id();
      for (size_t i : failing) supersede(id, idOf(std::string(codes::kIstiodUnreachable), {name(i)}));
      for (size_t i : failing) {
        if (pathBroken(i)) nodeIstiod(i);
      }
      return;
    }
    for (size_t i : failing) nodeIstiod(i);
  }

  bool pathBroken(size_t i) const {
    return underlay_blamed_.count(i) || overlay_broken_.count(i) || agent_gone_.count(i) ||
           (overlay_cause_.count(i) && !overlay_cause_.at(i).empty());
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
      f.set_code(std::string(codes::kIstiodUnreachable));
      f.set_severity(v1::CRITICAL);
      f.add_nodes(name(i));
      f.set_layer(v1::ISTIOD);
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
      f.set_remedy("Fix " + name(i) + "'s overlay first (see its other findings); istiod itself is reachable from "
                   "the other nodes.");
    } else if (f.remedy().empty()) {
      f.set_remedy("Check network connectivity from " + name(i) + " to istiod:15012 and the istiod Service.");
    }
    add(std::move(f), cause.empty() ? options_.onset_istiod_node : options_.onset_local);
  }

  // ---- agents that stopped reporting or do not answer probes ----
  void staleRules() {
    for (size_t i = 0; i < names_.size(); ++i) {
      const bool gone = agent_gone_.count(i) > 0;
      if (up(i) && !gone) continue;
      if (underlay_blamed_.count(i) && !gone) continue;  // UNDERLAY_UNREACHABLE says it
      v1::Finding f;
      f.set_code(std::string(codes::kAgentStale));
      f.set_severity(v1::WARNING);
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
      f.set_remedy("Check the meshprobe agent pod on " + name(i) +
                   " (kubectl -n meshprobe get pods -o wide; its logs); until it reports, nothing is known about "
                   "that node.");
      const std::string id = add(std::move(f), up(i) ? options_.onset_matrix : options_.onset_local).id();
      if (gone) {
        supersede(id, idOf(std::string(codes::kUnderlayUnreachable), {name(i)}));
        supersede(id, idOf(std::string(codes::kOverlayPartition), {name(i)}));
      }
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
