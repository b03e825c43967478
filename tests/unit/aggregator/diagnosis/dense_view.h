#pragma once
// A LayerView for tests: a dense N×N grid of states set by hand, each FAIL cell with a
// probe result behind it ("timeout after 800ms", 4 missed in a row) unless given one.
// Call seal() after the last set(); the view is then what a cluster state would publish.

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "aggregator/state/layer_view.h"

namespace meshprobe::aggregator::testing {

class DenseView final : public LayerView {
 public:
  using State = meshprobe::v1::Cell::State;
  DenseView(meshprobe::v1::Layer layer, uint32_t n, State fill = meshprobe::v1::Cell::OK)
      : layer_(layer), n_(n), state_(static_cast<size_t>(n) * n, fill) {}

  DenseView& set(uint32_t s, uint32_t d, State st, std::optional<meshprobe::v1::ProbeResult> probe = std::nullopt) {
    state_[static_cast<size_t>(s) * n_ + d] = st;
    if (probe) details_[{s, d}] = *probe;
    return *this;
  }
  DenseView& fail(uint32_t s, uint32_t d) { return set(s, d, meshprobe::v1::Cell::FAIL); }
  DenseView& failNode(uint32_t x) {
    for (uint32_t y = 0; y < n_; ++y) {
      if (y != x) fail(x, y).fail(y, x);
    }
    return *this;
  }

  std::shared_ptr<const LayerView> seal() {
    failing_.clear();
    detailed_.clear();
    measured_.assign(n_, 0);
    for (uint32_t s = 0; s < n_; ++s) {
      for (uint32_t d = 0; d < n_; ++d) {
        if (s == d) continue;
        const State st = state(s, d);
        if (st == meshprobe::v1::Cell::FAIL) {
          failing_.emplace_back(s, d);
          if (!details_.count({s, d})) details_[{s, d}] = timeout(s, d);
        }
        if (s < d && (known(st) || known(state(d, s)))) {
          ++measured_[s];
          ++measured_[d];
        }
      }
    }
    for (const auto& [k, p] : details_) detailed_.push_back(k);
    return std::make_shared<const DenseView>(*this);
  }

  uint32_t size() const override { return n_; }
  State state(uint32_t s, uint32_t d) const override {
    if (s >= n_ || d >= n_ || s == d) return meshprobe::v1::Cell::UNKNOWN;
    return state_[static_cast<size_t>(s) * n_ + d];
  }
  const std::vector<CellPair>& failing() const override { return failing_; }
  uint32_t measuredPeers(uint32_t x) const override {
    ++measured_calls_;
    return measured_.at(x);
  }
  // How often the rules asked for a node's measured peers: in the cluster state's view
  // each answer walks the node's row and column.
  size_t measuredCalls() const { return measured_calls_; }
  const meshprobe::v1::ProbeResult* detail(uint32_t s, uint32_t d) const override {
    auto it = details_.find({s, d});
    return it == details_.end() ? nullptr : &it->second;
  }
  const std::vector<CellPair>& detailed() const override { return detailed_; }

 private:
  mutable size_t measured_calls_ = 0;
  static bool known(State s) {
    return s != meshprobe::v1::Cell::UNKNOWN && s != meshprobe::v1::Cell::STATE_UNSPECIFIED;
  }
  meshprobe::v1::ProbeResult timeout(uint32_t, uint32_t d) const {
    meshprobe::v1::ProbeResult p;
    p.set_dst("n" + std::to_string(d));
    p.set_layer(layer_);
    p.set_sent(10);
    p.set_loss(1.0);
    p.set_consecutive_failures(4);
    p.set_error("timeout after 800ms");
    return p;
  }

  meshprobe::v1::Layer layer_;
  uint32_t n_;
  std::vector<State> state_;
  std::vector<CellPair> failing_, detailed_;
  std::vector<uint32_t> measured_;
  std::map<CellPair, meshprobe::v1::ProbeResult> details_;
};

}  // namespace meshprobe::aggregator::testing
