#pragma once
// One matrix cell in 4 bytes, and the per-source row of them.
//
// PackedCell keeps what the matrix shows of a probe result, quantised:
//   state       Cell::State as classifyProbe() said at ingest (on the full ProbeResult, so
//               RTT-p99 DEGRADED and the consecutive-failures FAIL are exact), or UNKNOWN
//               when the probe is older than the source's coverage window;
//   present     the source's latest report had a probe for this cell (else the cell has no
//               numbers and is UNKNOWN, as before);
//   loss        the window loss (ProbeResult.loss) in 1/31 steps, rounded, at least one
//               step when there is any loss;
//   rtt         rtt_p50 on a logarithmic scale of 1,023 steps from 1 µs to 10 s (each step
//               1.59 % above the one before, read back to three significant digits:
//               within 1.3 % of the measured value, 200 µs reads 200 µs; faster
//               reads as 1 µs, slower as 10 s; the state was classified before quantising);
//   last_probe  ProbeResult.last_probe in unix seconds, 0 = not sent.
// That is the value (8 bytes); a Row stores it in one 32-bit word, with last_probe as an
// offset of 14 bits from a base the row keeps (Row::set). last_probe is the one field
// written in place in a row a snapshot may hold (Row::refreshLastProbe), so the word is
// read and written atomically.
// A cell that needs explaining keeps its full ProbeResult beside the row (Row::details);
// a healthy one is these 4 bytes only.

#include <array>
#include <atomic>
#include <chrono>
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
  static constexpr uint8_t kLossSteps = 31;       // loss codes 0..31
  static constexpr uint16_t kRttCodes = 1024;     // rtt codes 0 (none) and 1..1023

  uint8_t bits = 0;  // state (low 3 bits) | kPresent
  uint8_t loss = 0;  // 0..kLossSteps
  uint16_t rtt = 0;  // 0: none; else rttNanos(rtt)
  uint32_t last_probe = 0;

  bool present() const { return (bits & kPresent) != 0; }
  meshprobe::v1::Cell::State state() const {
    return present() ? static_cast<meshprobe::v1::Cell::State>(bits & kStateMask) : meshprobe::v1::Cell::UNKNOWN;
  }
  double lossRatio() const { return loss / static_cast<double>(kLossSteps); }
  std::chrono::nanoseconds rttP50() const;
  // Same state, presence, loss and RTT step: only last_probe may differ.
  bool sameMeasure(const PackedCell& o) const { return bits == o.bits && loss == o.loss && rtt == o.rtt; }
};

// The RTT code of `ns` (nearest step on the logarithmic scale; 0 for no time) and back.
uint16_t rttCode(int64_t ns);
int64_t rttNanos(uint16_t code);

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

// A run of kCells consecutive cells of a row, stored as words (Row). Shared between a row
// and its earlier copies (the ones snapshots hold) until one of its cells is written.
// make_shared puts it beside its 16-byte control block: 1,024 bytes in all, exactly an
// allocator size class (with 256 cells the block would take the next class up, 1,280).
struct CellChunk {
  static constexpr size_t kAllocBytes = 1024;
  static constexpr uint32_t kCells = (kAllocBytes - 16) / sizeof(uint32_t);  // 252
  std::array<uint32_t, kCells> words{};
};

// One source's cells on one layer, indexed by destination slot. Built whole from each of
// the source's reports, or changed by a delta; immutable once a snapshot holds it
// (copy-on-write). The cells are kept in chunks so that a copy of the row shares them: a
// delta that changes a few cells copies those cells' chunks, not the whole row (which is
// 4 bytes x the cluster's size).
//
// Each cell is one 32-bit word: state and presence (3 bits), loss (5), RTT code (10) and
// last_probe as 1 + its offset in seconds from the row's time base (14 bits; 0 = none).
// The base covers 16,382 s (about 4.5 hours) of probe times. A time newer than that moves
// the base (Row::set, rewriting the row's words) to 3/4 of the span before it: the next
// move is at least an hour of probe time away, and times up to 3.4 hours older than the
// newest still read back exactly. An older time reads as the base: the cell of a pair not
// probed for hours, long UNKNOWN by the coverage window, or an agent whose clock stepped
// back by hours, until its clock passes the base again.
struct Row {
  uint64_t stamp = 0;  // the ingest counter when written (see ClusterState)
  // Full results of the cells that need explaining, sorted by dst slot.
  std::vector<std::pair<uint32_t, meshprobe::v1::ProbeResult>> details;
  std::vector<uint32_t> failing;  // dst slots in state FAIL, sorted
  uint32_t reachable = 0;         // cells OK or DEGRADED (to members at ingest)

  static constexpr uint32_t kTimeSpan = (1u << 14) - 2;   // the newest time offset a word holds
  static constexpr uint32_t kTimeKept = kTimeSpan / 4 * 3;  // before the newest, after a move

  // Slots [0, size()) may hold cells; at(slot) of any other slot is absent.
  uint32_t size() const { return width_; }
  PackedCell at(uint32_t dst_slot) const {
    if (dst_slot >= width_) return PackedCell{};
    const auto& chunk = chunks_[dst_slot / CellChunk::kCells];
    if (!chunk) return PackedCell{};
    uint32_t& w = chunk->words[dst_slot % CellChunk::kCells];
    return decode(std::atomic_ref<uint32_t>(w).load(std::memory_order_relaxed), time_base_);
  }
  // Writes the cell of `dst_slot` (< size()): its chunk is copied first when another row
  // shares it, and the time base moves when `cell.last_probe` is outside it. Call only on a
  // row no snapshot holds.
  void set(uint32_t dst_slot, const PackedCell& cell);
  // Sets the last_probe of the present cell of `dst_slot` (< size()) in place, in the chunk
  // this row may share with its earlier copies, which so see it too: a result re-sent
  // unchanged but for its probe time (the agents' digest) costs no copy. Every other field
  // of a shared chunk is immutable, and readers load the word atomically (at()). Call
  // with the ingest lock held (one writer). False, and nothing written, when `last_probe`
  // is outside the row's time base: set() it instead.
  bool refreshLastProbe(uint32_t dst_slot, uint32_t last_probe);
  // Every cell absent, size() = `width`.
  void clear(uint32_t width);
  // size() at least `width`; the cells kept.
  void grow(uint32_t width);
  const meshprobe::v1::ProbeResult* detail(uint32_t dst_slot) const;
  // Heap bytes held (the cells' and the details' storage; a chunk shared with another row
  // is counted in both).
  size_t bytes() const;

 private:
  bool holdsTime(uint32_t t) const { return t == 0 || (t >= time_base_ && t - time_base_ <= kTimeSpan); }
  static uint32_t encode(const PackedCell& c, uint32_t time_base);
  static PackedCell decode(uint32_t word, uint32_t time_base);
  std::array<uint32_t, CellChunk::kCells>& mutableWords(uint32_t chunk_index);
  // Moves the time base to kTimeKept before `newest` (see above), rewriting every cell's
  // offset in chunks of this row's own: a chunk is only shared by rows with the same base.
  void rebase(uint32_t newest);

  uint32_t width_ = 0;
  uint32_t time_base_ = 0;
  std::vector<std::shared_ptr<CellChunk>> chunks_;  // null: every cell of the chunk absent
};

}  // namespace meshprobe::aggregator
