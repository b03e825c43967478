#pragma once
// Kubernetes-aware findings: a pure function from the watched Kubernetes objects plus what
// the agents said to candidate findings. No clock (the caller passes `now`), no I/O.
//
//   AGENT_MISSING          a Ready Node with no agent reporting (never, or silent longer
//                          than forget_after); the evidence is the agent pod's state on
//                          that node: none scheduled, Pending (the scheduler's reason),
//                          crashing (last exit reason and code, restarts), waiting (image,
//                          config), or Running but its reports do not arrive.
//   NAMESPACE_NOT_AMBIENT  a namespace that --expect-ambient selects lacks
//                          istio.io/dataplane-mode=ambient.
//   POD_NOT_CAPTURED       Running, non-hostNetwork, not deleting pods that should be in the
//                          ambient mesh (namespace or pod labelled ambient, not opted out
//                          with the pod label istio.io/dataplane-mode=none, no sidecar) whose
//                          IP the agent on their node found not captured; one finding per node.
//   ZTUNNEL_NOT_READY      the ztunnel pod on a Ready node is not Ready; the why is joined
//                          from the agents: the node's ISTIOD cell FAIL, and the finding that
//                          blames the node's overlay/underlay.
//
// Nothing is raised while the snapshot is not synced: before the first list of every kind,
// an absent object means nothing. Ids are stable: CODE/node, or CODE/namespace.
// Severity, layer and remedy texts come from the finding catalogue.

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "aggregator/diagnosis/rules.h"
#include "aggregator/kube/objects.h"
#include "aggregator/kube/selector.h"
#include "common/result.h"
#include "meshprobe/v1/types.pb.h"

namespace meshprobe::aggregator {

// One pod network namespace as the agent on its node judged its ambient capture.
struct PodCaptureEvidence {
  std::vector<std::string> ips;  // the netns's pod IPs
  bool captured = false;
  // The agent's verdict in lower case, e.g. "uncaptured", "rules_without_listeners"; entries
  // in state "sidecar" (Istio sidecar chains) or "unknown" (netns unreadable) never count
  // as not captured.
  std::string state;
  std::string reason;  // one line for the evidence
};

// What the rules need of one agent (a member of the cluster state, by node name).
struct KubeAgentNode {
  std::string name;
  bool up = false;                                      // reporting now
  bool ever_reported = false;                           // an accepted report since it joined
  std::chrono::system_clock::time_point last_report{};  // meaningful when ever_reported
  // Its ISTIOD cell as the ISTIOD matrix shows it.
  meshprobe::v1::Cell::State istiod = meshprobe::v1::Cell::UNKNOWN;
  std::vector<PodCaptureEvidence> captures;  // the pod netns the agent looked at
};

struct KubeRuleInput {
  std::shared_ptr<const kube::KubeObjects> objects;  // null or unsynced: no findings
  std::vector<KubeAgentNode> agents;                 // any order
  // Nodes the matrix rules blame for their overlay or underlay (OVERLAY_*, UNDERLAY_*, or a
  // node-local overlay cause), each with the id of that finding ("OVERLAY_PARTITION/n2").
  std::map<std::string, std::string> path_blamed;
  std::chrono::system_clock::time_point now{};
};

// A component's pods: in one of `namespaces` (empty: any) and matching `labels`.
struct ComponentSelector {
  std::string name;  // how findings and remedies call it: "flannel", "ztunnel", ...
  std::vector<std::string> namespaces;
  kube::Selector labels;

