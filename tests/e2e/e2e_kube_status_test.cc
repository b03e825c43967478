// The aggregator's node condition and Events end to end: the real meshprobe-aggregator
// (--kubeconfig, --node-conditions on by default) watches an in-process fake kube-apiserver
// (tests/support/fake_kube_apiserver.h) served from the control netns, as in e2e_kube_test.cc,
// while real agents report from a 3-node namespace cluster (mesh.h). node2's overlay is broken
// the way the Diagnosis scenario S04 breaks it (UDP 4789 dropped in node2's INPUT chain): the
// fake's node2 must get MeshprobeNetworkProblem=True with the blamed finding's code as reason,
// with the kubelet's Ready condition intact, and a Warning Event with that reason; once
// repaired, False and a Normal Event. Every wait polls with a deadline (MeshTest::eventually).

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "tests/e2e/kube_e2e.h"
#include "tests/e2e/mesh.h"
#include "tests/support/fake_kube_apiserver.h"

namespace meshprobe::e2e {
namespace {

using nlohmann::json;

constexpr int kMeshNodes = 3;
constexpr const char* kToken = "e2e-kube-status-token";
constexpr const char* kCondition = "MeshprobeNetworkProblem";
constexpr auto kHealthyTimeout = 90s;  // mesh convergence + sync + the first writes
constexpr auto kFaultTimeout = 60s;    // detection + onset + the next reporter pass

// A Node as the kubelet publishes it (Ready True, KubeletReady), with a uid.
json nodeObject(const std::string& name) {
  return json{{"apiVersion", "v1"},
              {"kind", "Node"},
              {"metadata", {{"name", name}, {"uid", "uid-" + name}, {"labels", {{"kubernetes.io/hostname", name}}}}},
              {"status",
               {{"conditions", json::array({{{"type", "Ready"},
                                             {"status", "True"},
                                             {"reason", "KubeletReady"},
                                             {"message", "kubelet is posting ready status"}}})},
                {"addresses", json::array({{{"type", "InternalIP"}, {"address", "198.51.100.1" + name.substr(4)}}})}}}};
}

json agentPod(const std::string& node) {
  return json{{"apiVersion", "v1"},
              {"kind", "Pod"},
              {"metadata",
               {{"name", "meshprobe-agent-" + node},
                {"namespace", "meshprobe"},
                {"labels", {{"app.kubernetes.io/name", "meshprobe-agent"}}},
                {"ownerReferences", json::array({{{"apiVersion", "apps/v1"},
                                                  {"kind", "DaemonSet"},
                                                  {"name", "meshprobe-agent"},
                                                  {"controller", true},
                                                  {"uid", "ds-meshprobe-agent"}}})}}},
              {"spec", {{"nodeName", node}, {"hostNetwork", true}}},
              {"status",
               {{"phase", "Running"},
                {"conditions", json::array({{{"type", "Ready"}, {"status", "True"}}})},
                {"containerStatuses", json::array({{{"name", "agent"}, {"ready", true}, {"restartCount", 0}}})}}}};
}

const json* conditionOf(const json& conditions, const std::string& type) {
  for (const json& c : conditions)
    if (c.value("type", "") == type) return &c;
  return nullptr;
}

int severityRank(const std::string& s) { return s == "CRITICAL" ? 3 : s == "WARNING" ? 2 : s == "INFO" ? 1 : 0; }

class KubeStatusTest : public MeshTest {
 protected:
  MeshOptions meshOptions() const override {
    MeshOptions o;
    o.nodes = kMeshNodes;
    o.aggregator_args = {"--kubeconfig", kubeconfig_};
    o.before_aggregator = [this](const TestNetns& control) { startFakeIn(control); };
    return o;
  }

  void SetUp() override {
    std::string why;
    if (!havePrivileges(&why)) GTEST_SKIP() << why;
    tmp_ = std::make_unique<TempDir>("kube-status");
    kubeconfig_ = tmp_->sub("kubeconfig");
    test::FakeKubeApiServer::Options fo;
    fo.token = kToken;
    fake_ = std::make_unique<test::FakeKubeApiServer>(fo);
    for (int n = 1; n <= kMeshNodes; ++n) {
      fake_->upsert("nodes", nodeObject(nodeName(n)));
      fake_->upsert("pods", agentPod(nodeName(n)));
    }
    fake_->upsert("namespaces", json{{"metadata", {{"name", "meshprobe"}}}, {"status", {{"phase", "Active"}}}});
    MeshTest::SetUp();
  }

  void TearDown() override {
    MeshTest::TearDown();  // agents and aggregator end first
    if (fake_) fake_->stop();
  }

  // Starts the fake from a thread that entered `control`: its listener is 127.0.0.1:PORT in
  // the control netns, where the aggregator dials it (see e2e_kube_test.cc).
  void startFakeIn(const TestNetns& control) const {
    startFakeKubeApiServerIn(control, *fake_, kubeconfig_, kToken);
  }

