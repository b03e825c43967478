#include "agent/checks/ambient_redirection_check.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <system_error>
#include <thread>

#include "common/finding_catalogue.h"

namespace meshprobe::agent {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

constexpr std::string_view kCheckName = "ambient_redirection";
constexpr size_t kNamesInSummary = 3;

const std::string kRemedyRulesWithoutListeners =
    "ztunnel is not serving these pods, so their redirected traffic is blackholed: fix ztunnel first "
    "(kubectl get pods -n istio-system -l app=ztunnel should be 1/1 READY; check its logs and its "
    "connection to istiod:15012), then restart ztunnel on this node so it re-creates its in-pod listeners "
    "(kubectl delete pod -n istio-system -l app=ztunnel --field-selector spec.nodeName=<node>).";
const std::string kRemedyListenersWithoutRules =
    "Nothing redirects these pods' traffic to ztunnel (no HBONE, no mTLS): the namespace is not labeled for "
    "ambient mesh or istio-cni did not capture the pod. Label the namespace "
    "(kubectl label namespace <namespace> istio.io/dataplane-mode=ambient) and restart the pods "
    "(kubectl rollout restart deployment -n <namespace>); check the istio-cni logs on this node.";

nlohmann::json podJson(const PodReport& r) {
  nlohmann::json j;
  j["name"] = r.pod.name;
  j["path"] = r.pod.path;
  j["state"] = std::string(podStateName(r.verdict.state));
  j["reason"] = r.verdict.reason;
  const PodInspection& in = r.inspection;
  if (!in.error.empty()) j["error"] = in.error;
  if (in.addresses) {
    j["ips"] = *in.addresses;
  } else if (!in.addresses_error.empty()) {
    j["ips_error"] = in.addresses_error;
  }
  if (in.rules) {
    j["rules"] = {{"present", in.rules->present},
                  {"sidecar", in.rules->sidecar},
                  {"mode", std::string(redirectModeName(in.rules->mode))},
                  {"ports", in.rules->ports},
                  {"chains", in.rules->chains},
                  {"rule_count", in.rules->rule_count},
                  {"tool", in.iptables_tool}};
  } else {
    j["rules"] = nullptr;
    if (!in.rules_error.empty()) j["rules_error"] = in.rules_error;
  }
  if (!in.tool_notes.empty()) j["tool_notes"] = in.tool_notes;
  if (in.listeners) {
    j["listeners"] = *in.listeners;
  } else {
    j["listeners"] = nullptr;
    if (!in.listeners_error.empty()) j["listeners_error"] = in.listeners_error;
  }
  if (!r.verdict.missing_listeners.empty()) j["missing_listeners"] = r.verdict.missing_listeners;
  return j;
}

// "cni-a (what), cni-b (what), +2 more"
std::string nameList(const std::vector<const PodReport*>& pods, bool with_reason) {
  std::string out;
  for (size_t i = 0; i < pods.size() && i < kNamesInSummary; ++i) {
    if (i) out += ", ";
    out += pods[i]->pod.name;
    if (!with_reason) continue;
    switch (pods[i]->verdict.state) {
      case PodState::kRulesWithoutListeners:
        out += " (ISTIO rules, no ztunnel listener on " + joinPorts(pods[i]->verdict.missing_listeners) + ")";
        break;
      case PodState::kListenersWithoutRules:
        out += " (ztunnel listeners, no ISTIO rules)";
        break;
      default:
        out += ": " + pods[i]->verdict.reason;
    }
  }
  if (pods.size() > kNamesInSummary) out += ", +" + std::to_string(pods.size() - kNamesInSummary) + " more";
  return out;
}

Finding brokenFinding(PodState kind, const std::vector<const PodReport*>& pods) {
  Finding f = findingOf(codes::kAmbientRedirectionBroken);
  const std::string n = std::to_string(pods.size());
  if (kind == PodState::kRulesWithoutListeners) {
    f.summary = n + " pod netns with ambient redirection rules but no ztunnel listeners (traffic blackholed): " +
                nameList(pods, false);
    f.remedy = kRemedyRulesWithoutListeners;
  } else {
    f.summary =
        n + " pod netns with ztunnel listeners but no ambient redirection rules (no HBONE): " + nameList(pods, false);
    f.remedy = kRemedyListenersWithoutRules;
  }
  for (const auto* p : pods) f.evidence.push_back(p->pod.name + " (" + p->pod.path + "): " + p->verdict.reason);
  return f;
}

std::string joinLines(const std::vector<std::string>& v, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? std::string(sep) : "") + v[i];
  return out;
}

}  // namespace

