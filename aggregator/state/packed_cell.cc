#include "aggregator/state/packed_cell.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <cmath>

namespace meshprobe::aggregator {

namespace v1 = meshprobe::v1;
using google::protobuf::util::TimeUtil;

PackedCell packProbe(const v1::ProbeResult& probe, v1::Cell::State state) {
  PackedCell c;
  c.bits = static_cast<uint8_t>(PackedCell::kPresent | (static_cast<uint8_t>(state) & PackedCell::kStateMask));
  const double loss = std::clamp(probe.loss(), 0.0, 1.0);
  c.loss = static_cast<uint8_t>(std::lround(loss * 255.0));
  if (probe.has_rtt_p50()) {
    const int64_t ns = TimeUtil::DurationToNanoseconds(probe.rtt_p50());
    const int64_t units = ns <= 0 ? 0 : (ns + 5'000) / 10'000;  // 10 µs, rounded
    c.rtt_p50 = static_cast<uint16_t>(std::min<int64_t>(units, UINT16_MAX));
  }
  if (probe.has_last_probe()) {
    const int64_t s = probe.last_probe().seconds();
    c.last_probe = static_cast<uint32_t>(std::clamp<int64_t>(s, 0, UINT32_MAX));
  }
  return c;
}

bool needsDetail(const v1::ProbeResult& p, v1::Cell::State state) {
  if (state != v1::Cell::OK) return true;
  if (p.consecutive_failures() > 0 || !p.error().empty()) return true;
  if (p.failure() != v1::PROBE_FAILURE_UNSPECIFIED || p.tcp_failure() != v1::PROBE_FAILURE_UNSPECIFIED) return true;
  if (p.has_path_mtu()) {
    const auto& m = p.path_mtu();
    if (m.consecutive_failures() > 0 || m.sent() > m.received()) return true;
  }
  return false;
}

v1::ProbeResult unpackProbe(const PackedCell& cell, const std::string& dst, v1::Layer layer) {
  v1::ProbeResult p;
  p.set_dst(dst);
  p.set_layer(layer);
  p.set_sent(1);
  p.set_received(1);
  p.set_loss(cell.lossRatio());
  *p.mutable_rtt_p50() = TimeUtil::NanosecondsToDuration(static_cast<int64_t>(cell.rtt_p50) * 10'000);
  if (cell.last_probe != 0) {
    *p.mutable_last_probe() = TimeUtil::SecondsToTimestamp(cell.last_probe);
    *p.mutable_last_success() = p.last_probe();
  }
  return p;
}

const v1::ProbeResult* Row::detail(uint32_t dst_slot) const {
  auto it = std::lower_bound(details.begin(), details.end(), dst_slot,
                             [](const auto& d, uint32_t slot) { return d.first < slot; });
  return it != details.end() && it->first == dst_slot ? &it->second : nullptr;
}

PackedCell& Row::mutableAt(uint32_t dst_slot) {
  auto& chunk = chunks_[dst_slot / CellChunk::kCells];
  if (!chunk) {
    chunk = std::make_shared<CellChunk>();
  } else if (chunk.use_count() > 1) {
    chunk = std::make_shared<CellChunk>(*chunk);  // an earlier copy of the row holds it
  }
  return chunk->cells[dst_slot % CellChunk::kCells];
}

void Row::refreshLastProbe(uint32_t dst_slot, uint32_t last_probe) {
  PackedCell& c = chunks_[dst_slot / CellChunk::kCells]->cells[dst_slot % CellChunk::kCells];
  std::atomic_ref<uint32_t>(c.last_probe).store(last_probe, std::memory_order_relaxed);
}

void Row::clear(uint32_t width) {
  width_ = width;
  chunks_.resize((width + CellChunk::kCells - 1) / CellChunk::kCells);
  for (auto& chunk : chunks_) {
    if (chunk && chunk.use_count() == 1) {
      chunk->cells.fill(PackedCell{});  // ours alone: reuse it
    } else {
      chunk.reset();
    }
  }
}

void Row::grow(uint32_t width) {
  if (width <= width_) return;
  // A chunk past the old size is all absent: the cells beyond width_ in the last chunk were
  // never written (clear() empties them, mutableAt() is only called below size()).
  width_ = width;
  chunks_.resize((width + CellChunk::kCells - 1) / CellChunk::kCells);
}

size_t Row::bytes() const {
  size_t b = sizeof(Row) + chunks_.capacity() * sizeof(chunks_[0]) + failing.capacity() * sizeof(uint32_t) +
             details.capacity() * sizeof(details[0]);
  for (const auto& chunk : chunks_) b += chunk ? sizeof(CellChunk) : 0;
  for (const auto& [slot, p] : details) b += p.SpaceUsedLong() - sizeof(p);
  return b;
}

}  // namespace meshprobe::aggregator
