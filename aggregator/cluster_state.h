#pragma once
// Everything the aggregator knows about the cluster: membership from Hellos, each node's
// latest Report, and the matrices derived from them. Pure (no I/O), thread-safe, and
// driven by an injected Clock so tests advance time instead of sleeping.
//
// Storage (aggregator/state/): members get a stable slot (NodeIndex); each source keeps one
// row per probe layer of 4-byte packed cells indexed by destination slot, classified at
// ingest, plus the full ProbeResult of the few cells that need explaining (details). A
// Report replaces its source's rows and nothing else. Readers never walk the live state:
// snapshot() publishes an immutable StateSnapshot sharing the rows (copy-on-write), at most
// every `publish_interval`, and every query, /metrics scrape and diagnosis pass reads one.
//
// Coverage window: a Report with coverage_period (agents that rotate their peers say how
// long a pair may wait for its next probe) makes a cell whose last_probe is older than
// coverage_period + 2 × probe_interval at the report's time UNKNOWN, never a stale OK.
// Without coverage_period (older agents) there is no age rule.
//
// Lifecycle of a node (the node name is its identity):
//   member  — from its first accepted Hello; a later Hello with the same name replaces
//             its facts (IPs, VTEP MAC, VNI, port, pod CIDR, MTU, version).
//   up      — heard from (Hello or accepted Report) less than `stale_after` ago.
//   down    — silent for `stale_after` or longer: NodeSummary.up = false and every cell
//             FROM it is UNKNOWN (its last numbers stay visible, its state never stays
//             OK). Cells TO it keep what the other agents report. It stays in PeerList.
//   forgotten — silent for `forget_after` (default 10 × stale_after): sweep() removes it
//             from membership, which changes PeerList. A closed stream alone changes
//             nothing; only silence does.

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "aggregator/diagnosis/rules.h"
#include "aggregator/matrix.h"
#include "aggregator/matrix_query.h"
#include "aggregator/membership.h"
#include "aggregator/state/node_index.h"
#include "aggregator/state/packed_cell.h"
#include "aggregator/state/snapshot.h"
#include "common/clock.h"
#include "common/result.h"
#include "meshprobe/v1/collector.pb.h"
#include "meshprobe/v1/query.pb.h"

namespace meshprobe::aggregator {

struct ClusterOptions {
  std::chrono::nanoseconds stale_after{std::chrono::seconds(10)};
  // 0 means 10 × stale_after.
  std::chrono::nanoseconds forget_after{0};
  MatrixOptions matrix;
  // A snapshot is rebuilt at most this often (0: whenever something changed). Queries then
  // see changes up to this late; the aggregator binary uses 250 ms.
  std::chrono::nanoseconds publish_interval{0};
};

// A matrix reduced to what /metrics exports, computed without building the cells (at 1,000
// nodes a matrix is a million protos). Agrees with matrix(): same states, same order.
struct MatrixSummary {
  std::vector<std::string> nodes;   // every member, sorted by name
  std::vector<uint32_t> reachable;  // per node (same order): cells FROM it that are OK or DEGRADED
  std::vector<std::pair<std::string, std::string>> failed;  // (src, dst) of every FAIL cell, in matrix order
};

enum class ReportOutcome {
  kAccepted,
  kOldSequence,  // sequence not above the last accepted one in this session: ignored
  kUnknownNode,  // no member of that name (never said Hello, or forgotten)
};

class ClusterState {
 public:
  ClusterState(const Clock& clock, ClusterOptions options);

  // Adds or replaces a member from a (validated) Hello and counts as hearing from it.
  // `new_session` marks the first Hello of a stream: the agent may have restarted, so
  // sequence numbering starts over. A Hello repeated on the same stream (facts changed)
  // keeps the sequence. Returns how the peer list changed (empty: no push needed).
  MembershipDiff applyHello(const meshprobe::v1::Hello& hello, bool new_session);

  // Stores `report` as the node's latest unless its sequence is not above the last one
  // accepted since the node's last new-session Hello. A delta report (Report.delta) changes
  // only the cells, checks and pod netns list it carries; the rest stays as before.
  ReportOutcome applyReport(const std::string& node, const meshprobe::v1::Report& report);

  // Forgets members silent for forget_after. Returns how the peer list changed.
  MembershipDiff sweep();

  // Every member, sorted by name, the receiver included.
  meshprobe::v1::PeerList peerList() const;