  bool matches(const kube::PodObject& pod) const;
};

// A component's pods as a flag gives them: "NAMESPACE[,NAMESPACE...]:SELECTOR", e.g.
// "istio-system:app=ztunnel". Namespaces are DNS-1123 labels; SELECTOR is a label selector
// (kube::Selector) and may not be empty (it would take every pod of those namespaces for
// the component). Errors say which part is wrong.
Result<ComponentSelector> parseComponentSelector(std::string name, std::string_view text);
// The flag text of `c` (parseComponentSelector's inverse, selector in canonical form).
std::string formatComponentSelector(const ComponentSelector& c);

// The defaults follow the upstream manifests: manifests/base (the agent DaemonSet), the
// Istio ztunnel chart (pods app=ztunnel), the istio-cni chart (pods k8s-app=istio-cni-node,
// in istio-system or kube-system), kube-flannel.yml (pods app=flannel in kube-flannel; older
// releases in kube-system).
struct KubeRuleOptions {
  // Namespaces that must be in the ambient mesh; empty: NAMESPACE_NOT_AMBIENT is off.
  kube::Selector expect_ambient;
  ComponentSelector agent{
      "meshprobe agent", {"meshprobe"}, kube::Selector::fromSet({{"app.kubernetes.io/name", "meshprobe-agent"}})};
  ComponentSelector ztunnel{"ztunnel", {"istio-system"}, kube::Selector::fromSet({{"app", "ztunnel"}})};
  ComponentSelector istio_cni{
      "istio-cni", {"istio-system", "kube-system"}, kube::Selector::fromSet({{"k8s-app", "istio-cni-node"}})};
  ComponentSelector flannel{"flannel", {"kube-flannel", "kube-system"}, kube::Selector::fromSet({{"app", "flannel"}})};
  // An agent silent this long is missing (the cluster state forgets it then too: 10 ×
  // stale_after by default).
  std::chrono::nanoseconds forget_after{std::chrono::seconds(100)};
  // How long a candidate must persist before it becomes an active finding.
  std::chrono::nanoseconds onset_agent_missing{std::chrono::seconds(60)};  // a new node's agent starting
  std::chrono::nanoseconds onset_namespace{0};
  std::chrono::nanoseconds onset_pod_capture{std::chrono::seconds(10)};
  std::chrono::nanoseconds onset_ztunnel{std::chrono::seconds(30)};  // a ztunnel rollout or restart
};

std::vector<Candidate> diagnoseKube(const KubeRuleInput& input, const KubeRuleOptions& options = {});

// The pods of `component` on `node`: not being deleted first, then by "namespace/name".
std::vector<const kube::PodObject*> componentPodsOn(const kube::KubeObjects& objects, std::string_view node,
                                                    const ComponentSelector& component);

// Whether ztunnel should capture `pod`: Running with its own netns, not being deleted, ambient
// by its namespace's or its own istio.io/dataplane-mode label, not opted out (=none), not an
// Istio sidecar pod.
bool shouldBeCaptured(const kube::KubeObjects& objects, const kube::PodObject& pod);

// What the agent on the pod's node found of its netns, joined by pod IP: nullptr when that
// agent reported no netns with one of the pod's IPs (or there is no agent).
const PodCaptureEvidence* captureOf(const std::vector<KubeAgentNode>& agents, const kube::PodObject& pod);

// The pod of `component` on `node`, for remedies: "flannel pod kube-flannel/kube-flannel-ds-abc12
// on node2 (Running)", several as "flannel pods a (Running), b (Terminating) on node2", or
// "no flannel pod on node2".
std::string componentPodRemedy(const kube::KubeObjects& objects, std::string_view node,
                               const ComponentSelector& component);

// The remedies of the node-local findings that a pod on the blamed node fixes gain that pod,
// named as the Kubernetes objects show it: OVERLAY_FDB_STALE the flannel pod,
// ZTUNNEL_NOT_CONNECTED the ztunnel pod, CNI_AGENT_DOWN the istio-cni pod, each followed by
// the command to run (restart, or read its logs), or, when the pod is not Running, what to
// look at first; "no <component> pod" when there is none. Candidates of other codes, or
// blaming other than one node, are left alone; so is everything when `objects` is null or not
// synced (without the Kubernetes API the remedies are the agents' own).
void addPodsToRemedies(std::vector<Candidate>& candidates, const kube::KubeObjects* objects,
                       const KubeRuleOptions& options = {});

// The sentence addPodsToRemedies() appends for `component`'s pod on `node`; `action` is what
// to do with a Running pod: "restart" (kubectl delete pod) or "logs" (kubectl logs).
std::string podToActOn(const kube::KubeObjects& objects, std::string_view node, const ComponentSelector& component,
                       std::string_view action);

// A pod's state in one word or two, as kubectl's STATUS column shows it: "Running",
// "Running, not Ready", "CrashLoopBackOff", "Pending", "Terminating", ...
std::string podStateText(const kube::PodObject& pod);

}  // namespace meshprobe::aggregator
