// The node condition and Events the aggregator writes (aggregator/kube/node_status.h): the
// pure decisions first, then NodeProblemReporter against the fake kube-apiserver on loopback
// HTTPS. The reporter's view of the Nodes is a FakeKubeView; every wait polls the fake or the
// reporter's counters with a deadline (tests/support/eventually.h), none sleeps.
#include "aggregator/kube/node_status.h"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <optional>

#include "tests/support/eventually.h"
#include "tests/support/fake_kube_apiserver.h"
#include "tests/support/fake_kube_view.h"
#include "tests/support/mtls_pki.h"

namespace meshprobe::aggregator::kube {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using std::chrono::steady_clock;
using test::eventually;
using test::FakeKubeApiServer;

constexpr int kInfo = 1, kWarning = 2, kCritical = 3;

NodeFinding finding(const std::string& code, int severity, std::vector<std::string> nodes,
                    const std::string& summary = "", const std::string& id = "") {
  return NodeFinding{id.empty() ? code + "/" + (nodes.empty() ? "" : nodes[0]) : id, code, severity, std::move(nodes),
                     summary.empty() ? code + " summary" : summary};
}

// ---------------------------------------------------------------- pure decisions

TEST(DesiredCondition, TrueWithTheMostSevereFindingBlamingTheNode) {
  const std::vector<NodeFinding> f = {finding("OVERLAY_FDB_STALE", kWarning, {"n1"}),
                                      finding("VXLAN_PORT_FILTERED", kCritical, {"n1", "n3"}, "udp 4789 dropped"),
                                      finding("PAIR_UNREACHABLE", kCritical, {"n2"})};
  EXPECT_EQ(desiredCondition(f, "n1", kWarning), (ProblemCondition{"True", "VXLAN_PORT_FILTERED", "udp 4789 dropped"}));
  EXPECT_EQ(desiredCondition(f, "n2", kWarning).reason, "PAIR_UNREACHABLE");
  EXPECT_EQ(desiredCondition(f, "n3", kWarning).reason, "VXLAN_PORT_FILTERED");
  EXPECT_EQ(desiredCondition(f, "n4", kWarning), (ProblemCondition{"False", kNoProblemReason, kNoProblemMessage}));
}

TEST(DesiredCondition, TiesGoToTheSmallerCodeAndInfoIsBelowTheBar) {
  const std::vector<NodeFinding> f = {finding("ZTUNNEL_NOT_READY", kCritical, {"n1"}),
                                      finding("MTU_MISMATCH", kCritical, {"n1"}),
                                      finding("SOMETHING_INFO", kInfo, {"n2"})};
  EXPECT_EQ(desiredCondition(f, "n1", kWarning).reason, "MTU_MISMATCH");
  EXPECT_EQ(desiredCondition(f, "n2", kWarning).status, "False");
  EXPECT_EQ(desiredCondition(f, "n2", kInfo).reason, "SOMETHING_INFO");
  EXPECT_EQ(desiredCondition({}, "n1", kWarning).status, "False");
}

TEST(DesiredCondition, LongSummariesAreClipped) {
  const auto c = desiredCondition({finding("X", kCritical, {"n1"}, std::string(5000, 'a'))}, "n1", kWarning);
  EXPECT_EQ(c.message.size(), 1024u);
}

TEST(PlanConditionWrite, OnlyChangesAndHeartbeats) {
  const auto t0 = steady_clock::time_point{} + 1h;
  const ProblemCondition bad{"True", "A", "m1"};
  const ProblemCondition bad2{"True", "A", "m2"};
  const ProblemCondition good{"False", kNoProblemReason, kNoProblemMessage};
  const WrittenCondition w{bad, t0};
  // Never written, nothing on the node: a new condition is a transition.
  EXPECT_EQ(planConditionWrite(std::nullopt, std::nullopt, bad, t0, 5min), ConditionWrite::kTransition);
  // A new leader: the node already says True, the status does not flip.
  EXPECT_EQ(planConditionWrite(std::nullopt, bad2, bad, t0, 5min), ConditionWrite::kUpdate);
  EXPECT_EQ(planConditionWrite(std::nullopt, good, bad, t0, 5min), ConditionWrite::kTransition);
  // Written: unchanged until the heartbeat is due.
  EXPECT_EQ(planConditionWrite(w, std::nullopt, bad, t0 + 4min, 5min), ConditionWrite::kNone);
  EXPECT_EQ(planConditionWrite(w, std::nullopt, bad, t0 + 5min, 5min), ConditionWrite::kHeartbeat);
  EXPECT_EQ(planConditionWrite(w, std::nullopt, bad2, t0 + 1s, 5min), ConditionWrite::kUpdate);
  EXPECT_EQ(planConditionWrite(w, std::nullopt, good, t0 + 1s, 5min), ConditionWrite::kTransition);
}

TEST(ConditionPatch, CarriesOnlyOurConditionAndTheTransitionTimeOnlyOnAFlip) {
  const auto now = std::chrono::system_clock::from_time_t(1'800'000'000);
  const json update = conditionPatch({"True", "A", "m"}, now, false);
  ASSERT_EQ(update["status"]["conditions"].size(), 1u);
  const json& c = update["status"]["conditions"][0];
  EXPECT_EQ(c["type"], kProblemConditionType);
  EXPECT_EQ(c["status"], "True");
  EXPECT_EQ(c["reason"], "A");
  EXPECT_EQ(c["message"], "m");
  EXPECT_EQ(c["lastHeartbeatTime"], "2027-01-15T08:00:00Z");
  EXPECT_FALSE(c.contains("lastTransitionTime"));
  EXPECT_EQ(update.size(), 1u);  // nothing but status
  EXPECT_EQ(conditionPatch({"True", "A", "m"}, now, true)["status"]["conditions"][0]["lastTransitionTime"],
            "2027-01-15T08:00:00Z");
}

TEST(EventChanges, OnsetsThenClearsOfNodesTheViewKnows) {
  const std::set<std::string> nodes = {"n1", "n2"};
  const auto before =
      nodeFindingSet({finding("A", kCritical, {"n1"}), finding("B", kWarning, {"n2"})}, nodes, kWarning);
  const auto after = nodeFindingSet(
      {finding("B", kWarning, {"n2"}), finding("C", kCritical, {"n2", "n9"}), finding("D", kInfo, {"n1"})}, nodes,
      kWarning);
  EXPECT_EQ(after.size(), 2u);  // n9 is not a Node; D is INFO
  const auto changes = eventChanges(before, after);
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_TRUE(changes[0].onset);
  EXPECT_EQ(changes[0].node, "n2");
  EXPECT_EQ(changes[0].finding.code, "C");
  EXPECT_FALSE(changes[1].onset);
  EXPECT_EQ(changes[1].node, "n1");
  EXPECT_EQ(changes[1].finding.code, "A");
  EXPECT_TRUE(eventChanges(after, after).empty());
}

TEST(EventSpamFilter, BurstOf25ThenOneEveryFiveMinutesPerObject) {
  EventSpamFilter f;
  const auto t0 = steady_clock::time_point{} + 1h;
  for (int i = 0; i < 25; ++i) EXPECT_TRUE(f.allow("node-a", t0)) << i;
  EXPECT_FALSE(f.allow("node-a", t0));
  EXPECT_TRUE(f.allow("node-b", t0));  // another object has its own bucket
  EXPECT_FALSE(f.allow("node-a", t0 + 4min + 59s));
  EXPECT_TRUE(f.allow("node-a", t0 + 5min));
  EXPECT_FALSE(f.allow("node-a", t0 + 5min));
  // A long quiet time refills up to the burst, no more.
  const auto later = t0 + 24h;
  for (int i = 0; i < 25; ++i) EXPECT_TRUE(f.allow("node-a", later)) << i;
  EXPECT_FALSE(f.allow("node-a", later));
}

TEST(EventSpamFilter, LeastRecentlyUsedBucketIsForgotten) {
  EventSpamFilter f(1, 5min, 2);
  const auto t0 = steady_clock::time_point{} + 1h;
  EXPECT_TRUE(f.allow("a", t0));
  EXPECT_TRUE(f.allow("b", t0));
  EXPECT_FALSE(f.allow("b", t0));
  EXPECT_TRUE(f.allow("c", t0));   // evicts a
  EXPECT_TRUE(f.allow("a", t0));   // a new, full bucket
  EXPECT_FALSE(f.allow("c", t0));  // c was kept
}

TEST(NodeEvent, ShapedAsTheKubeletAndNpdShapeNodeEvents) {
  const auto now = std::chrono::system_clock::from_time_t(1'800'000'000);
  const EventChange onset{"n1", finding("VXLAN_PORT_FILTERED", kCritical, {"n1"}, "dropped"), true};
  const json e = nodeEvent("default", "n1", "uid-1", onset, now);
  EXPECT_EQ(e["metadata"]["namespace"], "default");
  EXPECT_EQ(e["metadata"]["name"].get<std::string>().rfind("n1.", 0), 0u);
  EXPECT_EQ(e["involvedObject"], (json{{"kind", "Node"}, {"apiVersion", "v1"}, {"name", "n1"}, {"uid", "uid-1"}}));
  EXPECT_EQ(e["reason"], "VXLAN_PORT_FILTERED");
  EXPECT_EQ(e["type"], "Warning");
  EXPECT_EQ(e["message"], "dropped");
  EXPECT_EQ(e["source"]["component"], "meshprobe-aggregator");
  EXPECT_EQ(e["count"], 1);
  EXPECT_EQ(e["firstTimestamp"], "2027-01-15T08:00:00Z");
  const json clear = nodeEvent("default", "n1", "", EventChange{"n1", onset.finding, false}, now);
  EXPECT_EQ(clear["type"], "Normal");
  EXPECT_EQ(clear["reason"], "VXLAN_PORT_FILTERED");
  EXPECT_EQ(clear["involvedObject"]["uid"], "n1");  // no uid known: the node's name, as NPD does
}

// ---------------------------------------------------------------- against the fake apiserver

json nodeJson(const std::string& name) {
  return {{"metadata", {{"name", name}, {"uid", "uid-" + name}}},
          {"status",
           {{"conditions", json::array({{{"type", "Ready"},
                                         {"status", "True"},
                                         {"reason", "KubeletReady"},
                                         {"message", "kubelet is posting ready status"},
                                         {"lastTransitionTime", "2026-01-01T00:00:00Z"}}})}}}};
}

const json* conditionOf(const json& conditions, const std::string& type) {
  for (const json& c : conditions)
    if (c.value("type", "") == type) return &c;
  return nullptr;
}

template <class T>
T runSync(boost::asio::awaitable<T> a) {
  boost::asio::io_context ioc;
  std::optional<T> out;
  boost::asio::co_spawn(
      ioc, [&]() -> boost::asio::awaitable<void> { out.emplace(co_await std::move(a)); }, boost::asio::detached);
  ioc.run();
  return std::move(*out);
}

class NodeProblemReporterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.start());
    KubeConfig c;
    c.server = server_.url();
    c.ca_file = test::mtlsFile("ca.pem");
    c.token = "good-token";
    auto client = KubeClient::create(c);
    ASSERT_TRUE(client) << client.error().message;
    client_ = *client;
    for (const char* n : {"n1", "n2"}) server_.upsert("nodes", nodeJson(n));
    setView({});
  }
  void TearDown() override {
    reporter_.reset();
    server_.stop();
  }
  // The view's Nodes n1 and n2 (with uids), n1 carrying `n1_conditions`.
  void setView(std::vector<Condition> n1_conditions) {
    KubeObjects o;
    o.synced = true;
    o.status = {ApiState::kSynced, ""};
    for (const char* n : {"n1", "n2"}) {
      o.nodes[n].name = n;
      o.nodes[n].uid = std::string("uid-") + n;
    }
    o.nodes["n1"].conditions = std::move(n1_conditions);
    view_.set(o);
  }
  void setFindings(std::vector<NodeFinding> f) {
    std::lock_guard lock(mu_);
    findings_ = std::move(f);
  }
  NodeProblemReporter& start(NodeProblemOptions o = fast(), std::function<bool()> is_leader = {}) {
    reporter_ = std::make_unique<NodeProblemReporter>(client_, view_, o);
    reporter_->start(
        [this] {
          std::lock_guard lock(mu_);
          return findings_;
        },
        std::move(is_leader));
    return *reporter_;
  }
  static NodeProblemOptions fast() {
    NodeProblemOptions o;
    o.interval = 20ms;
    o.retry_after = 50ms;
    return o;
  }
  // "" once node's MeshprobeNetworkProblem has `status` and `reason`, else what it has.
  std::string conditionIs(const std::string& node, const std::string& status, const std::string& reason) {
    const json conditions = server_.nodeConditions(node);
    const json* c = conditionOf(conditions, kProblemConditionType);
    if (c == nullptr) return node + ": no condition yet: " + conditions.dump();
    if ((*c)["status"] != status || (*c)["reason"] != reason) return node + ": " + c->dump();
    return "";
  }
  std::vector<json> eventsOf(const std::string& type, const std::string& reason) {
    std::vector<json> out;
    for (const json& e : server_.events())
      if (e["type"] == type && e["reason"] == reason) out.push_back(e);
    return out;
  }
  size_t statusPatches() {
    size_t n = 0;
    for (const auto& t : server_.stats().targets)
      if (t.ends_with("/status")) ++n;
    return n;
  }

