// The Query API over a real in-process channel: plain generated stubs for the error
// cases, and the grpcurl-like reflection client (tests/tools/reflection_client.h) for the
// JSON contract (README, docs/operations.md). Also the standard health service.
#include "aggregator/query_service.h"

#include <gmock/gmock.h>
#include <grpcpp/generic/generic_stub.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>

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

// ---- GetMatrix filters and paging (aggregator/matrix_query.h) over the real server ----

TEST_F(QueryTest, AnOldGetMatrixRequestOnTheWireGetsExactlyTheWholeMatrix) {
  populate();
  for (v1::Layer layer : {v1::UNDERLAY, v1::OVERLAY, v1::ISTIOD}) {
    // The request as an old client encodes it: field 1 (layer), varint.
    const std::string request = std::string("\x08", 1) + static_cast<char>(layer);
    std::string response;
    grpc::Status st = rawCall("/meshprobe.v1.Query/GetMatrix", request, &response);
    ASSERT_TRUE(st.ok()) << st.error_message();
    auto want = server_->state().matrix(layer);
    ASSERT_TRUE(want.ok());
    EXPECT_EQ(response, want->SerializeAsString()) << v1::Layer_Name(layer);
  }
}

class QueryPagingTest : public QueryTest {
 protected:
  // node1..node5; node3's overlay is down both ways, everything else answers.
  void populateFive() {
    auto& st = server_->state();
    for (int n = 1; n <= 5; ++n) st.applyHello(makeHello("node" + std::to_string(n), n), true);
    for (int n = 1; n <= 5; ++n) {
      const std::string src = "node" + std::to_string(n);
      v1::Report r;
      r.set_sequence(1);
      for (int m = 1; m <= 5; ++m) {
        if (m == n) continue;
        const std::string dst = "node" + std::to_string(m);
        const bool broken = n == 3 || m == 3;
        *r.add_probes() = makeProbe(dst, v1::OVERLAY, 10, broken ? 0 : 10);
        *r.add_probes() = makeProbe(dst, v1::UNDERLAY, 10, 10);
      }
      ASSERT_EQ(st.applyReport(src, r), ReportOutcome::kAccepted);
    }
  }

  grpc::Status getMatrix(const v1::GetMatrixRequest& req, v1::GetMatrixResponse* resp) {
    grpc::ClientContext ctx;
    withDeadline(ctx);
    return query_->GetMatrix(&ctx, req, resp);
  }
};

