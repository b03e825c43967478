#pragma once
// The agent's HTTP endpoints on --http-listen (default 0.0.0.0:9472):
//   /metrics  Prometheus text: meshprobe_check_ok{check}, meshprobe_probe_rtt_seconds{layer}
//             (contract) and the operator series (docs/operations.md §10)
//   /healthz  200 while the process runs
//   /readyz   200 once the probe responder is bound and the first check round finished
//   /checks   the latest check round as JSON, exactly `meshprobe-agent --once --output json`
// Everything is rendered at request time from an AgentStatus snapshot the daemon builds.

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "agent/doctor/doctor.h"
#include "agent/probe/prober.h"
#include "agent/probe/responder.h"
#include "common/duration.h"
#include "common/finding.h"
#include "common/http_server.h"
#include "common/metrics.h"

namespace meshprobe::agent {

// RTT histograms by probe layer (UNDERLAY, OVERLAY), aggregated over peers. Fed from the
// prober's on_rtt callback (its I/O thread); read at scrape time. Thread-safe.
class RttHistograms {
 public:
  RttHistograms();
  void observe(Layer layer, Duration rtt);
  // (layer name, snapshot) for every layer, in a fixed order; layers without a histogram
  // (ISTIOD, AMBIENT) are counted under neither.
  std::vector<std::pair<std::string, HistogramSnapshot>> snapshots() const;

 private:
  Histogram underlay_;
  Histogram overlay_;
};

// What /metrics, /readyz and /checks show, gathered by the daemon at request time.
struct AgentStatus {
  std::string node;
  std::optional<DoctorReport> doctor;  // the latest check round; nullopt before the first
  std::optional<ProberCounters> prober;
  std::map<Layer, size_t> targets;  // current probe targets per layer
  std::optional<ProbeRotationStatus> rotation;  // the probe budget's rotation
  std::optional<ResponderCounters> responder;
  bool responder_bound = false;
  bool stream_connected = false;  // always false in standalone mode
  uint64_t stream_reconnects = 0;
  uint64_t stream_peer_deltas_ignored = 0;  // membership deltas that came before a peer list
  uint64_t stream_reports_whole = 0;        // reports written whole / as deltas
  uint64_t stream_reports_delta = 0;
  uint64_t stream_reports_held = 0;
  uint64_t stream_probes_omitted = 0;  // probe results the deltas left out as unchanged
  uint64_t report_buffer_dropped = 0;
  size_t checks_running = 0;  // checks whose run has not returned yet (a hung one stays counted)
};

std::string renderAgentMetrics(const AgentStatus& status, const RttHistograms& rtt);

class AgentHttp {
 public:
  using StatusSource = std::function<AgentStatus()>;
  AgentHttp(StatusSource source, const RttHistograms& rtt);

  // Routes one request (also what unit tests call, without sockets).
  HttpResponse handle(const HttpRequest& request) const;

  Result<uint16_t> start(const std::string& listen);
  void stop();

 private:
  StatusSource source_;
  const RttHistograms& rtt_;
  std::unique_ptr<HttpServer> server_;
};

}  // namespace meshprobe::agent