  FakeKubeApiServer server_;
  std::shared_ptr<KubeClient> client_;
  testing::FakeKubeView view_;
  std::mutex mu_;
  std::vector<NodeFinding> findings_;
  std::unique_ptr<NodeProblemReporter> reporter_;
};

TEST_F(NodeProblemReporterTest, FakeMergePatchReplacesConditionsStrategicMergeKeepsThem) {
  // The fake's own habit, which the reporter must not trip on: RFC 7386 replaces the list.
  const json patch = conditionPatch({"True", "A", "m"}, std::chrono::system_clock::now(), true);
  auto r = runSync(
      client_->send("PATCH", "/api/v1/nodes/n1/status", patch.dump(), "application/strategic-merge-patch+json"));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->status, 200);
  EXPECT_NE(conditionOf(server_.nodeConditions("n1"), "Ready"), nullptr);
  r = runSync(client_->send("PATCH", "/api/v1/nodes/n2/status", patch.dump(), "application/merge-patch+json"));
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(conditionOf(server_.nodeConditions("n2"), "Ready"), nullptr);  // erased
  r = runSync(
      client_->send("PATCH", "/api/v1/nodes/n9/status", patch.dump(), "application/strategic-merge-patch+json"));
  EXPECT_EQ(r->status, 404);
  EXPECT_NE(r->body.find("nodes \\\"n9\\\" not found"), std::string::npos) << r->body;
  const json ev{{"metadata", {{"name", "e1"}}}, {"reason", "X"}};
  EXPECT_EQ(runSync(client_->send("POST", "/api/v1/namespaces/default/events", ev.dump()))->status, 201);
  EXPECT_EQ(runSync(client_->send("POST", "/api/v1/namespaces/default/events", ev.dump()))->status, 409);
}

