#pragma once
// How one probe summary or one istiod check turns into a matrix cell state. Pure
// functions; ClusterState applies them to each source node's latest Report.

#include <chrono>
#include <cstdint>
#include <string_view>

#include "meshprobe/v1/collector.pb.h"
#include "meshprobe/v1/query.pb.h"

namespace meshprobe::aggregator {

// The dst of every ISTIOD-layer cell.
inline constexpr std::string_view kIstiodDst = "istiod";

struct MatrixOptions {
  // loss >= fail_loss (or nothing received) is FAIL; any smaller loss above 0 is DEGRADED.
  double fail_loss = 0.5;
  // This many consecutive misses (a probe and its two quick retries) is FAIL at once.
  uint32_t confirm_failures = 3;
  // RTT p99 at or above this is DEGRADED whatever the median.
  std::chrono::nanoseconds rtt_p99_degraded{std::chrono::milliseconds(200)};
  // A p99 at least `rtt_spike_factor` times the p50 is DEGRADED too, but only once it is
  // above `rtt_spike_floor`: LAN jitter and a busy node's scheduling hiccups (tens of ms)
  // are not a network fault.
  double rtt_spike_factor = 10.0;
  std::chrono::nanoseconds rtt_spike_floor{std::chrono::milliseconds(100)};
};

// One probe summary (the src node's view of dst on a layer):
//   sent == 0                              -> UNKNOWN (no probe finished in the window yet)
//   consecutive_failures >= confirm_failures, received == 0,
//   or loss >= fail_loss                   -> FAIL   (loss = recent_loss when present)
//   0 < loss < fail_loss, or RTT p99 high  -> DEGRADED
//   otherwise                              -> OK
meshprobe::v1::Cell::State classifyProbe(const meshprobe::v1::ProbeResult& probe, const MatrixOptions& options);

// The node's `istiod` check: OK -> OK, WARN -> DEGRADED, FAIL -> FAIL, SKIP, unset or no
// check (nullptr) -> UNKNOWN.
meshprobe::v1::Cell::State classifyIstiodCheck(const meshprobe::v1::CheckResult* check);

// UNDERLAY, OVERLAY and ISTIOD have a matrix; other layers do not.
bool hasMatrix(meshprobe::v1::Layer layer);

}  // namespace meshprobe::aggregator
