// The Kubernetes-aware rules over hand-built snapshots: each finding, its evidence and
// remedy, and the cases that must stay silent.
#include "aggregator/diagnosis/kube_rules.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <stdexcept>

#include "common/finding.h"

namespace meshprobe::aggregator {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using namespace std::chrono_literals;
namespace v1 = meshprobe::v1;

const auto kNow = std::chrono::system_clock::time_point{} + std::chrono::hours(24 * 365 * 56);

kube::PodObject pod(std::string ns, std::string name, std::string node, kube::Labels labels = {},
                    std::vector<std::string> ips = {}) {
  kube::PodObject p;
  p.ns = std::move(ns);
  p.name = std::move(name);
  p.node_name = std::move(node);
  p.labels = std::move(labels);
  p.phase = "Running";
  p.ready = true;
  p.pod_ips = std::move(ips);
  p.containers.push_back({"main", true, 0, "", "", "", 0});
  return p;
}

kube::PodObject agentPod(std::string node, std::string suffix) {
  auto p =
      pod("meshprobe", "meshprobe-agent-" + suffix, std::move(node), {{"app.kubernetes.io/name", "meshprobe-agent"}});
  p.containers = {{"agent", true, 0, "", "", "", 0}};
  p.owner_kind = "DaemonSet";
  p.owner_name = "meshprobe-agent";
  return p;
}

kube::PodObject ztunnelPod(std::string node, std::string suffix, bool ready = true) {
  auto p = pod("istio-system", "ztunnel-" + suffix, std::move(node), {{"app", "ztunnel"}});
  p.containers = {{"istio-proxy", ready, 0, "", "", "", 0}};
  p.ready = ready;
  return p;
}

// A synced cluster of nodes n1..nN, all Ready, each with a Running agent pod and a ready
// ztunnel, every agent reporting; namespaces default (plain) and shop (ambient).
struct Cluster {
  std::shared_ptr<kube::KubeObjects> objects = std::make_shared<kube::KubeObjects>();
  KubeRuleInput input;
  KubeRuleOptions options;

