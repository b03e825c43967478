// The aggregator's gRPC port with mutual TLS, on 127.0.0.1 with the checked-in test PKI
// (tests/data/mtls): who may connect, who may report as which node, and certificate
// rotation without a restart or a dropped stream.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "aggregator/server.h"
#include "common/tls/tls.h"
#include "meshprobe/v1/collector.grpc.pb.h"
#include "meshprobe/v1/query.grpc.pb.h"
#include "tests/support/eventually.h"
#include "tests/support/mtls_pki.h"
#include "tests/unit/aggregator/server_fixture.h"
#include "tests/unit/aggregator/test_util.h"

namespace meshprobe::aggregator::testing {
namespace {

using meshprobe::test::eventually;
using meshprobe::test::mtlsClient;
using meshprobe::test::mtlsFile;
using meshprobe::test::mtlsServer;
namespace fs = std::filesystem;

bool contains(const std::string& s, const std::string& what) { return s.find(what) != std::string::npos; }

std::string readAll(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Writes `from`'s bytes to `to` atomically (a temporary file renamed over it), as a
// Kubernetes Secret volume update swaps the files.
void replaceFile(const std::string& from, const std::string& to) {
  const std::string tmp = to + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << readAll(from);
  }
  fs::rename(tmp, to);
}

class TlsServerTest : public ::testing::Test {
 protected:
  void startServer(tls::ServerConfig config) {
    ServerOptions options;
    options.grpc_listen = "127.0.0.1:0";
    options.cluster.stale_after = std::chrono::seconds(10);
    options.membership_window = std::chrono::milliseconds(0);
    options.tls = std::move(config);
    server_ = std::make_unique<AggregatorServer>(clock_, options);
    auto port = server_->start();
    ASSERT_TRUE(port.ok()) << port.error().message;
    address_ = "127.0.0.1:" + std::to_string(*port);
  }
  void TearDown() override {
    if (server_) server_->shutdown();
  }

  // A fresh channel (its own connection and handshake) with `config`.
  std::shared_ptr<grpc::Channel> channel(const tls::ClientConfig& config) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    return tls::createChannel(address_, config, args);
  }

  grpc::Status listNodes(const tls::ClientConfig& config, v1::ListNodesResponse* out = nullptr,
                         std::string* server_cert = nullptr) {
    auto stub = v1::Query::NewStub(channel(config));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::ListNodesResponse resp;
    auto st = stub->ListNodes(&ctx, v1::ListNodesRequest(), &resp);
    if (out) *out = resp;
    if (server_cert && st.ok()) {
      auto pem = ctx.auth_context()->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME);
      if (!pem.empty()) *server_cert = std::string(pem.front().data(), pem.front().size());
    }
    return st;
  }

  bool known(const std::string& node) {
    v1::ListNodesResponse resp;
    if (!listNodes(mtlsClient("meshprobe-reader"), &resp).ok()) return false;
    for (const auto& n : resp.nodes())
      if (n.name() == node) return true;
    return false;
  }

  FakeClock clock_;
  std::unique_ptr<AggregatorServer> server_;
  std::string address_;
};

TEST_F(TlsServerTest, NodeCertificateReportsAsItsNodeOnly) {
  startServer(mtlsServer());
  auto stub = v1::Collector::NewStub(channel(mtlsClient("node2")));
  FakeAgent own(*stub);
  ASSERT_TRUE(own.hello(makeHello("node2", 2)));
  ASSERT_TRUE(eventually([&] { return known("node2"); }));

  FakeAgent other(*stub);
  other.hello(makeHello("node3", 3));
  grpc::Status st = other.status();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(contains(st.error_message(), "'node2'")) << st.error_message();
  EXPECT_TRUE(contains(st.error_message(), "'node3'")) << st.error_message();
  EXPECT_FALSE(known("node3"));
  EXPECT_EQ(server_->collector().stats().ingestErrors(IngestError::kPermissionDenied), 1u);
  EXPECT_TRUE(own.finish().ok());
}

TEST_F(TlsServerTest, SharedAgentCertificateReportsAsAnyNode) {
  startServer(mtlsServer());
  auto stub = v1::Collector::NewStub(channel(mtlsClient("meshprobe-agent")));
  FakeAgent a(*stub), b(*stub);
  ASSERT_TRUE(a.hello(makeHello("node1", 1)));
  ASSERT_TRUE(b.hello(makeHello("node4", 4)));
  EXPECT_TRUE(eventually([&] { return known("node1") && known("node4"); }));
}

TEST_F(TlsServerTest, ReaderCertificateQueriesButCannotReport) {
  startServer(mtlsServer());
  EXPECT_TRUE(listNodes(mtlsClient("meshprobe-reader")).ok());
  auto stub = v1::Collector::NewStub(channel(mtlsClient("meshprobe-reader")));
  FakeAgent agent(*stub);
  agent.hello(makeHello("node1", 1));
  grpc::Status st = agent.status();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(contains(st.error_message(), "reader certificate")) << st.error_message();
  // Agents' certificates may read too.
  EXPECT_TRUE(listNodes(mtlsClient("node1")).ok());
}

