#include "aggregator/state/packed_cell.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <cmath>

namespace meshprobe::aggregator {

namespace v1 = meshprobe::v1;
using google::protobuf::util::TimeUtil;

namespace {

// The RTT scale: code k (1..1023) is 1 µs × R^(k-1), R = 10^(7/1022), so code 1023 is 10 s,
// read back to three significant digits (a measured 200 µs reads 200 µs, not 200.157 µs;
// the steps are wider than that rounding, so each code still reads as its own value).
struct RttScale {
  std::array<int64_t, PackedCell::kRttCodes> nanos{};
  // upper[k]: the geometric midpoint between code k and k + 1 (k = 1..1022); a time below
  // it rounds to code k or less.
  std::array<double, PackedCell::kRttCodes> upper{};
  RttScale() {
    const double step = std::log(10.0) * 7.0 / (PackedCell::kRttCodes - 2);
    for (uint16_t k = 1; k < PackedCell::kRttCodes; ++k) {
      const double exact = 1000.0 * std::exp(step * (k - 1));
      const double unit = std::pow(10.0, std::floor(std::log10(exact)) - 2);
      nanos[k] = std::llround(std::round(exact / unit) * unit);
      upper[k] = 1000.0 * std::exp(step * (k - 0.5));
    }
  }
};
const RttScale& rttScale() {
  static const RttScale scale;
  return scale;
}

constexpr uint32_t kStateBits = 3, kLossBits = 5, kRttBits = 10;
constexpr uint32_t kLossShift = kStateBits, kRttShift = kLossShift + kLossBits, kTimeShift = kRttShift + kRttBits;
static_assert(kTimeShift + 14 == 32, "a cell is one 32-bit word");
static_assert(PackedCell::kLossSteps < (1u << kLossBits) && PackedCell::kRttCodes == (1u << kRttBits));
static_assert(v1::Cell::State_MAX + 1 < (1 << kStateBits), "1 + state fits in the state bits");

}  // namespace

std::chrono::nanoseconds PackedCell::rttP50() const { return std::chrono::nanoseconds(rttNanos(rtt)); }

uint16_t rttCode(int64_t ns) {
  if (ns <= 0) return 0;
  const auto& upper = rttScale().upper;
  // The first code whose upper bound is above ns; the last code takes everything slower.
  const auto it = std::upper_bound(upper.begin() + 1, upper.end() - 1, static_cast<double>(ns));
  return static_cast<uint16_t>(it - upper.begin());
}

int64_t rttNanos(uint16_t code) { return code < PackedCell::kRttCodes ? rttScale().nanos[code] : 0; }

PackedCell packProbe(const v1::ProbeResult& probe, v1::Cell::State state) {
  PackedCell c;
  c.bits = static_cast<uint8_t>(PackedCell::kPresent | (static_cast<uint8_t>(state) & PackedCell::kStateMask));
  const double loss = std::clamp(probe.loss(), 0.0, 1.0);
  // Rounded, but a loss never reads as none: with a window of more than 62 probes one
  // lost probe is below half a step.
  c.loss = static_cast<uint8_t>(loss > 0 ? std::max(1L, std::lround(loss * PackedCell::kLossSteps)) : 0);
  if (probe.has_rtt_p50()) c.rtt = rttCode(TimeUtil::DurationToNanoseconds(probe.rtt_p50()));
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
  *p.mutable_rtt_p50() = TimeUtil::NanosecondsToDuration(rttNanos(cell.rtt));
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

uint32_t Row::encode(const PackedCell& c, uint32_t time_base) {
  if (!c.present()) return 0;
  uint32_t w = 1u + (c.bits & PackedCell::kStateMask);  // 1 + state: 0 is absent
  w |= static_cast<uint32_t>(std::min<uint8_t>(c.loss, PackedCell::kLossSteps)) << kLossShift;
  w |= static_cast<uint32_t>(c.rtt & (PackedCell::kRttCodes - 1)) << kRttShift;
  if (c.last_probe != 0) {
    // Older than the base: reads as the base (see Row).
    const uint32_t off = c.last_probe >= time_base ? std::min(c.last_probe - time_base, kTimeSpan) : 0;
    w |= (off + 1) << kTimeShift;
  }
  return w;
}

PackedCell Row::decode(uint32_t w, uint32_t time_base) {
  PackedCell c;
  if (w == 0) return c;
  c.bits = static_cast<uint8_t>(PackedCell::kPresent | ((w & ((1u << kStateBits) - 1)) - 1));
  c.loss = static_cast<uint8_t>((w >> kLossShift) & ((1u << kLossBits) - 1));
  c.rtt = static_cast<uint16_t>((w >> kRttShift) & ((1u << kRttBits) - 1));
  const uint32_t t = w >> kTimeShift;
  c.last_probe = t == 0 ? 0 : time_base + (t - 1);
  return c;
}

std::array<uint32_t, CellChunk::kCells>& Row::mutableWords(uint32_t chunk_index) {
  auto& chunk = chunks_[chunk_index];
  if (!chunk) {
    chunk = std::make_shared<CellChunk>();
  } else if (chunk.use_count() > 1) {
    chunk = std::make_shared<CellChunk>(*chunk);  // an earlier copy of the row holds it
  }
  return chunk->words;
}

void Row::set(uint32_t dst_slot, const PackedCell& cell) {
  if (cell.present() && cell.last_probe > time_base_ && cell.last_probe - time_base_ > kTimeSpan) {
    rebase(cell.last_probe);
  }
  mutableWords(dst_slot / CellChunk::kCells)[dst_slot % CellChunk::kCells] = encode(cell, time_base_);
}

bool Row::refreshLastProbe(uint32_t dst_slot, uint32_t last_probe) {
  if (!holdsTime(last_probe)) return false;
  uint32_t& w = chunks_[dst_slot / CellChunk::kCells]->words[dst_slot % CellChunk::kCells];
  PackedCell c = decode(std::atomic_ref<uint32_t>(w).load(std::memory_order_relaxed), time_base_);
  c.last_probe = last_probe;
  std::atomic_ref<uint32_t>(w).store(encode(c, time_base_), std::memory_order_relaxed);
  return true;
}

void Row::rebase(uint32_t newest) {
  const uint32_t base = newest > kTimeKept ? newest - kTimeKept : 0;
  for (uint32_t i = 0; i < chunks_.size(); ++i) {
    if (!chunks_[i]) continue;
    std::array<PackedCell, CellChunk::kCells> cells;
    for (uint32_t k = 0; k < CellChunk::kCells; ++k) cells[k] = decode(chunks_[i]->words[k], time_base_);
    auto& words = mutableWords(i);
    for (uint32_t k = 0; k < CellChunk::kCells; ++k) words[k] = encode(cells[k], base);
  }
  time_base_ = base;
}

void Row::clear(uint32_t width) {
  width_ = width;
  time_base_ = 0;  // no cell left: the next time written sets it
  chunks_.resize((width + CellChunk::kCells - 1) / CellChunk::kCells);
  for (auto& chunk : chunks_) {
    if (chunk && chunk.use_count() == 1) {
      chunk->words.fill(0);  // ours alone: reuse it
    } else {
      chunk.reset();
    }
  }
}

void Row::grow(uint32_t width) {
  if (width <= width_) return;
  // A chunk past the old size is all absent: the cells beyond width_ in the last chunk were
  // never written (clear() empties them, set() is only called below size()).
  width_ = width;
  chunks_.resize((width + CellChunk::kCells - 1) / CellChunk::kCells);
}

size_t Row::bytes() const {
  size_t b = sizeof(Row) + chunks_.capacity() * sizeof(chunks_[0]) + failing.capacity() * sizeof(uint32_t) +
             details.capacity() * sizeof(details[0]);
  for (const auto& chunk : chunks_) b += chunk ? CellChunk::kAllocBytes : 0;
  for (const auto& [slot, p] : details) b += p.SpaceUsedLong() - sizeof(p);
  return b;
}

}  // namespace meshprobe::aggregator
