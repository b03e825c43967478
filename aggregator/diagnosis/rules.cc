#include "aggregator/diagnosis/rules.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <sstream>
#include <unordered_map>
#include <utility>

#include <google/protobuf/util/time_util.h>

#include "aggregator/diagnosis/proto_layer_view.h"
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

bool knownState(State s) { return s != v1::Cell::UNKNOWN && s != v1::Cell::STATE_UNSPECIFIED; }
bool passes(State s) { return s == v1::Cell::OK || s == v1::Cell::DEGRADED; }

// A view for a layer the input left out: every cell UNKNOWN.
class EmptyView final : public LayerView {
 public:
  explicit EmptyView(uint32_t n) : n_(n) {}
  uint32_t size() const override { return n_; }
  State state(uint32_t, uint32_t) const override { return v1::Cell::UNKNOWN; }
  const std::vector<CellPair>& failing() const override { return none_; }
  uint32_t measuredPeers(uint32_t) const override { return 0; }
  const v1::ProbeResult* detail(uint32_t, uint32_t) const override { return nullptr; }
  const std::vector<CellPair>& detailed() const override { return none_; }

 private:
  uint32_t n_;
  std::vector<CellPair> none_;
};

// The failing cells of one layer around each node: for node x, its peers y (ascending)
// with x->y and/or y->x failing. Built from a sorted list of failing cells in
// O(nodes + F log F); a node's list is a slice of one array.
class Around {
 public:
  static constexpr uint8_t kOut = 1;  // x -> peer fails
  static constexpr uint8_t kIn = 2;   // peer -> x fails
  struct Entry {
    uint32_t peer;
    uint8_t dirs;
  };

  Around() = default;
  Around(uint32_t n, const std::vector<CellPair>& cells) : offset_(n + 1, 0) {
    std::vector<uint32_t> count(n + 1, 0);
    for (const auto& [s, d] : cells) {
      ++count[s];
      ++count[d];
    }
    std::vector<uint32_t> start(n + 1, 0);
    for (uint32_t x = 0; x < n; ++x) start[x + 1] = start[x] + count[x];
    std::vector<Entry> raw(start[n]);
    std::vector<uint32_t> fill(start.begin(), start.end() - 1);
    for (const auto& [s, d] : cells) {
      raw[fill[s]++] = {d, kOut};
      raw[fill[d]++] = {s, kIn};
    }
    entries_.reserve(raw.size());
    for (uint32_t x = 0; x < n; ++x) {
      auto b = raw.begin() + start[x], e = raw.begin() + start[x + 1];
      std::sort(b, e, [](const Entry& a, const Entry& c) { return a.peer < c.peer; });
      for (auto it = b; it != e; ++it) {
        if (entries_.size() > offset_[x] && entries_.back().peer == it->peer) {
          entries_.back().dirs |= it->dirs;
        } else {
          entries_.push_back(*it);
        }
      }
      offset_[x + 1] = static_cast<uint32_t>(entries_.size());
    }
  }

  std::span<const Entry> of(uint32_t x) const {
    if (x + 1 >= offset_.size()) return {};
    return {entries_.data() + offset_[x], entries_.data() + offset_[x + 1]};
  }
  // Distinct peers failing with x (either direction).
  uint32_t peers(uint32_t x) const { return static_cast<uint32_t>(of(x).size()); }
  uint32_t nodes() const { return offset_.empty() ? 0 : static_cast<uint32_t>(offset_.size() - 1); }

 private:
  std::vector<uint32_t> offset_;
  std::vector<Entry> entries_;
};

// Row/column blame over one layer: see rules.h. `measured(x)` is the number of peers x is
// measured with, `measuredWith(x, y)` whether the pair is measured; every failing pair is
// measured.
struct Blame {
  std::vector<uint32_t> nodes;  // blamed, in pick order
  std::vector<CellPair> pairs;  // failing pairs no blamed node explains (i < j), sorted
  bool everything = false;      // every measured pair fails (>= 3 nodes)
};