  // "" once `node` has our condition with `status` (and `reason` unless empty) and the
  // kubelet's Ready True; else what it has.
  std::string conditionIs(const std::string& node, const std::string& status, const std::string& reason) const {
    const json conditions = fake_->nodeConditions(node);
    const json* ready = conditionOf(conditions, "Ready");
    if (ready == nullptr || (*ready)["status"] != "True") return node + ": Ready lost: " + conditions.dump() + "\n";
    const json* ours = conditionOf(conditions, kCondition);
    if (ours == nullptr) return node + ": no " + kCondition + " yet\n";
    if ((*ours)["status"] != status || (!reason.empty() && (*ours)["reason"] != reason))
      return node + ": " + ours->dump() + "\n";
    return "";
  }

  std::vector<json> events(const std::string& node, const std::string& type, const std::string& reason) const {
    std::vector<json> out;
    for (const json& e : fake_->events()) {
      if (e["involvedObject"]["name"] == node && e["type"] == type && e["reason"] == reason) out.push_back(e);
    }
    return out;
  }

  std::string kubeconfig_;
  std::unique_ptr<TempDir> tmp_;
  std::unique_ptr<test::FakeKubeApiServer> fake_;
};

TEST_F(KubeStatusTest, BrokenOverlayOnNode2SetsItsConditionAndEventsUntilRepaired) {
  ASSERT_TRUE(eventually(
      "every node MeshprobeNetworkProblem=False with Ready intact",
      [&] {
        std::string out;
        for (int n = 1; n <= kMeshNodes; ++n) out += conditionIs(nodeName(n), "False", "NoMeshprobeNetworkProblem");
        return out;
      },
      kHealthyTimeout));

  const TestNetns& node2 = mesh_->cluster().node(2);
  node2.sh("iptables -A INPUT -p udp --dport 4789 -j DROP");
  std::string reason;
  ASSERT_TRUE(eventually(
      "node2 MeshprobeNetworkProblem=True naming its most severe finding, with a Warning Event",
      [&]() -> std::string {
        Findings f = mesh_->diagnose();
        if (!f.ok) return f.render();
        // The most severe findings blaming node2 (the condition names one of them).
        std::set<std::string> worst;
        int rank = 0;
        bool port_filtered = false;
        for (const auto& x : f.list) {
          if (!x.nodeSet().contains("node2")) continue;
          port_filtered |= x.code == "VXLAN_PORT_FILTERED";
          if (severityRank(x.severity) > rank) {
            rank = severityRank(x.severity);
            worst.clear();
          }
          if (severityRank(x.severity) == rank) worst.insert(x.code);
        }
        if (!port_filtered) return "no VXLAN_PORT_FILTERED[node2] yet\n" + f.render();
        if (auto m = conditionIs("node2", "True", ""); !m.empty()) return m;
        const json conditions = fake_->nodeConditions("node2");
        reason = (*conditionOf(conditions, kCondition))["reason"].get<std::string>();
        if (!worst.contains(reason)) return "reason " + reason + " is not a most severe finding\n" + f.render();
        if (events("node2", "Warning", reason).empty()) return "no Warning Event " + reason + " on node2 yet\n";
        return "";
      },
      kFaultTimeout));
  const json onset = events("node2", "Warning", reason)[0];
  EXPECT_EQ(onset["involvedObject"]["kind"], "Node");
  EXPECT_EQ(onset["involvedObject"]["uid"], "uid-node2");
  EXPECT_EQ(onset["metadata"]["namespace"], "default");
  EXPECT_EQ(onset["source"]["component"], "meshprobe-aggregator");
  const json ours = *conditionOf(fake_->nodeConditions("node2"), kCondition);
  EXPECT_FALSE(ours.value("message", "").empty());
  EXPECT_TRUE(ours.contains("lastTransitionTime"));
  // node1 and node3 stay False unless a finding blames them too (the mesh's other nodes see
  // node2's overlay fail, but the blame is node2's).
  for (const char* n : {"node1", "node3"}) EXPECT_EQ(conditionIs(n, "False", ""), "") << n;

  node2.sh("iptables -D INPUT -p udp --dport 4789 -j DROP");
  EXPECT_TRUE(eventually(
      "node2 back to False with a Normal Event for " + reason,
      [&]() -> std::string {
        if (auto m = conditionIs("node2", "False", "NoMeshprobeNetworkProblem"); !m.empty()) return m;
        if (events("node2", "Normal", reason).empty()) return "no Normal Event " + reason + " on node2 yet\n";
        return "";
      },
      kFaultTimeout));
  const json cleared = *conditionOf(fake_->nodeConditions("node2"), kCondition);
  EXPECT_TRUE(cleared.contains("lastTransitionTime"));
}

}  // namespace
}  // namespace meshprobe::e2e