  explicit Cluster(int n = 3) {
    objects->synced = true;
    objects->status.state = kube::ApiState::kSynced;
    for (int i = 1; i <= n; ++i) {
      const std::string name = "n" + std::to_string(i);
      kube::NodeObject node;
      node.name = name;
      node.ready = true;
      node.internal_ips = {"10.0.0." + std::to_string(i)};
      objects->nodes[name] = node;
      add(agentPod(name, "a" + std::to_string(i)));
      add(ztunnelPod(name, "z" + std::to_string(i)));
      KubeAgentNode a;
      a.name = name;
      a.up = true;
      a.ever_reported = true;
      a.last_report = kNow - 1s;
      a.istiod = v1::Cell::OK;
      input.agents.push_back(a);
    }
    objects->namespaces["default"] = {"default", {{"kubernetes.io/metadata.name", "default"}}, false};
    objects->namespaces["shop"] = {"shop", {{"istio.io/dataplane-mode", "ambient"}, {"team", "shop"}}, false};
    input.now = kNow;
  }
  void add(kube::PodObject p) { objects->pods[p.key()] = std::move(p); }
  kube::PodObject& podAt(const std::string& key) { return objects->pods.at(key); }
  KubeAgentNode& agent(const std::string& name) {
    for (auto& a : input.agents) {
      if (a.name == name) return a;
    }
    throw std::out_of_range(name);
  }
  std::vector<Candidate> run() {
    input.objects = objects;
    return diagnoseKube(input, options);
  }
};

std::vector<std::string> ids(const std::vector<Candidate>& cs) {
  std::vector<std::string> out;
  for (const auto& c : cs) out.push_back(c.finding.id());
  return out;
}

// The one candidate (a copy: callers pass a temporary).
Candidate only(const std::vector<Candidate>& cs) {
  EXPECT_EQ(cs.size(), 1u) << ::testing::PrintToString(ids(cs));
  return cs.empty() ? Candidate{} : cs.front();
}

std::vector<std::string> evidence(const Candidate& c) {
  return {c.finding.evidence().begin(), c.finding.evidence().end()};
}

TEST(KubeRules, HealthyClusterHasNoFindings) {
  Cluster c;
  EXPECT_THAT(c.run(), IsEmpty());
}

TEST(KubeRules, NothingBeforeTheFirstList) {
  Cluster c;
  c.input.agents.clear();  // no agent anywhere, ztunnel broken, namespace unlabelled...
  c.podAt("istio-system/ztunnel-z1").ready = false;
  c.options.expect_ambient = kube::Selector::fromSet({{"kubernetes.io/metadata.name", "default"}});
  c.objects->synced = false;
  EXPECT_THAT(c.run(), IsEmpty());
  KubeRuleInput no_objects;
  EXPECT_THAT(diagnoseKube(no_objects), IsEmpty());
  c.objects->synced = true;
  EXPECT_THAT(ids(c.run()), ElementsAre("AGENT_MISSING/n1", "ZTUNNEL_NOT_READY/n1", "AGENT_MISSING/n2",
                                        "AGENT_MISSING/n3", "NAMESPACE_NOT_AMBIENT/default"));
}

// ---- AGENT_MISSING ----

TEST(KubeRules, AgentMissingNoPodScheduled) {
  Cluster c;
  c.objects->pods.erase("meshprobe/meshprobe-agent-a2");
  c.input.agents.erase(c.input.agents.begin() + 1);
  const auto& f = only(c.run());
  EXPECT_EQ(f.finding.id(), "AGENT_MISSING/n2");
  EXPECT_EQ(f.finding.code(), codes::kAgentMissing);
  EXPECT_EQ(f.finding.severity(), v1::WARNING);
  EXPECT_THAT(f.finding.nodes(), ElementsAre("n2"));
  EXPECT_THAT(f.finding.summary(), HasSubstr("no agent pod is scheduled"));
  EXPECT_THAT(evidence(f), Contains("no report ever received from an agent on n2"));
  EXPECT_THAT(evidence(f), Contains("no meshprobe agent pod on n2"));
  EXPECT_THAT(f.finding.remedy(), AllOf(HasSubstr("nodeSelector"), HasSubstr("tolerations"), HasSubstr("n2")));
  EXPECT_THAT(f.supersedes, ElementsAre("AGENT_STALE/n2"));
  EXPECT_EQ(f.onset_after, c.options.onset_agent_missing);
}

TEST(KubeRules, AgentMissingPendingWithoutANodeQuotesTheScheduler) {
  Cluster c;
  c.objects->pods.erase("meshprobe/meshprobe-agent-a2");
  auto p = agentPod("", "x9");
  p.phase = "Pending";
  p.ready = false;
  p.containers.clear();
  p.conditions.push_back({"PodScheduled", "False", "Unschedulable", "0/3 nodes are available: 1 Insufficient memory."});
  c.add(p);
  c.input.agents.erase(c.input.agents.begin() + 1);
  const auto& f = only(c.run());
  EXPECT_THAT(evidence(f), Contains("pod meshprobe/meshprobe-agent-x9 is Pending without a node: PodScheduled False "
                                    "(Unschedulable): 0/3 nodes are available: 1 Insufficient memory."));
  EXPECT_THAT(f.finding.remedy(), HasSubstr("is Pending"));
}

TEST(KubeRules, AgentMissingPendingOnTheNode) {
  Cluster c;
  auto& p = c.podAt("meshprobe/meshprobe-agent-a2");
  p.phase = "Pending";
  p.ready = false;
  p.containers.clear();
  p.conditions.push_back({"PodScheduled", "False", "Unschedulable", "node(s) had untolerated taint"});
  c.input.agents.erase(c.input.agents.begin() + 1);
  const auto& f = only(c.run());
  EXPECT_THAT(evidence(f), Contains("pod meshprobe/meshprobe-agent-a2 on n2: Pending"));
  EXPECT_THAT(evidence(f), Contains("PodScheduled False (Unschedulable): node(s) had untolerated taint"));
  EXPECT_THAT(f.finding.summary(), HasSubstr("is Pending"));
}

TEST(KubeRules, AgentMissingCrashLoop) {
  Cluster c;
  auto& p = c.podAt("meshprobe/meshprobe-agent-a2");
  p.ready = false;
  p.containers = {{"agent", false, 7, "CrashLoopBackOff", "back-off 5m0s restarting failed container", "Error", 1}};
  c.agent("n2").up = false;
  c.agent("n2").last_report = kNow - 10min;
  const auto& f = only(c.run());
  EXPECT_EQ(f.finding.id(), "AGENT_MISSING/n2");
  EXPECT_THAT(evidence(f), Contains("container agent: CrashLoopBackOff (back-off 5m0s restarting failed container), "
                                    "restarted 7 times, last terminated: Error (exit code 1)"));
  EXPECT_THAT(evidence(f), Contains(HasSubstr("last report from n2 at ")));
  EXPECT_THAT(f.finding.summary(), HasSubstr("CrashLoopBackOff"));
  EXPECT_THAT(f.finding.remedy(), HasSubstr("kubectl -n meshprobe logs meshprobe-agent-a2 --previous"));
}

TEST(KubeRules, AgentMissingWaitingOnImage) {
  Cluster c;
  auto& p = c.podAt("meshprobe/meshprobe-agent-a2");
  p.phase = "Pending";
  p.ready = false;
  p.containers = {{"agent", false, 0, "ImagePullBackOff", "Back-off pulling image", "", 0}};
  c.input.agents.erase(c.input.agents.begin() + 1);
  const auto& f = only(c.run());
  EXPECT_THAT(f.finding.summary(), HasSubstr("waiting (ImagePullBackOff)"));
  EXPECT_THAT(f.finding.remedy(), HasSubstr("describe pod meshprobe-agent-a2"));
}

TEST(KubeRules, AgentMissingRunningButNotReporting) {
  Cluster c;
  c.agent("n3").up = false;
  c.agent("n3").ever_reported = false;  // said Hello, never a report, gone
  const auto& f = only(c.run());
  EXPECT_EQ(f.finding.id(), "AGENT_MISSING/n3");
  EXPECT_THAT(evidence(f), Contains("pod meshprobe/meshprobe-agent-a3 on n3: Running"));
  EXPECT_THAT(f.finding.summary(), HasSubstr("Running but its reports do not arrive"));
  EXPECT_THAT(f.finding.remedy(), AllOf(HasSubstr("--aggregator"), HasSubstr("TLS"),
                                        HasSubstr("kubectl -n meshprobe logs meshprobe-agent-a3")));
}

TEST(KubeRules, AgentDownShorterThanForgetAfterIsStaleNotMissing) {
  Cluster c;
  c.agent("n2").up = false;
  c.agent("n2").last_report = kNow - 30s;  // forget_after is 100 s
  EXPECT_THAT(c.run(), IsEmpty());
  c.agent("n2").last_report = kNow - 101s;
  EXPECT_THAT(ids(c.run()), ElementsAre("AGENT_MISSING/n2"));
}

TEST(KubeRules, NotReadyNodeIsNotOurs) {
  Cluster c;
  c.objects->nodes["n2"].ready = false;
  c.input.agents.erase(c.input.agents.begin() + 1);
  c.podAt("istio-system/ztunnel-z2").ready = false;
  EXPECT_THAT(c.run(), IsEmpty());
}

TEST(KubeRules, AgentPodsElsewhereAreNotTheNodes) {
  Cluster c;
  // An agent-looking pod in another namespace on n2 is not ours.
  c.objects->pods.erase("meshprobe/meshprobe-agent-a2");
  c.add(pod("other", "meshprobe-agent-zz", "n2", {{"app.kubernetes.io/name", "meshprobe-agent"}}));
  c.input.agents.erase(c.input.agents.begin() + 1);
  EXPECT_THAT(evidence(only(c.run())), Contains("no meshprobe agent pod on n2"));
}

// ---- NAMESPACE_NOT_AMBIENT ----

TEST(KubeRules, NamespaceNotAmbient) {
  Cluster c;
  c.objects->namespaces["payments"] = {"payments", {{"team", "shop"}}, false};
  c.objects->namespaces["legacy"] = {"legacy", {{"team", "shop"}, {"istio.io/dataplane-mode", "none"}}, false};
  c.objects->namespaces["gone"] = {"gone", {{"team", "shop"}}, true};  // terminating
  c.add(pod("payments", "api-1", "n1", {}, {"10.244.1.5"}));
  auto host = pod("payments", "host-1", "n1");
  host.host_network = true;
  c.add(host);
  c.options.expect_ambient = kube::Selector::parse("team=shop").value();
  const auto out = c.run();
  ASSERT_THAT(ids(out), ElementsAre("NAMESPACE_NOT_AMBIENT/legacy", "NAMESPACE_NOT_AMBIENT/payments"));
  const auto& f = out[1];
  EXPECT_EQ(f.finding.severity(), v1::WARNING);
  EXPECT_EQ(f.finding.layer(), v1::AMBIENT);
  EXPECT_THAT(f.finding.nodes(), IsEmpty());
  EXPECT_THAT(evidence(f),
              ElementsAre("namespace payments matches the expected-ambient selector team=shop",
                          "it has no istio.io/dataplane-mode label", "1 running pods in it are outside the mesh"));
  EXPECT_THAT(f.finding.remedy(),
              HasSubstr("kubectl label --overwrite namespace payments istio.io/dataplane-mode=ambient"));
  EXPECT_THAT(f.finding.remedy(), HasSubstr("without a restart"));
  EXPECT_THAT(evidence(out[0]), Contains("it is labelled istio.io/dataplane-mode=none"));
}

TEST(KubeRules, NamespaceLabelledOrExpectationOff) {
  Cluster c;
  c.options.expect_ambient = kube::Selector::parse("team=shop").value();
  EXPECT_THAT(c.run(), IsEmpty());  // shop is labelled ambient
  c.objects->namespaces["shop"].labels.erase("istio.io/dataplane-mode");
  EXPECT_THAT(ids(c.run()), ElementsAre("NAMESPACE_NOT_AMBIENT/shop"));
  c.options.expect_ambient = {};  // off
  EXPECT_THAT(c.run(), IsEmpty());
}

// ---- POD_NOT_CAPTURED ----

PodCaptureEvidence notCaptured(std::string ip, std::string state = "uncaptured", std::string reason = "") {
  return {{std::move(ip)}, false, std::move(state), std::move(reason)};
}

TEST(KubeRules, PodNotCapturedOnePod) {
  Cluster c;
  auto p = pod("shop", "cart-7d4b9c-x2x", "n2", {{"app", "cart"}}, {"10.244.2.7"});
  p.owner_kind = "ReplicaSet";
  p.owner_name = "cart-7d4b9c";
  c.add(p);
  c.add(pod("shop", "web-1", "n2", {}, {"10.244.2.8"}));  // captured
  c.agent("n2").captures = {notCaptured("10.244.2.7", "uncaptured", "no ISTIO_* chains in the pod netns"),
                            {{"10.244.2.8"}, true, "captured", ""}};
  const auto& f = only(c.run());
  EXPECT_EQ(f.finding.id(), "POD_NOT_CAPTURED/n2");
  EXPECT_EQ(f.finding.severity(), v1::CRITICAL);
  EXPECT_THAT(f.finding.nodes(), ElementsAre("n2"));
  EXPECT_THAT(evidence(f), ElementsAre("pod shop/cart-7d4b9c-x2x (10.244.2.7): uncaptured — no ISTIO_* "
                                       "chains in the pod netns"));
  EXPECT_THAT(f.finding.summary(), HasSubstr("1 pod on n2"));
  EXPECT_THAT(f.finding.remedy(), HasSubstr("kubectl -n shop rollout restart deployment/cart"));
  EXPECT_THAT(f.finding.remedy(), Not(HasSubstr("Several")));
  EXPECT_EQ(f.onset_after, c.options.onset_pod_capture);
}

TEST(KubeRules, PodNotCapturedSeveralNamesIstioCni) {
  Cluster c;
  auto cni = pod("istio-system", "istio-cni-node-q8", "n1", {{"k8s-app", "istio-cni-node"}});
  cni.ready = false;
  cni.containers = {{"install-cni", false, 4, "CrashLoopBackOff", "", "Error", 1}};
  c.add(cni);
  std::vector<PodCaptureEvidence> ev;
  for (int i = 0; i < 15; ++i) {
    const std::string ip = "10.244.1." + std::to_string(10 + i);
    c.add(pod("shop", "w-" + std::to_string(10 + i), "n1", {}, {ip}));
    ev.push_back(notCaptured(ip));
  }
  c.agent("n1").captures = ev;
  const auto& f = only(c.run());
  EXPECT_EQ(f.finding.evidence_size(), 13);  // 12 pods, then "... and 3 more"
  EXPECT_EQ(f.finding.evidence(12), "... and 3 more");
  EXPECT_THAT(f.finding.summary(), HasSubstr("15 pods on n1"));
  EXPECT_THAT(f.finding.remedy(), HasSubstr("istio-cni pod istio-system/istio-cni-node-q8 on n1 (CrashLoopBackOff)"));
  EXPECT_THAT(f.finding.remedy(), HasSubstr("kubectl -n shop delete pod w-10"));  // no controller
}

TEST(KubeRules, PodNotCapturedSkipsWhatIstioDoesNotCapture) {
  Cluster c;
  auto host = pod("shop", "hostnet", "n1", {}, {"10.0.0.1"});
  host.host_network = true;
  auto opted = pod("shop", "opted-out", "n1", {{"istio.io/dataplane-mode", "none"}}, {"10.244.1.2"});
  auto deleting = pod("shop", "leaving", "n1", {}, {"10.244.1.3"});
  deleting.deleting = true;
  auto pending = pod("shop", "starting", "n1", {}, {"10.244.1.4"});
  pending.phase = "Pending";
  auto plain = pod("default", "plain", "n1", {}, {"10.244.1.5"});  // namespace not ambient
  auto sidecar = pod("shop", "sidecar", "n1", {{"security.istio.io/tlsMode", "istio"}}, {"10.244.1.6"});
  auto elsewhere = pod("shop", "on-n2", "n2", {}, {"10.244.1.7"});  // same IP seen on another node
  for (auto* p : {&host, &opted, &deleting, &pending, &plain, &sidecar, &elsewhere}) c.add(*p);
  for (const char* ip :
       {"10.0.0.1", "10.244.1.2", "10.244.1.3", "10.244.1.4", "10.244.1.5", "10.244.1.6", "10.244.1.7"}) {
    c.agent("n1").captures.push_back(notCaptured(ip));
  }
  // Verdicts that are not "uncaptured": a sidecar netns, an unreadable one.
  c.add(pod("shop", "with-sidecar-chains", "n1", {}, {"10.244.1.8"}));
  c.add(pod("shop", "unreadable", "n1", {}, {"10.244.1.9"}));
  c.agent("n1").captures.push_back(notCaptured("10.244.1.8", "sidecar"));
  c.agent("n1").captures.push_back(notCaptured("10.244.1.9", "unknown"));
  EXPECT_THAT(c.run(), IsEmpty());
  // A pod that opts in by its own label in a plain namespace is expected in the mesh.
  c.podAt("default/plain").labels["istio.io/dataplane-mode"] = "ambient";
  EXPECT_THAT(ids(c.run()), ElementsAre("POD_NOT_CAPTURED/n1"));
}

// ---- ZTUNNEL_NOT_READY ----

TEST(KubeRules, ZtunnelNotReadyNoWhy) {
  Cluster c;
  auto& z = c.podAt("istio-system/ztunnel-z2");
  z.ready = false;
  z.containers = {{"istio-proxy", false, 3, "CrashLoopBackOff", "", "Error", 101}};
  z.conditions = {{"Ready", "False", "ContainersNotReady", "containers with unready status: [istio-proxy]"}};
  const auto& f = only(c.run());
  EXPECT_EQ(f.finding.id(), "ZTUNNEL_NOT_READY/n2");
  EXPECT_EQ(f.finding.severity(), v1::CRITICAL);
  EXPECT_EQ(f.finding.layer(), v1::AMBIENT);
  EXPECT_THAT(evidence(f),
              ElementsAre("pod istio-system/ztunnel-z2 on n2: CrashLoopBackOff",
                          "container istio-proxy: CrashLoopBackOff, restarted 3 times, last terminated: "
                          "Error (exit code 101)",
                          "Ready False (ContainersNotReady): containers with unready status: [istio-proxy]"));
  EXPECT_THAT(f.finding.remedy(), HasSubstr("kubectl -n istio-system logs ztunnel-z2"));
  EXPECT_EQ(f.onset_after, c.options.onset_ztunnel);
}

// A ztunnel installed with other labels in another namespace (--ztunnel-pods): found by the
// configured selector, and not by the default one.
TEST(KubeRules, ZtunnelFoundByAConfiguredSelector) {
  Cluster c;
  auto z = c.podAt("istio-system/ztunnel-z2");
  c.objects->pods.erase("istio-system/ztunnel-z2");
  z.ns = "mesh";
  z.labels = {{"app.kubernetes.io/name", "ztunnel"}};
  z.ready = false;
  z.containers = {{"istio-proxy", false, 3, "CrashLoopBackOff", "", "Error", 101}};
  c.add(z);
  EXPECT_THAT(ids(c.run()), IsEmpty());  // the default selector does not see it
  auto sel = parseComponentSelector("ztunnel", "mesh,istio-system:app.kubernetes.io/name=ztunnel");
  ASSERT_TRUE(sel.ok()) << sel.error().message;
  c.options.ztunnel = *sel;
  c.podAt("istio-system/ztunnel-z1").labels = {{"app.kubernetes.io/name", "ztunnel"}};
  c.podAt("istio-system/ztunnel-z3").labels = {{"app.kubernetes.io/name", "ztunnel"}};
  const auto& f = only(c.run());
  EXPECT_EQ(f.finding.id(), "ZTUNNEL_NOT_READY/n2");
  EXPECT_THAT(evidence(f), Contains("pod mesh/ztunnel-z2 on n2: CrashLoopBackOff"));
}

TEST(ComponentSelectorFlag, ParsesNamespacesAndASelectorAndPrintsItBack) {
  auto c = parseComponentSelector("flannel", "kube-flannel,kube-system,kube-flannel:app in (flannel,flanneld)");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->name, "flannel");
  EXPECT_THAT(c->namespaces, ElementsAre("kube-flannel", "kube-system"));  // duplicates once
  EXPECT_TRUE(c->labels.matches({{"app", "flanneld"}}));
  EXPECT_FALSE(c->labels.matches({{"app", "ztunnel"}}));
  EXPECT_EQ(formatComponentSelector(*c), "kube-flannel,kube-system:app in (flannel,flanneld)");
  auto again = parseComponentSelector("flannel", formatComponentSelector(*c));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(formatComponentSelector(*again), formatComponentSelector(*c));
  // The built-in defaults print as the flags' defaults.
  const KubeRuleOptions d;
  EXPECT_EQ(formatComponentSelector(d.ztunnel), "istio-system:app=ztunnel");
  EXPECT_EQ(formatComponentSelector(d.istio_cni), "istio-system,kube-system:k8s-app=istio-cni-node");
  EXPECT_EQ(formatComponentSelector(d.flannel), "kube-flannel,kube-system:app=flannel");
  EXPECT_EQ(formatComponentSelector(d.agent), "meshprobe:app.kubernetes.io/name=meshprobe-agent");
}

