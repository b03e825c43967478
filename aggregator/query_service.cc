#include "aggregator/query_service.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <exception>
#include <utility>

#include "aggregator/matrix_query.h"

namespace meshprobe::aggregator {

namespace v1 = meshprobe::v1;

namespace {

// Runs `body` (which returns a grpc::Status) and finishes the default reactor with it;
// an exception becomes INTERNAL instead of crossing into gRPC.
template <typename Body>
grpc::ServerUnaryReactor* answer(grpc::CallbackServerContext* ctx, const char* method, Histogram& latency,
                                 Body&& body) {
  const auto started = std::chrono::steady_clock::now();
  grpc::Status status;
  try {
    status = body();
  } catch (const std::exception& e) {
    spdlog::error("Query/{}: {}", method, e.what());
    status = grpc::Status(grpc::StatusCode::INTERNAL, std::string("aggregator error: ") + e.what());
  } catch (...) {
    status = grpc::Status(grpc::StatusCode::INTERNAL, "aggregator error");
  }
  latency.observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}

}  // namespace

std::string_view queryMethodName(QueryMethod m) {
  switch (m) {
    case QueryMethod::kListNodes:
      return "ListNodes";
    case QueryMethod::kGetMatrix:
      return "GetMatrix";
    case QueryMethod::kGetNode:
      return "GetNode";
    case QueryMethod::kDiagnose:
      return "Diagnose";
    case QueryMethod::kCount:
      break;
  }
  return "unknown";
}

grpc::ServerUnaryReactor* QueryService::ListNodes(grpc::CallbackServerContext* ctx, const v1::ListNodesRequest*,
                                                  v1::ListNodesResponse* resp) {
  return answer(ctx, "ListNodes", latency_[static_cast<size_t>(QueryMethod::kListNodes)], [&] {
    for (auto& n : state_.listNodes()) *resp->add_nodes() = std::move(n);
    return grpc::Status::OK;
  });
}

grpc::ServerUnaryReactor* QueryService::GetMatrix(grpc::CallbackServerContext* ctx, const v1::GetMatrixRequest* req,
                                                  v1::GetMatrixResponse* resp) {
  return answer(ctx, "GetMatrix", latency_[static_cast<size_t>(QueryMethod::kGetMatrix)], [&] {
    // Only the requested page's cells are built, from the cluster state's snapshot.
    return state_.matrixPage(*req, resp);
  });
}

grpc::ServerUnaryReactor* QueryService::GetNode(grpc::CallbackServerContext* ctx, const v1::GetNodeRequest* req,
                                                v1::GetNodeResponse* resp) {
  return answer(ctx, "GetNode", latency_[static_cast<size_t>(QueryMethod::kGetNode)], [&] {
    if (req->name().empty()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "GetNode needs a node name");
    auto node = state_.getNode(req->name());
    if (!node.ok()) return grpc::Status(grpc::StatusCode::NOT_FOUND, node.error().message);
    *resp = std::move(node.value());
    return grpc::Status::OK;
  });
}

grpc::ServerUnaryReactor* QueryService::Diagnose(grpc::CallbackServerContext* ctx, const v1::DiagnoseRequest* req,
                                                 v1::DiagnoseResponse* resp) {
  return answer(ctx, "Diagnose", latency_[static_cast<size_t>(QueryMethod::kDiagnose)], [&] {
    if (!req->node().empty() && !state_.getNode(req->node()).ok()) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          "no node named '" + req->node() + "' has said Hello to this aggregator");
    }
    for (auto& f : engine_.active(req->node())) *resp->add_findings() = std::move(f);
    return grpc::Status::OK;
  });
}

}  // namespace meshprobe::aggregator
