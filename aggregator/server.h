#pragma once
// The aggregator's gRPC server: Collector + Query, server reflection (grpc.reflection.
// v1alpha) and the standard health service, plus a sweeper thread that forgets members
// silent for forget_after and sends coalesced membership changes, and a diagnosis thread
// that re-evaluates findings. main() and the tests both build one; tests bind 127.0.0.1:0.

#include <grpcpp/grpcpp.h>
#include <grpcpp/resource_quota.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "aggregator/cluster_state.h"
#include "aggregator/collector_service.h"
#include "aggregator/diagnosis/engine.h"
#include "aggregator/http/aggregator_http.h"
#include "aggregator/query_service.h"
#include "common/clock.h"
#include "common/result.h"
#include "common/tls/tls.h"

namespace meshprobe::aggregator {

// The smallest --grpc-memory-limit main() accepts: 8 messages of the 4 MiB the server
// receives at most (gRPC charges a message's read buffers to the quota while it arrives).
inline constexpr uint64_t kMinGrpcMemoryLimit = 32ull << 20;

// A byte count written as a Kubernetes quantity: "0", "1048576", "64Mi", "1Gi", "512Ki"
// (binary), "100M", "2G", "500k" (decimal). nullopt for anything else, a negative or
// fractional number, or more than 2^63 bytes.
std::optional<uint64_t> parseByteQuantity(std::string_view text);

struct ServerOptions {
  std::string grpc_listen = "0.0.0.0:9470";
  // HTTP (/metrics, /healthz, /readyz, /, /api/v1/state); empty = no HTTP server (tests
  // that do not need it). main() passes --http-listen (default 0.0.0.0:9471).
  std::string http_listen;
  // The gRPC port's credentials: mutual TLS when the files are set, plaintext otherwise
  // (main() refuses to start without one or --insecure; tests default to plaintext).
  tls::ServerConfig tls;
  ClusterOptions cluster;
  // How often the sweeper looks for members to forget (real time).
  std::chrono::milliseconds sweep_interval{1000};
  // Membership changes within this window (on the server's Clock, from the first change)
  // reach each agent as one message; 0: every change at once. With the flush interval
  // (real time) a change reaches the agents within about 300 ms.
  std::chrono::milliseconds membership_window{250};
  std::chrono::milliseconds membership_flush_interval{50};
  // A Collector stream without a Hello this long (on the server's Clock) is ended with
  // DEADLINE_EXCEEDED at the next sweep.
  std::chrono::milliseconds hello_timeout{kDefaultHelloTimeout};
  // A gRPC memory quota (grpc::ResourceQuota) of this many bytes for the server's transport
  // buffers; 0: none (gRPC's default). Once the quota is used up gRPC frees idle
  // connections' read buffers and reads into small slices while memory is short; if that is
  // not enough it ends streams, which their agents re-open. main() passes
  // --grpc-memory-limit (at least kMinGrpcMemoryLimit when set).
  uint64_t grpc_memory_limit = 0;
  DiagnosisOptions diagnosis;
  // The Kubernetes objects (not owned; outlives the server), or null without the API: the
  // diagnosis then runs the Kubernetes rules too (AGENT_MISSING, NAMESPACE_NOT_AMBIENT, ...).
  const kube::KubeView* kube = nullptr;
  // The watcher's counters for /metrics (meshprobe_aggregator_kube_*); unset: they read 0.
  std::function<kube::WatcherCounters()> kube_counters;
  // The node condition and Event writer's counters for /metrics (--node-conditions on).
  std::function<kube::NodeStatusCounters()> node_status_counters;
  // With --leader-elect: whether this replica holds the Lease now. Unset: always the leader
  // (one replica, or no Kubernetes API). Followers are not Ready on /readyz and do not
  // write to the Kubernetes API (node conditions, events).
  std::function<bool()> is_leader;
  // With is_leader: the Lease's holder as last seen ("" = none yet), for a follower's /readyz.
  std::function<std::string()> leader_identity;
  // How often the diagnosis engine re-evaluates the cluster (real time).
  std::chrono::milliseconds diagnosis_interval{250};
};

class AggregatorServer {
 public:
  AggregatorServer(const Clock& clock, ServerOptions options);
  ~AggregatorServer();  // shutdown()

  // Binds gRPC, then HTTP (when http_listen is set), and starts serving; returns the bound
  // gRPC port (useful with port 0). Either listener failing is an error naming its address.
  Result<int> start();
  // Marks health NOT_SERVING, ends every agent stream with UNAVAILABLE, then shuts the
  // server down, cancelling what is still running after `grace`. Idempotent.
  void shutdown(std::chrono::milliseconds grace = std::chrono::milliseconds(500));

  ClusterState& state() { return state_; }
  DiagnosisEngine& diagnosis() { return diagnosis_; }
  CollectorService& collector() { return collector_; }
  QueryService& query() { return query_; }
  int port() const { return port_; }
  int httpPort() const { return http_port_; }  // 0 without HTTP
  // True from the moment gRPC listens until shutdown begins (/readyz).
  bool ready() const { return ready_; }

  // Service names the health service reports SERVING for (besides "").
  static constexpr const char* kCollectorService = "meshprobe.v1.Collector";
  static constexpr const char* kQueryService = "meshprobe.v1.Query";

 private:
  void sweepLoop();
  void diagnosisLoop();
  void logKubeState();  // diagnosis thread: one line when the API's state changes

  ServerOptions options_;
  ClusterState state_;
  DiagnosisEngine diagnosis_;
  CollectorService collector_;
  QueryService query_;
  std::unique_ptr<grpc::ResourceQuota> quota_;  // with grpc_memory_limit
  std::unique_ptr<grpc::Server> server_;  // destroyed before the services it serves
  int port_ = 0;
  std::unique_ptr<AggregatorHttp> http_;  // stopped before anything it reads goes away
  int http_port_ = 0;
  std::atomic<bool> ready_{false};

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread sweeper_;
  std::thread diagnoser_;
  // The API state last logged (diagnosis thread only); the watcher starts as kConnecting.
  kube::ApiState kube_logged_ = kube::ApiState::kConnecting;
};

}  // namespace meshprobe::aggregator