TEST(ComponentSelectorFlag, ErrorsNameWhatIsWrong) {
  auto err = [](std::string_view text) {
    auto c = parseComponentSelector("ztunnel", text);
    return c.ok() ? std::string("accepted") : c.error().message;
  };
  EXPECT_THAT(err("app=ztunnel"), HasSubstr("no ':'"));
  EXPECT_THAT(err(":app=ztunnel"), HasSubstr("empty namespace"));
  EXPECT_THAT(err("istio-system,:app=ztunnel"), HasSubstr("empty namespace"));
  EXPECT_THAT(err("Istio_System:app=ztunnel"), HasSubstr("'Istio_System' must be lower-case"));
  EXPECT_THAT(err("-istio:app=ztunnel"), HasSubstr("start and end"));
  EXPECT_THAT(err(std::string(64, 'a') + ":app=ztunnel"), HasSubstr("longer than 63"));
  EXPECT_THAT(err("istio-system:"), HasSubstr("empty selector"));
  EXPECT_THAT(err("istio-system:app in (a"), HasSubstr("selector in 'istio-system:app in (a'"));
}

TEST(KubeRules, ZtunnelNotReadyBecauseIstiodAndOverlay) {
  Cluster c;
  c.podAt("istio-system/ztunnel-z2").ready = false;
  c.podAt("istio-system/ztunnel-z2").containers[0].ready = false;
  c.agent("n2").istiod = v1::Cell::FAIL;
  {
    const auto& f = only(c.run());
    EXPECT_THAT(evidence(f), Contains("istiod:15012 unreachable from n2"));
    EXPECT_THAT(f.finding.summary(), HasSubstr("Running, not Ready"));
    EXPECT_THAT(f.finding.remedy(), HasSubstr("ISTIOD_UNREACHABLE"));
  }
  c.input.path_blamed["n2"] = "VXLAN_PORT_FILTERED/n2";
  const auto& f = only(c.run());
  EXPECT_THAT(evidence(f), Contains("istiod:15012 unreachable from n2 because n2's overlay is broken (see "
                                    "VXLAN_PORT_FILTERED/n2)"));
  EXPECT_THAT(f.finding.remedy(), HasSubstr("Fix n2's overlay first (see VXLAN_PORT_FILTERED/n2)"));
}

