#pragma once
// The aggregator's HTTP endpoints on --http-listen (default 0.0.0.0:9471):
//   /metrics        Prometheus text, computed at scrape time from the current ClusterState,
//                   the diagnosis engine's active findings and the services' counters, so
//                   the series of a departed node or a healed pair simply disappear
//   /healthz        200 while the process runs
//   /readyz         200 while the gRPC server is started and listening for agents; with the
//                   Kubernetes API in use, a second line gives its state (kubeStatusLine).
//                   The API never makes the aggregator unready: without it, it keeps
//                   working on the agents' data alone. With --leader-elect only the
//                   leader is Ready: a follower answers 503 "follower: the leader is X"
//                   (or "follower: no leader yet"), so a Service sends agents and
//                   queries to the leader alone
//   /               the matrix page (text/html)
//   /api/v1/state   the page's JSON: nodes with their health, FAIL/DEGRADED cells, findings
//   /api/v1/matrix  one layer's whole matrix, run-length encoded (the page's heatmap)
//   /api/v1/cell    one cell's numbers (web::handlePageRequest; fields in page_data.cc)
//
// Series (notes/metrics.md): meshprobe_node_up{node}, meshprobe_node_reachable_peers{node,
// layer}, meshprobe_broken_pairs{layer}, meshprobe_pair_broken{src,dst,layer} (only FAIL
// cells), meshprobe_finding{code,node,severity}, and the operator series
// meshprobe_aggregator_* (meshprobe_aggregator_kube_* only with the Kubernetes API: 24 =
// api_up + 5 states + 6 families × 3 kinds) and meshprobe_build_info. Budget: 3·N + ~90 series for N nodes
// with no broken pairs and no findings (contract: at most 20·N + 100).

#include <functional>
#include <memory>
#include <string>

#include "aggregator/cluster_state.h"
#include "aggregator/collector_service.h"
#include "aggregator/diagnosis/engine.h"
#include "aggregator/kube/node_status.h"
#include "aggregator/kube/objects.h"
#include "aggregator/kube/watcher.h"
#include "aggregator/query_service.h"
#include "aggregator/web/page_routes.h"
#include "common/http_server.h"

namespace meshprobe::aggregator {

struct AggregatorMetricsSources {
  const ClusterState& state;
  const DiagnosisEngine& diagnosis;
  const CollectorStats* collector = nullptr;  // nullptr: those series read 0
  const QueryService* query = nullptr;        // nullptr: empty latency histograms
  // The Kubernetes watch, or null without the API (then no meshprobe_aggregator_kube_*
  // series and no /readyz line): its snapshot gives the state and the objects kept, and
  // kube_counters (when set) each kind's lists, watches and errors, read at scrape time.
  const kube::KubeView* kube = nullptr;
  std::function<kube::WatcherCounters()> kube_counters = {};
  // With --leader-elect: whether this replica holds the Lease, and who does ("" = nobody
  // yet). Unset: always the leader.
  std::function<bool()> is_leader = {};
  std::function<std::string()> leader = {};
  // The node condition and Event writer's counters (--node-conditions on); unset: no such series.
  std::function<kube::NodeStatusCounters()> node_status_counters = {};
};

// "synced", "connecting", "unreachable", "forbidden", "off" (the state label).
const char* apiStateName(kube::ApiState state);
// The API's state in one line for /readyz and the logs: "Kubernetes API synced",
// "Kubernetes API connecting: <detail>", "Kubernetes API unreachable: <detail>",
// "Kubernetes API forbidden: <detail>", "Kubernetes API not used".
std::string kubeStatusLine(const kube::ApiStatus& status);

// The /metrics text. `series` (optional) gets the number of time series written.
std::string renderAggregatorMetrics(const AggregatorMetricsSources& sources, size_t* series = nullptr);

class AggregatorHttp {
 public:
  AggregatorHttp(AggregatorMetricsSources sources, std::function<bool()> ready);

  // Routes one request (what unit tests call without sockets).
  HttpResponse handle(const HttpRequest& request) const;

  Result<uint16_t> start(const std::string& listen);
  void stop();

 private:
  AggregatorMetricsSources sources_;
  std::function<bool()> ready_;
  web::PageSources page_;
  std::unique_ptr<HttpServer> server_;
};

}  // namespace meshprobe::aggregator
