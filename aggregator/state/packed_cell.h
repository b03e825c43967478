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
// A cell that needs explaining keeps its full ProbeResult beside the row (Row::details);
// a healthy one is these 8 bytes only.

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

// One source's cells on one layer, indexed by destination slot. Built whole from each of
// the source's reports; immutable once a snapshot holds it (copy-on-write).
struct Row {
  uint64_t stamp = 0;             // the ingest counter when written (see ClusterState)
  std::vector<PackedCell> cells;  // by dst slot; shorter than the slot count = absent
  // Full results of the cells that need explaining, sorted by dst slot.
  std::vector<std::pair<uint32_t, meshprobe::v1::ProbeResult>> details;
  std::vector<uint32_t> failing;  // dst slots in state FAIL, sorted
  uint32_t reachable = 0;         // cells OK or DEGRADED (to members at ingest)

  PackedCell at(uint32_t dst_slot) const { return dst_slot < cells.size() ? cells[dst_slot] : PackedCell{}; }
  const meshprobe::v1::ProbeResult* detail(uint32_t dst_slot) const;
  // Heap bytes held (the cells' and the details' storage).
  size_t bytes() const;
};

}  // namespace meshprobe::aggregator
