// The aggregator's Kubernetes findings end to end: the real meshprobe-aggregator, started
// with `--kubeconfig FILE`, lists and watches an in-process fake kube-apiserver
// (tests/support/fake_kube_apiserver.h: HTTPS with the test PKI, bearer-token
// authentication) while real agents report from a 3-node namespace cluster (mesh.h). The
// findings are read through the Query API (`meshprobe diagnose --output json`), as are the
// Kubernetes answers (`meshprobe nodes`' missingAgents, `meshprobe namespaces`).
//
// Where the fake listens: the aggregator runs in the control netns, the fake in this test
// process. A socket belongs to the netns of the thread that created it, so a short-lived
// thread enters the control netns (setns) and calls start(): the listener is
// 127.0.0.1:PORT *inside the control netns*, which is what the aggregator dials. The
// fake's io thread (spawned from that thread) only serves that listener's connections;
// this process's other threads stay in the root netns. The serving certificate (the
// test PKI's aggregator.pem) carries the SAN IP 127.0.0.1, so TLS verification against
// ca.pem holds as it would against a real apiserver's certificate.
//
// The Kubernetes objects copy what kubelet and the scheduler publish: Node status
// conditions (Ready True with the kubelet's reason KubeletReady), a DaemonSet pod in
// CrashLoopBackOff as kubelet reports it (state.waiting.reason CrashLoopBackOff with its
// "back-off ... restarting failed container" message, lastState.terminated reason Error,
// exitCode 1, restartCount), status.podIP/podIPs of a Running pod.

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

constexpr int kMeshNodes = 3;  // agents on node1..node3; the fake also has node4
constexpr const char* kToken = "e2e-kube-token";
constexpr auto kFindingTimeout = 45s;  // sync + one pass + onset (2 s here, 10 s for pod capture)
// ZTUNNEL_NOT_READY waits 30 s (a ztunnel rollout or restart) after the overlay finding.
constexpr auto kZtunnelTimeout = 90s;

json nodeObject(const std::string& name) {
  return json{{"apiVersion", "v1"},
              {"kind", "Node"},
              {"metadata", {{"name", name}, {"labels", {{"kubernetes.io/hostname", name}}}}},
              {"status",
               {{"conditions", json::array({{{"type", "Ready"},
                                             {"status", "True"},
                                             {"reason", "KubeletReady"},
                                             {"message", "kubelet is posting ready status"}}})},
                {"addresses", json::array({{{"type", "InternalIP"}, {"address", "198.51.100.1" + name.substr(4)}},
                                           {{"type", "Hostname"}, {"address", name}}})}}}};
}

