#include "aggregator/diagnosis/kube_rules.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <set>

#include "common/finding.h"
#include "common/finding_catalogue.h"

namespace meshprobe::aggregator {

namespace v1 = meshprobe::v1;
using kube::KubeObjects;
using kube::PodObject;

namespace {

constexpr size_t kMaxEvidence = 12;  // as the matrix rules: then "... and N more"
constexpr std::string_view kDataplaneMode = "istio.io/dataplane-mode";

v1::Finding newFinding(std::string_view code) {
  v1::Finding f;
  f.set_code(std::string(code));
  if (const FindingSpec* spec = findFinding(code)) {
    switch (spec->severity) {
      case Severity::kInfo:
        f.set_severity(v1::INFO);
        break;
      case Severity::kWarning:
        f.set_severity(v1::WARNING);
        break;
      case Severity::kCritical:
        f.set_severity(v1::CRITICAL);
        break;
    }
    switch (spec->layer) {
      case Layer::kUnderlay:
        f.set_layer(v1::UNDERLAY);
        break;
      case Layer::kOverlay:
        f.set_layer(v1::OVERLAY);
        break;
      case Layer::kIstiod:
        f.set_layer(v1::ISTIOD);
        break;
      case Layer::kAmbient:
        f.set_layer(v1::AMBIENT);
        break;
      case Layer::kUnspecified:
        break;
    }
  }
  return f;
}

std::string labelOf(const kube::Labels& labels, std::string_view key) {
  const auto it = labels.find(std::string(key));
  return it == labels.end() ? "" : it->second;
}

const kube::Condition* conditionOf(const std::vector<kube::Condition>& conds, std::string_view type) {
  for (const auto& c : conds) {
    if (c.type == type) return &c;
  }
  return nullptr;
}

// "container agent: CrashLoopBackOff (back-off 5m0s ...), restarted 7 times, last terminated: Error (exit code 1)"
std::string containerLine(const kube::ContainerStatus& c) {
  std::string s = "container " + c.name + ": ";
  if (!c.waiting_reason.empty()) {
    s += c.waiting_reason;
    if (!c.waiting_message.empty()) s += " (" + c.waiting_message + ")";
  } else {
    s += c.ready ? "ready" : "not ready";
  }
  if (c.restart_count > 0) {
    s += ", restarted " + std::to_string(c.restart_count) + (c.restart_count == 1 ? " time" : " times");
  }
  if (!c.last_terminated_reason.empty()) {
    s += ", last terminated: " + c.last_terminated_reason + " (exit code " + std::to_string(c.last_exit_code) + ")";
  }
  return s;
}

// The pods of `component` on `node`: not deleting first, then by key.
std::vector<const PodObject*> podsOn(const KubeObjects& objects, std::string_view node,
                                     const ComponentSelector& component) {
  std::vector<const PodObject*> out;
  for (const auto& [key, pod] : objects.pods) {
    if (pod.node_name == node && component.matches(pod)) out.push_back(&pod);
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const PodObject* a, const PodObject* b) { return !a->deleting && b->deleting; });
  return out;
}

std::string durationText(std::chrono::nanoseconds d) {
  const auto s = std::chrono::duration_cast<std::chrono::seconds>(d).count();
  if (s < 120) return std::to_string(s) + "s";
  if (s < 7200) return std::to_string(s / 60) + "m";
  return std::to_string(s / 3600) + "h";
}

std::string wallText(std::chrono::system_clock::time_point t) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  return google::protobuf::util::TimeUtil::ToString(google::protobuf::util::TimeUtil::NanosecondsToTimestamp(ns));
}

void replaceAll(std::string& s, std::string_view from, std::string_view to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) {
    s.replace(at, from.size(), to);
  }
}

// Adds evidence lines, at most kMaxEvidence in all, then "... and N more".
void addCapped(v1::Finding& f, const std::vector<std::string>& lines) {
  for (size_t i = 0; i < lines.size(); ++i) {
    if (static_cast<size_t>(f.evidence_size()) >= kMaxEvidence) {
      f.add_evidence("... and " + std::to_string(lines.size() - i) + " more");
      return;
    }
    f.add_evidence(lines[i]);
  }
}

