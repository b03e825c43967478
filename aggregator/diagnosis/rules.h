#pragma once
// Diagnosis rules: a pure function from a cluster snapshot to candidate
// findings. No clock, no I/O: unit tests build snapshots by hand.
//
// Blame over the matrix, per layer (UNDERLAY, OVERLAY, and the DF path-MTU probes):
//   - only FAIL cells from up nodes count; UNKNOWN never blames anyone;
//   - a pair of nodes fails when either of its cells fails, and is measured when either
//     cell is known (LayerView::measuredPeers); every failing pair is measured;
//   - a node is blamed when it fails with at least `min_witnesses` distinct peers
//     (either direction) and with at least `blame_ratio` of the peers it is measured
//     with; nodes are taken greedily, most failing pairs first (ties: node order), and
//     the pairs a blamed node explains are removed before the next pick, so two broken
//     nodes are both named and their healthy peers are not. After a pick, a node's
//     count is its failing pairs with peers not blamed, and its denominator its measured
//     peers less those blamed (a healthy pair with a blamed node counts no more);
//   - failing pairs left over blame the pair (PAIR_UNREACHABLE), not a node;
//   - every measured pair failing (at least 3 nodes measured) is one cluster-wide finding.
// For the DF probes, a DF cell fails when its source's probe result (the view's detail)
// has `mtu_failures` DF probes missed in a row while the cell's small probes pass, and a
// pair is measured when either of its overlay cells passes (OK or DEGRADED).
// Cost of a pass: O(nodes + F log F) over F failing cells, plus O(B × C) for the greedy
// picks (B nodes blamed, C nodes failing with at least min_witnesses peers), plus one
// LayerView::measuredPeers (O(nodes) in the cluster state's view) per candidate and per
// node checked for "every pair fails" (the check stops at the first node with a working
// pair, so only a cluster-wide fault asks every node); a cell's probe result is looked up
// (LayerView::detail), never searched for. Evidence beyond what
// a finding shows (12 lines, then "... and N more") is counted, not built.
// Then the "why": a blamed node's own check findings (no VXLAN device, no socket on the
// port, a firewall rule, stale FDB, MTU) and the cluster's VNI/port disagreement explain
// its overlay failures, and become the finding (with the matrix as evidence) instead of
// a bare OVERLAY_PARTITION. Underlay blame explains overlay and istiod failures.
// ISTIOD failing from every reporting node blames istiod (no node); failing only from
// nodes whose overlay/underlay is broken blames those nodes.
// Which code explains or supersedes which, each code's severity, layer and remedy come
// from the finding catalogue (common/finding_catalogue.h), not from here.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "aggregator/membership.h"
#include "aggregator/state/layer_view.h"
#include "meshprobe/v1/collector.pb.h"
#include "meshprobe/v1/query.pb.h"
#include "meshprobe/v1/types.pb.h"

namespace meshprobe::aggregator {

struct RuleOptions {
  size_t min_witnesses = 2;   // distinct peers failing with a node before it is blamed
  double blame_ratio = 0.5;   // ... and at least this share of the peers it is measured with
  uint32_t mtu_failures = 3;  // DF probes missed in a row (while small probes pass) = MTU fault
  // How long a candidate must persist before it becomes an active finding.
  std::chrono::nanoseconds onset_local{0};                             // a node's own check finding
  std::chrono::nanoseconds onset_matrix{std::chrono::milliseconds(900)};  // node blamed from probes
  std::chrono::nanoseconds onset_pair{std::chrono::seconds(4)};         // one bad pair
  // A node that cannot reach istiod while its own path looks fine: wait for the other
  // nodes' istiod checks (every 2 s) before saying it is this node and not istiod.
  std::chrono::nanoseconds onset_istiod_node{std::chrono::milliseconds(2500)};
};

// What the rules see of one node.
struct NodeEvidence {
  meshprobe::v1::NodeSummary summary;  // name, IPs, VNI/port, MTU, up
  bool has_report = false;
  std::vector<meshprobe::v1::CheckResult> checks;
  std::vector<meshprobe::v1::Finding> findings;  // the agent's own (local) findings
  std::vector<meshprobe::v1::ProbeResult> probes;
};

struct ClusterSnapshot {
  std::vector<NodeEvidence> nodes;  // sorted by name
  meshprobe::v1::GetMatrixResponse underlay;
  meshprobe::v1::GetMatrixResponse overlay;
  meshprobe::v1::GetMatrixResponse istiod;
  std::vector<VxlanMismatch> vxlan_mismatches;
};

// The rules' input as the cluster state publishes it: per-layer views instead of protobuf
// matrices, so a pass costs O(nodes + failing cells), not O(nodes²).
struct DiagnosisInput {
  // Sorted by name, the views' node order. `probes` is left empty: a cell's probe result
  // is the view's detail().
  std::vector<NodeEvidence> nodes;
  std::shared_ptr<const LayerView> underlay;
  std::shared_ptr<const LayerView> overlay;
  // Per node (same order): its ISTIOD cell's state as the ISTIOD matrix shows it.
  std::vector<meshprobe::v1::Cell::State> istiod;
  std::vector<VxlanMismatch> vxlan_mismatches;
  // Equal generations mean equal content (same members, up/down, cells, checks, findings):
  // the engine reuses the last pass's candidates instead of running the rules again.
  uint64_t generation = 0;
};

struct Candidate {
  meshprobe::v1::Finding finding;  // id, code, severity, nodes, layer, summary, evidence, remedy
  std::chrono::nanoseconds onset_after{0};
  // Ids of findings this one explains (e.g. VXLAN_PORT_FILTERED/n2 explains
  // OVERLAY_PARTITION/n2): an earlier, vaguer guess with such an id ends at once instead
  // of lingering through its clear delay.
  std::vector<std::string> supersedes;
};

std::vector<Candidate> diagnose(const DiagnosisInput& input, const RuleOptions& options = {});
// The same over a hand-built snapshot of protobuf matrices (tests, tools): builds
// ProtoLayerViews over it and calls the above.
std::vector<Candidate> diagnose(const ClusterSnapshot& snapshot, const RuleOptions& options = {});

}  // namespace meshprobe::aggregator
