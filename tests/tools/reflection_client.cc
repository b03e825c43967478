// mp_reflection_client: what `grpcurl` does for meshprobe's tests (grpcurl is not
// installable here). Everything it knows about the API comes from server reflection.
// Plaintext by default (as `grpcurl -plaintext`); grpcurl's TLS flags -cacert, -cert, -key
// and -servername give mutual TLS as grpcurl does (files read once).
//
//   mp_reflection_client [--timeout 5s] [TLS flags] ADDR list
//   mp_reflection_client [--timeout 5s] [TLS flags] [--emit-defaults] [-d JSON] ADDR SERVICE/METHOD
//
// e.g. mp_reflection_client -d '{"layer":"OVERLAY"}' 127.0.0.1:9470 meshprobe.v1.Query/GetMatrix
// Exit: 0 success, 1 RPC or reflection error (status on stderr), 2 bad usage.
#include "tests/tools/reflection_client.h"

#include <grpcpp/grpcpp.h>

#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "common/duration.h"

namespace {

int usage() {
  std::cerr << "usage: mp_reflection_client [--timeout DURATION] [TLS] ADDR list\n"
               "       mp_reflection_client [--timeout DURATION] [TLS] [--emit-defaults] [-d JSON] ADDR SERVICE/METHOD\n"
               "TLS: [-plaintext] | -cacert FILE [-cert FILE -key FILE] [-servername NAME]\n";
  return 2;
}

bool readFile(const std::string& path, std::string& out) {
  std::ifstream in(path);
  if (!in) return false;
  out.assign(std::istreambuf_iterator<char>(in), {});
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::string json = "{}";
  bool emit_defaults = false;
  std::chrono::milliseconds timeout(5000);
  std::vector<std::string> positional;
  std::string cacert, cert, key, servername;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      usage();
      return 0;
    } else if (arg == "-d" && i + 1 < argc) {
      json = argv[++i];
    } else if (arg == "-plaintext") {
    } else if (arg == "-cacert" && i + 1 < argc) {
      cacert = argv[++i];
    } else if (arg == "-cert" && i + 1 < argc) {
      cert = argv[++i];
    } else if (arg == "-key" && i + 1 < argc) {
      key = argv[++i];
    } else if (arg == "-servername" && i + 1 < argc) {
      servername = argv[++i];
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

  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  grpc::ChannelArguments args;
  if (!cacert.empty()) {
    grpc::SslCredentialsOptions ssl;
    if (!readFile(cacert, ssl.pem_root_certs) || (!cert.empty() && !readFile(cert, ssl.pem_cert_chain)) ||
        (!key.empty() && !readFile(key, ssl.pem_private_key))) {
      std::cerr << "mp_reflection_client: cannot read a TLS file\n";
      return 2;
    }
    creds = grpc::SslCredentials(ssl);
    if (!servername.empty()) args.SetSslTargetNameOverride(servername);
  }
  auto channel = grpc::CreateCustomChannel(positional[0], creds, args);
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
