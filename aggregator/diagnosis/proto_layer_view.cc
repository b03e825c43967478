#include "aggregator/diagnosis/proto_layer_view.h"

#include <algorithm>
#include <string>
#include <unordered_map>
#include <utility>

#include "aggregator/matrix.h"

namespace meshprobe::aggregator {

namespace v1 = meshprobe::v1;

bool needsDetail(v1::Cell::State state, const v1::ProbeResult& p) {
  return state != v1::Cell::OK || p.consecutive_failures() > 0 || !p.error().empty() ||
         p.failure() != v1::PROBE_FAILURE_UNSPECIFIED || p.tcp_failure() != v1::PROBE_FAILURE_UNSPECIFIED ||
         (p.has_path_mtu() && p.path_mtu().consecutive_failures() > 0);
}

namespace {

bool known(uint8_t s) { return s != v1::Cell::UNKNOWN && s != v1::Cell::STATE_UNSPECIFIED; }

}  // namespace

ProtoLayerView::ProtoLayerView(const v1::GetMatrixResponse& matrix, v1::Layer layer,
                               const std::vector<NodeEvidence>& nodes)
    : n_(static_cast<uint32_t>(nodes.size())) {
  std::unordered_map<std::string, uint32_t> index;
  index.reserve(nodes.size());
  for (uint32_t i = 0; i < n_; ++i) index.emplace(nodes[i].summary.name(), i);
  state_.assign(static_cast<size_t>(n_) * n_, static_cast<uint8_t>(v1::Cell::UNKNOWN));
  for (const auto& c : matrix.cells()) {
    auto s = index.find(c.src()), d = index.find(c.dst());
    if (s == index.end() || d == index.end() || s->second == d->second) continue;
    if (!nodes[s->second].summary.up()) continue;  // a down source's row is UNKNOWN
    state_[static_cast<size_t>(s->second) * n_ + d->second] = static_cast<uint8_t>(c.state());
  }
  measured_.assign(n_, 0);
  for (uint32_t s = 0; s < n_; ++s) {
    for (uint32_t d = 0; d < n_; ++d) {
      const uint8_t st = state_[static_cast<size_t>(s) * n_ + d];
      if (st == v1::Cell::FAIL) failing_.emplace_back(s, d);
      // Each unordered pair once, from its smaller end.
      if (s < d && (known(st) || known(state_[static_cast<size_t>(d) * n_ + s]))) {
        ++measured_[s];
        ++measured_[d];
      }
    }
  }
  for (uint32_t s = 0; s < n_; ++s) {
    if (!nodes[s].summary.up()) continue;
    // A source's probes in its report order; the first one to a destination counts.
    std::vector<std::pair<uint32_t, const v1::ProbeResult*>> row;
    for (const auto& p : nodes[s].probes) {
      if (p.layer() != layer) continue;
      auto d = index.find(p.dst());
      if (d == index.end() || d->second == s) continue;
      row.emplace_back(d->second, &p);
    }
    std::stable_sort(row.begin(), row.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    for (size_t i = 0; i < row.size(); ++i) {
      if (i > 0 && row[i].first == row[i - 1].first) continue;
      if (!needsDetail(state(s, row[i].first), *row[i].second)) continue;
      detailed_.emplace_back(s, row[i].first);
      details_.push_back(row[i].second);
    }
  }
}

v1::Cell::State ProtoLayerView::state(uint32_t src, uint32_t dst) const {
  if (src >= n_ || dst >= n_ || src == dst) return v1::Cell::UNKNOWN;
  const auto s = static_cast<v1::Cell::State>(state_[static_cast<size_t>(src) * n_ + dst]);
  return s == v1::Cell::STATE_UNSPECIFIED ? v1::Cell::UNKNOWN : s;
}

const v1::ProbeResult* ProtoLayerView::detail(uint32_t src, uint32_t dst) const {
  auto it = std::lower_bound(detailed_.begin(), detailed_.end(), CellPair{src, dst});
  if (it == detailed_.end() || *it != CellPair{src, dst}) return nullptr;
  return details_[static_cast<size_t>(it - detailed_.begin())];
}

ClusterSnapshot snapshotOfInput(const DiagnosisInput& input) {
  ClusterSnapshot snap;
  snap.nodes = input.nodes;
  const auto n = static_cast<uint32_t>(input.nodes.size());
  const auto name = [&](uint32_t i) -> const std::string& { return input.nodes[i].summary.name(); };
  const auto fill = [&](v1::GetMatrixResponse& m, const LayerView& view, v1::Layer layer) {
    m.set_layer(layer);
    m.mutable_cells()->Reserve(static_cast<int>(n * (n > 0 ? n - 1 : 0)));
    for (uint32_t s = 0; s < n; ++s) {
      m.add_nodes(name(s));
      for (uint32_t d = 0; d < n; ++d) {
        if (s == d) continue;
        auto* c = m.add_cells();
        c->set_src(name(s));
        c->set_dst(name(d));
        c->set_layer(layer);
        c->set_state(view.state(s, d));
      }
    }
    for (const auto& cell : view.detailed()) {
      v1::ProbeResult p = *view.detail(cell.first, cell.second);
      p.set_dst(name(cell.second));
      p.set_layer(layer);
      snap.nodes[cell.first].probes.push_back(std::move(p));
    }
  };
  if (input.underlay) fill(snap.underlay, *input.underlay, v1::UNDERLAY);
  if (input.overlay) fill(snap.overlay, *input.overlay, v1::OVERLAY);
  snap.istiod.set_layer(v1::ISTIOD);
  for (uint32_t i = 0; i < n; ++i) {
    auto* c = snap.istiod.add_cells();
    c->set_src(name(i));
    c->set_dst(std::string(kIstiodDst));
    c->set_layer(v1::ISTIOD);
    c->set_state(i < input.istiod.size() ? input.istiod[i] : v1::Cell::UNKNOWN);
  }
  snap.vxlan_mismatches = input.vxlan_mismatches;
  return snap;
}

}  // namespace meshprobe::aggregator
