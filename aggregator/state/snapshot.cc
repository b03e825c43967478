#include "aggregator/state/snapshot.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>

#include "aggregator/matrix.h"

namespace meshprobe::aggregator {

namespace v1 = meshprobe::v1;
using google::protobuf::util::TimeUtil;

std::optional<uint32_t> StateSnapshot::indexOf(std::string_view name) const {
  uint32_t lo = 0, hi = size();
  while (lo < hi) {
    const uint32_t mid = lo + (hi - lo) / 2;
    if (this->name(mid) < name) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  if (lo < size() && this->name(lo) == name) return lo;
  return std::nullopt;
}

namespace {

// The row of (layer, src) and the dst slot, when the cell at that slot is src's view of dst
// (not an earlier occupant's): else nullptr.
const Row* rowFor(const StateSnapshot& s, size_t layer, uint32_t src, uint32_t dst, uint32_t* slot) {
  if (src >= s.size() || dst >= s.size() || src == dst) return nullptr;
  const Row* row = s.rows[layer][src].get();
  if (row == nullptr) return nullptr;
  *slot = s.slots[dst];
  if (s.slot_stamp[*slot] >= row->stamp) return nullptr;
  return row;
}

}  // namespace

PackedCell StateSnapshot::packed(size_t layer, uint32_t src, uint32_t dst) const {
  uint32_t slot = 0;
  const Row* row = rowFor(*this, layer, src, dst, &slot);
  return row ? row->at(slot) : PackedCell{};
}

v1::Cell::State StateSnapshot::state(size_t layer, uint32_t src, uint32_t dst) const {
  if (src >= size() || !up[src]) return v1::Cell::UNKNOWN;
  return packed(layer, src, dst).state();
}

const v1::ProbeResult* StateSnapshot::detail(size_t layer, uint32_t src, uint32_t dst) const {
  uint32_t slot = 0;
  const Row* row = rowFor(*this, layer, src, dst, &slot);
  return row ? row->detail(slot) : nullptr;
}

v1::NodeSummary StateSnapshot::summary(uint32_t index) const {
  v1::NodeSummary s = nodes[index]->summary;
  s.set_up(up[index] != 0);
  return s;
}

v1::Cell StateSnapshot::cell(v1::Layer layer, uint32_t src, uint32_t dst) const {
  v1::Cell c;
  const NodeInfo& info = *nodes[src];
  c.set_src(info.summary.name());
  c.set_layer(layer);
  c.set_state(v1::Cell::UNKNOWN);
  if (layer == v1::ISTIOD) {
    c.set_dst(std::string(kIstiodDst));
    if (!info.has_report) return c;
    if (info.istiod_from_probe) {
      *c.mutable_rtt() = info.istiod_probe.rtt_p50();
      c.set_loss(info.istiod_probe.loss());
      *c.mutable_last_update() = info.report_time;
    } else if (info.has_istiod_check) {
      *c.mutable_last_update() = info.report_time;
    }
    c.set_state(istiod[src]);
    return c;
  }
  c.set_dst(name(dst));
  const size_t l = static_cast<size_t>(rowLayerIndex(layer));
  const PackedCell p = packed(l, src, dst);
  if (!p.present()) return c;
  // A detailed cell shows its exact numbers; a healthy one its packed ones.
  if (const v1::ProbeResult* d = detail(l, src, dst)) {
    *c.mutable_rtt() = d->rtt_p50();
    c.set_loss(d->loss());
  } else {
    *c.mutable_rtt() = TimeUtil::NanosecondsToDuration(p.rttP50().count());
    c.set_loss(p.lossRatio());
  }
  *c.mutable_last_update() = info.report_time;
  if (up[src]) c.set_state(p.state());
  return c;
}

std::vector<v1::ProbeResult> StateSnapshot::probes(uint32_t index) const {
  std::vector<v1::ProbeResult> out;
  const NodeInfo& info = *nodes[index];
  if (!info.has_report) return out;
  for (size_t l = 0; l < 2; ++l) {
    const v1::Layer layer = l == kUnderlayRows ? v1::UNDERLAY : v1::OVERLAY;
    for (uint32_t j = 0; j < size(); ++j) {
      const PackedCell p = packed(l, index, j);
      if (!p.present()) continue;
      if (const v1::ProbeResult* d = detail(l, index, j)) {
        out.push_back(*d);
      } else {
        out.push_back(unpackProbe(p, name(j), layer));
      }
    }
  }
  if (info.istiod_from_probe) out.push_back(info.istiod_probe);
  out.insert(out.end(), info.other_probes.begin(), info.other_probes.end());
  return out;
}

uint32_t SnapshotLayerView::size() const { return snap_->size(); }

v1::Cell::State SnapshotLayerView::state(uint32_t src, uint32_t dst) const { return snap_->state(layer_, src, dst); }

uint32_t SnapshotLayerView::measuredPeers(uint32_t x) const {
  const uint32_t n = snap_->size();
  if (x >= n) return 0;
  uint32_t count = 0;
  for (uint32_t y = 0; y < n; ++y) {
    if (y == x) continue;
    if (snap_->state(layer_, x, y) != v1::Cell::UNKNOWN || snap_->state(layer_, y, x) != v1::Cell::UNKNOWN) ++count;
  }
  return count;
}

const v1::ProbeResult* SnapshotLayerView::detail(uint32_t src, uint32_t dst) const {
  if (src >= snap_->size() || !snap_->up[src]) return nullptr;
  return snap_->detail(layer_, src, dst);
}

std::vector<NodePodNetns> StateSnapshot::podNetnsByNode() const {
  std::vector<NodePodNetns> out;
  for (uint32_t i = 0; i < size(); ++i) {
    const NodeInfo& info = *nodes[i];
    if (!info.pod_netns) continue;
    out.push_back(NodePodNetns{name(i), up[i] != 0, info.pod_netns_time, info.pod_netns});
  }
  return out;
}

}  // namespace meshprobe::aggregator