TEST(KubeRules, ZtunnelNotReadyEverywhereNamesIstiod) {
  Cluster c;
  for (auto& a : c.input.agents) a.istiod = v1::Cell::FAIL;
  c.podAt("istio-system/ztunnel-z1").ready = false;
  const auto& f = only(c.run());
  EXPECT_THAT(evidence(f), Contains(HasSubstr("from every other reporting node: istiod itself is down")));
}

TEST(KubeRules, ZtunnelRolloutIsNotAFinding) {
  Cluster c;
  // A new ztunnel starting next to the ready old one.
  c.add(ztunnelPod("n1", "new", false));
  // The old one leaving, the new one not ready yet: no ready pod on n2 -> a finding (after its onset).
  c.podAt("istio-system/ztunnel-z2").deleting = true;
  c.add(ztunnelPod("n2", "new", false));
  // Only a deleting pod on n3: nothing to judge.
  c.podAt("istio-system/ztunnel-z3").deleting = true;
  c.podAt("istio-system/ztunnel-z3").ready = false;
  EXPECT_THAT(ids(c.run()), ElementsAre("ZTUNNEL_NOT_READY/n2"));
}

// ---- componentPodRemedy ----

TEST(KubeRules, ComponentPodRemedy) {
  Cluster c;
  KubeRuleOptions o;
  c.add(pod("kube-flannel", "kube-flannel-ds-abc12", "n2", {{"app", "flannel"}}));
  EXPECT_EQ(componentPodRemedy(*c.objects, "n2", o.flannel),
            "flannel pod kube-flannel/kube-flannel-ds-abc12 on n2 (Running)");
  EXPECT_EQ(componentPodRemedy(*c.objects, "n1", o.flannel), "no flannel pod on n1");
  // Older manifests run flannel in kube-system; another namespace is not flannel's.
  c.add(pod("kube-system", "kube-flannel-ds-old", "n1", {{"app", "flannel"}}));
  c.add(pod("tenant", "fake-flannel", "n3", {{"app", "flannel"}}));
  EXPECT_EQ(componentPodRemedy(*c.objects, "n1", o.flannel),
            "flannel pod kube-system/kube-flannel-ds-old on n1 (Running)");
  EXPECT_EQ(componentPodRemedy(*c.objects, "n3", o.flannel), "no flannel pod on n3");
  // Two during a restart: the live one first.
  auto leaving = pod("kube-flannel", "kube-flannel-ds-aaa00", "n2", {{"app", "flannel"}});
  leaving.deleting = true;
  c.add(leaving);
  EXPECT_EQ(componentPodRemedy(*c.objects, "n2", o.flannel),
            "flannel pods kube-flannel/kube-flannel-ds-abc12 (Running), kube-flannel/kube-flannel-ds-aaa00 "
            "(Terminating) on n2");
  EXPECT_EQ(componentPodRemedy(*c.objects, "n1", o.ztunnel), "ztunnel pod istio-system/ztunnel-z1 on n1 (Running)");
}