// The command that restarts a pod's workload: its controller's rollout where there is one.
std::string restartCommand(const PodObject& pod) {
  std::string kind, name = pod.owner_name;
  if (pod.owner_kind == "ReplicaSet") {
    // A Deployment's ReplicaSet is "<deployment>-<pod-template-hash>".
    const size_t dash = name.rfind('-');
    if (dash != std::string::npos && dash > 0) {
      kind = "deployment";
      name = name.substr(0, dash);
    }
  } else if (pod.owner_kind == "StatefulSet" || pod.owner_kind == "DaemonSet") {
    kind = pod.owner_kind == "StatefulSet" ? "statefulset" : "daemonset";
  }
  if (kind.empty()) return "kubectl -n " + pod.ns + " delete pod " + pod.name;
  return "kubectl -n " + pod.ns + " rollout restart " + kind + "/" + name;
}

class KubeRules {
 public:
  KubeRules(const KubeRuleInput& in, const KubeRuleOptions& options)
      : in_(in), options_(options), objects_(*in.objects) {
    for (const auto& a : in.agents) agents_[a.name] = &a;
  }

  std::vector<Candidate> run() {
    for (const auto& [name, node] : objects_.nodes) {
      if (!node.ready) continue;  // a NotReady node is the kubelet's problem, reported by Kubernetes
      agentMissing(node);
      ztunnelNotReady(node);
    }
    podsNotCaptured();
    namespacesNotAmbient();
    return std::move(out_);
  }

 private:
  const KubeAgentNode* agent(const std::string& node) const {
    const auto it = agents_.find(node);
    return it == agents_.end() ? nullptr : it->second;
  }

  void agentMissing(const kube::NodeObject& node) {
    const KubeAgentNode* a = agent(node.name);
    std::string agent_line;
    if (a == nullptr || !a->ever_reported) {
      if (a != nullptr && a->up) return;  // said Hello, reporting has just begun
      agent_line = "no report ever received from an agent on " + node.name;
    } else {
      if (a->up) return;
      const auto silent = in_.now - a->last_report;
      if (silent < options_.forget_after) return;  // AGENT_STALE says it until then
      agent_line = "last report from " + node.name + " at " + wallText(a->last_report) + ", " +
                   durationText(std::chrono::duration_cast<std::chrono::nanoseconds>(silent)) + " ago";
    }

    v1::Finding f = newFinding(codes::kAgentMissing);
    f.add_nodes(node.name);
    f.set_id(std::string(codes::kAgentMissing) + "/" + node.name);
    f.add_evidence("node " + node.name + " is Ready");
    f.add_evidence(agent_line);

    const auto pods = podsOn(objects_, node.name, options_.agent);
    std::string when, pod_name;
    std::string state;
    if (pods.empty()) {
      state = "no agent pod is scheduled on it";
      when = "unscheduled";
      f.add_evidence("no " + options_.agent.name + " pod on " + node.name);
      // A DaemonSet pod the scheduler could not place has no node yet (the node is in its
      // affinity, which the snapshot does not keep): name the unplaced ones.
      std::vector<std::string> unplaced;
      for (const auto& [key, pod] : objects_.pods) {
        if (!pod.node_name.empty() || pod.deleting || !options_.agent.matches(pod)) continue;
        std::string line = "pod " + key + " is Pending without a node";
        if (const auto* c = conditionOf(pod.conditions, "PodScheduled"); c != nullptr && c->status == "False") {
          line += ": PodScheduled False (" + c->reason + "): " + c->message;
        }
        unplaced.push_back(line);
      }
      if (!unplaced.empty()) {
        when = "pending";
        state = "agent pods are Pending without a node";
        addCapped(f, unplaced);
      }
    } else {
      const PodObject& pod = *pods.front();
      pod_name = pod.key();
      const std::string text = podStateText(pod);
      f.add_evidence("pod " + pod.key() + " on " + node.name + ": " + text);
      bool crashing = false, waiting = false;
      for (const auto& c : pod.containers) {
        f.add_evidence(containerLine(c));
        if (c.waiting_reason == "CrashLoopBackOff") crashing = true;
        if (!c.waiting_reason.empty()) waiting = true;
      }
      if (const auto* c = conditionOf(pod.conditions, "PodScheduled"); c != nullptr && c->status == "False") {
        f.add_evidence("PodScheduled False (" + c->reason + "): " + c->message);
      }
      if (crashing) {
        when = "crashloop";
        state = "its agent pod " + pod.key() + " is in CrashLoopBackOff";
      } else if (pod.phase == "Pending" && !waiting) {
        when = "pending";
        state = "its agent pod " + pod.key() + " is Pending";
      } else if (waiting) {
        when = "waiting";
        state = "its agent pod " + pod.key() + " is waiting (" + text + ")";
      } else if (pod.phase == "Running") {
        when = "running";
        state = "its agent pod " + pod.key() + " is Running but its reports do not arrive";
      } else {
        state = "its agent pod " + pod.key() + " is " + text;
      }
    }
    f.set_summary("no meshprobe agent reports from Ready node " + node.name + ": " + state);
    std::string remedy = remedyFor(codes::kAgentMissing, when, node.name);
    if (!pod_name.empty()) replaceAll(remedy, "<pod>", pod_name.substr(pod_name.find('/') + 1));
    f.set_remedy(remedy);
    Candidate c{std::move(f), options_.onset_agent_missing, {}};
    // The matrix's AGENT_STALE about the same node is the vaguer guess.
    for (std::string_view s : findFinding(codes::kAgentMissing)->supersedes) {
      c.supersedes.push_back(std::string(s) + "/" + node.name);
    }
    out_.push_back(std::move(c));
  }

