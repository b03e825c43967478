#include "aggregator/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <limits>
#include <utility>

#include "common/grpc_keepalive.h"
#include "common/thread_name.h"

namespace meshprobe::aggregator {

std::optional<uint64_t> parseByteQuantity(std::string_view text) {
  uint64_t value = 0;
  const char* end = text.data() + text.size();
  auto [rest, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || rest == text.data()) return std::nullopt;
  const std::string_view suffix(rest, static_cast<size_t>(end - rest));
  static constexpr std::array<std::pair<std::string_view, uint64_t>, 9> kUnits{{
      {"", 1},
      {"k", 1000},
      {"M", 1000 * 1000},
      {"G", 1000 * 1000 * 1000},
      {"T", 1000ull * 1000 * 1000 * 1000},
      {"Ki", 1ull << 10},
      {"Mi", 1ull << 20},
      {"Gi", 1ull << 30},
      {"Ti", 1ull << 40},
  }};
  for (const auto& [name, unit] : kUnits) {
    if (suffix != name) continue;
    constexpr uint64_t kMax = uint64_t{1} << 63;
    if (value > kMax / unit) return std::nullopt;
    return value * unit;
  }
  return std::nullopt;
}

AggregatorServer::AggregatorServer(const Clock& clock, ServerOptions options)
    : options_(std::move(options)),
      state_(clock, options_.cluster),
      diagnosis_(clock, state_, options_.diagnosis, options_.kube),
      collector_(state_, clock, options_.membership_window, options_.hello_timeout),
      query_(state_, diagnosis_, options_.kube, options_.diagnosis.kube) {}

AggregatorServer::~AggregatorServer() { shutdown(); }

Result<int> AggregatorServer::start() {
  if (server_) return Error{"aggregator server already started"};
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options_.grpc_listen, tls::serverCredentials(options_.tls), &port_);
  builder.RegisterService(&collector_);
  builder.RegisterService(&query_);
  // Accept the agents' keepalive pings even while sending them nothing (common/grpc_keepalive.h).
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             static_cast<int>(kServerMinPingInterval.count()));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  if (options_.grpc_memory_limit > 0) {
    quota_ = std::make_unique<grpc::ResourceQuota>("meshprobe-aggregator");
    quota_->Resize(static_cast<size_t>(std::min<uint64_t>(options_.grpc_memory_limit,
                                                          std::numeric_limits<size_t>::max())));
    builder.SetResourceQuota(*quota_);
  }
  server_ = builder.BuildAndStart();
  if (!server_ || port_ == 0) {
    server_.reset();
    return Error{"cannot listen for gRPC on " + options_.grpc_listen};
  }
  if (auto* health = server_->GetHealthCheckService()) {
    health->SetServingStatus(kCollectorService, true);
    health->SetServingStatus(kQueryService, true);
  }
  ready_ = true;
  if (!options_.http_listen.empty()) {
    http_ = std::make_unique<AggregatorHttp>(AggregatorMetricsSources{state_, diagnosis_, &collector_.stats(), &query_,
                                                                      options_.kube, options_.kube_counters,
                                                                      options_.is_leader, options_.leader_identity,
                                                                      options_.node_status_counters},
                                             [this] { return ready(); });
    auto http_port = http_->start(options_.http_listen);
    if (!http_port.ok()) {
      ready_ = false;
      http_.reset();
      server_->Shutdown(std::chrono::system_clock::now());
      server_->Wait();
      server_.reset();
      port_ = 0;
      return http_port.error();
    }
    http_port_ = *http_port;
  }
  sweeper_ = std::thread([this] {
    nameThisThread("membership");
    sweepLoop();
  });
  diagnoser_ = std::thread([this] {
    nameThisThread("diagnosis");
    diagnosisLoop();
  });
  return port_;
}

// Wakes every membership_flush_interval to send coalesced membership changes, and sweeps
// every sweep_interval.
void AggregatorServer::sweepLoop() {
  const auto tick = std::min<std::chrono::milliseconds>(options_.membership_flush_interval, options_.sweep_interval);
  auto next_sweep = std::chrono::steady_clock::now() + options_.sweep_interval;
  std::unique_lock lock(mu_);
  while (!stopping_) {
    cv_.wait_for(lock, tick, [this] { return stopping_; });
    if (stopping_) break;
    lock.unlock();
    collector_.flushMembership();
    if (const auto now = std::chrono::steady_clock::now(); now >= next_sweep) {
      collector_.sweep();
      next_sweep = now + options_.sweep_interval;
    }
    lock.lock();
  }
}

void AggregatorServer::diagnosisLoop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    lock.unlock();
    diagnosis_.evaluate();
    logKubeState();
    lock.lock();
    cv_.wait_for(lock, options_.diagnosis_interval, [this] { return stopping_; });
  }
}

// One line per change of the API's overall state (the watcher logs each failing request
// itself): a warning when it turns unreachable or forbidden, info when it is synced
// (again) or connecting. Reads the current snapshot (a shared_ptr copy, no I/O).
void AggregatorServer::logKubeState() {
  if (!options_.kube) return;
  const kube::ApiStatus status = options_.kube->objects()->status;
  if (status.state == kube_logged_) return;
  kube_logged_ = status.state;
  switch (status.state) {
    case kube::ApiState::kUnreachable:
    case kube::ApiState::kForbidden:
      spdlog::warn(
          "{}; the aggregator goes on with the agents' data (the Kubernetes findings with the last objects "
          "seen, if any)",
          kubeStatusLine(status));
      break;
    case kube::ApiState::kSynced:
    case kube::ApiState::kConnecting:
    case kube::ApiState::kOff:
      spdlog::info("{}", kubeStatusLine(status));
      break;
  }
}

void AggregatorServer::shutdown(std::chrono::milliseconds grace) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  ready_ = false;
  if (http_) http_->stop();
  cv_.notify_all();
  if (sweeper_.joinable()) sweeper_.join();
  if (diagnoser_.joinable()) diagnoser_.join();
  if (!server_) return;
  if (auto* health = server_->GetHealthCheckService()) health->Shutdown();
  collector_.finishAll(grpc::Status(grpc::StatusCode::UNAVAILABLE, "aggregator is shutting down"));
  server_->Shutdown(std::chrono::system_clock::now() + grace);
  server_->Wait();
  server_.reset();
}

}  // namespace meshprobe::aggregator
