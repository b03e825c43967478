#pragma once
// A grpcurl-like client that knows nothing about meshprobe at compile time: it lists
// services over grpc.reflection.v1alpha.ServerReflection, fetches the file descriptors
// that define a method, builds a DescriptorPool + DynamicMessageFactory from them,
// converts a JSON request with JsonStringToMessage, calls the method through
// grpc::GenericStub and returns the response as JSON (enum values as names).
//
// The reflection protocol's own messages are described here as a FileDescriptorProto in
// a private pool, so this works without grpc's generated reflection code (and without
// clashing with it when a test binary also links grpc++_reflection).
// Header-only: used by mp_reflection_client and by the aggregator unit tests.

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/descriptor_database.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/text_format.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/grpc_status.h"
#include "common/result.h"

namespace meshprobe::tools {

namespace pb = google::protobuf;

inline constexpr const char* kReflectionMethod = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";

// The parts of grpc/reflection/v1alpha/reflection.proto this client uses (field numbers
// as in the original; fields left out are skipped as unknown on parse).
inline constexpr const char* kReflectionProtoText = R"pb(
  name: "meshprobe_tools/reflection_v1alpha.proto"
  package: "grpc.reflection.v1alpha"
  syntax: "proto3"
  message_type {
    name: "ServerReflectionRequest"
    field { name: "host" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING json_name: "host" }
    field { name: "file_by_filename" number: 3 label: LABEL_OPTIONAL type: TYPE_STRING oneof_index: 0 }
    field { name: "file_containing_symbol" number: 4 label: LABEL_OPTIONAL type: TYPE_STRING oneof_index: 0 }
    field { name: "list_services" number: 7 label: LABEL_OPTIONAL type: TYPE_STRING oneof_index: 0 }
    oneof_decl { name: "message_request" }
  }
  message_type {
    name: "ServerReflectionResponse"
    field { name: "valid_host" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
    field {
      name: "file_descriptor_response"
      number: 4
      label: LABEL_OPTIONAL
      type: TYPE_MESSAGE
      type_name: ".grpc.reflection.v1alpha.FileDescriptorResponse"
      oneof_index: 0
    }
    field {
      name: "list_services_response"
      number: 6
      label: LABEL_OPTIONAL
      type: TYPE_MESSAGE
      type_name: ".grpc.reflection.v1alpha.ListServiceResponse"
      oneof_index: 0
    }
    field {
      name: "error_response"
      number: 7
      label: LABEL_OPTIONAL
      type: TYPE_MESSAGE
      type_name: ".grpc.reflection.v1alpha.ErrorResponse"
      oneof_index: 0
    }
    oneof_decl { name: "message_response" }
  }
  message_type {
    name: "FileDescriptorResponse"
    field { name: "file_descriptor_proto" number: 1 label: LABEL_REPEATED type: TYPE_BYTES }
  }
  message_type {
    name: "ListServiceResponse"
    field {
      name: "service"
      number: 1
      label: LABEL_REPEATED
      type: TYPE_MESSAGE
      type_name: ".grpc.reflection.v1alpha.ServiceResponse"
    }
  }
  message_type {
    name: "ServiceResponse"
    field { name: "name" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
  }
  message_type {
    name: "ErrorResponse"
    field { name: "error_code" number: 1 label: LABEL_OPTIONAL type: TYPE_INT32 }
    field { name: "error_message" number: 2 label: LABEL_OPTIONAL type: TYPE_STRING }
  }
)pb";


inline grpc::ByteBuffer toByteBuffer(const pb::Message& msg) {
  std::string bytes = msg.SerializeAsString();
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

inline bool fromByteBuffer(const grpc::ByteBuffer& buffer, pb::Message* msg) {
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) return false;
  std::string bytes;
  for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return msg->ParseFromString(bytes);
}

class ReflectionClient {
 public:
  struct CallResult {
    grpc::Status status;
    std::string json;  // the response, when status is OK
  };

  ReflectionClient(std::shared_ptr<grpc::Channel> channel, std::chrono::milliseconds timeout)
      : channel_(std::move(channel)), stub_(channel_), timeout_(timeout) {
    pb::FileDescriptorProto file;
    pb::TextFormat::ParseFromString(kReflectionProtoText, &file);
    reflection_file_ = reflection_pool_.BuildFile(file);  // checked in each use
    pool_ = std::make_unique<pb::DescriptorPool>(&db_);
  }

  // Service names, sorted (what `grpcurl list` prints).
  Result<std::vector<std::string>> listServices() {
    auto req = newReflectionMessage("ServerReflectionRequest");
    if (!req.ok()) return req.error();
    setString(**req, "list_services", "*");
    auto resp = reflect(**req);
    if (!resp.ok()) return resp.error();
    const pb::Message& r = **resp;
    const auto* list_field = r.GetDescriptor()->FindFieldByName("list_services_response");
    if (!r.GetReflection()->HasField(r, list_field)) return Error{"reflection: no list_services_response"};
    const pb::Message& list = r.GetReflection()->GetMessage(r, list_field);
    const auto* service_field = list.GetDescriptor()->FindFieldByName("service");
    std::vector<std::string> names;
    for (int i = 0; i < list.GetReflection()->FieldSize(list, service_field); ++i) {
      const pb::Message& s = list.GetReflection()->GetRepeatedMessage(list, service_field, i);
      names.push_back(s.GetReflection()->GetString(s, s.GetDescriptor()->FindFieldByName("name")));
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  // "pkg.Service/Method" or "pkg.Service.Method".
  Result<const pb::MethodDescriptor*> findMethod(const std::string& full_method) {
    std::string name = full_method;
    if (!name.empty() && name.front() == '/') name.erase(0, 1);
    auto slash = name.rfind('/');
    if (slash == std::string::npos) slash = name.rfind('.');
    if (slash == std::string::npos) return Error{"method '" + full_method + "' is not SERVICE/METHOD"};
    const std::string service = name.substr(0, slash);
    const std::string method = name.substr(slash + 1);
    if (auto st = fetchSymbol(service); !st.ok()) return st.error();
    const auto* sd = pool_->FindServiceByName(service);
    if (sd == nullptr) return Error{"service '" + service + "' not found in the server's descriptors"};
    const auto* md = sd->FindMethodByName(method);
    if (md == nullptr) return Error{"service '" + service + "' has no method '" + method + "'"};
    return md;
  }

  // Unary call with a JSON request; the response comes back as JSON.
  Result<CallResult> callJson(const std::string& full_method, const std::string& json_request,
                              bool emit_defaults = false) {
    auto method = findMethod(full_method);
    if (!method.ok()) return method.error();
    const pb::MethodDescriptor* md = *method;
    if (md->client_streaming() || md->server_streaming()) return Error{"only unary methods can be called"};
    std::unique_ptr<pb::Message> request(factory_.GetPrototype(md->input_type())->New());
    std::unique_ptr<pb::Message> response(factory_.GetPrototype(md->output_type())->New());
    auto parsed = pb::util::JsonStringToMessage(json_request, request.get());
    if (!parsed.ok()) {
      return Error{"request is not a valid " + md->input_type()->full_name() + ": " + parsed.ToString()};
    }
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + timeout_);
    grpc::CompletionQueue cq;
    grpc::ByteBuffer req_buf = toByteBuffer(*request);
    grpc::ByteBuffer resp_buf;
    grpc::Status status;
    const std::string path = "/" + md->service()->full_name() + "/" + md->name();
    auto call = stub_.PrepareUnaryCall(&ctx, path, req_buf, &cq);
    call->StartCall();
    call->Finish(&resp_buf, &status, tag(1));
    bool ok = next(cq, 1);
    cq.Shutdown();
    drain(cq);
    CallResult out;
    out.status = status;
    if (!ok || !status.ok()) return out;
    if (!fromByteBuffer(resp_buf, response.get())) return Error{"cannot parse the " + md->output_type()->full_name()};
    pb::util::JsonPrintOptions options;
    options.add_whitespace = true;
    options.always_print_primitive_fields = emit_defaults;
    auto printed = pb::util::MessageToJsonString(*response, &out.json, options);
    if (!printed.ok()) return Error{"cannot print the response as JSON: " + printed.ToString()};
    return out;
  }

 private:
  static void* tag(intptr_t n) { return reinterpret_cast<void*>(n); }

  // Waits for the completion of tag `expected`; returns its ok bit.
  static bool next(grpc::CompletionQueue& cq, intptr_t expected) {
    void* got = nullptr;
    bool ok = false;
    while (cq.Next(&got, &ok)) {
      if (got == tag(expected)) return ok;
    }
    return false;
  }

  static void drain(grpc::CompletionQueue& cq) {
    void* got = nullptr;
    bool ok = false;
    while (cq.Next(&got, &ok)) {
    }
  }

  Result<std::unique_ptr<pb::Message>> newReflectionMessage(const std::string& name) {
    if (reflection_file_ == nullptr) return Error{"internal: the reflection descriptor did not build"};
    const auto* d = reflection_pool_.FindMessageTypeByName("grpc.reflection.v1alpha." + name);
    if (d == nullptr) return Error{"internal: no reflection message " + name};
    return std::unique_ptr<pb::Message>(reflection_factory_.GetPrototype(d)->New());
  }

  static void setString(pb::Message& msg, const std::string& field, const std::string& value) {
    msg.GetReflection()->SetString(&msg, msg.GetDescriptor()->FindFieldByName(field), value);
  }

  // One ServerReflectionInfo exchange: one request, one response, on its own stream.
  Result<std::unique_ptr<pb::Message>> reflect(const pb::Message& request) {
    auto response = newReflectionMessage("ServerReflectionResponse");
    if (!response.ok()) return response.error();
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + timeout_);
    grpc::CompletionQueue cq;
    auto call = stub_.PrepareCall(&ctx, kReflectionMethod, &cq);
    call->StartCall(tag(1));
    bool ok = next(cq, 1);
    grpc::ByteBuffer out = toByteBuffer(request);
    grpc::ByteBuffer in;
    bool got = false;
    if (ok) {
      call->Write(out, tag(2));
      ok = next(cq, 2);
    }
    if (ok) {
      call->Read(&in, tag(3));
      got = next(cq, 3);
    }
    call->WritesDone(tag(4));
    next(cq, 4);
    grpc::Status status;
    call->Finish(&status, tag(5));
    next(cq, 5);
    cq.Shutdown();
    drain(cq);
    if (!got) {
      return Error{std::string("reflection call failed: ") + grpcStatusCodeName(status.error_code()) + ": " +
                   status.error_message()};
    }
    if (!fromByteBuffer(in, response->get())) return Error{"cannot parse the ServerReflectionResponse"};
    const pb::Message& r = **response;
    const auto* err_field = r.GetDescriptor()->FindFieldByName("error_response");
    if (r.GetReflection()->HasField(r, err_field)) {
      const pb::Message& e = r.GetReflection()->GetMessage(r, err_field);
      return Error{"reflection error " +
                   std::to_string(e.GetReflection()->GetInt32(e, e.GetDescriptor()->FindFieldByName("error_code"))) +
                   ": " + e.GetReflection()->GetString(e, e.GetDescriptor()->FindFieldByName("error_message"))};
    }
    return std::move(*response);
  }

  // Adds the files in a file_descriptor_response to the database; returns their names.
  Result<std::vector<std::string>> addFiles(const pb::Message& response) {
    const auto* fdr_field = response.GetDescriptor()->FindFieldByName("file_descriptor_response");
    if (!response.GetReflection()->HasField(response, fdr_field))
      return Error{"reflection: no file_descriptor_response"};
    const pb::Message& fdr = response.GetReflection()->GetMessage(response, fdr_field);
    const auto* bytes_field = fdr.GetDescriptor()->FindFieldByName("file_descriptor_proto");
    std::vector<std::string> names;
    for (int i = 0; i < fdr.GetReflection()->FieldSize(fdr, bytes_field); ++i) {
      pb::FileDescriptorProto file;
      if (!file.ParseFromString(fdr.GetReflection()->GetRepeatedString(fdr, bytes_field, i))) {
        return Error{"reflection: a file_descriptor_proto does not parse"};
      }
      names.push_back(file.name());
      if (known_files_.insert(file.name()).second) db_.Add(file);
      for (const auto& dep : file.dependency()) wanted_files_.insert(dep);
    }
    return names;
  }

  // Fetches the file defining `symbol` and, by name, every dependency the server did not
  // send along with it (gRPC sends the transitive closure; other servers may not).
  Status fetchSymbol(const std::string& symbol) {
    auto req = newReflectionMessage("ServerReflectionRequest");
    if (!req.ok()) return req.error();
    setString(**req, "file_containing_symbol", symbol);
    auto resp = reflect(**req);
    if (!resp.ok()) return resp.error();
    if (auto added = addFiles(**resp); !added.ok()) return added.error();
    for (int guard = 0; guard < 100; ++guard) {
      std::string missing;
      for (const auto& f : wanted_files_) {
        if (!known_files_.count(f)) {
          missing = f;
          break;
        }
      }
      if (missing.empty()) return okStatus();
      auto dep_req = newReflectionMessage("ServerReflectionRequest");
      if (!dep_req.ok()) return dep_req.error();
      setString(**dep_req, "file_by_filename", missing);
      auto dep = reflect(**dep_req);
      if (!dep.ok()) return Error{"fetching dependency " + missing + ": " + dep.error().message};
      if (auto added = addFiles(**dep); !added.ok()) return added.error();
      known_files_.insert(missing);  // even if the server named it differently: no loop
    }
    return Error{"reflection: too many dependencies"};
  }

  std::shared_ptr<grpc::Channel> channel_;
  grpc::GenericStub stub_;
  std::chrono::milliseconds timeout_;

  pb::DescriptorPool reflection_pool_;
  const pb::FileDescriptor* reflection_file_ = nullptr;
  pb::DynamicMessageFactory reflection_factory_{&reflection_pool_};

  pb::SimpleDescriptorDatabase db_;
  std::set<std::string> known_files_;
  std::set<std::string> wanted_files_;
  std::unique_ptr<pb::DescriptorPool> pool_;  // over db_, lazily loads what was fetched
  pb::DynamicMessageFactory factory_{};
};

}  // namespace meshprobe::tools
