// The engine with a Kubernetes view: the Kubernetes rules run on every pass (also when the
// matrix rules' candidates are reused), over the cluster snapshot's agents, and see a
// change of the API's objects without any change of the agents' data.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <mutex>

#include "aggregator/diagnosis/engine.h"
#include "common/finding.h"
#include "tests/support/fake_kube_view.h"
#include "tests/unit/aggregator/test_util.h"

namespace meshprobe::aggregator {
namespace {

namespace v1 = meshprobe::v1;
using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using testing::makeHello;
using testing::makeProbe;

using testing::FakeKubeView;

kube::NodeObject readyNode(const std::string& name) {
  kube::NodeObject n;
  n.name = name;
  n.ready = true;
  n.conditions.push_back({"Ready", "True", "KubeletReady", "kubelet is posting ready status"});
  return n;
}

std::vector<std::string> codesOf(const std::vector<v1::Finding>& fs) {
  std::vector<std::string> out;
  for (const auto& f : fs) out.push_back(f.code() + (f.nodes_size() ? "[" + f.nodes(0) + "]" : "[]"));
  return out;
}

class EngineKubeTest : public ::testing::Test {
 protected:
  EngineKubeTest() : state_(clock_, clusterOptions()), engine_(clock_, state_, diagnosisOptions(), &view_) {
    for (int i = 1; i <= 3; ++i) state_.applyHello(makeHello("n" + std::to_string(i), i), true);
    for (int i = 1; i <= 3; ++i) report(i);
  }

  static ClusterOptions clusterOptions() {
    ClusterOptions o;
    o.stale_after = seconds(10);
    return o;
  }
  static DiagnosisOptions diagnosisOptions() {
    DiagnosisOptions o;
    o.kube.onset_agent_missing = std::chrono::nanoseconds(0);
    o.kube.onset_namespace = std::chrono::nanoseconds(0);
    return o;
  }

  void report(int i, std::vector<v1::Finding> findings = {}) {
    v1::Report r;
    for (auto& f : findings) *r.add_findings() = std::move(f);
    r.set_sequence(++seq_[i]);
    for (int d = 1; d <= 3; ++d) {
      if (d == i) continue;
      for (auto layer : {v1::UNDERLAY, v1::OVERLAY}) *r.add_probes() = makeProbe("n" + std::to_string(d), layer, 10, 10);
    }
    ASSERT_EQ(state_.applyReport("n" + std::to_string(i), r), ReportOutcome::kAccepted);
  }

  kube::KubeObjects synced(std::vector<std::string> nodes) {
    kube::KubeObjects o;
    o.synced = true;
    o.status.state = kube::ApiState::kSynced;
    for (const auto& n : nodes) o.nodes[n] = readyNode(n);
    return o;
  }

