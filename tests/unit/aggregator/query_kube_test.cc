// The Query API's Kubernetes answers: ListNamespaces (namespacesAnswer: labels, the
// expect-ambient selector, the agents' capture join, the findings about each namespace) and
// ListNodes' missing_agents, as pure functions and through gRPC with and without a KubeView.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "aggregator/http/aggregator_http.h"
#include "aggregator/query_service.h"
#include "aggregator/server.h"
#include "common/finding.h"
#include "tests/support/fake_kube_view.h"
#include "tests/unit/aggregator/server_fixture.h"
#include "tests/unit/aggregator/test_util.h"

namespace meshprobe::aggregator {
namespace {

namespace v1 = meshprobe::v1;
using ::testing::ElementsAre;
using testing::FakeKubeView;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using testing::makeHello;

kube::PodObject runningPod(std::string ns, std::string name, std::string node, std::string ip) {
  kube::PodObject p;
  p.ns = std::move(ns);
  p.name = std::move(name);
  p.node_name = std::move(node);
  p.phase = "Running";
  p.ready = true;
  p.pod_ips = {std::move(ip)};
  return p;
}

PodCaptureEvidence capture(std::string ip, bool captured, std::string state) {
  PodCaptureEvidence e;
  e.ips = {std::move(ip)};
  e.captured = captured;
  e.state = std::move(state);
  return e;
}

v1::Finding finding(std::string_view code, std::string id, std::vector<std::string> nodes = {}) {
  v1::Finding f;
  f.set_code(std::string(code));
  f.set_id(std::move(id));
  for (auto& n : nodes) f.add_nodes(n);
  return f;
}

kube::NamespaceObject namespaceObject(const std::string& name, kube::Labels labels) {
  kube::NamespaceObject n;
  n.name = name;
  n.labels = std::move(labels);
  return n;
}

kube::NodeObject node(const std::string& name, bool ready = true) {
  kube::NodeObject n;
  n.name = name;
  n.ready = ready;
  return n;
}

// Namespaces default (plain), shop (ambient, pods on n1..n3), payments (expected, unlabelled).
struct Objects {
  kube::KubeObjects objects;
  std::vector<KubeAgentNode> agents;
  Objects() {
    objects.synced = true;
    objects.status.state = kube::ApiState::kSynced;
    for (const char* n : {"n1", "n2", "n3"}) objects.nodes[n] = node(n);
    objects.namespaces["default"] = namespaceObject("default", {});
    objects.namespaces["shop"] = namespaceObject("shop", {{"istio.io/dataplane-mode", "ambient"}});
    objects.namespaces["payments"] = namespaceObject("payments", {{"team", "payments"}});
    add(runningPod("shop", "web-a", "n1", "10.244.1.5"));  // captured
    add(runningPod("shop", "web-b", "n2", "10.244.2.5"));  // found not captured
    add(runningPod("shop", "web-c", "n3", "10.244.3.5"));  // no agent on n3
    auto host = runningPod("shop", "host", "n1", "198.51.100.11");
    host.host_network = true;  // not counted
    add(host);
    auto leaving = runningPod("shop", "leaving", "n1", "10.244.1.6");
    leaving.deleting = true;  // not counted
    add(leaving);
    auto done = runningPod("default", "job-x", "n1", "10.244.1.7");
    done.phase = "Succeeded";  // not counted
    add(done);
    add(runningPod("default", "api", "n2", "10.244.2.9"));  // uncaptured, but not ambient: no finding
    add(runningPod("payments", "ledger", "n1", "10.244.1.8"));
    KubeAgentNode a1;
    a1.name = "n1";
    a1.up = true;
    a1.captures = {capture("10.244.1.5", true, "captured"), capture("10.244.1.8", false, "uncaptured")};
    KubeAgentNode a2;
    a2.name = "n2";
    a2.up = true;
    a2.captures = {capture("10.244.2.5", false, "uncaptured"), capture("10.244.2.9", false, "uncaptured")};
    agents = {a1, a2};
  }
  void add(kube::PodObject p) { objects.pods[p.key()] = std::move(p); }
};

const v1::NamespaceSummary& byName(const v1::ListNamespacesResponse& r, const std::string& name) {
  for (const auto& n : r.namespaces()) {
    if (n.name() == name) return n;
  }
  throw std::out_of_range(name);
}

TEST(NamespacesAnswer, LabelsSelectorCaptureJoinAndFindings) {
  Objects o;
  auto selector = kube::Selector::parse("team=payments");
  ASSERT_TRUE(selector.ok());
  const std::vector<v1::Finding> active = {
      finding(codes::kNamespaceNotAmbient, "NAMESPACE_NOT_AMBIENT/payments"),
      finding(codes::kPodNotCaptured, "POD_NOT_CAPTURED/n2", {"n2"}),
  };
  const auto r = namespacesAnswer(o.objects, o.agents, *selector, active);
  ASSERT_EQ(r.namespaces_size(), 3);
  EXPECT_EQ(r.namespaces(0).name(), "default");  // by name
  EXPECT_EQ(r.namespaces(1).name(), "payments");
  EXPECT_EQ(r.namespaces(2).name(), "shop");

  const auto& shop = byName(r, "shop");
  EXPECT_EQ(shop.dataplane_mode(), "ambient");
  EXPECT_FALSE(shop.expect_ambient());
  EXPECT_EQ(shop.running_pods(), 3u);   // web-a, web-b, web-c
  EXPECT_EQ(shop.captured_pods(), 1u);  // web-a
  EXPECT_EQ(shop.unknown_pods(), 1u);   // web-c: no agent on n3
  EXPECT_THAT(shop.findings(), ElementsAre("POD_NOT_CAPTURED"));

  const auto& payments = byName(r, "payments");
  EXPECT_EQ(payments.dataplane_mode(), "");
  EXPECT_TRUE(payments.expect_ambient());
  EXPECT_EQ(payments.running_pods(), 1u);
  EXPECT_EQ(payments.captured_pods(), 0u);
  EXPECT_THAT(payments.findings(), ElementsAre("NAMESPACE_NOT_AMBIENT"));

  const auto& def = byName(r, "default");
  EXPECT_EQ(def.running_pods(), 1u);  // the Succeeded job does not run
  EXPECT_EQ(def.captured_pods(), 0u);
  EXPECT_EQ(def.unknown_pods(), 0u);
  EXPECT_THAT(def.findings(), IsEmpty());  // its uncaptured pod on n2 is not ambient's
}

TEST(NamespacesAnswer, PodNotCapturedOnlyFromTheNodesItIsActiveOn) {
  Objects o;
  // The same join, but POD_NOT_CAPTURED is not active (yet) on n2: no finding code.
  const auto r = namespacesAnswer(o.objects, o.agents, kube::Selector(), {});
  EXPECT_THAT(byName(r, "shop").findings(), IsEmpty());
  EXPECT_FALSE(byName(r, "payments").expect_ambient());  // an empty selector selects nothing
  // Active on n1 only: shop has no uncaptured pod on n1.
  const auto r1 =
      namespacesAnswer(o.objects, o.agents, kube::Selector(), {finding(codes::kPodNotCaptured, "x", {"n1"})});
  EXPECT_THAT(byName(r1, "shop").findings(), IsEmpty());
}

TEST(MissingAgents, NodesWithoutAMemberWithTheirAgentPodAndFinding) {
  kube::KubeObjects objects;
  objects.synced = true;
  for (const char* n : {"n1", "n2", "n3"}) objects.nodes[n] = node(n);
  objects.nodes["n4"] = node("n4");
  objects.nodes["n5"] = node("n5", /*ready=*/false);
  objects.nodes["n6"] = node("n6");
  auto agent = runningPod("meshprobe", "meshprobe-agent-c2vns", "n4", "198.51.100.14");
  agent.labels = {{"app.kubernetes.io/name", "meshprobe-agent"}};
  agent.containers.push_back({"agent", false, 5, "CrashLoopBackOff", "back-off", "Error", 1});
  objects.pods[agent.key()] = agent;
  auto f = finding(codes::kAgentMissing, "AGENT_MISSING/n4", {"n4"});
  f.set_summary("no meshprobe agent reports from Ready node n4: its agent pod is in CrashLoopBackOff");
  const auto missing = missingAgents(objects, {"n1", "n2", "n3"}, KubeRuleOptions().agent, {f});
  ASSERT_EQ(missing.size(), 3u);
  EXPECT_EQ(missing[0].name(), "n4");
  EXPECT_TRUE(missing[0].ready());
  EXPECT_EQ(missing[0].agent_pod(), "meshprobe/meshprobe-agent-c2vns");
  EXPECT_EQ(missing[0].pod_state(), "CrashLoopBackOff");
  EXPECT_EQ(missing[0].finding_id(), "AGENT_MISSING/n4");
  EXPECT_EQ(missing[0].reason(), f.summary());
  EXPECT_EQ(missing[1].name(), "n5");
  EXPECT_FALSE(missing[1].ready());
  EXPECT_EQ(missing[1].reason(), "node n5 is NotReady");
  EXPECT_EQ(missing[2].name(), "n6");  // AGENT_MISSING not (yet) active: what is known
  EXPECT_EQ(missing[2].agent_pod(), "");
  EXPECT_EQ(missing[2].reason(), "no meshprobe agent pod is scheduled on it");
  EXPECT_THAT(missingAgents(objects, {"n1", "n2", "n3", "n4", "n5", "n6"}, KubeRuleOptions().agent, {}), IsEmpty());
}

// ---- through gRPC ----

class QueryKubeTest : public ::testing::Test {
 protected:
  void start(const kube::KubeView* kube) {
    ServerOptions options;
    options.grpc_listen = "127.0.0.1:0";
    options.kube = kube;
    server_ = std::make_unique<AggregatorServer>(clock_, options);
    auto port = server_->start();
    ASSERT_TRUE(port.ok()) << port.error().message;
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(*port), grpc::InsecureChannelCredentials());
    query_ = v1::Query::NewStub(channel_);
    server_->state().applyHello(makeHello("n1", 1), true);
  }
  void TearDown() override {
    if (server_) server_->shutdown();
  }
  grpc::Status listNamespaces(v1::ListNamespacesResponse* resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + testing::kRpcDeadline);
    return query_->ListNamespaces(&ctx, v1::ListNamespacesRequest(), resp);
  }
  grpc::Status listNodes(v1::ListNodesResponse* resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + testing::kRpcDeadline);
    return query_->ListNodes(&ctx, v1::ListNodesRequest(), resp);
  }

  FakeClock clock_;
  FakeKubeView view_;
  std::unique_ptr<AggregatorServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Query::Stub> query_;
};