TEST_F(NodeProblemReporterTest, TrueWithTheMostSevereFindingAndTheKubeletsReadySurvives) {
  setFindings({finding("OVERLAY_FDB_STALE", kWarning, {"n1"}),
               finding("VXLAN_PORT_FILTERED", kCritical, {"n1"}, "udp 4789 is dropped")});
  start();
  EXPECT_TRUE(eventually("n1 True", [&] { return conditionIs("n1", "True", "VXLAN_PORT_FILTERED"); }));
  EXPECT_TRUE(eventually("n2 False", [&] { return conditionIs("n2", "False", kNoProblemReason); }));
  const json conditions = server_.nodeConditions("n1");
  const json* ours = conditionOf(conditions, kProblemConditionType);
  EXPECT_EQ((*ours)["message"], "udp 4789 is dropped");
  EXPECT_TRUE(ours->contains("lastHeartbeatTime"));
  EXPECT_TRUE(ours->contains("lastTransitionTime"));
  const json* ready = conditionOf(conditions, "Ready");
  ASSERT_NE(ready, nullptr) << conditions.dump();
  EXPECT_EQ((*ready)["status"], "True");
  EXPECT_EQ((*ready)["reason"], "KubeletReady");
  // Unchanged: no further writes within the heartbeat period.
  // (the reporter counts a write once the answer is back, after the fake stored it)
  ASSERT_TRUE(eventually([&] { return reporter_->counters().condition_writes == 2; }));
  const uint64_t writes = reporter_->counters().condition_writes;
  const uint64_t passes = reporter_->counters().passes;
  ASSERT_TRUE(eventually([&] { return reporter_->counters().passes >= passes + 5; }));
  EXPECT_EQ(reporter_->counters().condition_writes, writes);
}