  FakeClock clock_;
  ClusterState state_;
  FakeKubeView view_;
  DiagnosisEngine engine_;
  std::map<int, uint64_t> seq_;
};

TEST_F(EngineKubeTest, NothingBeforeTheFirstSync) {
  engine_.evaluate();
  EXPECT_THAT(engine_.active(), IsEmpty());
}

TEST_F(EngineKubeTest, AReadyNodeWithoutAnAgentIsMissingWhileTheMatrixRulesAreReused) {
  view_.set(synced({"n1", "n2", "n3"}));
  engine_.evaluate();
  EXPECT_THAT(engine_.active(), IsEmpty());
  EXPECT_EQ(engine_.rulePasses(), 1u);

  // Only the API's objects change: the agents' snapshot (and its generation) does not, so
  // the matrix rules are not run again, but the Kubernetes rules see node n4.
  view_.set(synced({"n1", "n2", "n3", "n4"}));
  engine_.evaluate();
  EXPECT_EQ(engine_.rulePasses(), 1u);
  EXPECT_EQ(engine_.skippedPasses(), 1u);
  ASSERT_THAT(codesOf(engine_.active()), ElementsAre("AGENT_MISSING[n4]"));
  EXPECT_THAT(engine_.active()[0].summary(), HasSubstr("n4"));

  // The Node goes away: the finding clears after the lifecycle's clear delay.
  view_.set(synced({"n1", "n2", "n3"}));
  engine_.evaluate();
  clock_.advance(seconds(6));
  for (int i = 1; i <= 3; ++i) report(i);
  engine_.evaluate();
  EXPECT_THAT(engine_.active(), IsEmpty());
}

TEST_F(EngineKubeTest, ANamespaceExpectedInTheMeshButNotLabeled) {
  auto selector = kube::Selector::parse("team=payments");
  ASSERT_TRUE(selector.ok());
  DiagnosisOptions options = diagnosisOptions();
  options.kube.expect_ambient = *selector;
  DiagnosisEngine engine(clock_, state_, options, &view_);

  kube::KubeObjects objects = synced({"n1", "n2", "n3"});
  objects.namespaces["payments"] = kube::NamespaceObject{"payments", {{"team", "payments"}}, false};
  objects.namespaces["tools"] = kube::NamespaceObject{"tools", {}, false};
  view_.set(objects);
  engine.evaluate();
  EXPECT_THAT(codesOf(engine.active()), ElementsAre("NAMESPACE_NOT_AMBIENT[]"));
  EXPECT_THAT(engine.active()[0].summary(), HasSubstr("payments"));

  objects.namespaces["payments"].labels["istio.io/dataplane-mode"] = "ambient";
  view_.set(objects);
  engine.evaluate();
  clock_.advance(seconds(6));  // past the clear delay (5 s after last seen); the agents still report
  for (int i = 1; i <= 3; ++i) report(i);
  engine.evaluate();
  EXPECT_THAT(engine.active(), IsEmpty());
}

TEST_F(EngineKubeTest, KubeRuleInputCarriesTheAgentsPodNetnsAndTheMatrixBlame) {
  v1::Report r;
  r.set_sequence(++seq_[2]);
  auto* list = r.mutable_pod_netns();
  auto* e = list->add_entries();
  e->set_netns("cni-1");
  e->add_ips("10.244.2.7");
  e->set_state(v1::PodNetnsCapture::UNCAPTURED);
  e->set_reason("no ISTIO_PRERT chain");
  auto* c = list->add_entries();
  c->set_netns("cni-2");
  c->add_ips("10.244.2.8");
  c->set_state(v1::PodNetnsCapture::CAPTURED);
  list->set_total(2);
  ASSERT_EQ(state_.applyReport("n2", r), ReportOutcome::kAccepted);

  Candidate overlay;
  overlay.finding.set_id("OVERLAY_PARTITION/n3");
  overlay.finding.set_code("OVERLAY_PARTITION");
  overlay.finding.set_layer(v1::OVERLAY);
  overlay.finding.add_nodes("n3");
  Candidate ambient;
  ambient.finding.set_id("CNI_AGENT_DOWN/n1");
  ambient.finding.set_layer(v1::AMBIENT);
  ambient.finding.add_nodes("n1");

  const auto snap = state_.snapshot();
  const KubeRuleInput in = kubeRuleInput(*snap, view_.objects(), {overlay, ambient}, clock_.wallNow());
  ASSERT_EQ(in.agents.size(), 3u);
  const KubeAgentNode& n2 = in.agents[1];
  EXPECT_EQ(n2.name, "n2");
  EXPECT_TRUE(n2.up);
  EXPECT_TRUE(n2.ever_reported);
  ASSERT_EQ(n2.captures.size(), 2u);
  EXPECT_THAT(n2.captures[0].ips, ElementsAre("10.244.2.7"));
  EXPECT_FALSE(n2.captures[0].captured);
  EXPECT_EQ(n2.captures[0].state, "uncaptured");
  EXPECT_EQ(n2.captures[0].reason, "no ISTIO_PRERT chain");
  EXPECT_TRUE(n2.captures[1].captured);
  EXPECT_EQ(n2.captures[1].state, "captured");
  EXPECT_TRUE(in.agents[0].captures.empty());  // n1 sent no list: unknown, nothing to join
  // Only overlay/underlay blame explains a node's path.
  EXPECT_THAT(in.path_blamed, ElementsAre(std::pair<const std::string, std::string>("n3", "OVERLAY_PARTITION/n3")));
}

TEST_F(EngineKubeTest, ANodesOwnFdbFindingNamesTheFlannelPodOnlyWithTheApi) {
  v1::Finding fdb;
  fdb.set_code(std::string(codes::kOverlayFdbStale));
  fdb.set_severity(v1::CRITICAL);
  fdb.set_layer(v1::OVERLAY);
  fdb.set_summary("1 of 2 peers on flannel.1 have incomplete overlay entries");
  fdb.set_remedy("Restart the flannel pod on this node.");
  report(2, {fdb});

  // Without a synced view (the API not listed yet): the agent's remedy as it came.
  engine_.evaluate();
  ASSERT_THAT(codesOf(engine_.active()), ElementsAre("OVERLAY_FDB_STALE[n2]"));
  EXPECT_EQ(engine_.active()[0].remedy(), "Restart the flannel pod on this node.");

  // With the objects: the flannel pod on n2 is named, on every pass (the matrix rules'
  // candidates are reused: the agents' data did not change).
  kube::KubeObjects objects = synced({"n1", "n2", "n3"});
  kube::PodObject flannel;
  flannel.ns = "kube-flannel";
  flannel.name = "kube-flannel-ds-abc12";
  flannel.node_name = "n2";
  flannel.labels = {{"app", "flannel"}};
  flannel.phase = "Running";
  flannel.ready = true;
  objects.pods[flannel.key()] = flannel;
  view_.set(objects);
  engine_.evaluate();
  engine_.evaluate();
  EXPECT_GE(engine_.skippedPasses(), 2u);
  ASSERT_THAT(codesOf(engine_.active()), ElementsAre("OVERLAY_FDB_STALE[n2]"));
  EXPECT_EQ(engine_.active()[0].remedy(),
            "Restart the flannel pod on this node. On n2 that is flannel pod kube-flannel/kube-flannel-ds-abc12 "
            "(Running): kubectl -n kube-flannel delete pod kube-flannel-ds-abc12.");

  // The pod starts crash-looping: the remedy follows the watch.
  objects.pods[flannel.key()].containers.push_back({"kube-flannel", false, 3, "CrashLoopBackOff", "", "Error", 1});
  view_.set(objects);
  engine_.evaluate();
  EXPECT_THAT(engine_.active()[0].remedy(), HasSubstr("which is not Running (CrashLoopBackOff)"));
}

}  // namespace
}  // namespace meshprobe::aggregator
