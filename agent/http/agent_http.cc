#include "agent/http/agent_http.h"

#include <chrono>

#include "agent/doctor/render.h"
#include "common/version.h"

namespace meshprobe::agent {

RttHistograms::RttHistograms() : underlay_(Histogram::rttBounds()), overlay_(Histogram::rttBounds()) {}

void RttHistograms::observe(Layer layer, Duration rtt) {
  const double seconds = std::chrono::duration<double>(rtt).count();
  if (layer == Layer::kUnderlay) underlay_.observe(seconds);
  if (layer == Layer::kOverlay) overlay_.observe(seconds);
}

std::vector<std::pair<std::string, HistogramSnapshot>> RttHistograms::snapshots() const {
  return {{std::string(layerName(Layer::kUnderlay)), underlay_.snapshot()},
          {std::string(layerName(Layer::kOverlay)), overlay_.snapshot()}};
}

std::string renderAgentMetrics(const AgentStatus& s, const RttHistograms& rtt) {
  MetricsWriter w;
  // ---- contract ----
  w.family("meshprobe_check_ok", "1 when the node-local check's last result is OK or SKIP, 0 when WARN or FAIL.",
           MetricType::kGauge);
  if (s.doctor) {
    for (const auto& c : s.doctor->checks) {
      w.sample({{"check", c.name}}, c.status == CheckStatus::kOk || c.status == CheckStatus::kSkip ? 1 : 0);
    }
  }
  w.family("meshprobe_probe_rtt_seconds", "Round-trip time of answered probes, by layer, over every peer.",
           MetricType::kHistogram);
  for (const auto& [layer, snap] : rtt.snapshots()) w.histogram({{"layer", layer}}, snap);

  // ---- operator ----
  w.family("meshprobe_check_duration_seconds", "How long the check's last run took.", MetricType::kGauge);
  if (s.doctor) {
    for (const auto& c : s.doctor->checks)
      w.sample({{"check", c.name}}, std::chrono::duration<double>(c.duration).count());
  }
  w.family("meshprobe_agent_checks_running",
           "Checks whose run has not returned yet; one that stays up across rounds is hung (its rounds "
           "report it FAIL, previous run still in progress).",
           MetricType::kGauge);
  w.sample(static_cast<double>(s.checks_running));
  const ProberCounters p = s.prober.value_or(ProberCounters{});
  w.family("meshprobe_probes_sent_total", "UDP probes sent.", MetricType::kCounter);
  w.sample(static_cast<double>(p.sent));
  w.family("meshprobe_probe_errors_total", "Probes that got no valid answer, and replies dropped, by reason.",
           MetricType::kCounter);
  const std::pair<const char*, uint64_t> probe_errors[] = {
      {"timeout", p.timeouts},        {"send_error", p.send_errors},
      {"invalid", p.dropped_invalid}, {"unauthenticated", p.dropped_unauthenticated},
      {"late", p.dropped_late},       {"duplicate", p.dropped_duplicate},
      {"unknown", p.dropped_unknown}};
  for (const auto& [reason, n] : probe_errors) w.sample({{"reason", reason}}, static_cast<double>(n));
  w.family("meshprobe_probe_targets", "Current probe targets (peers) by layer.", MetricType::kGauge);
  for (Layer layer : {Layer::kUnderlay, Layer::kOverlay}) {
    auto it = s.targets.find(layer);
    w.sample({{"layer", std::string(layerName(layer))}}, it == s.targets.end() ? 0 : static_cast<double>(it->second));
  }
  const ProbeRotationStatus rot = s.rotation.value_or(ProbeRotationStatus{});
  w.family("meshprobe_probe_targets_per_round",
           "Probe targets of the layer probed in the current round (interval): all of them while the peers fit "
           "--probe-budget x --interval, else this agent's share of the rotation.",
           MetricType::kGauge);
  for (Layer layer : {Layer::kUnderlay, Layer::kOverlay}) {
    auto it = rot.targets_this_round.find(layer);
    w.sample({{"layer", std::string(layerName(layer))}},
             it == rot.targets_this_round.end() ? 0 : static_cast<double>(it->second));
  }
  w.family("meshprobe_probe_coverage_rounds",
           "Rounds (intervals) within which every peer is probed: 1 while the peers fit --probe-budget x --interval, "
           "else ceil(peers / (budget x interval)).",
           MetricType::kGauge);
  w.sample(static_cast<double>(rot.coverage_rounds));
  w.family("meshprobe_probe_rotation_skipped_total",
           "Regular probe slots passed over because the rotation gave the peer to other agents in that round.",
           MetricType::kCounter);
  w.sample(static_cast<double>(rot.skipped));
  const ResponderCounters r = s.responder.value_or(ResponderCounters{});
  w.family("meshprobe_responder_requests_total", "UDP probe requests received by the responder.", MetricType::kCounter);
  w.sample(static_cast<double>(r.received));
  w.family("meshprobe_responder_dropped_total", "Probe requests the responder did not answer, by reason.",
           MetricType::kCounter);
  const std::pair<const char*, uint64_t> drops[] = {{"invalid", r.dropped_invalid},
                                                    {"unauthenticated", r.dropped_unauthenticated},
                                                    {"replayed", r.dropped_replayed},
                                                    {"rate_limited", r.dropped_rate_limited},
                                                    {"send_error", r.send_errors}};
  for (const auto& [reason, n] : drops) w.sample({{"reason", reason}}, static_cast<double>(n));
  w.family("meshprobe_stream_connected", "1 while the report stream to the aggregator is up (0 in standalone mode).",
           MetricType::kGauge);
  w.sample(s.stream_connected ? 1 : 0);
  w.family("meshprobe_stream_reconnects_total", "Times the report stream to the aggregator was re-established.",
           MetricType::kCounter);
  w.sample(static_cast<double>(s.stream_reconnects));
  w.family("meshprobe_stream_peer_deltas_ignored_total",
           "Membership deltas ignored because no peer list had come on their stream yet.", MetricType::kCounter);
  w.sample(static_cast<double>(s.stream_peer_deltas_ignored));
  w.family("meshprobe_stream_reports_total",
           "Reports written to the aggregator: whole, or as deltas of what changed since the stream's previous one.",
           MetricType::kCounter);
  w.sample({{"kind", "whole"}}, static_cast<double>(s.stream_reports_whole));
  w.sample({{"kind", "delta"}}, static_cast<double>(s.stream_reports_delta));
  w.family("meshprobe_stream_reports_held_total",
           "Reports left out because nothing had changed, within the aggregator's quiet report interval.",
           MetricType::kCounter);
  w.sample(static_cast<double>(s.stream_reports_held));
  w.family("meshprobe_stream_probes_omitted_total",
           "Probe results delta reports left out because they had not changed.", MetricType::kCounter);
  w.sample(static_cast<double>(s.stream_probes_omitted));
  w.family("meshprobe_report_buffer_dropped_total",
           "Reports dropped (oldest first) because the aggregator was away and the buffer was full.",
           MetricType::kCounter);
  w.sample(static_cast<double>(s.report_buffer_dropped));
  w.family("meshprobe_build_info", "Always 1; the agent's version in a label.", MetricType::kGauge);
  w.sample({{"version", kVersion}}, 1);
  return w.take();
}

AgentHttp::AgentHttp(StatusSource source, const RttHistograms& rtt) : source_(std::move(source)), rtt_(rtt) {}

HttpResponse AgentHttp::handle(const HttpRequest& req) const {
  if (req.path == "/healthz") return HttpResponse::text(200, "ok\n");
  if (req.path == "/metrics") {
    HttpResponse res = HttpResponse::text(200, renderAgentMetrics(source_(), rtt_));
    res.content_type = kPrometheusContentType;
    return res;
  }
  if (req.path == "/readyz") {
    const AgentStatus s = source_();
    if (!s.responder_bound) return HttpResponse::text(503, "not ready: the probe responder is not bound\n");
    if (!s.doctor) return HttpResponse::text(503, "not ready: the first check round has not finished\n");
    return HttpResponse::text(200, "ready\n");
  }
  if (req.path == "/checks") {
    const AgentStatus s = source_();
    if (!s.doctor) {
      DoctorReport empty;
      empty.node = s.node;
      return HttpResponse::json(503, reportToJson(empty).dump(2) + "\n");
    }
    return HttpResponse::json(200, reportToJson(*s.doctor).dump(2) + "\n");
  }
  if (req.path == "/") {
    return HttpResponse::text(200, "meshprobe-agent " + std::string(kVersion) +
                                       "\n/metrics  Prometheus metrics\n/healthz  liveness\n/readyz   readiness\n"
                                       "/checks   the latest node checks as JSON\n");
  }
  return HttpResponse::notFound(req.path);
}

Result<uint16_t> AgentHttp::start(const std::string& listen) {
  server_ = std::make_unique<HttpServer>([this](const HttpRequest& req) { return handle(req); });
  return server_->start(listen);
}

void AgentHttp::stop() {
  if (server_) server_->stop();
}

}  // namespace meshprobe::agent