TEST_F(NodeProblemReporterTest, TransitionTimeStaysAcrossMessageChangesAndMovesWhenCleared) {
  // The node already carries our condition (a previous leader's), True since 2020.
  json n1 = nodeJson("n1");
  n1["status"]["conditions"].push_back({{"type", kProblemConditionType},
                                        {"status", "True"},
                                        {"reason", "VXLAN_PORT_FILTERED"},
                                        {"message", "old"},
                                        {"lastTransitionTime", "2020-01-01T00:00:00Z"},
                                        {"lastHeartbeatTime", "2020-01-01T00:00:00Z"}});
  server_.upsert("nodes", n1);
  setView({{"Ready", "True", "KubeletReady", ""}, {kProblemConditionType, "True", "VXLAN_PORT_FILTERED", "old"}});
  setFindings({finding("VXLAN_PORT_FILTERED", kCritical, {"n1"}, "first message")});
  start();
  const auto field = [&](const char* key) {
    const json c = server_.nodeConditions("n1");
    const json* ours = conditionOf(c, kProblemConditionType);
    return ours == nullptr ? std::string() : ours->value(key, "");
  };
  EXPECT_TRUE(eventually([&] { return field("message") == "first message"; }, [&] { return field("message"); }));
  EXPECT_EQ(field("lastTransitionTime"), "2020-01-01T00:00:00Z");
  EXPECT_NE(field("lastHeartbeatTime"), "2020-01-01T00:00:00Z");
  setFindings({finding("VXLAN_PORT_FILTERED", kCritical, {"n1"}, "second message")});
  EXPECT_TRUE(eventually([&] { return field("message") == "second message"; }, [&] { return field("message"); }));
  EXPECT_EQ(field("lastTransitionTime"), "2020-01-01T00:00:00Z");
  setFindings({});
  EXPECT_TRUE(eventually("n1 False", [&] { return conditionIs("n1", "False", kNoProblemReason); }));
  EXPECT_NE(field("lastTransitionTime"), "2020-01-01T00:00:00Z");
  EXPECT_NE(conditionOf(server_.nodeConditions("n1"), "Ready"), nullptr);
}