template <typename Measured, typename MeasuredWith>
Blame blame(const Around& around, Measured measured, MeasuredWith measuredWith, const RuleOptions& options) {
  const uint32_t n = around.nodes();
  Blame out;
  uint64_t failing_pairs = 0;
  for (uint32_t x = 0; x < n; ++x) failing_pairs += around.peers(x);
  failing_pairs /= 2;
  if (failing_pairs == 0) return out;
  // Every measured pair fails only when every node fails with each peer it is measured
  // with (every failing pair is measured, so a node's failing peers never exceed its
  // measured ones). The first node where they differ ends the check: measured(x) may cost
  // O(nodes), and asking it of every node cost O(nodes²) in each pass with a failing pair
  // (hundreds of milliseconds at 5,000 nodes, in the passes that should show a fault).
  size_t measured_nodes = 0;
  bool all_fail = true;
  for (uint32_t x = 0; x < n && all_fail; ++x) {
    const uint32_t m = measured(x);
    if (m > 0) ++measured_nodes;
    all_fail = around.peers(x) == m;
  }
  if (all_fail && measured_nodes >= 3) {
    out.everything = true;
    return out;
  }
  // Only a node failing with min_witnesses peers can ever be blamed (its count only drops),
  // so the greedy loop looks at those nodes alone. Per node: failing pairs and measured
  // pairs with peers not blamed yet.
  std::vector<uint32_t> candidates;
  std::vector<uint32_t> fail(n, 0), meas(n, 0);
  for (uint32_t x = 0; x < n; ++x) {
    fail[x] = around.peers(x);
    if (fail[x] >= options.min_witnesses && fail[x] > 0) {
      candidates.push_back(x);
      meas[x] = measured(x);
    }
  }
  std::vector<bool> blamed(n, false);
  while (true) {
    std::optional<uint32_t> pick;
    for (uint32_t x : candidates) {
      if (blamed[x] || fail[x] < options.min_witnesses) continue;
      if (static_cast<double>(fail[x]) < options.blame_ratio * static_cast<double>(meas[x])) continue;
      if (!pick || fail[x] > fail[*pick]) pick = x;  // most failing first; ties: lowest index
    }
    if (!pick) break;
    const uint32_t p = *pick;
    blamed[p] = true;
    out.nodes.push_back(p);
    // The pairs p explains are gone: its failing peers lose one failing pair each, and
    // every candidate measured with p loses p from its denominator.
    for (const auto& e : around.of(p)) {
      if (!blamed[e.peer]) --fail[e.peer];
    }
    for (uint32_t x : candidates) {
      if (!blamed[x] && meas[x] > 0 && measuredWith(x, p)) --meas[x];
    }
  }
  for (uint32_t x = 0; x < n; ++x) {
    if (blamed[x]) continue;
    for (const auto& e : around.of(x)) {
      if (e.peer > x && !blamed[e.peer]) out.pairs.emplace_back(x, e.peer);
    }
  }
  return out;
}

