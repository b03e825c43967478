// The real QueryClient: a unary call per method over an insecure channel to the aggregator.
#include <grpcpp/grpcpp.h>

#include "cli/app.h"
#include "meshprobe/v1/query.grpc.pb.h"

namespace meshprobe::cli {
namespace {

namespace v1 = meshprobe::v1;

class GrpcQueryClient final : public QueryClient {
 public:
  explicit GrpcQueryClient(const std::string& address)
      : stub_(v1::Query::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()))) {}

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

 private:
  std::unique_ptr<v1::Query::Stub> stub_;
};

}  // namespace

std::unique_ptr<QueryClient> grpcQueryClient(const std::string& address) {
  return std::make_unique<GrpcQueryClient>(address);
}

}  // namespace meshprobe::cli