  void ztunnelNotReady(const kube::NodeObject& node) {
    std::vector<const PodObject*> pods;
    for (const PodObject* p : podsOn(objects_, node.name, options_.ztunnel)) {
      if (!p->deleting) pods.push_back(p);
    }
    if (pods.empty()) return;  // no ztunnel here (none installed, or a rollout between pods)
    if (std::any_of(pods.begin(), pods.end(), [](const PodObject* p) { return p->ready; })) return;
    const PodObject& pod = *pods.front();

    v1::Finding f = newFinding(codes::kZtunnelNotReady);
    f.add_nodes(node.name);
    f.set_id(std::string(codes::kZtunnelNotReady) + "/" + node.name);
    f.add_evidence("pod " + pod.key() + " on " + node.name + ": " + podStateText(pod));
    for (const auto& c : pod.containers) f.add_evidence(containerLine(c));
    if (const auto* c = conditionOf(pod.conditions, "Ready");
        c != nullptr && c->status != "True" && (!c->reason.empty() || !c->message.empty())) {
      f.add_evidence("Ready " + c->status + " (" + c->reason + "): " + c->message);
    }

    // The why, from the agents.
    const KubeAgentNode* a = agent(node.name);
    const bool istiod_fail = a != nullptr && a->up && a->istiod == v1::Cell::FAIL;
    size_t up = 0, failing = 0;
    for (const auto& other : in_.agents) {
      if (!other.up) continue;
      ++up;
      if (other.istiod == v1::Cell::FAIL) ++failing;
    }
    const auto blamed = in_.path_blamed.find(node.name);
    std::string why, when;
    if (istiod_fail) {
      why = "istiod:15012 unreachable from " + node.name;
      when = "istiod";
      if (up >= 2 && failing == up) why += " (and from every other reporting node: istiod itself is down)";
    }
    if (blamed != in_.path_blamed.end()) {
      why += std::string(why.empty() ? "" : " ") + "because " + node.name + "'s overlay is broken (see " +
             blamed->second + ")";
      when = "overlay";
    }
    if (!why.empty()) f.add_evidence(why);
    f.set_summary("ztunnel on " + node.name + " is not Ready (" + podStateText(pod) + ")" +
                  (why.empty() ? "" : ": " + why) + "; new ambient pods on it cannot start");
    std::string remedy = remedyFor(codes::kZtunnelNotReady, when, node.name);
    replaceAll(remedy, "<pod>", pod.name);
    if (blamed != in_.path_blamed.end()) replaceAll(remedy, "<finding>", blamed->second);
    f.set_remedy(remedy);
    out_.push_back({std::move(f), options_.onset_ztunnel, {}});
  }