TEST_F(TlsServerTest, ClientsWithoutAGoodCertificateAreRefusedOnBothServices) {
  startServer(mtlsServer());
  // Plaintext against the TLS port.
  tls::ClientConfig plaintext;
  EXPECT_EQ(listNodes(plaintext).error_code(), grpc::StatusCode::UNAVAILABLE);
  // TLS without a client certificate: the server requires one.
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = readAll(mtlsFile("ca.pem"));
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride("meshprobe-aggregator");
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto no_cert = grpc::CreateCustomChannel(address_, grpc::SslCredentials(ssl), args);
  {
    auto q = v1::Query::NewStub(no_cert);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::ListNodesResponse resp;
    EXPECT_EQ(q->ListNodes(&ctx, v1::ListNodesRequest(), &resp).error_code(), grpc::StatusCode::UNAVAILABLE);
    auto c = v1::Collector::NewStub(no_cert);
    FakeAgent agent(*c);
    agent.hello(makeHello("node1", 1));
    EXPECT_EQ(agent.status().error_code(), grpc::StatusCode::UNAVAILABLE);
  }
  // A certificate for node2 from another CA.
  EXPECT_EQ(listNodes(mtlsClient("untrusted-node2")).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_FALSE(known("node1"));
}

TEST_F(TlsServerTest, ClientVerifiesTheAggregator) {
  startServer(mtlsServer("aggregator-other-ca"));
  EXPECT_EQ(listNodes(mtlsClient("node1")).error_code(), grpc::StatusCode::UNAVAILABLE);  // unknown CA
  server_->shutdown();
  startServer(mtlsServer());
  auto wrong_name = mtlsClient("node1");
  wrong_name.server_name = "not-the-aggregator";
  EXPECT_EQ(listNodes(wrong_name).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(listNodes(mtlsClient("node1")).ok());
}

TEST_F(TlsServerTest, PlaintextServerAcceptsAnyNode) {
  tls::ServerConfig insecure;
  insecure.insecure = true;
  startServer(insecure);
  tls::ClientConfig plaintext;
  auto stub = v1::Collector::NewStub(channel(plaintext));
  FakeAgent agent(*stub);
  ASSERT_TRUE(agent.hello(makeHello("node3", 3)));
  v1::ListNodesResponse resp;
  EXPECT_TRUE(eventually([&] {
    return listNodes(plaintext, &resp).ok() && resp.nodes_size() == 1 && resp.nodes(0).name() == "node3";
  }));
}

TEST_F(TlsServerTest, RotatedServingCertificateIsUsedWithoutRestartAndStreamsStayUp) {
  // The serving pair lives in a directory the test rewrites, re-read every second.
  const fs::path dir = fs::temp_directory_path() / ("meshprobe-tls-rotate-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  struct Cleanup {
    fs::path dir;
    ~Cleanup() { fs::remove_all(dir); }
  } cleanup{dir};
  replaceFile(mtlsFile("aggregator.pem"), dir / "tls.crt");
  replaceFile(mtlsFile("aggregator.key"), dir / "tls.key");
  tls::ServerConfig config = mtlsServer();
  config.cert_file = dir / "tls.crt";
  config.key_file = dir / "tls.key";
  config.refresh = std::chrono::seconds(1);
  startServer(config);

  std::string served;
  ASSERT_TRUE(listNodes(mtlsClient("meshprobe-reader"), nullptr, &served).ok());
  EXPECT_EQ(served, readAll(mtlsFile("aggregator.pem")));
  auto stub = v1::Collector::NewStub(channel(mtlsClient("node1")));
  FakeAgent agent(*stub);
  ASSERT_TRUE(agent.hello(makeHello("node1", 1)));
  ASSERT_TRUE(eventually([&] { return known("node1"); }));

  // Key first, then certificate: in between the pair does not match and gRPC keeps
  // serving the old one.
  replaceFile(mtlsFile("aggregator-rotated.key"), dir / "tls.key");
  replaceFile(mtlsFile("aggregator-rotated.pem"), dir / "tls.crt");
  const std::string rotated = readAll(mtlsFile("aggregator-rotated.pem"));
  // New handshakes see the new certificate within a few refresh periods (polled).
  EXPECT_TRUE(eventually(
      [&] {
        std::string now_served;
        return listNodes(mtlsClient("meshprobe-reader"), nullptr, &now_served).ok() && now_served == rotated;
      },
      std::chrono::seconds(15)));
  // The stream opened before the rotation is still the same stream.
  v1::Report r;
  r.set_sequence(1);
  EXPECT_TRUE(agent.report(r));
  EXPECT_TRUE(eventually([&] { return server_->collector().stats().reports_received.load() >= 1; }));
  EXPECT_EQ(server_->collector().stats().streams_open.load(), 1);
  EXPECT_TRUE(agent.finish().ok());
}

}  // namespace
}  // namespace meshprobe::aggregator::testing
