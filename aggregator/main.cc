// meshprobe-aggregator entry point. Serves meshprobe.v1.Collector and meshprobe.v1.Query
// with server reflection and the standard health service. Membership, the matrix and
// diagnosis arrive with the mesh issue; until then the Query API answers empty.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <iostream>
#include <thread>

#include "common/flags.h"
#include "common/logging.h"
#include "common/version.h"
#include "meshprobe/v1/collector.grpc.pb.h"
#include "meshprobe/v1/query.grpc.pb.h"

namespace po = boost::program_options;

namespace {

class QueryService final : public meshprobe::v1::Query::CallbackService {
  grpc::ServerUnaryReactor* ListNodes(grpc::CallbackServerContext* ctx, const meshprobe::v1::ListNodesRequest*,
                                      meshprobe::v1::ListNodesResponse*) override {
    auto* r = ctx->DefaultReactor();
    r->Finish(grpc::Status::OK);
    return r;
  }
  grpc::ServerUnaryReactor* GetMatrix(grpc::CallbackServerContext* ctx, const meshprobe::v1::GetMatrixRequest* req,
                                      meshprobe::v1::GetMatrixResponse* resp) override {
    resp->set_layer(req->layer());
    auto* r = ctx->DefaultReactor();
    r->Finish(grpc::Status::OK);
    return r;
  }
  grpc::ServerUnaryReactor* GetNode(grpc::CallbackServerContext* ctx, const meshprobe::v1::GetNodeRequest* req,
                                    meshprobe::v1::GetNodeResponse*) override {
    auto* r = ctx->DefaultReactor();
    r->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND, "no node named '" + req->name() + "'"));
    return r;
  }
  grpc::ServerUnaryReactor* Diagnose(grpc::CallbackServerContext* ctx, const meshprobe::v1::DiagnoseRequest*,
                                     meshprobe::v1::DiagnoseResponse*) override {
    auto* r = ctx->DefaultReactor();
    r->Finish(grpc::Status::OK);
    return r;
  }
};

class CollectorService final : public meshprobe::v1::Collector::CallbackService {};

std::atomic<bool> g_stop{false};

}  // namespace

int main(int argc, char** argv) {
  std::string grpc_listen, http_listen, stale_after, log_level, log_format;
  po::options_description desc(
      "meshprobe-aggregator: cluster reachability matrix and diagnosis for meshprobe agents.\n"
      "Every flag also reads MESHPROBE_<FLAG>; flags win.\n\nFlags");
  desc.add_options()
      ("help,h", "print this help and exit")
      ("version", "print the version and exit")
      ("grpc-listen", po::value(&grpc_listen)->default_value("0.0.0.0:9470"), "gRPC ADDR:PORT (Collector, Query, health, reflection)")
      ("http-listen", po::value(&http_listen)->default_value("0.0.0.0:9471"), "HTTP ADDR:PORT (/metrics, /healthz, /readyz, /)")
      ("stale-after", po::value(&stale_after)->default_value("10s"), "a node that has not reported for this long turns UNKNOWN")
      ("log-level", po::value(&log_level)->default_value("info"), "debug | info | warn | error")
      ("log-format", po::value(&log_format)->default_value("text"), "text | json");
  po::variables_map vm;
  auto outcome = meshprobe::parseFlags(argc, argv, desc, vm);
  if (!outcome.ok()) {
    std::cerr << "meshprobe-aggregator: " << outcome.error().message << "\n";
    return 2;
  }
  if (*outcome == meshprobe::ParseOutcome::kHelp) {
    std::cout << desc << "\n";
    return 0;
  }
  if (*outcome == meshprobe::ParseOutcome::kVersion) {
    std::cout << "meshprobe-aggregator " << meshprobe::kVersion << "\n";
    return 0;
  }
  if (auto st = meshprobe::setupLogging(log_level, log_format); !st.ok()) {
    std::cerr << "meshprobe-aggregator: " << st.error().message << "\n";
    return 2;
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  QueryService query;
  CollectorService collector;
  grpc::ServerBuilder builder;
  int bound_port = 0;
  builder.AddListeningPort(grpc_listen, grpc::InsecureServerCredentials(), &bound_port);
  builder.RegisterService(&query);
  builder.RegisterService(&collector);
  auto server = builder.BuildAndStart();
  if (!server || bound_port == 0) {
    spdlog::error("cannot listen for gRPC on {}", grpc_listen);
    return 1;
  }
  spdlog::info("meshprobe-aggregator {} serving gRPC on {}", meshprobe::kVersion, grpc_listen);

  std::signal(SIGTERM, [](int) { g_stop = true; });
  std::signal(SIGINT, [](int) { g_stop = true; });
  while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
  spdlog::info("meshprobe-aggregator stopped");
  return 0;
}