PodCaptures podCaptures(const std::vector<PodReport>& pods) {
  PodCaptures out;
  out.total = pods.size();
  const size_t n = std::min(pods.size(), kMaxPodCaptures);
  out.entries.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const PodReport& p = pods[i];
    PodCapture c;
    c.netns = p.pod.name;
    if (p.inspection.addresses) {
      c.ips = *p.inspection.addresses;
    } else {
      c.ips_error = !p.inspection.addresses_error.empty() ? p.inspection.addresses_error
                    : !p.inspection.error.empty()         ? p.inspection.error
                                                          : "addresses not read";
    }
    c.state = p.verdict.state;
    c.reason = p.verdict.reason;
    out.entries.push_back(std::move(c));
  }
  return out;
}

NetnsSources ambientNetnsSources(const AgentConfig& config) {
  return NetnsSources{config.netns_dir, config.hostPath("/proc"), "/proc/self/ns/net",
                      config.hostPath("/proc/1/ns/net")};
}

CheckResult evaluateAmbientRedirection(const NetnsSources& sources, const NetnsEnumeration& found,
                                       const std::vector<PodReport>& pods) {
  CheckResult r;
  r.name = std::string(kCheckName);

  std::vector<const PodReport*> captured, uncaptured, sidecar, no_listeners, no_rules, unknown;
  nlohmann::json pod_list = nlohmann::json::array();
  for (const auto& p : pods) {
    pod_list.push_back(podJson(p));
    switch (p.verdict.state) {
      case PodState::kCaptured:
        captured.push_back(&p);
        break;
      case PodState::kUncaptured:
        uncaptured.push_back(&p);
        break;
      case PodState::kSidecar:
        sidecar.push_back(&p);
        break;
      case PodState::kRulesWithoutListeners:
        no_listeners.push_back(&p);
        break;
      case PodState::kListenersWithoutRules:
        no_rules.push_back(&p);
        break;
      case PodState::kUnknown:
        unknown.push_back(&p);
        break;
    }
  }
  const size_t broken = no_listeners.size() + no_rules.size();
  r.details["netns_dir"] = sources.netns_dir;
  r.details["proc_dir"] = sources.proc_dir;
  r.details["counts"] = {{"pods", pods.size()},
                         {"captured", captured.size()},
                         {"uncaptured", uncaptured.size()},
                         {"sidecar", sidecar.size()},
                         {"broken", broken},
                         {"unknown", unknown.size()}};
  r.details["pods"] = std::move(pod_list);
  r.pod_captures = podCaptures(pods);
  if (r.pod_captures->entries.size() < pods.size()) {
    r.details["pod_netns_truncated"] = "Report.pod_netns lists only the first " + std::to_string(kMaxPodCaptures) +
                                       " of " + std::to_string(pods.size()) + " pod netns";
  }
  r.details["notes"] = found.notes;
  r.details["errors"] = found.errors;
  if (!found.proc_skipped.empty()) r.details["proc_skipped"] = found.proc_skipped;

  if (pods.empty()) {
    if (!found.errors.empty()) {
      r.status = CheckStatus::kFail;
      r.summary = "cannot list pod network namespaces: " + joinLines(found.errors, "; ");
      return r;
    }
    r.status = CheckStatus::kSkip;
    if (!found.proc_skipped.empty()) {
      // Not a verdict on the node's datapath: this agent cannot tell pods from the host.
      r.summary = "no pod network namespaces in " + sources.netns_dir + ", and " + sources.proc_dir +
                  "/*/ns/net not looked at: " + found.proc_skipped;
      if (!found.notes.empty()) r.summary += "; " + joinLines(found.notes, "; ");
      return r;
    }
    r.summary = "no pod network namespaces on this node (looked in " + sources.netns_dir + " and " + sources.proc_dir +
                "/*/ns/net)";
    if (!found.notes.empty()) r.summary += ": " + joinLines(found.notes, "; ");
    return r;
  }

  if (!no_listeners.empty()) r.findings.push_back(brokenFinding(PodState::kRulesWithoutListeners, no_listeners));
  if (!no_rules.empty()) r.findings.push_back(brokenFinding(PodState::kListenersWithoutRules, no_rules));

  std::vector<std::string> problems;
  if (broken > 0) {
    std::vector<const PodReport*> all = no_listeners;
    all.insert(all.end(), no_rules.begin(), no_rules.end());
    problems.push_back(std::to_string(broken) + " of " + std::to_string(pods.size()) +
                       " pod netns broken: " + nameList(all, true));
  }
  if (!unknown.empty()) {
    problems.push_back("cannot inspect " + std::to_string(unknown.size()) + " pod netns: " + nameList(unknown, true));
  }
  for (const auto& e : found.errors) problems.push_back(e);
  // Said after any failure and after the verdict on the pods that were inspected.
  const std::string proc_note =
      found.proc_skipped.empty() ? ""
                                 : "; pods seen only in " + sources.proc_dir + " not looked at: " + found.proc_skipped;
  if (!problems.empty()) {
    r.status = CheckStatus::kFail;
    r.summary = joinLines(problems, "; ") + proc_note;
    return r;
  }

  r.status = CheckStatus::kOk;
  if (captured.empty()) {
    r.summary = std::to_string(pods.size()) + " pods, none in ambient";
    r.details["note"] =
        "no pod netns has ISTIO_PRERT/ISTIO_OUTPUT rules or ztunnel listeners: no pod on this node is in ambient "
        "mode (namespaces labeled istio.io/dataplane-mode=ambient get both)";
  } else {
    r.summary = std::to_string(pods.size()) + " pod netns: " + std::to_string(captured.size()) + " captured by ambient";
    if (!uncaptured.empty()) r.summary += ", " + std::to_string(uncaptured.size()) + " not in ambient";
  }
  if (!sidecar.empty()) r.summary += ", " + std::to_string(sidecar.size()) + " with Istio sidecars";
  r.summary += proc_note;
  return r;
}