class Diagnoser {
 public:
  Diagnoser(const DiagnosisInput& in, const RuleOptions& options) : in_(in), options_(options) {
    const auto n = static_cast<uint32_t>(in.nodes.size());
    underlay_ = viewOf(in.underlay, underlay_empty_);
    overlay_ = viewOf(in.overlay, overlay_empty_);
    around_underlay_ = Around(n, upFailing(*underlay_));
    around_overlay_ = Around(n, upFailing(*overlay_));
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
      const size_t omitted = omitted_.count(id) ? omitted_.at(id) : 0;
      if (c.finding.evidence_size() + omitted > kMaxEvidence) {
        const size_t more = c.finding.evidence_size() + omitted - kMaxEvidence;
        c.finding.mutable_evidence()->DeleteSubrange(static_cast<int>(kMaxEvidence),
                                                     c.finding.evidence_size() - static_cast<int>(kMaxEvidence));
        c.finding.add_evidence("... and " + std::to_string(more) + " more");
      }
      out.push_back(std::move(c));
    }
    return out;
  }

 private:
  size_t size() const { return in_.nodes.size(); }
  const NodeEvidence& node(size_t i) const { return in_.nodes[i]; }
  const std::string& name(size_t i) const { return in_.nodes[i].summary.name(); }
  bool up(size_t i) const { return node(i).summary.up(); }

  const LayerView* viewOf(const std::shared_ptr<const LayerView>& v, std::optional<EmptyView>& empty) {
    if (v && v->size() == size()) return v.get();
    empty.emplace(static_cast<uint32_t>(size()));
    return &*empty;
  }
  // The view's failing cells from sources that are up (a view shows a down source's row as
  // UNKNOWN already; this keeps the rules' "only FAIL cells from up nodes" whatever the view).
  std::vector<CellPair> upFailing(const LayerView& v) const {
    std::vector<CellPair> out;
    out.reserve(v.failing().size());
    for (const auto& c : v.failing()) {
      if (c.first < size() && c.second < size() && c.first != c.second && up(c.first)) out.push_back(c);
    }
    return out;
  }
  bool failed(const LayerView& v, size_t s, size_t d) const {
    return up(s) && v.state(static_cast<uint32_t>(s), static_cast<uint32_t>(d)) == v1::Cell::FAIL;
  }
  std::optional<size_t> indexOf(const std::string& node_name) const {
    auto it = std::lower_bound(in_.nodes.begin(), in_.nodes.end(), node_name,
                               [](const NodeEvidence& e, const std::string& n) { return e.summary.name() < n; });
    if (it == in_.nodes.end() || it->summary.name() != node_name) return std::nullopt;
    return static_cast<size_t>(it - in_.nodes.begin());
  }

  static std::string idOf(const std::string& code, std::vector<std::string> nodes) {
    std::sort(nodes.begin(), nodes.end());
    std::string id = code + "/";
    for (size_t i = 0; i < nodes.size(); ++i) id += (i ? "," : "") + nodes[i];
    return id;
  }

  // Adds a candidate, or merges it into the one with the same id (evidence appended
  // without duplicates, the higher severity and the shorter onset kept).
  // `omitted`: evidence lines the caller counted but did not build (see addBounded()).
  v1::Finding& add(v1::Finding f, std::chrono::nanoseconds onset, size_t omitted = 0) {
    std::vector<std::string> nodes(f.nodes().begin(), f.nodes().end());
    std::sort(nodes.begin(), nodes.end());
    f.clear_nodes();
    for (const auto& n : nodes) f.add_nodes(n);
    if (f.id().empty()) f.set_id(idOf(f.code(), nodes));
    if (omitted > 0) omitted_[f.id()] += omitted;
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

  // Evidence past what a finding shows (kMaxEvidence lines, then "... and N more") is only
  // counted, not built: a broken node at 5,000 nodes has 10,000 failing cells. `line` is
  // called only for a line that is kept; a kept line already there is not added twice.
  // Callers pass each line once per finding (cells of one node, each pair once), so the
  // count of lines not kept is exact.
  template <typename Line>
  static void addBounded(v1::Finding& f, size_t& omitted, Line line) {
    if (static_cast<size_t>(f.evidence_size()) >= kMaxEvidence) {
      ++omitted;
      return;
    }
    addEvidence(f, line());
  }
  // The same into a candidate already added.
  template <typename Line>
  void addBounded(const std::string& id, Line line) {
    auto it = byId_.find(id);
    if (it == byId_.end()) return;
    size_t more = 0;
    addBounded(it->second.finding, more, line);
    if (more > 0) omitted_[id] += more;
  }

  const LayerView& viewFor(v1::Layer layer) const { return layer == v1::UNDERLAY ? *underlay_ : *overlay_; }
  const Around& aroundFor(v1::Layer layer) const { return layer == v1::UNDERLAY ? around_underlay_ : around_overlay_; }

  // "OVERLAY node1 -> node3 FAIL: loss 100%, 4 missed in a row, timeout after 800ms"
  std::string cellEvidence(v1::Layer layer, size_t s, size_t d, State state) const {
    std::string line = layerText(layer) + " " + name(s) + " -> " + name(d) + " " + v1::Cell::State_Name(state);
    if (const auto* p = viewFor(layer).detail(static_cast<uint32_t>(s), static_cast<uint32_t>(d))) {
      line += ": loss " + percent(p->has_recent_loss() ? p->recent_loss() : p->loss());
      if (p->consecutive_failures() > 0) line += ", " + std::to_string(p->consecutive_failures()) + " missed in a row";
      if (!p->error().empty()) line += ", " + p->error();
      if (p->consecutive_failures() == 0 && p->has_rtt_p50()) line += ", rtt p50 " + durationText(p->rtt_p50());
    }
    return line;
  }

  // Evidence for node x on a layer: its failing cells, both directions, peers in node
  // order (x -> y before y -> x). With `after_x`, only cells whose other end comes after x
  // (each cell of the layer once when walking every node).
  template <typename Sink>
  void forFailingCells(v1::Layer layer, size_t x, bool after_x, Sink sink) const {
    for (const auto& e : aroundFor(layer).of(static_cast<uint32_t>(x))) {
      if (after_x && e.peer <= x) continue;
      if (e.dirs & Around::kOut) sink(x, e.peer);
      if (e.dirs & Around::kIn) sink(e.peer, x);
    }
  }
  // Adds node x's failing cells of `layer` to a finding being built (bounded: addBounded).
  void addCells(v1::Finding& f, size_t& omitted, v1::Layer layer, size_t x, bool after_x = false) const {
    forFailingCells(layer, x, after_x, [&](size_t s, size_t d) {
      addBounded(f, omitted, [&] { return cellEvidence(layer, s, d, v1::Cell::FAIL); });
    });
  }
  void addCells(const std::string& id, v1::Layer layer, size_t x) {
    forFailingCells(layer, x, false, [&](size_t s, size_t d) {
      addBounded(id, [&] { return cellEvidence(layer, s, d, v1::Cell::FAIL); });
    });
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
    for (size_t i = 0; i < size(); ++i) {
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
    for (const auto& m : in_.vxlan_mismatches) {
      const auto x = indexOf(m.node);
      if (!x || !up(*x)) continue;
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
      overlay_cause_[*x].push_back(add(std::move(f), options_.onset_local).id());
    }
  }

  // Blame over a probe layer's view: failing pairs from the view's failing cells, a node's
  // denominator its measured peers.
  Blame blameLayer(v1::Layer layer) const {
    const LayerView& v = viewFor(layer);
    return blame(
        aroundFor(layer), [&](uint32_t x) { return v.measuredPeers(x); },
        [&](uint32_t x, uint32_t y) { return knownState(v.state(x, y)) || knownState(v.state(y, x)); }, options_);
  }

  // The finding of a whole layer failing: every up node, each failing cell once.
  void clusterWide(v1::Layer layer, std::string_view code, const std::string& summary) {
    v1::Finding f = newFinding(code);
    for (size_t i = 0; i < size(); ++i) {
      if (up(i)) f.add_nodes(name(i));
    }
    f.set_summary(summary);
    size_t omitted = 0;
    for (size_t i = 0; i < size(); ++i) addCells(f, omitted, layer, i, /*after_x=*/true);
    f.set_remedy(remedyFor(code, "cluster"));
    f.set_id(std::string(code) + "/*");
    add(std::move(f), options_.onset_matrix, omitted);
  }

  // ---- underlay ----
  void underlayRules() {
    const Blame b = blameLayer(v1::UNDERLAY);
    if (b.everything) {
      clusterWide(v1::UNDERLAY, codes::kUnderlayUnreachable,
                  "every measured underlay pair fails: the node network itself (or the probe port 9473 on it) "
                  "is down cluster-wide");
      for (size_t i = 0; i < size(); ++i) underlay_blamed_.insert(i);
      return;
    }
    for (uint32_t x : b.nodes) {
      underlay_blamed_.insert(x);
      // Peers' TCP connects to the probe port refused: the host answers, the agent does not.
      size_t refused = 0, witnesses = 0;
      for (const auto& e : around_underlay_.of(x)) {
        if (!(e.dirs & Around::kIn)) continue;  // e.peer -> x fails (its source is up)
        ++witnesses;
        if (const auto* p = underlay_->detail(e.peer, x); p && tcpRefused(*p)) ++refused;
      }
      if (witnesses > 0 && refused * 2 > witnesses) {
        agent_gone_.insert(x);
        continue;
      }
      v1::Finding f = newFinding(codes::kUnderlayUnreachable);
      f.add_nodes(name(x));
      f.set_summary(name(x) + " is unreachable on the node network: underlay probes to and from it fail with " +
                    std::to_string(around_underlay_.peers(x)) + " peers" +
                    (up(x) ? "" : ", and its agent stopped reporting"));
      size_t omitted = 0;
      addCells(f, omitted, v1::UNDERLAY, x);
      f.set_remedy(remedyFor(codes::kUnderlayUnreachable, "", name(x)));
      const std::string id = add(std::move(f), options_.onset_matrix, omitted).id();
      supersedeFor(id, codes::kUnderlayUnreachable, x);
    }
    for (const auto& [i, j] : b.pairs) pairFinding(v1::UNDERLAY, i, j);
  }

  void pairFinding(v1::Layer layer, size_t i, size_t j) {
    const LayerView& v = viewFor(layer);
    v1::Finding f = newFinding(codes::kPairUnreachable);
    f.add_nodes(name(i));
    f.add_nodes(name(j));
    f.set_layer(layer);
    f.set_summary(layerText(layer) + " probes between " + name(i) + " and " + name(j) +
                  " fail while both work with their other peers: the fault is on this pair's path, not in a node");
    if (failed(v, i, j)) f.add_evidence(cellEvidence(layer, i, j, v1::Cell::FAIL));
    if (failed(v, j, i)) f.add_evidence(cellEvidence(layer, j, i, v1::Cell::FAIL));
    f.set_remedy(remedyFor(codes::kPairUnreachable, layer == v1::OVERLAY ? "" : "underlay", name(i), name(j)));
    add(std::move(f), options_.onset_pair);
  }

  // ---- overlay ----
  void overlayRules() {
    const Blame b = blameLayer(v1::OVERLAY);
    if (b.everything) {
      // Every pair fails. Nodes with their own explanation keep it; if nobody has one, it
      // is one cluster-wide finding.
      bool all_explained = true;
      for (size_t i = 0; i < size(); ++i) {
        if (!up(i)) continue;
        if (explainOverlay(i)) {
          overlay_broken_.insert(i);
        } else {
          all_explained = false;
        }
      }
      if (all_explained) return;
      for (size_t i = 0; i < size(); ++i) {
        if (up(i)) overlay_broken_.insert(i);
      }
      clusterWide(v1::OVERLAY, codes::kOverlayPartition,
                  "every measured overlay pair fails while the underlay works: VXLAN is broken cluster-wide");
      return;
    }
    for (uint32_t x : b.nodes) {
      overlay_broken_.insert(x);
      if (explainOverlay(x)) continue;
      v1::Finding f = newFinding(codes::kOverlayPartition);
      f.add_nodes(name(x));
      f.set_summary(name(x) + "'s overlay is cut off: VXLAN probes to and from it fail with " +
                    std::to_string(around_overlay_.peers(x)) +
                    " peers while the underlay works, and its own VXLAN device, socket, firewall and FDB look right");
      size_t omitted = 0;
      addCells(f, omitted, v1::OVERLAY, x);
      f.set_remedy(remedyFor(codes::kOverlayPartition, "", name(x)));
      add(std::move(f), options_.onset_matrix, omitted);
    }
    for (const auto& [i, j] : b.pairs) {
      // A pair is explained by either end's own overlay fault (e.g. a stale FDB entry for
      // the other) or by an underlay fault.
      if (explainOverlay(i) || explainOverlay(j)) {
        for (size_t e : {i, j}) attachOverlayPair(e, i, j);
        continue;
      }
      pairFinding(v1::OVERLAY, i, j);
    }
  }

  // Whether node x's overlay failures have a known cause; attaches them as evidence there
  // (once per node: every failing overlay cell of x).
  bool explainOverlay(size_t x) {
    if (underlay_blamed_.count(x) || agent_gone_.count(x)) return true;
    auto it = overlay_cause_.find(x);
    if (it == overlay_cause_.end() || it->second.empty()) return false;
    if (!overlay_attached_.insert(x).second) return true;
    for (const auto& id : it->second) {
      if (!byId_.count(id)) continue;
      addCells(id, v1::OVERLAY, x);
      supersede(id, idOf(std::string(codes::kOverlayPartition), {name(x)}));
    }
    return true;
  }

  void attachOverlayPair(size_t owner, size_t i, size_t j) {
    auto it = overlay_cause_.find(owner);
    if (it == overlay_cause_.end()) return;
    // explainOverlay(owner) attached every failing overlay cell of the owner already.
    const bool attached = overlay_attached_.count(owner) > 0;
    for (const auto& id : it->second) {
      auto c = byId_.find(id);
      if (c == byId_.end()) continue;
      if (supersedes(c->second.finding.code(), codes::kPairUnreachable))
        supersede(id, idOf(std::string(codes::kPairUnreachable), {name(i), name(j)}));
      if (attached) continue;
      if (failed(*overlay_, i, j)) addBounded(id, [&] { return cellEvidence(v1::OVERLAY, i, j, v1::Cell::FAIL); });
      if (failed(*overlay_, j, i)) addBounded(id, [&] { return cellEvidence(v1::OVERLAY, j, i, v1::Cell::FAIL); });
    }
  }

  // ---- path MTU: DF probes at the overlay MTU fail while small probes pass ----
  // A DF cell fails when the source's probe result (a detail: its DF probes are missing)
  // has mtu_failures DF probes missed in a row while the cell's small probes pass (OK or
  // DEGRADED). A pair is DF-measured when one of its overlay cells passes: agents send DF
  // probes with the small ones to every overlay peer.
  void mtuRules() {
    const auto n = static_cast<uint32_t>(size());
    const LayerView& v = *overlay_;
    std::vector<std::pair<CellPair, const v1::PathMtuProbe*>> df;  // sorted by cell
    std::vector<CellPair> df_cells;
    for (const auto& [s, d] : v.detailed()) {
      if (s >= n || d >= n || s == d || !up(s)) continue;
      const v1::ProbeResult* p = v.detail(s, d);
      if (p == nullptr || !p->has_path_mtu() || p->path_mtu().size() == 0 || p->path_mtu().sent() == 0) continue;
      if (!passes(v.state(s, d))) continue;  // small probes must pass
      if (p->path_mtu().consecutive_failures() < options_.mtu_failures) continue;
      df.push_back({{s, d}, &p->path_mtu()});
      df_cells.push_back({s, d});
    }
    if (df.empty()) return;
    const Around around(n, df_cells);
    // Peers a node is DF-measured with: its measured overlay peers less those whose every
    // known overlay cell with it fails (no passing small probe, so no DF verdict).
    auto measured = [&](uint32_t x) {
      uint32_t all_fail = 0;
      for (const auto& e : around_overlay_.of(x)) {
        const bool out_ok = passes(v.state(x, e.peer)), in_ok = passes(v.state(e.peer, x));
        if (!out_ok && !in_ok) ++all_fail;
      }
      return v.measuredPeers(x) - std::min(all_fail, v.measuredPeers(x));
    };
    auto measuredWith = [&](uint32_t x, uint32_t y) { return passes(v.state(x, y)) || passes(v.state(y, x)); };
    const Blame b = blame(around, measured, measuredWith, options_);

    auto mtuOf = [&](uint32_t s, uint32_t d) {
      return std::lower_bound(df.begin(), df.end(), CellPair{s, d},
                              [](const auto& e, const CellPair& c) { return e.first < c; })
          ->second;
    };
    auto dfEvidence = [&](uint32_t s, uint32_t d) {
      const auto* m = mtuOf(s, d);
      std::string line = "DF probes of " + std::to_string(m->size()) + " bytes " + name(s) + " -> " + name(d) +
                         " fail (" + std::to_string(m->consecutive_failures()) +
                         " in a row) while small overlay probes pass";
      if (!m->error().empty()) line += ": " + m->error();
      return line;
    };
    auto sizesOf = [&](uint32_t x) {
      std::set<uint32_t> sizes;
      for (const auto& e : around.of(x)) {
        if (e.dirs & Around::kOut) sizes.insert(mtuOf(x, e.peer)->size());
        if (e.dirs & Around::kIn) sizes.insert(mtuOf(e.peer, x)->size());
      }
      std::string s;
      for (auto val : sizes) s += (s.empty() ? "" : "/") + std::to_string(val);
      return s;
    };
    // The DF cells touching `nodes` (all of them for the cluster-wide finding), in cell order.
    auto addMtu = [&](const std::vector<uint32_t>& nodes, bool all) {
      v1::Finding f = newFinding(codes::kMtuMismatch);
      for (uint32_t x : nodes) f.add_nodes(name(x));
      const uint32_t x = nodes.front();
      const uint32_t mtu = node(x).summary.vxlan_mtu();
      if (nodes.size() == 1) {
        f.set_summary("the overlay path MTU to and from " + name(x) + " is smaller than the VXLAN device MTU" +
                      (mtu ? " (" + std::to_string(mtu) + ")" : "") + ": full-size DF packets of " + sizesOf(x) +
                      " bytes are lost while small packets pass");
      } else {
        f.set_summary("the overlay path MTU between " + name(nodes[0]) + " and " + name(nodes[1]) +
                      " is smaller than the VXLAN device MTU: DF packets of " + sizesOf(x) + " bytes are lost");
      }
      std::vector<CellPair> cells;
      if (all) {
        cells = df_cells;
      } else {
        for (uint32_t y : nodes) {
          for (const auto& e : around.of(y)) {
            if (e.dirs & Around::kOut) cells.push_back({y, e.peer});
            if (e.dirs & Around::kIn) cells.push_back({e.peer, y});
          }
        }
        std::sort(cells.begin(), cells.end());
        cells.erase(std::unique(cells.begin(), cells.end()), cells.end());
      }
      size_t omitted = 0;
      // Not a structured binding: clang 14 (the fuzz build) cannot capture one in a lambda.
      for (const auto& cell : cells) addBounded(f, omitted, [&] { return dfEvidence(cell.first, cell.second); });
      f.set_remedy(remedyFor(codes::kMtuMismatch, "", name(x)));
      add(std::move(f), options_.onset_matrix, omitted);
    };
    if (b.everything) {
      std::vector<uint32_t> all;
      for (uint32_t i = 0; i < n; ++i)
        if (up(i)) all.push_back(i);
      if (!all.empty()) addMtu(all, true);
      return;
    }
    for (uint32_t x : b.nodes) addMtu({x}, false);
    for (const auto& [i, j] : b.pairs) addMtu({i, j}, false);
  }

  // ---- istiod ----
  void istiodRules() {
    const size_t n = size();
    std::vector<State> st(n, v1::Cell::UNKNOWN);
    for (size_t i = 0; i < n && i < in_.istiod.size(); ++i) st[i] = in_.istiod[i];
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
    for (size_t i = 0; i < size(); ++i) {
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
      size_t omitted = 0;
      if (gone) addCells(f, omitted, v1::UNDERLAY, i);
      f.set_remedy(remedyFor(codes::kAgentStale, "", name(i)));
      const std::string id = add(std::move(f), up(i) ? options_.onset_matrix : options_.onset_local, omitted).id();
      // Only an agent known to be gone (its host refuses the probe port) is the cause of
      // the node's failing cells; a silent one may just have lost its stream.
      if (gone) supersedeFor(id, codes::kAgentStale, i);
    }
  }

  const DiagnosisInput& in_;
  const RuleOptions& options_;
  std::optional<EmptyView> underlay_empty_, overlay_empty_;
  const LayerView* underlay_ = nullptr;
  const LayerView* overlay_ = nullptr;
  Around around_underlay_, around_overlay_;  // failing cells (from up sources) around each node

  std::map<std::string, Candidate> byId_;
  std::vector<std::string> order_;
  std::map<size_t, std::vector<std::string>> overlay_cause_;  // node -> ids of findings explaining its overlay
  std::map<size_t, v1::Finding> local_istiod_;
  std::set<size_t> underlay_blamed_, overlay_broken_, agent_gone_;
  std::set<size_t> overlay_attached_;  // nodes whose overlay cells explainOverlay() attached
  std::map<std::string, size_t> omitted_;  // id -> evidence lines counted, not built
};

}  // namespace