  bool shouldBeCaptured(const PodObject& pod) const { return aggregator::shouldBeCaptured(objects_, pod); }

  void podsNotCaptured() {
    // Pods by IP, per node.
    std::map<std::string, std::map<std::string, const PodObject*>> by_ip;
    for (const auto& [key, pod] : objects_.pods) {
      if (pod.node_name.empty()) continue;
      for (const auto& ip : pod.pod_ips) by_ip[pod.node_name][ip] = &pod;
    }
    std::vector<const KubeAgentNode*> agents;
    for (const auto& a : in_.agents) agents.push_back(&a);
    std::sort(agents.begin(), agents.end(), [](auto* x, auto* y) { return x->name < y->name; });
    for (const KubeAgentNode* a : agents) {
      const auto node_pods = by_ip.find(a->name);
      if (node_pods == by_ip.end()) continue;
      std::map<std::string, std::pair<const PodObject*, const PodCaptureEvidence*>> hits;  // by pod key
      for (const auto& e : a->captures) {
        // A sidecar pod is not ambient's; an unreadable netns is unknown, not uncaptured.
        if (e.captured || e.state == "sidecar" || e.state == "unknown") continue;
        for (const auto& ip : e.ips) {
          const auto p = node_pods->second.find(ip);
          if (p != node_pods->second.end() && shouldBeCaptured(*p->second))
            hits.emplace(p->second->key(), std::pair{p->second, &e});
        }
      }
      if (hits.empty()) continue;

      v1::Finding f = newFinding(codes::kPodNotCaptured);
      f.add_nodes(a->name);
      f.set_id(std::string(codes::kPodNotCaptured) + "/" + a->name);
      std::vector<std::string> lines;
      for (const auto& [key, hit] : hits) {
        const auto& [pod, e] = hit;
        std::string line = "pod " + key + " (" + (pod->pod_ips.empty() ? "" : pod->pod_ips.front()) +
                           "): " + (e->state.empty() ? "not captured" : e->state);
        if (!e->reason.empty()) line += " — " + e->reason;
        lines.push_back(line);
      }
      addCapped(f, lines);
      const PodObject& first = *hits.begin()->second.first;
      const bool several = hits.size() > 1;
      f.set_summary(std::to_string(hits.size()) + (several ? " pods" : " pod") + " on " + a->name +
                    " should be in the ambient mesh but " + (several ? "are" : "is") +
                    " not captured: " + (several ? "their" : "its") + " traffic bypasses ztunnel");
      std::string remedy = remedyFor(codes::kPodNotCaptured, several ? "several" : "", a->name);
      replaceAll(remedy, "<restart>", restartCommand(first));
      if (several) remedy += " Here: " + componentPodRemedy(objects_, a->name, options_.istio_cni) + ".";
      f.set_remedy(remedy);
      out_.push_back({std::move(f), options_.onset_pod_capture, {}});
    }
  }

  void namespacesNotAmbient() {
    if (options_.expect_ambient.empty()) return;
    for (const auto& [name, ns] : objects_.namespaces) {
      if (ns.terminating || !options_.expect_ambient.matches(ns.labels)) continue;
      const std::string mode = labelOf(ns.labels, kDataplaneMode);
      if (mode == "ambient") continue;
      v1::Finding f = newFinding(codes::kNamespaceNotAmbient);
      f.set_id(std::string(codes::kNamespaceNotAmbient) + "/" + name);
      f.add_evidence("namespace " + name + " matches the expected-ambient selector " +
                     options_.expect_ambient.toString());
      f.add_evidence(mode.empty() ? "it has no " + std::string(kDataplaneMode) + " label"
                                  : "it is labelled " + std::string(kDataplaneMode) + "=" + mode);
      size_t running = 0;
      for (const auto& [key, pod] : objects_.pods) {
        if (pod.ns == name && pod.phase == "Running" && !pod.host_network && !pod.deleting) ++running;
      }
      f.add_evidence(std::to_string(running) + " running pods in it are outside the mesh");
      f.set_summary("namespace " + name + " should be in the ambient mesh but is not labelled " +
                    std::string(kDataplaneMode) + "=ambient");
      std::string remedy = remedyFor(codes::kNamespaceNotAmbient);
      replaceAll(remedy, "<namespace>", name);
      f.set_remedy(remedy);
      out_.push_back({std::move(f), options_.onset_namespace, {}});
    }
  }