AmbientRedirectionCheck::AmbientRedirectionCheck(const AgentConfig& config, CommandRunner& commands,
                                                 SockDiag& sock_diag, RulesetGeneration* generation)
    : AmbientRedirectionCheck(config, makeKernelPodNetnsInspector(commands, sock_diag, readNetnsAddresses, generation)) {}

AmbientRedirectionCheck::AmbientRedirectionCheck(const AgentConfig& config,
                                                 std::unique_ptr<PodNetnsInspector> inspector, NetnsProbe probe)
    : config_(config), inspector_(std::move(inspector)), probe_(std::move(probe)) {}

CheckResult AmbientRedirectionCheck::run() {
  const NetnsSources sources = ambientNetnsSources(config_);
  NetnsEnumeration found = enumeratePodNetns(sources, probe_);
  inspector_->retain(found.pods);

  // Finish inside the doctor's per-check timeout, with room to spare for the verdict.
  auto budget = std::chrono::duration_cast<milliseconds>(config_.check_timeout) * 8 / 10;
  budget = std::max(budget, milliseconds(100));
  const auto deadline = steady_clock::now() + budget;

  std::vector<PodReport> reports(found.pods.size());
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i = next++; i < reports.size(); i = next++) {
      PodReport& rep = reports[i];
      rep.pod = found.pods[i];
      auto left = std::chrono::duration_cast<milliseconds>(deadline - steady_clock::now());
      if (left <= milliseconds(0)) {
        rep.inspection.error = "not inspected: the check's budget of " + std::to_string(budget.count()) +
                               "ms ran out (" + std::to_string(reports.size()) + " pod netns)";
      } else {
        rep.inspection = inspector_->inspect(rep.pod, left);
      }
      rep.verdict = classifyPod(rep.inspection);
    }
  };

  std::vector<std::thread> workers;
  const size_t n_workers = std::min(kMaxParallel, reports.size());
  for (size_t i = 1; i < n_workers; ++i) {
    try {
      workers.emplace_back(work);
    } catch (const std::system_error&) {
      break;  // fewer workers; this thread still does the rest
    }
  }
  work();
  for (auto& t : workers) t.join();

  return evaluateAmbientRedirection(sources, found, reports);
}

}  // namespace meshprobe::agent
