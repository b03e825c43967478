#pragma once
// An in-process aggregator on 127.0.0.1:<port 0> with a FakeClock, and a synchronous fake
// agent speaking Collector.Connect. Every blocking call has a deadline, so a broken server
// fails the test instead of hanging it.

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "aggregator/server.h"
#include "meshprobe/v1/collector.grpc.pb.h"
#include "meshprobe/v1/query.grpc.pb.h"
#include "tests/support/eventually.h"

namespace meshprobe::aggregator::testing {

inline constexpr std::chrono::seconds kRpcDeadline{10};

// Server work happens on gRPC threads: tests wait for it with the shared polling helper.
using meshprobe::test::eventually;

class ServerFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions options;
    options.grpc_listen = "127.0.0.1:0";
    options.cluster.stale_after = std::chrono::seconds(10);
    options.membership_window = membership_window_;
    server_ = std::make_unique<AggregatorServer>(clock_, options);
    auto port = server_->start();
    ASSERT_TRUE(port.ok()) << port.error().message;
    address_ = "127.0.0.1:" + std::to_string(*port);
    channel_ = grpc::CreateChannel(address_, grpc::InsecureChannelCredentials());
    collector_ = meshprobe::v1::Collector::NewStub(channel_);
    query_ = meshprobe::v1::Query::NewStub(channel_);
  }

  void TearDown() override {
    if (server_) server_->shutdown();
  }

  static void withDeadline(grpc::ClientContext& ctx) {
    ctx.set_deadline(std::chrono::system_clock::now() + kRpcDeadline);
  }

  // Membership at once unless a fixture sets a window: the FakeClock does not move by itself.
  std::chrono::milliseconds membership_window_{0};
  FakeClock clock_;
  std::unique_ptr<AggregatorServer> server_;
  std::string address_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<meshprobe::v1::Collector::Stub> collector_;
  std::unique_ptr<meshprobe::v1::Query::Stub> query_;
};

// One agent stream.
class FakeAgent {
 public:
  explicit FakeAgent(meshprobe::v1::Collector::Stub& stub) {
    ctx_.set_deadline(std::chrono::system_clock::now() + kRpcDeadline);
    stream_ = stub.Connect(&ctx_);
  }

  bool hello(const meshprobe::v1::Hello& h) {
    meshprobe::v1::AgentMessage m;
    *m.mutable_hello() = h;
    return stream_->Write(m);
  }
  bool report(const meshprobe::v1::Report& r) {
    meshprobe::v1::AgentMessage m;
    *m.mutable_report() = r;
    return stream_->Write(m);
  }
  bool write(const meshprobe::v1::AgentMessage& m) { return stream_->Write(m); }

  // Next PeerList, or nullopt when the stream ended.
  std::optional<meshprobe::v1::PeerList> readPeers() {
    meshprobe::v1::AggregatorMessage m;
    while (stream_->Read(&m)) {
      if (m.has_peer_list()) return m.peer_list();
    }
    return std::nullopt;
  }

  // Next message of any kind (PeerList or PeerDelta), or nullopt when the stream ended.
  std::optional<meshprobe::v1::AggregatorMessage> read() {
    meshprobe::v1::AggregatorMessage m;
    if (stream_->Read(&m)) return m;
    return std::nullopt;
  }

  grpc::Status finish() {
    stream_->WritesDone();
    meshprobe::v1::AggregatorMessage m;
    while (stream_->Read(&m)) {
    }
    return stream_->Finish();
  }
  // For streams the server already ended.
  grpc::Status status() {
    meshprobe::v1::AggregatorMessage m;
    while (stream_->Read(&m)) {
    }
    return stream_->Finish();
  }

 private:
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<meshprobe::v1::AgentMessage, meshprobe::v1::AggregatorMessage>> stream_;
};

}  // namespace meshprobe::aggregator::testing