  std::vector<meshprobe::v1::NodeSummary> listNodes() const;
  // NOT_FOUND-style error naming the node when there is no such member.
  Result<meshprobe::v1::GetNodeResponse> getNode(const std::string& name) const;
  // UNDERLAY / OVERLAY: every ordered pair of distinct members. ISTIOD: one cell per
  // member with dst "istiod". Any other layer is an error naming the layer.
  Result<meshprobe::v1::GetMatrixResponse> matrix(meshprobe::v1::Layer layer) const;
  // matrix(layer) reduced to per-node reachable counts and FAIL cells: O(nodes + failing
  // cells) from the snapshot's per-row counters. Same errors as matrix().
  Result<MatrixSummary> matrixSummary(meshprobe::v1::Layer layer) const;
  // The latest published snapshot, rebuilt first when something changed (or a node went
  // stale) and the last one is at least publish_interval old. Never null.
  std::shared_ptr<const StateSnapshot> snapshot() const;
  // GetMatrix: the filtered page of req.layer()'s matrix (see queryMatrix), built from the
  // snapshot without building the whole matrix.
  grpc::Status matrixPage(const meshprobe::v1::GetMatrixRequest& req, meshprobe::v1::GetMatrixResponse* out,
                          const MatrixPageLimits& limits = {}) const;
  // Everything the diagnosis rules look at, from one snapshot.
  // Down nodes keep their summary (up = false) but not their checks, findings or probes:
  // a silent node's last words are not evidence.
  ClusterSnapshot diagnosisSnapshot() const;
  // The rules' input: per-layer views (failing cells, details, measured peers) instead of
  // protobuf matrices, plus each node's evidence without its probes (a cell's probe result
  // is the view's detail()). Same up/down rules as diagnosisSnapshot().
  DiagnosisInput diagnosisInput() const;
  // Members whose VNI or port disagree with the majority (see findVxlanMismatches).
  std::vector<VxlanMismatch> vxlanMismatches() const;

  size_t memberCount() const;
  bool isUp(const std::string& name) const;
  // Delta reports applied since start (meshprobe_aggregator_delta_reports_total).
  uint64_t deltasApplied() const;
  const ClusterOptions& options() const { return options_; }

 private:
  struct Member {
    meshprobe::v1::Hello hello;
    std::chrono::steady_clock::time_point last_heard;
    bool has_sequence = false;
    uint64_t last_sequence = 0;
    uint64_t stamp = 0;  // ingest counter when this member got its slot
    std::shared_ptr<const NodeInfo> info;
    std::array<std::shared_ptr<Row>, 2> rows;  // UNDERLAY, OVERLAY; null until a report
  };

  bool isUpLocked(const Member& m, std::chrono::steady_clock::time_point now) const;
  meshprobe::v1::PeerList peerListLocked() const;
  void writeRows(Member& m, uint32_t self, const meshprobe::v1::Report& report, NodeInfo& info);
  // A delta report (Report.delta): the listed cells replace theirs in copies of the rows
  // (copy-on-write), every other cell stays as the earlier reports left it.
  void updateRows(Member& m, uint32_t self, const meshprobe::v1::Report& report, NodeInfo& info);
  std::shared_ptr<const StateSnapshot> build(const std::shared_ptr<const StateSnapshot>& prev,
                                             std::chrono::steady_clock::time_point now) const;

  const Clock& clock_;
  const ClusterOptions options_;

  // The live state, guarded by mu_ (ingest and membership).
  mutable std::mutex mu_;
  NodeIndex index_;
  std::vector<Member> members_;  // by slot (a free slot's entry is empty)
  uint64_t counter_ = 0;         // stamps slots and rows (see StateSnapshot::slot_stamp)
  uint64_t last_removal_ = 0;    // counter_ when a member was last forgotten
  uint64_t last_slot_change_ = 0;  // counter_ when a slot was last given or freed (delta rows)
  uint64_t deltas_applied_ = 0;    // delta reports applied (Report.delta)
  mutable bool dirty_ = false;   // content changed since the last snapshot
  mutable bool facts_dirty_ = true;  // Hello facts or membership changed (VXLAN mismatches)

  // Publishing: publish_mu_ serialises rebuilds; snap_mu_ guards only the pointer copy.
  mutable std::mutex publish_mu_;
  mutable std::mutex snap_mu_;
  mutable std::shared_ptr<const StateSnapshot> published_;
  mutable uint64_t generation_ = 0;
  mutable std::vector<VxlanMismatch> mismatches_;  // under mu_
};

}  // namespace meshprobe::aggregator