TEST_F(QueryKubeTest, WithoutTheApiListNamespacesIsFailedPreconditionAndListNodesIsAsBefore) {
  start(nullptr);
  v1::ListNamespacesResponse ns;
  const grpc::Status st = listNamespaces(&ns);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(st.error_message(), HasSubstr("needs the Kubernetes API: the aggregator runs without it (--kube off"));
  v1::ListNodesResponse nodes;
  ASSERT_TRUE(listNodes(&nodes).ok());
  EXPECT_EQ(nodes.nodes_size(), 1);
  EXPECT_THAT(nodes.missing_agents(), IsEmpty());
}

TEST_F(QueryKubeTest, BeforeTheFirstListListNamespacesSaysSo) {
  start(&view_);
  kube::KubeObjects connecting;
  connecting.status = {kube::ApiState::kUnreachable, "GET /api/v1/nodes: connection refused"};
  view_.set(connecting);
  v1::ListNamespacesResponse ns;
  const grpc::Status st = listNamespaces(&ns);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(st.error_message(), HasSubstr("not listed yet (the API server is unreachable: GET /api/v1/nodes"));
  v1::ListNodesResponse nodes;
  ASSERT_TRUE(listNodes(&nodes).ok());
  EXPECT_THAT(nodes.missing_agents(), IsEmpty());
}

