#include "aggregator/matrix.h"

#include <google/protobuf/util/time_util.h>

namespace meshprobe::aggregator {

namespace v1 = meshprobe::v1;
using google::protobuf::util::TimeUtil;

v1::Cell::State classifyProbe(const v1::ProbeResult& probe, const MatrixOptions& options) {
  // Loss is a ratio the agent computed in floating point (1 - 8/10 is 0.19999…): compare
  // with a little slack so a threshold hit exactly counts.
  constexpr double kSlack = 1e-9;
  if (probe.sent() == 0) return v1::Cell::UNKNOWN;
  // A probe and its quick retries all missed: a hard fault, confirmed without waiting for
  // the loss window to fill.
  if (probe.consecutive_failures() >= options.confirm_failures) return v1::Cell::FAIL;
  // The state follows recent loss when the agent sends it, so a recovered pair turns OK
  // within a few probes instead of after the whole window.
  const double loss = probe.has_recent_loss() ? probe.recent_loss() : probe.loss();
  if (probe.received() == 0 || loss >= options.fail_loss - kSlack) return v1::Cell::FAIL;
  if (loss > kSlack) return v1::Cell::DEGRADED;
  const auto p50 = std::chrono::nanoseconds(TimeUtil::DurationToNanoseconds(probe.rtt_p50()));
  const auto p99 = std::chrono::nanoseconds(TimeUtil::DurationToNanoseconds(probe.rtt_p99()));
  if (p99 >= options.rtt_p99_degraded) return v1::Cell::DEGRADED;
  if (p99 >= options.rtt_spike_floor && p99.count() >= options.rtt_spike_factor * static_cast<double>(p50.count())) {
    return v1::Cell::DEGRADED;
  }
  return v1::Cell::OK;
}

v1::Cell::State classifyIstiodCheck(const v1::CheckResult* check) {
  if (check == nullptr) return v1::Cell::UNKNOWN;
  switch (check->status()) {
    case v1::CheckResult::OK:
      return v1::Cell::OK;
    case v1::CheckResult::WARN:
      return v1::Cell::DEGRADED;
    case v1::CheckResult::FAIL:
      return v1::Cell::FAIL;
    default:
      return v1::Cell::UNKNOWN;
  }
}

bool hasMatrix(v1::Layer layer) { return layer == v1::UNDERLAY || layer == v1::OVERLAY || layer == v1::ISTIOD; }

}  // namespace meshprobe::aggregator