// ---- addPodsToRemedies ----

Candidate localFinding(std::string_view code, std::vector<std::string> nodes, std::string remedy) {
  Candidate c;
  c.finding.set_code(std::string(code));
  for (auto& n : nodes) c.finding.add_nodes(n);
  c.finding.set_id(std::string(code) + "/" + (nodes.empty() ? "" : nodes[0]));
  c.finding.set_remedy(std::move(remedy));
  return c;
}

TEST(KubeRules, FdbStaleRemedyNamesTheFlannelPodOnTheBlamedNode) {
  Cluster c;
  auto flannel = pod("kube-flannel", "kube-flannel-ds-abc12", "n2", {{"app", "flannel"}});
  flannel.owner_kind = "DaemonSet";
  c.add(flannel);
  c.add(pod("kube-flannel", "kube-flannel-ds-zzz99", "n1", {{"app", "flannel"}}));
  std::vector<Candidate> cs{localFinding(codes::kOverlayFdbStale, {"n2"}, "Restart flannel on this node.")};
  addPodsToRemedies(cs, c.objects.get(), c.options);
  EXPECT_EQ(cs[0].finding.remedy(),
            "Restart flannel on this node. On n2 that is flannel pod kube-flannel/kube-flannel-ds-abc12 (Running): "
            "kubectl -n kube-flannel delete pod kube-flannel-ds-abc12.");

  // Crash-looping: not Running, so what to look at comes before a restart.
  c.podAt("kube-flannel/kube-flannel-ds-abc12").containers[0].waiting_reason = "CrashLoopBackOff";
  cs = {localFinding(codes::kOverlayFdbStale, {"n2"}, "Restart flannel on this node")};
  addPodsToRemedies(cs, c.objects.get(), c.options);
  EXPECT_EQ(cs[0].finding.remedy(),
            "Restart flannel on this node. On n2 that is flannel pod kube-flannel/kube-flannel-ds-abc12, which is not "
            "Running (CrashLoopBackOff): see why first (kubectl -n kube-flannel describe pod kube-flannel-ds-abc12; "
            "kubectl -n kube-flannel logs kube-flannel-ds-abc12 --previous).");

  // Pending (image pull, scheduling) is not Running either.
  c.podAt("kube-flannel/kube-flannel-ds-abc12").containers[0].waiting_reason = "";
  c.podAt("kube-flannel/kube-flannel-ds-abc12").phase = "Pending";
  cs = {localFinding(codes::kOverlayFdbStale, {"n2"}, "R.")};
  addPodsToRemedies(cs, c.objects.get(), c.options);
  EXPECT_THAT(cs[0].finding.remedy(), HasSubstr("which is not Running (Pending)"));

  // No flannel pod on n3.
  cs = {localFinding(codes::kOverlayFdbStale, {"n3"}, "R.")};
  addPodsToRemedies(cs, c.objects.get(), c.options);
  EXPECT_EQ(cs[0].finding.remedy(),
            "R. There is no flannel pod on n3 (in kube-flannel, kube-system): check that its DaemonSet schedules one "
            "there (kubectl describe node n3 for taints).");
}

