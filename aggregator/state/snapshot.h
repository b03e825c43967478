#pragma once
// An immutable picture of the cluster state, published by ClusterState (snapshot()):
// every query, /metrics scrape and diagnosis pass reads one of these instead of the live
// state, so none of them waits behind ingest or walks protobuf reports.
//
// It is cheap to publish because it shares almost everything with the live state: the
// per-source rows of packed cells are copy-on-write (a snapshot holds row pointers; ingest
// writes a new row when a snapshot still holds the old one), and each node's facts and
// last report's checks and findings are one shared, immutable NodeInfo.

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "aggregator/membership.h"
#include "aggregator/state/layer_view.h"
#include "aggregator/state/packed_cell.h"
#include "meshprobe/v1/collector.pb.h"
#include "meshprobe/v1/query.pb.h"

namespace meshprobe::aggregator {

// A node's facts and its last report's evidence (immutable once published).
struct NodeInfo {
  meshprobe::v1::NodeSummary summary;  // `up` is not set here: see StateSnapshot::up
  bool has_report = false;
  google::protobuf::Timestamp report_time;  // Report.time, or when it arrived if unset
  std::vector<meshprobe::v1::CheckResult> checks;
  std::vector<meshprobe::v1::Finding> findings;
  // The ISTIOD cell: from the node's ISTIOD probe when it sent one, else its "istiod" check.
  bool istiod_from_probe = false;
  bool has_istiod_check = false;
  meshprobe::v1::Cell::State istiod_state = meshprobe::v1::Cell::UNKNOWN;  // as classified
  meshprobe::v1::ProbeResult istiod_probe;                                 // when from a probe
  // Probes of the report that are no matrix cell (other layers, destinations that were no
  // member at ingest), kept for GetNode.
  std::vector<meshprobe::v1::ProbeResult> other_probes;
  // Each pod netns' capture state and IPs (Report.pod_netns) from the node's latest report
  // that carried the ambient_redirection check; pod_netns_time is that report's time. A
  // report without that check keeps the list; one with the check but without the list (an
  // agent that predates it, or a run that did not finish) makes it unknown. Null: unknown.
  std::shared_ptr<const meshprobe::v1::PodNetnsCaptures> pod_netns;
  google::protobuf::Timestamp pod_netns_time;
};

// One node's pod netns list, as StateSnapshot::podNetnsByNode() gives it.
struct NodePodNetns {
  std::string node;
  bool up = false;                   // heard from within stale_after (a down node's list is its last word)
  google::protobuf::Timestamp time;  // the time of the report that carried the list
  std::shared_ptr<const meshprobe::v1::PodNetnsCaptures> captures;  // never null here
};

// Index of the probe layers with rows.
inline constexpr size_t kUnderlayRows = 0;
inline constexpr size_t kOverlayRows = 1;
inline int rowLayerIndex(meshprobe::v1::Layer layer) {
  return layer == meshprobe::v1::UNDERLAY ? 0 : layer == meshprobe::v1::OVERLAY ? 1 : -1;
}

struct StateSnapshot;

// LayerView over one layer of a snapshot; lives inside the snapshot (see layerView()).
class SnapshotLayerView final : public LayerView {
 public:
  uint32_t size() const override;
  meshprobe::v1::Cell::State state(uint32_t src, uint32_t dst) const override;
  const std::vector<CellPair>& failing() const override { return failing_; }
  uint32_t measuredPeers(uint32_t x) const override;
  const meshprobe::v1::ProbeResult* detail(uint32_t src, uint32_t dst) const override;
  const std::vector<CellPair>& detailed() const override { return detailed_; }

 private:
  friend class ClusterState;
  const StateSnapshot* snap_ = nullptr;
  size_t layer_ = 0;
  std::vector<CellPair> failing_;   // up sources only, sorted
  std::vector<CellPair> detailed_;  // up sources only, sorted
};

struct StateSnapshot {
  uint64_t generation = 0;  // equal generations: equal content
  std::chrono::steady_clock::time_point built;
  // When the next up node goes stale if it stays silent (the snapshot is out of date then).
  std::chrono::steady_clock::time_point next_stale;

  // Per node, in the matrix order (sorted by name): index 0 .. size()-1.
  std::vector<uint32_t> slots;                        // index -> slot
  std::vector<std::shared_ptr<const NodeInfo>> nodes;  // index -> facts and evidence
  std::vector<uint8_t> up;                             // index -> heard within stale_after
  std::array<std::vector<std::shared_ptr<const Row>>, 2> rows;  // [layer][index], may be null
  std::array<std::vector<uint32_t>, 2> reachable;               // [layer][index] (0 for a down source)
  std::array<SnapshotLayerView, 2> views;                       // [layer]: see layerView()
  std::vector<meshprobe::v1::Cell::State> istiod;                     // index -> ISTIOD cell state
  std::vector<VxlanMismatch> vxlan_mismatches;

  // By slot: the index (UINT32_MAX: no member) and the ingest stamp the slot was assigned at
  // (a row written before that holds an earlier occupant's cell there).
  std::vector<uint32_t> index_of_slot;
  std::vector<uint64_t> slot_stamp;

  uint32_t size() const { return static_cast<uint32_t>(slots.size()); }
  const std::string& name(uint32_t index) const { return nodes[index]->summary.name(); }
  // Index of a member by name (binary search over the sorted order).
  std::optional<uint32_t> indexOf(std::string_view name) const;

  // A probe-layer cell (layer 0 underlay, 1 overlay) as the matrix shows it.
  PackedCell packed(size_t layer, uint32_t src, uint32_t dst) const;
  meshprobe::v1::Cell::State state(size_t layer, uint32_t src, uint32_t dst) const;
  const meshprobe::v1::ProbeResult* detail(size_t layer, uint32_t src, uint32_t dst) const;
  // The whole matrix cell (UNDERLAY/OVERLAY: src != dst; ISTIOD: dst ignored).
  meshprobe::v1::Cell cell(meshprobe::v1::Layer layer, uint32_t src, uint32_t dst) const;
  meshprobe::v1::NodeSummary summary(uint32_t index) const;
  // A node's pod netns list (NodeInfo::pod_netns): null when unknown.
  const meshprobe::v1::PodNetnsCaptures* podNetns(uint32_t index) const { return nodes[index]->pod_netns.get(); }
  // Every member whose pod netns list is known, in name order (down ones with up = false).
  std::vector<NodePodNetns> podNetnsByNode() const;
  // Every probe of a node's last report the state keeps, per layer in name order: the full
  // result for cells with details, one rebuilt from the packed cell for healthy ones.
  std::vector<meshprobe::v1::ProbeResult> probes(uint32_t index) const;
};

// A layer's view that keeps the whole snapshot alive.
inline std::shared_ptr<const LayerView> layerView(const std::shared_ptr<const StateSnapshot>& snapshot, size_t layer) {
  return std::shared_ptr<const LayerView>(snapshot, &snapshot->views[layer]);
}

}  // namespace meshprobe::aggregator
