#pragma once
// Everything the aggregator knows about the cluster: membership from Hellos, each node's
// latest Report, and the matrices derived from them. Pure (no I/O), thread-safe (one
// mutex), and driven by an injected Clock so tests advance time instead of sleeping.
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

#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "aggregator/diagnosis/rules.h"
#include "aggregator/matrix.h"
#include "aggregator/membership.h"
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
  // accepted since the node's last new-session Hello.
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
  // matrix(layer) reduced to per-node reachable counts and FAIL cells (read-only, cheap:
  // one pass over each source's probes). Same errors as matrix().
  Result<MatrixSummary> matrixSummary(meshprobe::v1::Layer layer) const;
  // Everything the diagnosis rules look at, taken under one lock pass per matrix.
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
  const ClusterOptions& options() const { return options_; }

 private:
  struct NodeRecord {
    meshprobe::v1::Hello hello;
    std::chrono::steady_clock::time_point last_heard;
    bool has_report = false;
    std::chrono::steady_clock::time_point report_received_mono;
    std::chrono::system_clock::time_point report_received_wall;
    meshprobe::v1::Report report;
    bool has_sequence = false;
    uint64_t last_sequence = 0;
    // (layer, dst) -> index into report.probes
    std::map<std::pair<int, std::string>, int> probe_index;
  };

  bool isUpLocked(const NodeRecord& rec, std::chrono::steady_clock::time_point now) const;
  meshprobe::v1::PeerList peerListLocked() const;
  meshprobe::v1::NodeSummary summaryLocked(const NodeRecord& rec, std::chrono::steady_clock::time_point now) const;

  const Clock& clock_;
  const ClusterOptions options_;
  mutable std::mutex mu_;
  std::map<std::string, NodeRecord> nodes_;  // sorted by name: the matrix's stable order
  uint64_t generation_ = 0;                  // first version: bumped on every Hello and Report
};

}  // namespace meshprobe::aggregator
