// mp_reflection_client: what `grpcurl -plaintext` does for meshprobe's tests (grpcurl is
// not installable here). Everything it knows about the API comes from server reflection.
//
//   mp_reflection_client [--timeout 5s] ADDR list
//   mp_reflection_client [--timeout 5s] [--emit-defaults] [-d JSON] ADDR SERVICE/METHOD
//
// e.g. mp_reflection_client -d '{"layer":"OVERLAY"}' 127.0.0.1:9470 meshprobe.v1.Query/GetMatrix
// Exit: 0 success, 1 RPC or reflection error (status on stderr), 2 bad usage.
#include "tests/tools/reflection_client.h"

#include <grpcpp/grpcpp.h>

#include <iostream>
#include <string>
#include <vector>

#include "common/duration.h"

namespace {

int usage() {
  std::cerr << "usage: mp_reflection_client [--timeout DURATION] ADDR list\n"
               "       mp_reflection_client [--timeout DURATION] [--emit-defaults] [-d JSON] ADDR SERVICE/METHOD\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string json = "{}";
  bool emit_defaults = false;
  std::chrono::milliseconds timeout(5000);
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      usage();
      return 0;
    } else if (arg == "-d" && i + 1 < argc) {
      json = argv[++i];
    } else if (arg == "--emit-defaults") {
      emit_defaults = true;
    } else if (arg == "--timeout" && i + 1 < argc) {
      auto d = meshprobe::parseDuration(argv[++i]);
      if (!d || d->count() <= 0) return usage();
      timeout = std::chrono::duration_cast<std::chrono::milliseconds>(*d);
    } else if (!arg.empty() && arg[0] == '-') {
      return usage();
    } else {
      positional.push_back(arg);
    }
  }
  if (positional.size() != 2) return usage();

  auto channel = grpc::CreateChannel(positional[0], grpc::InsecureChannelCredentials());
  meshprobe::tools::ReflectionClient client(channel, timeout);
  if (positional[1] == "list") {
    auto services = client.listServices();
    if (!services.ok()) {
      std::cerr << "mp_reflection_client: " << services.error().message << "\n";
      return 1;
    }
    for (const auto& s : *services) std::cout << s << "\n";
    return 0;
  }
  auto result = client.callJson(positional[1], json, emit_defaults);
  if (!result.ok()) {
    std::cerr << "mp_reflection_client: " << result.error().message << "\n";
    return 1;
  }
  if (!result->status.ok()) {
    std::cerr << "ERROR:\n  Code: " << meshprobe::grpcStatusCodeName(result->status.error_code())
              << "\n  Message: " << result->status.error_message() << "\n";
    return 1;
  }
  std::cout << result->json;
  if (result->json.empty() || result->json.back() != '\n') std::cout << "\n";
  return 0;
}