TEST_F(QueryPagingTest, FiltersAndPagesThroughGrpc) {
  populateFive();
  v1::GetMatrixRequest req;
  req.set_layer(v1::OVERLAY);
  req.add_states(v1::Cell::FAIL);
  req.set_page_size(3);
  std::vector<std::string> got;
  std::set<std::string> nodes;
  int pages = 0;
  for (; pages < 10; ++pages) {
    v1::GetMatrixResponse resp;
    grpc::Status st = getMatrix(req, &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_LE(resp.cells_size(), 3);
    EXPECT_EQ(resp.total_cells(), 8u);
    for (const auto& c : resp.cells()) {
      EXPECT_EQ(c.state(), v1::Cell::FAIL);
      EXPECT_TRUE(c.src() == "node3" || c.dst() == "node3");
      got.push_back(c.src() + ">" + c.dst());
    }
    nodes.insert(resp.nodes().begin(), resp.nodes().end());
    if (resp.next_page_token().empty()) break;
    req.set_page_token(resp.next_page_token());
  }
  EXPECT_EQ(pages + 1, 3);
  EXPECT_THAT(got, ElementsAre("node1>node3", "node2>node3", "node3>node1", "node3>node2", "node3>node4",
                               "node3>node5", "node4>node3", "node5>node3"));
  EXPECT_EQ(nodes.size(), 5u);

  v1::GetMatrixRequest one;
  one.set_layer(v1::UNDERLAY);
  one.add_nodes("node5");
  one.add_states(v1::Cell::OK);
  v1::GetMatrixResponse resp;
  ASSERT_TRUE(getMatrix(one, &resp).ok());
  EXPECT_EQ(resp.cells_size(), 8);
  EXPECT_EQ(resp.total_cells(), 8u);
  EXPECT_EQ(resp.next_page_token(), "");
}

TEST_F(QueryPagingTest, ErrorsNameTheProblem) {
  populateFive();
  v1::GetMatrixRequest unknown;
  unknown.set_layer(v1::OVERLAY);
  unknown.add_nodes("node9");
  unknown.add_nodes("node2");
  v1::GetMatrixResponse resp;
  grpc::Status st = getMatrix(unknown, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(st.error_message(), HasSubstr("'node9'"));

  v1::GetMatrixRequest bad_token;
  bad_token.set_layer(v1::OVERLAY);
  bad_token.set_page_token("offset=10000");
  st = getMatrix(bad_token, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("page_token"));

  // A real token replayed with another layer.
  v1::GetMatrixRequest paged;
  paged.set_layer(v1::OVERLAY);
  paged.set_page_size(2);
  ASSERT_TRUE(getMatrix(paged, &resp).ok());
  ASSERT_FALSE(resp.next_page_token().empty());
  paged.set_layer(v1::UNDERLAY);
  paged.set_page_token(resp.next_page_token());
  st = getMatrix(paged, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("layer OVERLAY, not UNDERLAY"));
}

TEST_F(QueryPagingTest, APageTokenSurvivesANodeJoiningBetweenPages) {
  populateFive();
  v1::GetMatrixRequest req;
  req.set_layer(v1::UNDERLAY);
  req.set_page_size(10);
  v1::GetMatrixResponse p1;
  ASSERT_TRUE(getMatrix(req, &p1).ok());
  ASSERT_EQ(p1.cells_size(), 10);
  EXPECT_EQ(p1.total_cells(), 20u);
  // node0 sorts first (its row is behind the cursor); node6 last.
  server_->state().applyHello(makeHello("node0", 10), true);
  server_->state().applyHello(makeHello("node6", 16), true);
  std::set<std::string> seen;
  for (const auto& c : p1.cells()) seen.insert(c.src() + ">" + c.dst());
  req.set_page_token(p1.next_page_token());
  for (int i = 0; i < 10 && !req.page_token().empty(); ++i) {
    v1::GetMatrixResponse p;
    ASSERT_TRUE(getMatrix(req, &p).ok());
    EXPECT_EQ(p.total_cells(), 42u);  // 7 members now
    for (const auto& c : p.cells()) EXPECT_TRUE(seen.insert(c.src() + ">" + c.dst()).second) << "repeated";
    req.set_page_token(p.next_page_token());
  }
  EXPECT_TRUE(req.page_token().empty());
  // Every original cell was read once. The cursor is node3>node2: node0's row and node3>node0
  // are behind it (not on this pass), every new cell after it is there.
  for (int s = 1; s <= 5; ++s) {
    for (int d = 1; d <= 5; ++d) {
      if (s != d) {
        EXPECT_TRUE(seen.count("node" + std::to_string(s) + ">node" + std::to_string(d))) << s << d;
      }
    }
  }
  EXPECT_FALSE(seen.count("node0>node1"));
  EXPECT_FALSE(seen.count("node3>node0"));
  EXPECT_TRUE(seen.count("node3>node6"));
  EXPECT_TRUE(seen.count("node4>node0"));
  EXPECT_TRUE(seen.count("node6>node0"));
  // New past the cursor: node3>node6, node4>node{0,6}, node5>node{0,6}, node6's row of 6.
  EXPECT_EQ(seen.size(), 20u + 11u);
}

TEST_F(QueryPagingTest, FilteredRequestThroughReflectionSpeaksTheJsonContract) {
  // The README's grpcurl example for large clusters.
  populateFive();
  tools::ReflectionClient client(channel_, std::chrono::seconds(10));
  auto result = client.callJson("meshprobe.v1.Query/GetMatrix",
                                R"({"layer":"OVERLAY","nodes":["node3"],"states":["FAIL"],"pageSize":5})");
  ASSERT_TRUE(result.ok()) << result.error().message;
  ASSERT_TRUE(result->status.ok()) << result->status.error_message();
  auto json = nlohmann::json::parse(result->json);
  EXPECT_EQ(json.at("cells").size(), 5u);
  EXPECT_EQ(json.at("totalCells"), 8);
  ASSERT_TRUE(json.contains("nextPageToken"));
  auto next = client.callJson("meshprobe.v1.Query/GetMatrix",
                              R"({"layer":"OVERLAY","nodes":["node3"],"states":["FAIL"],"pageSize":5,"pageToken":")" +
                                  json.at("nextPageToken").get<std::string>() + R"("})");
  ASSERT_TRUE(next.ok()) << next.error().message;
  ASSERT_TRUE(next->status.ok()) << next->status.error_message();
  auto rest = nlohmann::json::parse(next->json);
  EXPECT_EQ(rest.at("cells").size(), 3u);
  EXPECT_FALSE(rest.contains("nextPageToken"));  // proto3 JSON leaves "" out: the last page

  // An old JSON request on a small cluster: no paging fields at all.
  auto old = client.callJson("meshprobe.v1.Query/GetMatrix", R"({"layer":"OVERLAY"})");
  ASSERT_TRUE(old.ok() && old->status.ok());
  auto whole = nlohmann::json::parse(old->json);
  EXPECT_EQ(whole.at("cells").size(), 20u);
  EXPECT_FALSE(whole.contains("nextPageToken"));
  EXPECT_FALSE(whole.contains("totalCells"));
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
