#pragma once
// One matrix cell in 8 bytes, and the per-source row of them.
//
// PackedCell keeps what the matrix shows of a probe result, quantised:
//   state       Cell::State as classifyProbe() said at ingest (on the full ProbeResult, so
//               RTT-p99 DEGRADED and the consecutive-failures FAIL are exact), or UNKNOWN
//               when the probe is older than the source's coverage window;
//   present     the source's latest report had a probe for this cell (else the cell has no
//               numbers and is UNKNOWN, as before);
//   loss        the window loss (ProbeResult.loss) in 1/255 steps, rounded;
//   rtt_p50     in 10 µs units, saturating at 65,535 (655.35 ms: anything slower reads as
//               655.35 ms; the state was classified before quantising);
//   last_probe  ProbeResult.last_probe in unix seconds (uint32: until 2106), 0 = not sent.
//               The one field written in place in a row a snapshot may hold (see
//               Row::refreshLastProbe), so it is read and written atomically.
// A cell that needs explaining keeps its full ProbeResult beside the row (Row::details);
// a healthy one is these 8 bytes only.

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "meshprobe/v1/collector.pb.h"
#include "meshprobe/v1/query.pb.h"

namespace meshprobe::aggregator {

struct PackedCell {
  static constexpr uint8_t kStateMask = 0x07;
  static constexpr uint8_t kPresent = 0x80;

  uint8_t bits = 0;  // state (low 3 bits) | kPresent
  uint8_t loss = 0;
  uint16_t rtt_p50 = 0;
  uint32_t last_probe = 0;

  bool present() const { return (bits & kPresent) != 0; }
  meshprobe::v1::Cell::State state() const {
    return present() ? static_cast<meshprobe::v1::Cell::State>(bits & kStateMask) : meshprobe::v1::Cell::UNKNOWN;
  }
  double lossRatio() const { return loss / 255.0; }
  // Same state, presence, loss and RTT step: only last_probe may differ.
  bool sameMeasure(const PackedCell& o) const { return bits == o.bits && loss == o.loss && rtt_p50 == o.rtt_p50; }
};
static_assert(sizeof(PackedCell) == 8, "a cell is 8 bytes");

// `probe` quantised, with the state the caller classified.
PackedCell packProbe(const meshprobe::v1::ProbeResult& probe, meshprobe::v1::Cell::State state);

// Whether a probe result must be kept whole: its state is not OK, it missed probes in a row,
// it carries an error or a failure reason, or its path-MTU probes miss. These are every
// field of a probe the diagnosis rules read beyond the cell's state.
bool needsDetail(const meshprobe::v1::ProbeResult& probe, meshprobe::v1::Cell::State state);

// A healthy cell as a ProbeResult: dst, layer, loss, rtt_p50, last_probe and
// last_success (= last_probe: a healthy cell's last probe was answered), sent = received = 1
// (a healthy cell keeps no counts; 1/1 says "answered"), nothing else.
meshprobe::v1::ProbeResult unpackProbe(const PackedCell& cell, const std::string& dst, meshprobe::v1::Layer layer);

// A run of kCells consecutive cells of a row. Shared between a row and its earlier copies
// (the ones snapshots hold) until one of its cells is written.
struct CellChunk {
  static constexpr uint32_t kCells = 256;  // 2 KiB
  std::array<PackedCell, kCells> cells{};
};

// One source's cells on one layer, indexed by destination slot. Built whole from each of
// the source's reports, or changed by a delta; immutable once a snapshot holds it
// (copy-on-write). The cells are kept in chunks so that a copy of the row shares them: a
// delta that changes a few cells copies those cells' chunks, not the whole row (which is
// 8 bytes x the cluster's size).
struct Row {
  uint64_t stamp = 0;  // the ingest counter when written (see ClusterState)
  // Full results of the cells that need explaining, sorted by dst slot.
  std::vector<std::pair<uint32_t, meshprobe::v1::ProbeResult>> details;
  std::vector<uint32_t> failing;  // dst slots in state FAIL, sorted
  uint32_t reachable = 0;         // cells OK or DEGRADED (to members at ingest)

  // Slots [0, size()) may hold cells; at(slot) of any other slot is absent.
  uint32_t size() const { return width_; }
  PackedCell at(uint32_t dst_slot) const {
    if (dst_slot >= width_) return PackedCell{};
    const auto& chunk = chunks_[dst_slot / CellChunk::kCells];
    if (!chunk) return PackedCell{};
    PackedCell& c = chunk->cells[dst_slot % CellChunk::kCells];
    PackedCell out;
    out.bits = c.bits;
    out.loss = c.loss;
    out.rtt_p50 = c.rtt_p50;
    out.last_probe = std::atomic_ref<uint32_t>(c.last_probe).load(std::memory_order_relaxed);
    return out;
  }
  // The cell of `dst_slot` (< size()) to write: its chunk is copied first when another row
  // shares it. Call only on a row no snapshot holds.
  PackedCell& mutableAt(uint32_t dst_slot);
  // Sets the last_probe of the present cell of `dst_slot` (< size()) in place, in the chunk
  // this row may share with its earlier copies, which so see it too: a result re-sent
  // unchanged but for its probe time (the agents' digest) costs no copy. Every other field
  // of a shared chunk is immutable, and readers load last_probe atomically (at()). Call
  // with the ingest lock held (one writer).
  void refreshLastProbe(uint32_t dst_slot, uint32_t last_probe);
  // Every cell absent, size() = `width`.
  void clear(uint32_t width);
  // size() at least `width`; the cells kept.
  void grow(uint32_t width);
  const meshprobe::v1::ProbeResult* detail(uint32_t dst_slot) const;
  // Heap bytes held (the cells' and the details' storage; a chunk shared with another row
  // is counted in both).
  size_t bytes() const;

 private:
  uint32_t width_ = 0;
  std::vector<std::shared_ptr<CellChunk>> chunks_;  // null: every cell of the chunk absent
};

}  // namespace meshprobe::aggregator
