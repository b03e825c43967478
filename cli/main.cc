// meshprobe: the user CLI over the aggregator's Query API.
//   meshprobe [--aggregator HOST:PORT] [--output text|json] nodes | matrix [--layer L] | node NAME | diagnose [--node N]
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <iostream>

#include "cli/render.h"
#include "common/duration.h"
#include "common/flags.h"
#include "common/version.h"
#include "meshprobe/v1/query.grpc.pb.h"

namespace po = boost::program_options;
namespace v1 = meshprobe::v1;

namespace {

int fail(const std::string& msg, int code = 1) {
  std::cerr << "meshprobe: " << msg << "\n";
  return code;
}

std::string toJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions opts;
  opts.add_whitespace = true;
  opts.always_print_primitive_fields = true;  // scripts see loss 0, not a missing field
  auto st = google::protobuf::util::MessageToJsonString(m, &out, opts);
  return st.ok() ? out : "{}";
}

}  // namespace

int main(int argc, char** argv) {
  std::string aggregator, output, layer, node_filter;
  std::vector<std::string> args;
  po::options_description desc(
      "meshprobe: query the meshprobe aggregator.\n\n"
      "Commands:\n"
      "  nodes                 every node, up or stale, with its overlay facts\n"
      "  matrix [--layer L]    reachability heatmap; L = UNDERLAY | OVERLAY | ISTIOD (default OVERLAY)\n"
      "  node NAME             one node's checks and probes\n"
      "  diagnose [--node N]   active findings, most severe first\n\n"
      "Every flag also reads MESHPROBE_<FLAG>.\n\nFlags");
  desc.add_options()
      ("help,h", "print this help and exit")
      ("version", "print the version and exit")
      ("aggregator", po::value(&aggregator)->default_value("127.0.0.1:9470"), "aggregator gRPC HOST:PORT")
      ("output", po::value(&output)->default_value("text"), "text | json")
      ("layer", po::value(&layer)->default_value("OVERLAY"), "matrix layer")
      ("node", po::value(&node_filter), "diagnose: only findings that blame this node")
      ("timeout", po::value<std::string>()->default_value("5s"), "RPC deadline")
      ("command", po::value(&args)->multitoken(), "command and its argument");
  po::positional_options_description pos;
  pos.add("command", -1);
  po::variables_map vm;
  auto outcome = meshprobe::parseFlags(argc, argv, desc, vm, &pos);
  if (!outcome.ok()) return fail(outcome.error().message + " (see meshprobe --help)", 2);
  if (*outcome == meshprobe::ParseOutcome::kHelp) {
    std::cout << desc << "\n";
    return 0;
  }
  if (*outcome == meshprobe::ParseOutcome::kVersion) {
    std::cout << "meshprobe " << meshprobe::kVersion << "\n";
    return 0;
  }
  if (args.empty()) return fail("missing command: nodes | matrix | node NAME | diagnose (see meshprobe --help)", 2);
  if (output != "text" && output != "json") return fail("--output must be text or json, got '" + output + "'", 2);
  auto timeout = meshprobe::parseDuration(vm["timeout"].as<std::string>());
  if (!timeout) return fail("--timeout: invalid duration", 2);

  const bool json = output == "json";
  const bool color = !json && isatty(STDOUT_FILENO) == 1;
  auto channel = grpc::CreateChannel(aggregator, grpc::InsecureChannelCredentials());
  auto stub = v1::Query::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + *timeout);

  auto rpcError = [&](const grpc::Status& st) {
    std::string what = st.error_code() == grpc::StatusCode::UNAVAILABLE ||
                               st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED
                           ? "cannot reach the aggregator at " + aggregator + ": "
                           : "aggregator at " + aggregator + ": ";
    return fail(what + st.error_message());
  };

  const std::string& cmd = args[0];
  if (cmd == "nodes") {
    v1::ListNodesResponse resp;
    auto st = stub->ListNodes(&ctx, v1::ListNodesRequest(), &resp);
    if (!st.ok()) return rpcError(st);
    std::cout << (json ? toJson(resp) : meshprobe::cli::renderNodes(resp, color));
  } else if (cmd == "matrix") {
    v1::GetMatrixRequest req;
    v1::Layer l;
    if (!v1::Layer_Parse(layer, &l) || l == v1::LAYER_UNSPECIFIED || l == v1::AMBIENT)
      return fail("--layer must be UNDERLAY, OVERLAY or ISTIOD, got '" + layer + "'", 2);
    req.set_layer(l);
    v1::GetMatrixResponse resp;
    auto st = stub->GetMatrix(&ctx, req, &resp);
    if (!st.ok()) return rpcError(st);
    std::cout << (json ? toJson(resp) : meshprobe::cli::renderMatrix(resp, color));
  } else if (cmd == "node") {
    if (args.size() < 2) return fail("node: missing NAME", 2);
    v1::GetNodeRequest req;
    req.set_name(args[1]);
    v1::GetNodeResponse resp;
    auto st = stub->GetNode(&ctx, req, &resp);
    if (!st.ok()) return rpcError(st);
    std::cout << (json ? toJson(resp) : meshprobe::cli::renderNode(resp, color));
  } else if (cmd == "diagnose") {
    v1::DiagnoseRequest req;
    req.set_node(node_filter);
    v1::DiagnoseResponse resp;
    auto st = stub->Diagnose(&ctx, req, &resp);
    if (!st.ok()) return rpcError(st);
    std::cout << (json ? toJson(resp) : meshprobe::cli::renderFindings(resp, color));
  } else {
    return fail("unknown command '" + cmd + "': nodes | matrix | node NAME | diagnose", 2);
  }
  if (json) std::cout << "\n";
  return 0;
}