TEST(KubeRules, ZtunnelAndCniRemediesNameTheirPods) {
  Cluster c;
  auto cni = pod("istio-system", "istio-cni-node-7xk2m", "n1", {{"k8s-app", "istio-cni-node"}});
  c.add(cni);
  c.podAt("istio-system/ztunnel-z1").ready = false;
  std::vector<Candidate> cs{localFinding(codes::kZtunnelNotConnected, {"n1"}, "Fix ztunnel on n1 first."),
                            localFinding(codes::kCniAgentDown, {"n1"}, "Restart the istio-cni pod on this node"),
                            localFinding(codes::kCniAgentDown, {"n2"}, "Restart the istio-cni pod on this node")};
  addPodsToRemedies(cs, c.objects.get(), c.options);
  EXPECT_EQ(cs[0].finding.remedy(),
            "Fix ztunnel on n1 first. On n1 that is ztunnel pod istio-system/ztunnel-z1 (Running, not Ready): "
            "kubectl -n istio-system logs ztunnel-z1.");
  EXPECT_EQ(cs[1].finding.remedy(),
            "Restart the istio-cni pod on this node. On n1 that is istio-cni pod istio-system/istio-cni-node-7xk2m "
            "(Running): kubectl -n istio-system delete pod istio-cni-node-7xk2m.");
  EXPECT_THAT(cs[2].finding.remedy(), HasSubstr("There is no istio-cni pod on n2 (in istio-system, kube-system)"));
}

