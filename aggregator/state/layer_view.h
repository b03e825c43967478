#pragma once
// What the diagnosis rules read of one probe layer's matrix (UNDERLAY or OVERLAY), over
// the node order of the snapshot it belongs to (sorted by name, index 0 .. size()-1).
//
// The cluster state keeps a layer as dense per-source rows of packed cells; the rules must
// not walk N² cells to find the few that fail, so a view answers the questions the rules
// ask directly: which cells fail (sparse, sorted), how many peers a node is measured with,
// and the full probe result behind a cell that is not healthy. Implementations:
//   - the cluster state's published snapshot (production, aggregator/state/),
//   - ProtoLayerView over a GetMatrixResponse plus the nodes' probe lists
//     (aggregator/diagnosis/proto_layer_view.h: hand-built snapshots in tests, and any
//     caller that already has the protobuf matrix).
// A view is immutable once built and safe to read from several threads.

#include <cstdint>
#include <utility>
#include <vector>

#include "meshprobe/v1/collector.pb.h"
#include "meshprobe/v1/query.pb.h"

namespace meshprobe::aggregator {

using CellPair = std::pair<uint32_t, uint32_t>;  // (src index, dst index)

class LayerView {
 public:
  virtual ~LayerView() = default;

  // Number of nodes (rows = columns).
  virtual uint32_t size() const = 0;
  // The cell's state as the matrix shows it: UNKNOWN for src == dst, for a source that is
  // down or has not reported, and for a cell nobody probed within its coverage window.
  virtual meshprobe::v1::Cell::State state(uint32_t src, uint32_t dst) const = 0;
  // Every cell in state FAIL, sorted by (src, dst). A healthy cluster has none.
  virtual const std::vector<CellPair>& failing() const = 0;
  // Distinct peers y != x with a known (not UNKNOWN) cell x->y or y->x.
  virtual uint32_t measuredPeers(uint32_t x) const = 0;
  // The source's full probe result behind a cell that needs explaining — state not OK,
  // misses in a row, an error, a failure reason, or path-MTU probes missing — and nullptr
  // for a healthy cell (its numbers are in the packed cell only).
  virtual const meshprobe::v1::ProbeResult* detail(uint32_t src, uint32_t dst) const = 0;
  // Every cell with a detail, sorted by (src, dst) (the path-MTU rule walks these).
  virtual const std::vector<CellPair>& detailed() const = 0;
};

}  // namespace meshprobe::aggregator