json namespaceObject(const std::string& name, const json& labels) {
  json meta = {{"name", name}, {"labels", labels}};
  meta["labels"]["kubernetes.io/metadata.name"] = name;  // the apiserver adds it to every namespace
  return json{{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", meta}, {"status", {{"phase", "Active"}}}};
}

json ownerDaemonSet(const std::string& name) {
  return json::array({{{"apiVersion", "apps/v1"},
                       {"kind", "DaemonSet"},
                       {"name", name},
                       {"controller", true},
                       {"uid", "ds-" + name}}});
}

// The meshprobe agent DaemonSet's pod on `node`, Running and Ready.
json agentPod(const std::string& node, const std::string& suffix) {
  return json{
      {"apiVersion", "v1"},
      {"kind", "Pod"},
      {"metadata",
       {{"name", "meshprobe-agent-" + suffix},
        {"namespace", "meshprobe"},
        {"labels", {{"app.kubernetes.io/name", "meshprobe-agent"}}},
        {"ownerReferences", ownerDaemonSet("meshprobe-agent")}}},
      {"spec", {{"nodeName", node}, {"hostNetwork", true}}},
      {"status",
       {{"phase", "Running"},
        {"conditions", json::array({{{"type", "Ready"}, {"status", "True"}}})},
        {"containerStatuses",
         json::array(
             {{{"name", "agent"}, {"ready", true}, {"restartCount", 0}, {"state", {{"running", json::object()}}}}})}}}};
}

// The same pod as kubelet shows it after the container exited 1 a few times.
json crashingAgentPod(const std::string& node, const std::string& suffix) {
  json pod = agentPod(node, suffix);
  pod["status"]["conditions"] =
      json::array({{{"type", "Ready"}, {"status", "False"}, {"reason", "ContainersNotReady"}}});
  pod["status"]["containerStatuses"] =
      json::array({{{"name", "agent"},
                    {"ready", false},
                    {"restartCount", 5},
                    {"state",
                     {{"waiting",
                       {{"reason", "CrashLoopBackOff"},
                        {"message", "back-off 2m40s restarting failed container=agent pod=meshprobe-agent-" + suffix +
                                        "_meshprobe(ds-meshprobe-agent)"}}}}},
                    {"lastState", {{"terminated", {{"reason", "Error"}, {"exitCode", 1}}}}}}});
  return pod;
}

// An application pod (a Deployment's ReplicaSet) Running with `ip`.
json appPod(const std::string& ns, const std::string& name, const std::string& node, const std::string& ip) {
  return json{{"apiVersion", "v1"},
              {"kind", "Pod"},
              {"metadata",
               {{"name", name},
                {"namespace", ns},
                {"labels", {{"app", "web"}}},
                {"ownerReferences", json::array({{{"apiVersion", "apps/v1"},
                                                  {"kind", "ReplicaSet"},
                                                  {"name", "web-7d4b9c"},
                                                  {"controller", true},
                                                  {"uid", "rs-web"}}})}}},
              {"spec", {{"nodeName", node}}},
              {"status",
               {{"phase", "Running"},
                {"podIP", ip},
                {"podIPs", json::array({{{"ip", ip}}})},
                {"conditions", json::array({{{"type", "Ready"}, {"status", "True"}}})},
                {"containerStatuses", json::array({{{"name", "web"}, {"ready", true}, {"restartCount", 0}}})}}}};
}

// The ztunnel DaemonSet's pod on `node` as the upstream chart labels it (app=ztunnel,
// istio.io/dataplane-mode=none, sidecar.istio.io/inject=false; container istio-proxy).
// ztunnel answers its readiness probe (/healthz/ready on 15021) only once its first xDS
// config from istiod has arrived, so a ztunnel restarted while istiod is unreachable from
// its node runs without becoming Ready: kubelet then shows Ready False with its
// ContainersNotReady reason and message.
json ztunnelPod(const std::string& node, const std::string& suffix, bool ready) {
  json pod{
      {"apiVersion", "v1"},
      {"kind", "Pod"},
      {"metadata",
       {{"name", "ztunnel-" + suffix},
        {"namespace", "istio-system"},
        {"labels", {{"app", "ztunnel"}, {"istio.io/dataplane-mode", "none"}, {"sidecar.istio.io/inject", "false"}}},
        {"ownerReferences", ownerDaemonSet("ztunnel")}}},
      {"spec", {{"nodeName", node}}},
      {"status",
       {{"phase", "Running"},
        {"conditions", json::array({{{"type", "Ready"}, {"status", "True"}}})},
        {"containerStatuses", json::array({{{"name", "istio-proxy"},
                                            {"ready", true},
                                            {"restartCount", 0},
                                            {"state", {{"running", json::object()}}}}})}}}};
  if (!ready) {
    pod["status"]["conditions"] = json::array({{{"type", "Ready"},
                                                {"status", "False"},
                                                {"reason", "ContainersNotReady"},
                                                {"message", "containers with unready status: [istio-proxy]"}}});
    pod["status"]["containerStatuses"][0]["ready"] = false;
    pod["status"]["containerStatuses"][0]["restartCount"] = 1;
    pod["status"]["containerStatuses"][0]["lastState"] = {{"terminated", {{"reason", "Error"}, {"exitCode", 1}}}};
  }
  return pod;
}

// flannel's DaemonSet pod on `node` as kube-flannel.yml labels it (app=flannel, tier=node, in
// kube-flannel; container kube-flannel), Running and Ready.
json flannelPod(const std::string& node, const std::string& suffix) {
  return json{{"apiVersion", "v1"},
              {"kind", "Pod"},
              {"metadata",
               {{"name", "kube-flannel-ds-" + suffix},
                {"namespace", "kube-flannel"},
                {"labels", {{"app", "flannel"}, {"tier", "node"}, {"k8s-app", "flannel"}}},
                {"ownerReferences", ownerDaemonSet("kube-flannel-ds")}}},
              {"spec", {{"nodeName", node}, {"hostNetwork", true}}},
              {"status",
               {{"phase", "Running"},
                {"conditions", json::array({{{"type", "Ready"}, {"status", "True"}}})},
                {"containerStatuses", json::array({{{"name", "kube-flannel"},
                                                    {"ready", true},
                                                    {"restartCount", 0},
                                                    {"state", {{"running", json::object()}}}}})}}}};
}

std::vector<DiagFinding> withCode(const Findings& f, const std::string& code) {
  std::vector<DiagFinding> out;
  for (const auto& x : f.list) {
    if (x.code == code) out.push_back(x);
  }
  return out;
}

bool mentions(const DiagFinding& f, const std::vector<std::string>& words, std::string* missing) {
  const std::string text = f.text();
  for (const auto& w : words) {
    if (text.find(w) == std::string::npos) {
      *missing = w;
      return false;
    }
  }
  return true;
}

class KubeTest : public MeshTest {
 protected:
  MeshOptions meshOptions() const override {
    MeshOptions o;
    o.nodes = kMeshNodes;
    o.aggregator_args = {"--kubeconfig", kubeconfig_, "--expect-ambient", "team=payments",
                         // A new node's agent gets 60 s by default; the test does not wait that long.
                         "--agent-missing-after", "2s"};
    o.before_aggregator = [this](const TestNetns& control) { startFakeIn(control); };
    return o;
  }

  void SetUp() override {
    std::string why;
    if (!havePrivileges(&why)) GTEST_SKIP() << why;
    tmp_ = std::make_unique<TempDir>("kube");
    kubeconfig_ = tmp_->sub("kubeconfig");
    test::FakeKubeApiServer::Options fo;
    fo.token = kToken;
    fake_ = std::make_unique<test::FakeKubeApiServer>(fo);
    // What every test starts from: four Ready nodes, the agent DaemonSet Running on the three
    // that run an agent here and crash-looping on node4 (whose agent never reports).
    for (int n = 1; n <= 4; ++n) fake_->upsert("nodes", nodeObject(nodeName(n)));
    fake_->upsert("namespaces", namespaceObject("meshprobe", json::object()));
    fake_->upsert("namespaces", namespaceObject("default", json::object()));
    const char* suffixes[] = {"", "x7k2p", "b9qzd", "m4t8w", "c2vns"};
    for (int n = 1; n <= 3; ++n) fake_->upsert("pods", agentPod(nodeName(n), suffixes[n]));
    fake_->upsert("pods", crashingAgentPod("node4", suffixes[4]));
    MeshTest::SetUp();
  }

  void TearDown() override {
    mounts_.clear();
    pods_.clear();
    MeshTest::TearDown();  // agents and aggregator end first
    if (fake_) fake_->stop();
  }

  // Starts the fake from a thread that entered `control` (see the file comment), then writes
  // the kubeconfig the aggregator reads: a token user, the test CA, the fake's URL.
  void startFakeIn(const TestNetns& control) const {
    startFakeKubeApiServerIn(control, *fake_, kubeconfig_, kToken);
  }

  // A netns with `ip` on eth0 (a veth whose peer stays in the same netns: no traffic leaves it), bind-mounted into node
  // n's --netns-dir under its own name: a pod netns the agent inspects, without Istio's in-pod rules or ztunnel's
  // listeners.
  void addUncapturedPodNetns(int n, const std::string& name, const std::string& ip) {
    pods_.push_back(std::make_unique<TestNetns>(name));
    pods_.back()->sh("ip link add eth0 type veth peer name peer0\nip addr add " + ip +
                     "/24 dev eth0\nip link set peer0 up\nip link set eth0 up");
    const std::string dst = mesh_->netnsDir(n) + "/" + pods_.back()->name();
    mounts_.push_back(std::make_unique<BindMount>(pods_.back()->path(), dst));
    // The agent already runs in the mount namespace `ip netns exec` made for it, a slave of
    // ours, and the temp dir is not a shared mount: mount it there too, as kubelet's
    // HostToContainer propagation of /var/run/netns would (it goes with that namespace).
    mustRun({"nsenter", "-t", std::to_string(mesh_->agent(n).pid()), "-m", "--", "mount", "--bind",
             pods_.back()->path(), dst});
  }

  std::string kubeconfig_;
  std::unique_ptr<TempDir> tmp_;
  std::unique_ptr<test::FakeKubeApiServer> fake_;
  std::vector<std::unique_ptr<TestNetns>> pods_;
  std::vector<std::unique_ptr<BindMount>> mounts_;  // cleared before pods_
};

TEST_F(KubeTest, AgentMissingNamesTheNodeAndItsCrashLoopingPod) {
  ASSERT_TRUE(eventually(
      "AGENT_MISSING for node4 only, with the CrashLoopBackOff evidence",
      [&] {
        Findings f = mesh_->diagnose();
        if (!f.ok) return f.render();
        auto missing = withCode(f, "AGENT_MISSING");
        if (missing.size() != 1 || missing[0].nodeSet() != std::set<std::string>{"node4"})
          return "want exactly AGENT_MISSING[node4]\n" + f.render();
        std::string word;
        if (!mentions(missing[0],
                      {"meshprobe/meshprobe-agent-c2vns", "CrashLoopBackOff", "last terminated: Error (exit code 1)",
                       "restarted 5 times", "no report ever received"},
                      &word))
          return "AGENT_MISSING[node4] does not mention \"" + word + "\"\n" + f.render();
        return std::string();
      },
      kFindingTimeout));
  // `meshprobe nodes` lists node4 as a Kubernetes node without an agent, with its pod's state.
  std::string error;
  const json nodes = mesh_->listNodes(Via::kCli, &error);
  ASSERT_TRUE(nodes.is_object()) << error;
  ASSERT_TRUE(nodes.contains("missingAgents")) << nodes.dump();
  ASSERT_EQ(nodes["missingAgents"].size(), 1u) << nodes.dump();
  const json& m = nodes["missingAgents"][0];
  EXPECT_EQ(m.value("name", ""), "node4");
  EXPECT_EQ(m.value("ready", false), true);
  EXPECT_EQ(m.value("agentPod", ""), "meshprobe/meshprobe-agent-c2vns");
  EXPECT_EQ(m.value("podState", ""), "CrashLoopBackOff");
  EXPECT_EQ(m.value("findingId", ""), "AGENT_MISSING/node4");
  EXPECT_EQ(nodes["nodes"].size(), 3u);

  // The fake saw the kubeconfig's token on every request.
  const auto stats = fake_->stats();
  EXPECT_GE(stats.lists, 3u);
  EXPECT_EQ(stats.unauthorized, 0u);
  for (const auto& t : stats.tokens) EXPECT_EQ(t, kToken);

  // node4's agent pod turns healthy but its reports still do not arrive: the evidence follows
  // the watch (a MODIFIED event), the finding stays.
  fake_->upsert("pods", agentPod("node4", "c2vns"));
  EXPECT_TRUE(eventually(
      "AGENT_MISSING[node4] says the pod is Running but reports do not arrive",
      [&] {
        Findings f = mesh_->diagnose();
        auto missing = withCode(f, "AGENT_MISSING");
        if (missing.size() != 1 || missing[0].nodeSet() != std::set<std::string>{"node4"})
          return "want exactly AGENT_MISSING[node4]\n" + f.render();
        if (missing[0].summary.find("Running but its reports do not arrive") == std::string::npos)
          return "summary not updated\n" + f.render();
        return std::string();
      },
      kFindingTimeout));
}

TEST_F(KubeTest, NamespaceNotAmbientUntilLabelled) {
  fake_->upsert("namespaces", namespaceObject("payments", {{"team", "payments"}}));
  // Selected and ambient, and ambient but not selected: neither is a finding.
  fake_->upsert("namespaces",
                namespaceObject("payments-ledger", {{"team", "payments"}, {"istio.io/dataplane-mode", "ambient"}}));
  fake_->upsert("namespaces", namespaceObject("shop", {{"team", "shop"}}));
  ASSERT_TRUE(eventually(
      "NAMESPACE_NOT_AMBIENT for payments only",
      [&] {
        Findings f = mesh_->diagnose();
        if (!f.ok) return f.render();
        auto ns = withCode(f, "NAMESPACE_NOT_AMBIENT");
        if (ns.size() != 1 || ns[0].id != "NAMESPACE_NOT_AMBIENT/payments")
          return "want exactly NAMESPACE_NOT_AMBIENT/payments\n" + f.render();
        std::string word;
        if (!mentions(ns[0], {"namespace payments", "team=payments", "istio.io/dataplane-mode"}, &word))
          return "NAMESPACE_NOT_AMBIENT/payments does not mention \"" + word + "\"\n" + f.render();
        return std::string();
      },
      kFindingTimeout));

  // `meshprobe namespaces` says the same: selected by --expect-ambient, unlabelled, the finding.
  std::string error;
  const json ns = Mesh::parse(mesh_->cli({"namespaces"}), &error);
  ASSERT_TRUE(ns.is_object()) << error;
  bool seen = false;
  for (const auto& n : ns["namespaces"]) {
    if (n.value("name", "") != "payments") continue;
    seen = true;
    EXPECT_EQ(n["expectAmbient"], true) << n.dump();
    EXPECT_EQ(n["dataplaneMode"], "") << n.dump();
    EXPECT_EQ(n["findings"], json::array({"NAMESPACE_NOT_AMBIENT"})) << n.dump();
  }
  EXPECT_TRUE(seen) << ns.dump();

  // `kubectl label namespace payments istio.io/dataplane-mode=ambient`: a MODIFIED event.
  fake_->upsert("namespaces",
                namespaceObject("payments", {{"team", "payments"}, {"istio.io/dataplane-mode", "ambient"}}));
  EXPECT_TRUE(eventually(
      "NAMESPACE_NOT_AMBIENT cleared",
      [&] {
        Findings f = mesh_->diagnose();
        if (!f.ok) return f.render();
        return withCode(f, "NAMESPACE_NOT_AMBIENT").empty() ? std::string() : "still active\n" + f.render();
      },
      kFindingTimeout));
}

TEST_F(KubeTest, PodNotCapturedJoinsTheAgentsNetnsWithThePodIp) {
  // An ambient namespace with a Running pod on node2 whose netns the agent on node2 finds
  // without redirection; the same kind of netns for a pod of a non-ambient namespace on
  // node3 is no finding.
  fake_->upsert("namespaces", namespaceObject("shop", {{"istio.io/dataplane-mode", "ambient"}}));
  fake_->upsert("pods", appPod("shop", "web-7d4b9c-q2x8r", "node2", "10.244.2.20"));
  fake_->upsert("pods", appPod("default", "web-7d4b9c-z5m1k", "node3", "10.244.3.20"));
  addUncapturedPodNetns(2, "web-shop", "10.244.2.20");
  addUncapturedPodNetns(3, "web-default", "10.244.3.20");
  ASSERT_TRUE(eventually(
      "POD_NOT_CAPTURED on node2 naming shop/web-7d4b9c-q2x8r",
      [&] {
        Findings f = mesh_->diagnose();
        if (!f.ok) return f.render();
        auto pods = withCode(f, "POD_NOT_CAPTURED");
        if (pods.size() != 1 || pods[0].nodeSet() != std::set<std::string>{"node2"})
          return "want exactly POD_NOT_CAPTURED[node2]\n" + f.render();
        std::string word;
        if (!mentions(pods[0], {"shop/web-7d4b9c-q2x8r", "10.244.2.20", "uncaptured"}, &word))
          return "POD_NOT_CAPTURED[node2] does not mention \"" + word + "\"\n" + f.render();
        return std::string();
      },
      kFindingTimeout));

  // `meshprobe namespaces` (the CLI binary against the live aggregator): shop is ambient with
  // its one running pod not captured and the finding; default's pod is not ambient's.
  std::string error;
  const json ns = Mesh::parse(mesh_->cli({"namespaces"}), &error);
  ASSERT_TRUE(ns.is_object()) << error;
  std::map<std::string, json> by_name;
  for (const auto& n : ns["namespaces"]) by_name[n.value("name", "")] = n;
  ASSERT_TRUE(by_name.count("shop") && by_name.count("default")) << ns.dump();
  EXPECT_EQ(by_name["shop"]["dataplaneMode"], "ambient") << ns.dump();
  EXPECT_EQ(by_name["shop"]["runningPods"], 1) << ns.dump();
  EXPECT_EQ(by_name["shop"]["capturedPods"], 0) << ns.dump();
  EXPECT_EQ(by_name["shop"]["unknownPods"], 0) << ns.dump();
  EXPECT_EQ(by_name["shop"]["findings"], json::array({"POD_NOT_CAPTURED"})) << ns.dump();
  EXPECT_EQ(by_name["default"]["dataplaneMode"], "") << ns.dump();
  EXPECT_EQ(by_name["default"]["runningPods"], 1) << ns.dump();
  EXPECT_EQ(by_name["default"]["findings"], json::array()) << ns.dump();
  // The agents' own pods are hostNetwork: not counted.
  EXPECT_EQ(by_name["meshprobe"]["runningPods"], 0) << ns.dump();
}

TEST_F(KubeTest, ZtunnelNotReadyExplainedByTheNodesBrokenOverlay) {
  // ztunnel on every agent's node, Ready; node2's VXLAN port is then dropped (its overlay, the
  // path to istiod on node1, is cut) and its ztunnel restarts and cannot become Ready.
  fake_->upsert("namespaces", namespaceObject("istio-system", json::object()));
  const char* suffixes[] = {"", "h2k9d", "q7w4n", "r5t1z"};
  for (int n = 1; n <= kMeshNodes; ++n) fake_->upsert("pods", ztunnelPod(nodeName(n), suffixes[n], true));
  // The rule lives in node2's netns, which the mesh deletes at teardown (pass or fail).
  mesh_->cluster().node(2).sh("iptables -A INPUT -p udp --dport 4789 -j DROP");
  fake_->upsert("pods", ztunnelPod("node2", suffixes[2], false));

  // Polled with a deadline: the overlay finding first, then ZTUNNEL_NOT_READY after its onset.
  ASSERT_TRUE(eventually(
      "ZTUNNEL_NOT_READY for node2 only, explained by node2's broken overlay",
      [&] {
        Findings f = mesh_->diagnose();
        if (!f.ok) return f.render();
        auto zt = withCode(f, "ZTUNNEL_NOT_READY");
        if (zt.size() != 1 || zt[0].nodeSet() != std::set<std::string>{"node2"})
          return "want exactly ZTUNNEL_NOT_READY[node2]\n" + f.render();
        std::string word;
        if (!mentions(zt[0],
                      {"istio-system/ztunnel-q7w4n", "Running, not Ready", "istiod:15012 unreachable from node2",
                       "because node2's overlay is broken (see VXLAN_PORT_FILTERED/node2)",
                       "containers with unready status: [istio-proxy]"},
                      &word))
          return "ZTUNNEL_NOT_READY[node2] does not mention \"" + word + "\"\n" + f.render();
        if (zt[0].remedy.find("Fix node2's overlay first (see VXLAN_PORT_FILTERED/node2)") == std::string::npos)
          return "ZTUNNEL_NOT_READY[node2]'s remedy does not say to fix the overlay first\n" + f.render();
        return std::string();
      },
      kZtunnelTimeout));
}

TEST_F(KubeTest, FdbStaleRemedyNamesTheFlannelPodOnTheNode) {
  const char* suffixes[] = {"", "7hq2x", "k4m9p", "w2c8d"};
  for (int n = 1; n <= kMeshNodes; ++n) fake_->upsert("pods", flannelPod(nodeName(n), suffixes[n]));
  // node1's FDB entry for node3's VTEP points at an address nobody has (as S05 does).
  mesh_->cluster().node(1).sh("bridge fdb replace " + Cluster::vtepMac(3) + " dev flannel.1 dst " + kWrongDst +
                              " self permanent");
  ASSERT_TRUE(eventually(
      "OVERLAY_FDB_STALE[node1] whose remedy names node1's flannel pod",
      [&] {
        Findings f = mesh_->diagnose();
        if (!f.ok) return f.render();
        auto fdb = withCode(f, "OVERLAY_FDB_STALE");
        if (fdb.size() != 1 || fdb[0].nodeSet() != std::set<std::string>{"node1"})
          return "want exactly OVERLAY_FDB_STALE[node1]\n" + f.render();
        const std::string want =
            "On node1 that is flannel pod kube-flannel/kube-flannel-ds-7hq2x (Running): kubectl -n kube-flannel delete "
            "pod kube-flannel-ds-7hq2x.";
        if (fdb[0].remedy.find(want) == std::string::npos) return "remedy lacks \"" + want + "\"\n" + f.render();
        return std::string();
      },
      kFindingTimeout));

  // The pod crash-loops (a MODIFIED event): the remedy says so and what to look at first.
  json crashing = flannelPod("node1", suffixes[1]);
  crashing["status"]["containerStatuses"][0]["ready"] = false;
  crashing["status"]["containerStatuses"][0]["restartCount"] = 4;
  crashing["status"]["containerStatuses"][0]["state"] = {
      {"waiting", {{"reason", "CrashLoopBackOff"}, {"message", "back-off 1m20s restarting failed container"}}}};
  fake_->upsert("pods", crashing);
  EXPECT_TRUE(eventually(
      "OVERLAY_FDB_STALE[node1]'s remedy says its flannel pod is not Running",
      [&] {
        Findings f = mesh_->diagnose();
        auto fdb = withCode(f, "OVERLAY_FDB_STALE");
        if (fdb.size() != 1) return "want exactly OVERLAY_FDB_STALE[node1]\n" + f.render();
        if (fdb[0].remedy.find("kube-flannel/kube-flannel-ds-7hq2x, which is not Running (CrashLoopBackOff)") ==
            std::string::npos)
          return "remedy not updated\n" + f.render();
        return std::string();
      },
      kFindingTimeout));
}

}  // namespace
}  // namespace meshprobe::e2e