TEST_F(QueryKubeTest, SyncedAnswersNamespacesAndMissingAgents) {
  start(&view_);
  Objects o;
  view_.set(o.objects);
  v1::ListNamespacesResponse ns;
  ASSERT_TRUE(listNamespaces(&ns).ok());
  ASSERT_EQ(ns.namespaces_size(), 3);
  // n1 said Hello but reported no pod netns yet: every shop pod is unknown.
  EXPECT_EQ(byName(ns, "shop").running_pods(), 3u);
  EXPECT_EQ(byName(ns, "shop").unknown_pods(), 3u);
  v1::ListNodesResponse nodes;
  ASSERT_TRUE(listNodes(&nodes).ok());
  ASSERT_EQ(nodes.nodes_size(), 1);
  ASSERT_EQ(nodes.missing_agents_size(), 2);
  EXPECT_EQ(nodes.missing_agents(0).name(), "n2");
  EXPECT_EQ(nodes.missing_agents(1).name(), "n3");
  EXPECT_EQ(nodes.missing_agents(1).reason(), "no meshprobe agent pod is scheduled on it");

  // The matrix page's document lists the same nodes.
  AggregatorHttp http(
      AggregatorMetricsSources{server_->state(), server_->diagnosis(), nullptr, &server_->query(), &view_},
      [] { return true; });
  HttpRequest req;
  req.method = "GET";
  req.target = req.path = "/api/v1/state";
  const auto page = nlohmann::json::parse(http.handle(req).body);
  ASSERT_EQ(page["missingAgents"].size(), 2u);
  EXPECT_EQ(page["missingAgents"][0]["name"], "n2");
  EXPECT_EQ(page["missingAgents"][0]["ready"], true);
  EXPECT_EQ(page["missingAgents"][1]["reason"], "no meshprobe agent pod is scheduled on it");
  EXPECT_EQ(page["missingAgents"][1]["agentPod"], "");
}

TEST_F(QueryKubeTest, WithoutTheApiThePageListsNoMissingAgents) {
  start(nullptr);
  AggregatorHttp http(AggregatorMetricsSources{server_->state(), server_->diagnosis(), nullptr, &server_->query()},
                      [] { return true; });
  HttpRequest req;
  req.method = "GET";
  req.target = req.path = "/api/v1/state";
  const auto page = nlohmann::json::parse(http.handle(req).body);
  ASSERT_TRUE(page["missingAgents"].is_array());
  EXPECT_TRUE(page["missingAgents"].empty());
}

}  // namespace
}  // namespace meshprobe::aggregator
