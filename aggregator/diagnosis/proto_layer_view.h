#pragma once
// A LayerView over a protobuf matrix (GetMatrixResponse of UNDERLAY or OVERLAY) plus the
// nodes' probe lists: what diagnose(const ClusterSnapshot&) hands the rules, so hand-built
// snapshots (unit tests, tools) and the cluster state's dense snapshot go through the same
// rules. Building one walks every cell of the matrix (O(nodes²)): it is the compatibility
// path, not the aggregator's pass.
//
// The node order is `nodes` (sorted by name). Cells naming a node not in `nodes` are
// ignored, as is a node's row while it is down (the view shows UNKNOWN there, like the
// cluster state does for a source that stopped reporting). A cell's detail is its source's
// first probe result of this layer to that destination, kept when the cell needs
// explaining (needsDetail()).
//
// The view points into `nodes[i].probes`: they must outlive it. Immutable once built.

#include <cstdint>
#include <vector>

#include "aggregator/diagnosis/rules.h"
#include "aggregator/state/layer_view.h"
#include "meshprobe/v1/collector.pb.h"
#include "meshprobe/v1/query.pb.h"

namespace meshprobe::aggregator {

// Whether the probe result behind a cell in `state` is a detail (LayerView::detail): the
// state is not OK, or the probe has misses in a row, an error, a failure reason, or missed
// path-MTU (DF) probes.
bool needsDetail(meshprobe::v1::Cell::State state, const meshprobe::v1::ProbeResult& probe);

// The inverse: `input` as a hand-built protobuf snapshot — every cell of both probe
// layers with its view's state, each detail as its source's probe result, one ISTIOD cell
// per node. O(nodes²): for tests and benchmarks that compare the two diagnose() paths.
ClusterSnapshot snapshotOfInput(const DiagnosisInput& input);

class ProtoLayerView final : public LayerView {
 public:
  ProtoLayerView(const meshprobe::v1::GetMatrixResponse& matrix, meshprobe::v1::Layer layer,
                 const std::vector<NodeEvidence>& nodes);

  uint32_t size() const override { return n_; }
  meshprobe::v1::Cell::State state(uint32_t src, uint32_t dst) const override;
  const std::vector<CellPair>& failing() const override { return failing_; }
  uint32_t measuredPeers(uint32_t x) const override { return x < n_ ? measured_[x] : 0; }
  const meshprobe::v1::ProbeResult* detail(uint32_t src, uint32_t dst) const override;
  const std::vector<CellPair>& detailed() const override { return detailed_; }

 private:
  uint32_t n_ = 0;
  std::vector<uint8_t> state_;  // [src * n + dst], a Cell::State
  std::vector<CellPair> failing_;
  std::vector<uint32_t> measured_;
  std::vector<CellPair> detailed_;                          // sorted
  std::vector<const meshprobe::v1::ProbeResult*> details_;  // parallel to detailed_
};

}  // namespace meshprobe::aggregator
