// The Query API over a real in-process channel: plain generated stubs for the error
// cases, and the grpcurl-like reflection client (tests/tools/reflection_client.h) for the
// JSON contract (README, docs/operations.md). Also the standard health service.
#include "aggregator/query_service.h"

#include <gmock/gmock.h>
#include <grpcpp/generic/generic_stub.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/tools/reflection_client.h"
#include "tests/unit/aggregator/server_fixture.h"
#include "tests/unit/aggregator/test_util.h"

namespace meshprobe::aggregator {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::makeCheck;
using testing::makeHello;
using testing::makeProbe;

class QueryTest : public testing::ServerFixture {
 protected:
  // node1 reaches node2 on both layers; node2's overlay probes to node1 all fail; node1's
  // istiod check failed and it reports ZTUNNEL_NOT_CONNECTED.
  void populate() {
    auto& st = server_->state();
    st.applyHello(makeHello("node2", 2), true);
    st.applyHello(makeHello("node1", 1), true);
    v1::Report r1;
    r1.set_sequence(1);
    *r1.add_probes() = makeProbe("node2", v1::OVERLAY, 10, 10);
    *r1.add_probes() = makeProbe("node2", v1::UNDERLAY, 10, 10);
    *r1.add_checks() = makeCheck("istiod", v1::CheckResult::FAIL);
    auto* f = r1.add_findings();
    f->set_code("ZTUNNEL_NOT_CONNECTED");
    f->set_severity(v1::CRITICAL);
    f->set_layer(v1::AMBIENT);
    v1::Report r2;
    r2.set_sequence(1);
    *r2.add_probes() = makeProbe("node1", v1::OVERLAY, 10, 0);
    *r2.add_probes() = makeProbe("node1", v1::UNDERLAY, 10, 10);
    ASSERT_EQ(st.applyReport("node1", r1), ReportOutcome::kAccepted);
    ASSERT_EQ(st.applyReport("node2", r2), ReportOutcome::kAccepted);
    // Diagnose answers from the engine's last pass; run one now instead of waiting for
    // the server's diagnosis thread. (node2 -> node1 alone is one bad pair: still pending.)
    server_->diagnosis().evaluate();
  }

  // A raw unary call; returns the response bytes.
  grpc::Status rawCall(const std::string& method, const std::string& request, std::string* response) {
    grpc::GenericStub stub(channel_);
    grpc::ClientContext ctx;
    withDeadline(ctx);
    grpc::Slice slice(request);
    grpc::ByteBuffer req(&slice, 1), resp;
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    grpc::Status status;
    stub.UnaryCall(&ctx, method, grpc::StubOptions(), &req, &resp, [&](grpc::Status s) {
      std::lock_guard lock(mu);
      status = std::move(s);
      done = true;
      cv.notify_all();
    });
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return done; });
    std::vector<grpc::Slice> slices;
    if (status.ok() && resp.Dump(&slices).ok()) {
      for (const auto& s : slices) response->append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
    return status;
  }
};

TEST_F(QueryTest, GetMatrixWithoutALayerIsInvalidArgument) {
  grpc::ClientContext ctx;
  withDeadline(ctx);
  v1::GetMatrixResponse resp;
  grpc::Status st = query_->GetMatrix(&ctx, v1::GetMatrixRequest(), &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("LAYER_UNSPECIFIED"));
}