  const KubeRuleInput& in_;
  const KubeRuleOptions& options_;
  const KubeObjects& objects_;
  std::map<std::string, const KubeAgentNode*> agents_;
  std::vector<Candidate> out_;
};

}  // namespace

namespace {
// DNS-1123 label, as apimachinery's IsDNS1123Label (namespace names).
std::string namespaceNameError(std::string_view ns) {
  if (ns.empty()) return "an empty namespace name";
  if (ns.size() > 63) return "namespace '" + std::string(ns) + "' is longer than 63 characters";
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  for (char c : ns) {
    if (!alnum(c) && c != '-') {
      return "namespace '" + std::string(ns) + "' must be lower-case letters, digits and '-'";
    }
  }
  if (!alnum(ns.front()) || !alnum(ns.back())) {
    return "namespace '" + std::string(ns) + "' must start and end with a letter or digit";
  }
  return "";
}
}  // namespace

Result<ComponentSelector> parseComponentSelector(std::string name, std::string_view text) {
  const auto colon = text.find(':');
  if (colon == std::string_view::npos) {
    return Error{"'" + std::string(text) + "' is not NAMESPACE[,NAMESPACE...]:SELECTOR (no ':')"};
  }
  ComponentSelector out;
  out.name = std::move(name);
  std::string_view list = text.substr(0, colon);
  while (true) {
    const auto comma = list.find(',');
    const std::string_view ns = list.substr(0, comma);
    if (auto why = namespaceNameError(ns); !why.empty()) return Error{why + " in '" + std::string(text) + "'"};
    if (std::find(out.namespaces.begin(), out.namespaces.end(), ns) == out.namespaces.end()) {
      out.namespaces.emplace_back(ns);
    }
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  auto selector = kube::Selector::parse(text.substr(colon + 1));
  if (!selector.ok()) return Error{"selector in '" + std::string(text) + "': " + selector.error().message};
  if (selector->empty()) {
    return Error{"'" + std::string(text) +
                 "' has an empty selector: it would take every pod of those namespaces for the " + out.name};
  }
  out.labels = std::move(*selector);
  return out;
}

std::string formatComponentSelector(const ComponentSelector& c) {
  std::string out;
  for (const auto& ns : c.namespaces) {
    if (!out.empty()) out += ',';
    out += ns;
  }
  return out + ":" + c.labels.toString();
}

bool ComponentSelector::matches(const PodObject& pod) const {
  if (!namespaces.empty() && std::find(namespaces.begin(), namespaces.end(), pod.ns) == namespaces.end()) {
    return false;
  }
  return labels.matches(pod.labels);
}

std::string podStateText(const PodObject& pod) {
  if (pod.deleting) return "Terminating";
  for (const auto& c : pod.containers) {
    if (!c.waiting_reason.empty()) return c.waiting_reason;
  }
  const std::string phase = pod.phase.empty() ? "Unknown" : pod.phase;
  if (phase == "Running" && !pod.ready) return "Running, not Ready";
  return phase;
}

std::vector<const PodObject*> componentPodsOn(const KubeObjects& objects, std::string_view node,
                                              const ComponentSelector& component) {
  return podsOn(objects, node, component);
}

bool shouldBeCaptured(const KubeObjects& objects, const PodObject& pod) {
  if (pod.phase != "Running" || pod.host_network || pod.deleting) return false;
  const std::string mode = labelOf(pod.labels, kDataplaneMode);
  if (mode == "none") return false;
  // Injected sidecar pods carry this label; istio-cni leaves them to their sidecar.
  if (labelOf(pod.labels, "security.istio.io/tlsMode") == "istio") return false;
  if (mode == "ambient") return true;
  const auto ns = objects.namespaces.find(pod.ns);
  return ns != objects.namespaces.end() && labelOf(ns->second.labels, kDataplaneMode) == "ambient";
}

const PodCaptureEvidence* captureOf(const std::vector<KubeAgentNode>& agents, const PodObject& pod) {
  if (pod.node_name.empty()) return nullptr;
  for (const auto& a : agents) {
    if (a.name != pod.node_name) continue;
    for (const auto& e : a.captures) {
      for (const auto& ip : e.ips) {
        if (std::find(pod.pod_ips.begin(), pod.pod_ips.end(), ip) != pod.pod_ips.end()) return &e;
      }
    }
    return nullptr;
  }
  return nullptr;
}

std::string componentPodRemedy(const KubeObjects& objects, std::string_view node, const ComponentSelector& component) {
  const auto pods = podsOn(objects, node, component);
  if (pods.empty()) return "no " + component.name + " pod on " + std::string(node);
  if (pods.size() == 1) {
    return component.name + " pod " + pods[0]->key() + " on " + std::string(node) + " (" + podStateText(*pods[0]) + ")";
  }
  std::string s = component.name + " pods ";
  for (size_t i = 0; i < pods.size(); ++i) s += (i ? ", " : "") + pods[i]->key() + " (" + podStateText(*pods[i]) + ")";
  return s + " on " + std::string(node);
}

std::string podToActOn(const KubeObjects& objects, std::string_view node, const ComponentSelector& component,
                       std::string_view action) {
  const std::string n(node);
  const auto pods = podsOn(objects, node, component);
  if (pods.empty()) {
    std::string where;
    for (size_t i = 0; i < component.namespaces.size(); ++i) where += (i ? ", " : "") + component.namespaces[i];
    return "There is no " + component.name + " pod on " + n + (where.empty() ? "" : " (in " + where + ")") +
           ": check that its DaemonSet schedules one there (kubectl describe node " + n + " for taints).";
  }
  const PodObject& pod = *pods.front();  // the live one during a restart
  const std::string state = podStateText(pod);
  const std::string kubectl = "kubectl -n " + pod.ns + " ";
  std::string s = "On " + n + " that is " + component.name + " pod " + pod.key();
  if (state.rfind("Running", 0) != 0) {
    return s + ", which is not Running (" + state + "): see why first (" + kubectl + "describe pod " + pod.name + "; " +
           kubectl + "logs " + pod.name + " --previous).";
  }
  s += " (" + state + "): ";
  if (action == "logs") return s + kubectl + "logs " + pod.name + ".";
  return s + kubectl + "delete pod " + pod.name + ".";
}

void addPodsToRemedies(std::vector<Candidate>& candidates, const KubeObjects* objects, const KubeRuleOptions& options) {
  if (objects == nullptr || !objects->synced) return;
  for (Candidate& c : candidates) {
    v1::Finding& f = c.finding;
    if (f.nodes_size() != 1) continue;
    const ComponentSelector* component = nullptr;
    std::string_view action = "restart";
    if (f.code() == codes::kOverlayFdbStale) {
      component = &options.flannel;  // flannel reprograms the FDB, neighbour and route entries when it starts
    } else if (f.code() == codes::kZtunnelNotConnected) {
      component = &options.ztunnel;  // its logs say why it has not connected (istiod, the overlay)
      action = "logs";
    } else if (f.code() == codes::kCniAgentDown) {
      component = &options.istio_cni;  // a restarted istio-cni listens on its socket again
    }
    if (component == nullptr) continue;
    const std::string line = podToActOn(*objects, f.nodes(0), *component, action);
    f.set_remedy(f.remedy().empty() ? line : f.remedy() + (f.remedy().back() == '.' ? " " : ". ") + line);
  }
}

std::vector<Candidate> diagnoseKube(const KubeRuleInput& input, const KubeRuleOptions& options) {
  if (input.objects == nullptr || !input.objects->synced) return {};
  return KubeRules(input, options).run();
}

}  // namespace meshprobe::aggregator
