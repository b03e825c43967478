// The real QueryClient: a unary call per method over a channel to the aggregator (mutual TLS
// or, with --insecure, plaintext).
#include <grpcpp/grpcpp.h>

#include "cli/app.h"
#include "meshprobe/v1/query.grpc.pb.h"

namespace meshprobe::cli {
namespace {

namespace v1 = meshprobe::v1;

class GrpcQueryClient final : public QueryClient {
 public:
  GrpcQueryClient(const std::string& address, const tls::ClientConfig& tls)
      : stub_(v1::Query::NewStub(tls::createChannel(address, tls))) {}

  grpc::Status listNodes(Deadline d, v1::ListNodesResponse* out) override {
    grpc::ClientContext ctx;
    ctx.set_deadline(d);
    return stub_->ListNodes(&ctx, v1::ListNodesRequest(), out);
  }
  grpc::Status getMatrix(Deadline d, const v1::GetMatrixRequest& req, v1::GetMatrixResponse* out) override {
    grpc::ClientContext ctx;
    ctx.set_deadline(d);
    return stub_->GetMatrix(&ctx, req, out);
  }
  grpc::Status getNode(Deadline d, const std::string& name, v1::GetNodeResponse* out) override {
    grpc::ClientContext ctx;
    ctx.set_deadline(d);
    v1::GetNodeRequest req;
    req.set_name(name);
    return stub_->GetNode(&ctx, req, out);
  }
  grpc::Status diagnose(Deadline d, const std::string& node, v1::DiagnoseResponse* out) override {
    grpc::ClientContext ctx;
    ctx.set_deadline(d);
    v1::DiagnoseRequest req;
    req.set_node(node);
    return stub_->Diagnose(&ctx, req, out);
  }
  grpc::Status listNamespaces(Deadline d, v1::ListNamespacesResponse* out) override {
    grpc::ClientContext ctx;
    ctx.set_deadline(d);
    return stub_->ListNamespaces(&ctx, v1::ListNamespacesRequest(), out);
  }

 private:
  std::unique_ptr<v1::Query::Stub> stub_;
};

}  // namespace

std::unique_ptr<QueryClient> grpcQueryClient(const std::string& address, const tls::ClientConfig& tls) {
  return std::make_unique<GrpcQueryClient>(address, tls);
}

}  // namespace meshprobe::cli
