#include "aggregator/http/aggregator_http.h"

#include <set>
#include <tuple>

#include "common/metrics.h"
#include "common/version.h"

namespace meshprobe::aggregator {

namespace v1 = meshprobe::v1;

const char* apiStateName(kube::ApiState state) {
  switch (state) {
    case kube::ApiState::kOff:
      return "off";
    case kube::ApiState::kConnecting:
      return "connecting";
    case kube::ApiState::kSynced:
      return "synced";
    case kube::ApiState::kUnreachable:
      return "unreachable";
    case kube::ApiState::kForbidden:
      return "forbidden";
  }
  return "unknown";
}

std::string kubeStatusLine(const kube::ApiStatus& status) {
  if (status.state == kube::ApiState::kOff) return "Kubernetes API not used";
  std::string line = std::string("Kubernetes API ") + apiStateName(status.state);
  if (status.state != kube::ApiState::kSynced && !status.detail.empty()) line += ": " + status.detail;
  for (char& c : line) {
    if (c == '\n' || c == '\r') c = ' ';  // a server's message may span lines
  }
  return line;
}

namespace {

// meshprobe_aggregator_kube_*: the watch's state and, per kind, what its loop has done
// (WatcherCounters) and the objects the snapshot keeps. Cheap: one snapshot pointer and
// one copy of the counters.
void renderKube(MetricsWriter& w, const AggregatorMetricsSources& src) {
  const auto objects = src.kube->objects();
  const kube::WatcherCounters counters = src.kube_counters ? src.kube_counters() : kube::WatcherCounters{};
  const kube::ApiState state = objects->status.state;
  w.family("meshprobe_aggregator_kube_api_up",
           "1 while every watched kind (nodes, namespaces, pods) is listed and watched, else 0.", MetricType::kGauge);
  w.sample(state == kube::ApiState::kSynced ? 1 : 0);
  w.family("meshprobe_aggregator_kube_state",
           "1 for the Kubernetes watch's current state (off, connecting, synced, unreachable, forbidden), 0 for the "
           "others.",
           MetricType::kGauge);
  for (kube::ApiState s : {kube::ApiState::kOff, kube::ApiState::kConnecting, kube::ApiState::kSynced,
                           kube::ApiState::kUnreachable, kube::ApiState::kForbidden}) {
    w.sample({{"state", apiStateName(s)}}, s == state ? 1 : 0);
  }
  const kube::Kind kinds[] = {kube::Kind::kNodes, kube::Kind::kNamespaces, kube::Kind::kPods};
  const auto perKind = [&](const char* name, const char* help, MetricType type, auto value) {
    w.family(name, help, type);
    for (kube::Kind k : kinds) w.sample({{"kind", kube::resourceName(k)}}, static_cast<double>(value(k)));
  };
  perKind("meshprobe_aggregator_kube_lists_total", "Complete lists (every page) of a kind from the Kubernetes API.",
          MetricType::kCounter, [&](kube::Kind k) { return counters.of(k).lists; });
  perKind("meshprobe_aggregator_kube_relists_total",
          "Lists again because the watch's resourceVersion was too old (410 Gone), by kind.", MetricType::kCounter,
          [&](kube::Kind k) { return counters.of(k).relists_after_410; });
  perKind("meshprobe_aggregator_kube_watch_restarts_total",
          "Watches that ended (server timeout, dropped connection) and were opened again without a list, by kind.",
          MetricType::kCounter, [&](kube::Kind k) { return counters.of(k).watch_restarts; });
  perKind("meshprobe_aggregator_kube_errors_total",
          "Failed Kubernetes API requests (each one backs off before the next try), by kind.", MetricType::kCounter,
          [&](kube::Kind k) { return counters.of(k).errors; });
  perKind("meshprobe_aggregator_kube_events_total", "Watch events (ADDED, MODIFIED, DELETED) applied, by kind.",
          MetricType::kCounter, [&](kube::Kind k) { return counters.of(k).events; });
  perKind("meshprobe_aggregator_kube_objects", "Objects of a kind the aggregator keeps from the Kubernetes API.",
          MetricType::kGauge, [&](kube::Kind k) -> size_t {
            switch (k) {
              case kube::Kind::kNodes:
                return objects->nodes.size();
              case kube::Kind::kNamespaces:
                return objects->namespaces.size();
              case kube::Kind::kPods:
                return objects->pods.size();
            }
            return 0;
          });
  if (src.node_status_counters) {
    const kube::NodeStatusCounters ns = src.node_status_counters();
    w.family("meshprobe_aggregator_kube_node_condition_writes_total",
             "Writes of the MeshprobeNetworkProblem node condition (changes and heartbeats).", MetricType::kCounter);
    w.sample(static_cast<double>(ns.condition_writes));
    w.family("meshprobe_aggregator_kube_node_events_total",
             "Events about findings on Nodes: created, aggregated (count of an earlier one patched), throttled (over "
             "the per-node rate limit, not sent).",
             MetricType::kCounter);
    w.sample({{"result", "created"}}, static_cast<double>(ns.events_created));
    w.sample({{"result", "aggregated"}}, static_cast<double>(ns.events_aggregated));
    w.sample({{"result", "throttled"}}, static_cast<double>(ns.events_throttled));
    w.family("meshprobe_aggregator_kube_write_errors_total",
             "Failed node condition and Event writes: forbidden (401/403, RBAC) or other (unreachable, other status).",
             MetricType::kCounter);
    w.sample({{"reason", "forbidden"}}, static_cast<double>(ns.errors_forbidden));
    w.sample({{"reason", "other"}}, static_cast<double>(ns.errors_other));
  }
}

// A latency histogram with no observations (its source is absent).
HistogramSnapshot emptyLatencyHistogram() {
  HistogramSnapshot h;
  h.bounds = Histogram::latencyBounds();
  h.counts.assign(h.bounds.size() + 1, 0);
  return h;
}

}  // namespace

std::string renderAggregatorMetrics(const AggregatorMetricsSources& src, size_t* series) {
  MetricsWriter w;
  const auto nodes = src.state.listNodes();

  // ---- contract ----
  w.family("meshprobe_node_up", "1 while the node's agent reports (within --stale-after), 0 once it is silent.",
           MetricType::kGauge);
  for (const auto& n : nodes) w.sample({{"node", n.name()}}, n.up() ? 1 : 0);

  struct LayerSummary {
    v1::Layer layer;
    MatrixSummary summary;
  };
  std::vector<LayerSummary> layers;
  for (v1::Layer layer : {v1::UNDERLAY, v1::OVERLAY, v1::ISTIOD}) {
    auto s = src.state.matrixSummary(layer);
    layers.push_back({layer, s.ok() ? std::move(s.value()) : MatrixSummary{}});
  }

  w.family("meshprobe_node_reachable_peers", "Peers this node reaches (matrix cells from it that are OK or DEGRADED).",
           MetricType::kGauge);
  for (const auto& l : layers) {
    if (l.layer == v1::ISTIOD) continue;
    for (size_t i = 0; i < l.summary.nodes.size(); ++i) {
      w.sample({{"node", l.summary.nodes[i]}, {"layer", v1::Layer_Name(l.layer)}},
               static_cast<double>(l.summary.reachable[i]));
    }
  }
  w.family("meshprobe_broken_pairs", "Matrix cells in state FAIL, by layer.", MetricType::kGauge);
  for (const auto& l : layers) {
    w.sample({{"layer", v1::Layer_Name(l.layer)}}, static_cast<double>(l.summary.failed.size()));
  }
  w.family("meshprobe_pair_broken", "1 for each matrix cell in state FAIL; absent while the cell is not FAIL.",
           MetricType::kGauge);
  for (const auto& l : layers) {
    for (const auto& [s, d] : l.summary.failed) {
      w.sample({{"src", s}, {"dst", d}, {"layer", v1::Layer_Name(l.layer)}}, 1);
    }
  }
  w.family("meshprobe_finding",
           "1 while a diagnosis finding is active; one series per blamed node (node=\"\" when none is blamed).",
           MetricType::kGauge);
  std::set<std::tuple<std::string, std::string, std::string>> findings;  // distinct label sets
  for (const auto& f : src.diagnosis.active()) {
    const std::string severity = v1::Severity_Name(f.severity());
    if (f.nodes().empty()) findings.emplace(f.code(), "", severity);
    for (const auto& n : f.nodes()) findings.emplace(f.code(), n, severity);
  }
  for (const auto& [code, node, severity] : findings) {
    w.sample({{"code", code}, {"node", node}, {"severity", severity}}, 1);
  }

  // ---- operator ----
  const CollectorStats* c = src.collector;
  w.family("meshprobe_aggregator_connected_agents", "Open Collector streams whose agent said Hello.",
           MetricType::kGauge);
  w.sample(c ? static_cast<double>(c->connected_agents.load()) : 0);
  w.family("meshprobe_aggregator_reports_received_total", "Agent reports accepted.", MetricType::kCounter);
  w.sample(c ? static_cast<double>(c->reports_received.load()) : 0);
  w.family("meshprobe_aggregator_delta_reports_received_total",
           "Accepted agent reports that carried only what changed (delta reports).", MetricType::kCounter);
  w.sample(c ? static_cast<double>(c->delta_reports_received.load()) : 0);
  w.family("meshprobe_aggregator_ingest_errors_total", "Agent messages refused, by reason.", MetricType::kCounter);
  for (size_t i = 0; i < static_cast<size_t>(IngestError::kCount); ++i) {
    const auto e = static_cast<IngestError>(i);
    w.sample({{"reason", std::string(ingestErrorReason(e))}}, c ? static_cast<double>(c->ingestErrors(e)) : 0);
  }
  w.family("meshprobe_aggregator_membership_messages_total",
           "Membership messages written to agent streams: kind=full (PeerList), kind=delta (PeerDelta).",
           MetricType::kCounter);
  for (size_t k = 0; k < 2; ++k) {
    w.sample({{"kind", k == 0 ? "full" : "delta"}}, c ? static_cast<double>(c->membership_messages[k].load()) : 0);
  }
  w.family("meshprobe_aggregator_membership_bytes_total",
           "Encoded bytes of the membership messages written to agent streams, by kind (full, delta).",
           MetricType::kCounter);
  for (size_t k = 0; k < 2; ++k) {
    w.sample({{"kind", k == 0 ? "full" : "delta"}}, c ? static_cast<double>(c->membership_bytes[k].load()) : 0);
  }
  w.family("meshprobe_aggregator_diagnosis_passes_total",
           "Diagnosis passes: kind=rules (the rules ran on a changed cluster), kind=reused (nothing changed since the "
           "last pass: its candidates were reused).",
           MetricType::kCounter);
  w.sample({{"kind", "rules"}}, static_cast<double>(src.diagnosis.rulePasses()));
  w.sample({{"kind", "reused"}}, static_cast<double>(src.diagnosis.skippedPasses()));
  w.family("meshprobe_aggregator_diagnosis_pass_duration_seconds",
           "Time the diagnosis passes that ran the rules took, from reading the cluster's snapshot to the findings "
           "updated (reused passes are not counted).",
           MetricType::kHistogram);
  w.histogram({}, src.diagnosis.rulePassDuration());
  w.family("meshprobe_aggregator_message_handling_seconds",
           "Time from an agent message read off its stream until it was applied to the cluster state: waiting for an "
           "ingest worker, decoding, applying.",
           MetricType::kHistogram);
  w.histogram({}, c ? c->message_seconds.snapshot() : emptyLatencyHistogram());
  w.family("meshprobe_aggregator_query_duration_seconds", "Time spent answering Query API calls, by method.",
           MetricType::kHistogram);
  for (size_t i = 0; i < static_cast<size_t>(QueryMethod::kCount); ++i) {
    const auto m = static_cast<QueryMethod>(i);
    w.histogram({{"method", std::string(queryMethodName(m))}},
                src.query ? src.query->latency(m) : emptyLatencyHistogram());
  }
  w.family("meshprobe_aggregator_nodes", "Members (nodes that said Hello and were not forgotten).", MetricType::kGauge);
  w.sample(static_cast<double>(nodes.size()));
  if (src.kube) renderKube(w, src);
  if (src.is_leader) {  // --leader-elect
    w.family("meshprobe_aggregator_leader",
             "1 while this replica holds the leader election Lease (and is Ready), 0 on a follower.",
             MetricType::kGauge);
    w.sample(src.is_leader() ? 1 : 0);
  }
  w.family("meshprobe_build_info", "Always 1; the aggregator's version in a label.", MetricType::kGauge);
  w.sample({{"version", kVersion}}, 1);
  if (series) *series = w.seriesCount();
  return w.take();
}

AggregatorHttp::AggregatorHttp(AggregatorMetricsSources sources, std::function<bool()> ready)
    : sources_(sources),
      ready_(std::move(ready)),
      page_(web::clusterPageSources(sources_.state, [&diagnosis = sources_.diagnosis] { return diagnosis.active(); })) {
  if (const QueryService* query = sources_.query) {
    page_.missing_agents = [query] { return query->missingAgentNodes(); };
  }
}

HttpResponse AggregatorHttp::handle(const HttpRequest& req) const {
  if (req.path == "/healthz") return HttpResponse::text(200, "ok\n");
  if (req.path == "/readyz") {
    // The status code is the gRPC server's alone: the Kubernetes API only adds a line.
    HttpResponse res = ready_ && ready_() ? HttpResponse::text(200, "ready\n")
                                          : HttpResponse::text(503, "not ready: the gRPC server is not listening\n");
    // --leader-elect: a follower is not Ready (the Service's endpoints list only the leader).
    if (res.status == 200 && sources_.is_leader && !sources_.is_leader()) {
      const std::string leader = sources_.leader ? sources_.leader() : "";
      res = HttpResponse::text(503, leader.empty() ? "follower: no leader yet\n"
                                                   : "follower: the leader is " + leader + "\n");
    }
    if (sources_.kube) res.body += kubeStatusLine(sources_.kube->objects()->status) + "\n";
    return res;
  }
  if (req.path == "/metrics") {
    HttpResponse res = HttpResponse::text(200, renderAggregatorMetrics(sources_));
    res.content_type = kPrometheusContentType;
    return res;
  }
  if (auto page = web::handlePageRequest(page_, req)) return std::move(*page);
  return HttpResponse::notFound(req.path);
}

Result<uint16_t> AggregatorHttp::start(const std::string& listen) {
  server_ = std::make_unique<HttpServer>([this](const HttpRequest& req) { return handle(req); });
  return server_->start(listen);
}

void AggregatorHttp::stop() {
  if (server_) server_->stop();
}

}  // namespace meshprobe::aggregator