TEST_F(NodeProblemReporterTest, NothingIsWrittenWhileNotTheLeader) {
  std::atomic<bool> leader{false};
  setFindings({finding("VXLAN_PORT_FILTERED", kCritical, {"n1"})});
  start(fast(), [&] { return leader.load(); });
  ASSERT_TRUE(eventually([&] { return reporter_->counters().passes >= 5; }));
  EXPECT_EQ(statusPatches(), 0u);
  EXPECT_TRUE(server_.events().empty());
  EXPECT_EQ(reporter_->counters().condition_writes, 0u);
  // Leading now: the conditions are written; the finding began before, so no onset Event.
  leader = true;
  EXPECT_TRUE(eventually("n1 True", [&] { return conditionIs("n1", "True", "VXLAN_PORT_FILTERED"); }));
  EXPECT_TRUE(server_.events().empty());
}

TEST_F(NodeProblemReporterTest, EventsAtOnsetAndClearAndRepeatsCounted) {
  start();
  ASSERT_TRUE(eventually([&] { return reporter_->counters().passes >= 1; }));
  setFindings({finding("VXLAN_PORT_FILTERED", kCritical, {"n1"}, "udp 4789 is dropped")});
  ASSERT_TRUE(eventually([&] { return eventsOf("Warning", "VXLAN_PORT_FILTERED").size() == 1; }));
  const json onset = eventsOf("Warning", "VXLAN_PORT_FILTERED")[0];
  EXPECT_EQ(onset["involvedObject"]["kind"], "Node");
  EXPECT_EQ(onset["involvedObject"]["name"], "n1");
  EXPECT_EQ(onset["involvedObject"]["uid"], "uid-n1");
  EXPECT_EQ(onset["metadata"]["namespace"], "default");
  EXPECT_EQ(onset["message"], "udp 4789 is dropped");
  EXPECT_EQ(onset["source"]["component"], "meshprobe-aggregator");
  setFindings({});
  ASSERT_TRUE(eventually([&] { return eventsOf("Normal", "VXLAN_PORT_FILTERED").size() == 1; }));
  // The same fault again: client-go's eventLogger patches the first Event's count.
  setFindings({finding("VXLAN_PORT_FILTERED", kCritical, {"n1"}, "udp 4789 is dropped")});
  EXPECT_TRUE(eventually([&] { return eventsOf("Warning", "VXLAN_PORT_FILTERED")[0].value("count", 0) == 2; }));
  EXPECT_EQ(eventsOf("Warning", "VXLAN_PORT_FILTERED").size(), 1u);
  EXPECT_TRUE(eventually([&] {
    const auto c = reporter_->counters();
    return c.events_created == 2 && c.events_aggregated == 1;
  }));
  EXPECT_EQ(server_.events().size(), 2u);
}