TEST(KubeRules, RemediesStayTheAgentsWithoutTheApi) {
  Cluster c;
  c.add(pod("kube-flannel", "kube-flannel-ds-abc12", "n2", {{"app", "flannel"}}));
  const std::vector<Candidate> before{
      localFinding(codes::kOverlayFdbStale, {"n2"}, "Restart flannel."),
      localFinding(codes::kVxlanPortFiltered, {"n2"}, "Delete the rule."),  // another code
      localFinding(codes::kZtunnelNotConnected, {"n1", "n2"}, "Fix it."),   // not one node
  };
  auto cs = before;
  addPodsToRemedies(cs, nullptr, c.options);  // no Kubernetes API
  for (size_t i = 0; i < cs.size(); ++i) EXPECT_EQ(cs[i].finding.remedy(), before[i].finding.remedy());
  c.objects->synced = false;  // not listed yet
  addPodsToRemedies(cs, c.objects.get(), c.options);
  for (size_t i = 0; i < cs.size(); ++i) EXPECT_EQ(cs[i].finding.remedy(), before[i].finding.remedy());
  c.objects->synced = true;
  addPodsToRemedies(cs, c.objects.get(), c.options);
  EXPECT_THAT(cs[0].finding.remedy(), HasSubstr("kube-flannel-ds-abc12"));
  EXPECT_EQ(cs[1].finding.remedy(), "Delete the rule.");
  EXPECT_EQ(cs[2].finding.remedy(), "Fix it.");
}

TEST(KubeRules, PodStateText) {
  auto p = pod("a", "b", "n1");
  EXPECT_EQ(podStateText(p), "Running");
  p.ready = false;
  EXPECT_EQ(podStateText(p), "Running, not Ready");
  p.containers[0].waiting_reason = "CrashLoopBackOff";
  EXPECT_EQ(podStateText(p), "CrashLoopBackOff");
  p.deleting = true;
  EXPECT_EQ(podStateText(p), "Terminating");
  p = pod("a", "b", "");
  p.phase = "Pending";
  EXPECT_EQ(podStateText(p), "Pending");
}

}  // namespace
}  // namespace meshprobe::aggregator
