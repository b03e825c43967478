#pragma once
// The aggregator's gRPC server: Collector + Query, server reflection (grpc.reflection.
// v1alpha) and the standard health service, plus a sweeper thread that forgets members
// silent for forget_after. main() and the tests both build one; tests bind 127.0.0.1:0.

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "aggregator/cluster_state.h"
#include "aggregator/collector_service.h"
#include "aggregator/query_service.h"
#include "common/clock.h"
#include "common/result.h"

namespace meshprobe::aggregator {

struct ServerOptions {
  std::string grpc_listen = "0.0.0.0:9470";
  ClusterOptions cluster;
  // How often the sweeper looks for members to forget (real time).
  std::chrono::milliseconds sweep_interval{1000};
};

class AggregatorServer {
 public:
  AggregatorServer(const Clock& clock, ServerOptions options);
  ~AggregatorServer();  // shutdown()

  // Binds and starts serving; returns the bound port (useful with port 0).
  Result<int> start();
  // Marks health NOT_SERVING, ends every agent stream with UNAVAILABLE, then shuts the
  // server down, cancelling what is still running after `grace`. Idempotent.
  void shutdown(std::chrono::milliseconds grace = std::chrono::milliseconds(500));

  ClusterState& state() { return state_; }
  CollectorService& collector() { return collector_; }
  int port() const { return port_; }

  // Service names the health service reports SERVING for (besides "").
  static constexpr const char* kCollectorService = "meshprobe.v1.Collector";
  static constexpr const char* kQueryService = "meshprobe.v1.Query";

 private:
  void sweepLoop();

  ServerOptions options_;
  ClusterState state_;
  CollectorService collector_;
  QueryService query_;
  std::unique_ptr<grpc::Server> server_;  // destroyed before the services it serves
  int port_ = 0;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread sweeper_;
};

}  // namespace meshprobe::aggregator