TEST_F(QueryTest, GetNodeOfAnUnknownNameIsNotFoundNamingIt) {
  grpc::ClientContext ctx;
  withDeadline(ctx);
  v1::GetNodeRequest req;
  req.set_name("node42");
  v1::GetNodeResponse resp;
  grpc::Status st = query_->GetNode(&ctx, req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(st.error_message(), HasSubstr("node42"));
}

TEST_F(QueryTest, GetNodeReturnsSummaryChecksProbesAndFindings) {
  populate();
  grpc::ClientContext ctx;
  withDeadline(ctx);
  v1::GetNodeRequest req;
  req.set_name("node1");
  v1::GetNodeResponse resp;
  ASSERT_TRUE(query_->GetNode(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.node().name(), "node1");
  EXPECT_EQ(resp.node().node_ip(), "198.51.100.1");
  EXPECT_EQ(resp.checks_size(), 1);
  EXPECT_EQ(resp.probes_size(), 2);
  ASSERT_EQ(resp.findings_size(), 1);
  EXPECT_EQ(resp.findings(0).code(), "ZTUNNEL_NOT_CONNECTED");
}

TEST_F(QueryTest, DiagnoseReturnsActiveFindingsFilteredByNode) {
  populate();
  auto diagnose = [&](const std::string& node, v1::DiagnoseResponse* resp) {
    grpc::ClientContext ctx;
    withDeadline(ctx);
    v1::DiagnoseRequest req;
    req.set_node(node);
    return query_->Diagnose(&ctx, req, resp);
  };
  v1::DiagnoseResponse all, n1, n2, unknown;
  ASSERT_TRUE(diagnose("", &all).ok());
  ASSERT_EQ(all.findings_size(), 1);
  EXPECT_EQ(all.findings(0).code(), "ZTUNNEL_NOT_CONNECTED");
  EXPECT_THAT(all.findings(0).evidence(), Contains("reported by the agent on node1"));
  ASSERT_TRUE(diagnose("node1", &n1).ok());
  EXPECT_EQ(n1.findings_size(), 1);
  ASSERT_TRUE(diagnose("node2", &n2).ok());
  EXPECT_EQ(n2.findings_size(), 0);
  grpc::Status st = diagnose("node9", &unknown);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(st.error_message(), HasSubstr("node9"));
}

TEST_F(QueryTest, ReflectionListsEveryService) {
  tools::ReflectionClient client(channel_, std::chrono::seconds(10));
  auto services = client.listServices();
  ASSERT_TRUE(services.ok()) << services.error().message;
  EXPECT_THAT(*services, Contains("meshprobe.v1.Query"));
  EXPECT_THAT(*services, Contains("meshprobe.v1.Collector"));
  EXPECT_THAT(*services, Contains("grpc.reflection.v1alpha.ServerReflection"));
  EXPECT_THAT(*services, Contains("grpc.health.v1.Health"));
}

TEST_F(QueryTest, GetMatrixThroughReflectionSpeaksTheJsonContract) {
  populate();
  tools::ReflectionClient client(channel_, std::chrono::seconds(10));
  auto result = client.callJson("meshprobe.v1.Query/GetMatrix", R"({"layer":"OVERLAY"})");
  ASSERT_TRUE(result.ok()) << result.error().message;
  ASSERT_TRUE(result->status.ok()) << result->status.error_message();
  auto json = nlohmann::json::parse(result->json);

  EXPECT_EQ(json.at("layer"), "OVERLAY");
  EXPECT_EQ(json.at("nodes"), nlohmann::json({"node1", "node2"}));
  ASSERT_EQ(json.at("cells").size(), 2u);
  std::map<std::string, std::string> states;
  for (const auto& cell : json.at("cells")) {
    for (const char* field : {"src", "dst", "layer", "state", "rtt", "lastUpdate"}) {
      EXPECT_TRUE(cell.contains(field)) << field << " missing in " << cell.dump();
    }
    EXPECT_EQ(cell.at("layer"), "OVERLAY");
    states[cell.at("src").get<std::string>() + ">" + cell.at("dst").get<std::string>()] = cell.at("state");
  }
  EXPECT_EQ(states["node1>node2"], "OK");
  EXPECT_EQ(states["node2>node1"], "FAIL");
  // Durations and times as the well-known JSON forms.
  EXPECT_EQ(json["cells"][0]["rtt"], "0.000200s");
  EXPECT_DOUBLE_EQ(json["cells"][1].value("loss", 0.0), 1.0);
}

TEST_F(QueryTest, IstiodColumnThroughReflection) {
  populate();
  tools::ReflectionClient client(channel_, std::chrono::seconds(10));
  auto result = client.callJson("meshprobe.v1.Query/GetMatrix", R"({"layer":"ISTIOD"})", /*emit_defaults=*/true);
  ASSERT_TRUE(result.ok()) << result.error().message;
  ASSERT_TRUE(result->status.ok());
  auto json = nlohmann::json::parse(result->json);
  ASSERT_EQ(json.at("cells").size(), 2u);
  EXPECT_EQ(json["cells"][0]["src"], "node1");
  EXPECT_EQ(json["cells"][0]["dst"], "istiod");
  EXPECT_EQ(json["cells"][0]["state"], "FAIL");
  EXPECT_EQ(json["cells"][1]["state"], "UNKNOWN");  // node2 sent no istiod result
}

TEST_F(QueryTest, ReflectionCallReportsStatusAndBadJson) {
  tools::ReflectionClient client(channel_, std::chrono::seconds(10));
  auto unspecified = client.callJson("meshprobe.v1.Query/GetMatrix", "{}");
  ASSERT_TRUE(unspecified.ok()) << unspecified.error().message;
  EXPECT_EQ(unspecified->status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  auto bogus = client.callJson("meshprobe.v1.Query/GetMatrix", R"({"layer":"SIDEWAYS"})");
  ASSERT_FALSE(bogus.ok());
  EXPECT_THAT(bogus.error().message, HasSubstr("meshprobe.v1.GetMatrixRequest"));
  auto missing = client.callJson("meshprobe.v1.Query/Teleport", "{}");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.error().message, HasSubstr("Teleport"));
}

TEST_F(QueryTest, HealthServiceSaysServing) {
  // grpc.health.v1.HealthCheckRequest{service} / HealthCheckResponse{status = 1 SERVING},
  // encoded by hand: field 1, length-delimited / varint.
  for (std::string service :
       {std::string(), std::string("meshprobe.v1.Query"), std::string("meshprobe.v1.Collector")}) {
    std::string request;
    if (!service.empty()) request = std::string("\x0a", 1) + static_cast<char>(service.size()) + service;
    std::string response;
    grpc::Status st = rawCall("/grpc.health.v1.Health/Check", request, &response);
    ASSERT_TRUE(st.ok()) << service << ": " << st.error_message();
    EXPECT_EQ(response, std::string("\x08\x01", 2)) << service;
  }
  std::string request = std::string("\x0a\x05", 2) + "bogus", response;
  EXPECT_EQ(rawCall("/grpc.health.v1.Health/Check", request, &response).error_code(), grpc::StatusCode::NOT_FOUND);
}

}  // namespace
}  // namespace meshprobe::aggregator