TEST_F(NodeProblemReporterTest, EventsBeyondTheBurstAreDropped) {
  NodeProblemOptions o = fast();
  o.event_burst = 2;
  start(o);
  ASSERT_TRUE(eventually([&] { return reporter_->counters().passes >= 1; }));
  setFindings({finding("A", kCritical, {"n1"}), finding("B", kCritical, {"n1"}), finding("C", kCritical, {"n1"}),
               finding("D", kCritical, {"n2"})});
  ASSERT_TRUE(eventually([&] { return reporter_->counters().events_throttled == 1; },
                         [&] { return std::to_string(reporter_->counters().events_throttled); }));
  ASSERT_TRUE(eventually([&] { return server_.events().size() == 3; }));
  size_t on_n1 = 0;
  for (const json& e : server_.events()) on_n1 += e["involvedObject"]["name"] == "n1" ? 1 : 0;
  EXPECT_EQ(on_n1, 2u);  // n2 has its own bucket
}

TEST_F(NodeProblemReporterTest, ForbiddenIsCountedAndWritesResumeOnceAllowed) {
  server_.forbid("patch", "nodes/status");
  server_.forbid("create", "events");
  start();
  ASSERT_TRUE(eventually([&] { return reporter_->counters().passes >= 1; }));
  setFindings({finding("VXLAN_PORT_FILTERED", kCritical, {"n1"})});
  ASSERT_TRUE(eventually([&] { return reporter_->counters().errors_forbidden >= 3; }));
  EXPECT_EQ(conditionOf(server_.nodeConditions("n1"), kProblemConditionType), nullptr);
  EXPECT_TRUE(server_.events().empty());
  EXPECT_EQ(reporter_->counters().condition_writes, 0u);
  EXPECT_EQ(reporter_->counters().errors_other, 0u);
  server_.allowAll();
  EXPECT_TRUE(eventually("n1 True", [&] { return conditionIs("n1", "True", "VXLAN_PORT_FILTERED"); }));
}

TEST_F(NodeProblemReporterTest, UnreachableApiServerOnlyCountsErrors) {
  setFindings({finding("VXLAN_PORT_FILTERED", kCritical, {"n1"})});
  server_.stop();
  start();
  ASSERT_TRUE(eventually([&] { return reporter_->counters().errors_other >= 2; }));
  EXPECT_EQ(reporter_->counters().condition_writes, 0u);
  reporter_->stop();  // returns with a request possibly in flight
}

}  // namespace
}  // namespace meshprobe::aggregator::kube