std::vector<Candidate> diagnose(const DiagnosisInput& input, const RuleOptions& options) {
  return Diagnoser(input, options).run();
}

std::vector<Candidate> diagnose(const ClusterSnapshot& snapshot, const RuleOptions& options) {
  DiagnosisInput in;
  in.nodes.reserve(snapshot.nodes.size());
  for (const auto& n : snapshot.nodes) {
    NodeEvidence e;
    e.summary = n.summary;
    e.has_report = n.has_report;
    e.checks = n.checks;
    e.findings = n.findings;
    in.nodes.push_back(std::move(e));
  }
  in.underlay = std::make_shared<ProtoLayerView>(snapshot.underlay, v1::UNDERLAY, snapshot.nodes);
  in.overlay = std::make_shared<ProtoLayerView>(snapshot.overlay, v1::OVERLAY, snapshot.nodes);
  std::unordered_map<std::string, size_t> index;
  for (size_t i = 0; i < snapshot.nodes.size(); ++i) index.emplace(snapshot.nodes[i].summary.name(), i);
  in.istiod.assign(snapshot.nodes.size(), v1::Cell::UNKNOWN);
  for (const auto& c : snapshot.istiod.cells()) {
    auto it = index.find(c.src());
    if (it != index.end()) in.istiod[it->second] = c.state();
  }
  in.vxlan_mismatches = snapshot.vxlan_mismatches;
  return diagnose(in, options);
}

}  // namespace meshprobe::aggregator
