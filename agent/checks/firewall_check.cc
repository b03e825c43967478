#include "agent/checks/firewall_check.h"

#include <algorithm>
#include <exception>
#include <map>

#include "agent/checks/vxlan_facts.h"
#include "agent/firewall/firewall_analysis.h"
#include "agent/firewall/iptables_mode.h"
#include "common/finding_catalogue.h"

namespace meshprobe::agent {

namespace {

constexpr uint16_t kIanaVxlanPort = 4789;
constexpr uint16_t kLinuxVxlanPort = 8472;
constexpr uint16_t kDefaultIstiodPort = 15012;

struct Target {
  FirewallTarget t;
  Layer layer = Layer::kOverlay;
  std::string from;  // where the port came from
};

// Port of "HOST:PORT" / "[v6]:PORT"; nullopt when absent or malformed.
std::optional<uint16_t> portOf(const std::string& hostport) {
  auto colon = hostport.rfind(':');
  if (colon == std::string::npos || colon + 1 >= hostport.size()) return std::nullopt;
  if (hostport.find(':') != colon && hostport.front() != '[') return std::nullopt;  // bare IPv6, no port
  unsigned v = 0;
  for (char c : hostport.substr(colon + 1)) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<unsigned>(c - '0');
    if (v > 65535) return std::nullopt;
  }
  if (v == 0) return std::nullopt;
  return static_cast<uint16_t>(v);
}

nlohmann::json hitJson(const FirewallHit& h) {
  nlohmann::json j = {{"source", h.source}, {"family", h.family}, {"table", h.table},     {"chain", h.chain},
                      {"path", h.path},     {"rule", h.rule},     {"verdict", h.verdict}, {"target", h.target.label()},
                      {"remedy", h.remedy}};
  if (!h.conditions.empty()) j["conditions"] = h.conditions;
  return j;
}

std::string pathText(const FirewallHit& h) {
  if (h.path.size() <= 1) return "";
  std::string s;
  for (const auto& p : h.path) s += (s.empty() ? "" : " -> ") + p;
  return " (via " + s + ")";
}

std::string evidenceOf(const FirewallHit& h) {
  return h.where() + pathText(h) + ": " + h.rule + " [" + h.verdict + " " + h.target.label() + "]";
}

std::string upperProto(const std::string& p) {
  std::string s = p;
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::toupper(c); });
  return s;
}

// --- the steps of FirewallCheck::runChecked(), in order --------------------------------

// What to look for: the VXLAN device's dstport (and --vxlan-port when it differs; both
// defaults when neither is known) and istiod's port. Notes the device and the targets.
std::vector<Target> chooseTargets(const AgentConfig& config, NetlinkReader& netlink, nlohmann::json& details) {
  std::vector<Target> targets;
  std::optional<uint16_t> device_port;
  auto snap = netlink.view();  // shared with the round's other readers, not copied
  if (snap) {
    VxlanDeviceChoice choice = chooseVxlanDevice(**snap, config);
    if (choice.link && choice.link->vxlan && choice.link->vxlan->port != 0) {
      device_port = choice.link->vxlan->port;
      targets.push_back({{"udp", *device_port}, Layer::kOverlay, "dstport of " + choice.link->name});
      details["vxlan_device"] = choice.link->name;
    } else {
      details["vxlan_device_note"] = choice.reason;
    }
  } else {
    details["vxlan_device_note"] = "netlink snapshot failed: " + snap.error().message;
  }
  if (config.vxlan_port && (!device_port || *config.vxlan_port != *device_port)) {
    targets.push_back({{"udp", *config.vxlan_port}, Layer::kOverlay, "--vxlan-port"});
  }
  if (targets.empty()) {
    targets.push_back({{"udp", kIanaVxlanPort}, Layer::kOverlay, "IANA default; VXLAN device not read"});
    targets.push_back({{"udp", kLinuxVxlanPort}, Layer::kOverlay, "flannel's Linux default; VXLAN device not read"});
  }
  const auto istiod_port = portOf(config.istiod);
  targets.push_back({{"tcp", istiod_port.value_or(kDefaultIstiodPort)},
                     Layer::kIstiod,
                     istiod_port ? "--istiod " + config.istiod : "default istiod port"});
  for (const auto& t : targets) {
    details["targets"].push_back(
        {{"protocol", t.t.protocol}, {"port", t.t.port}, {"layer", layerName(t.layer)}, {"from", t.from}});
  }
  return targets;
}

std::vector<FirewallTarget> plainTargets(const std::vector<Target>& targets) {
  std::vector<FirewallTarget> plain;
  for (const auto& t : targets) plain.push_back(t.t);
  return plain;
}

// The read's time budget: 4/5 of the check's timeout (at least 500 ms), 2 s per command.
FirewallReadOptions readOptions(const AgentConfig& config) {
  FirewallReadOptions opt;
  auto budget = std::chrono::duration_cast<std::chrono::milliseconds>(config.check_timeout) * 4 / 5;
  opt.total = std::max(budget, std::chrono::milliseconds(500));
  opt.per_command = std::min(opt.total, std::chrono::milliseconds(2000));
  return opt;
}

struct SourceTally {
  size_t rules_total = 0;           // rules in the sources used
  std::vector<std::string> failed;  // "name: error" of each source that failed (a missing tool is not)
};

// Notes the iptables mode and what each source (iptables backend, nft) gave.
SourceTally describeSources(const FirewallSnapshot& fw, nlohmann::json& details) {
  details["mode"] = std::string(backendName(fw.mode.mode));
  details["mode_reason"] = fw.mode.reason;
  SourceTally tally;
  for (const auto& s : fw.sources) {
    nlohmann::json j = {{"name", s.name}, {"command", s.command}, {"read", s.read}};
    if (s.read) {
      j["tables"] = s.tables;
      j["rules"] = s.rules;
      j["used"] = s.used;
      if (s.used) tally.rules_total += s.rules;
      if (!s.used) j["note"] = "other iptables backend holds no rules";
      if (!s.error.empty()) {
        j["error"] = s.error;  // read, but part of it failed
        tally.failed.push_back(s.name + ": " + s.error);
      }
    } else {
      j["error"] = s.error;
      if (!s.tool_missing) tally.failed.push_back(s.name + ": " + s.error);
    }
    details["sources"].push_back(std::move(j));
  }
  details["rules_total"] = tally.rules_total;
  return tally;
}

// The check's outcome; runChecked() turns it into the CheckResult.
struct Verdict {
  CheckStatus status = CheckStatus::kSkip;
  std::string summary;
  std::vector<Finding> findings;
};

// No source could be read.
Verdict unreadable(const FirewallSnapshot& fw, const SourceTally& tally) {
  if (fw.allToolsMissing()) {
    return {CheckStatus::kSkip, "no iptables or nft tools on this node: the firewall cannot be read", {}};
  }
  // A mode probe that hung comes first: it may have used up the time budget, leaving the
  // sources "not run".
  std::string why = !fw.mode.timed_out.empty() ? fw.mode.timed_out
                    : tally.failed.empty()     ? "no source could be read"
                                               : tally.failed.front();
  return {CheckStatus::kFail, "cannot read the firewall: " + why, {}};
}

nlohmann::json chainsJson(const std::vector<ChainPresence>& v) {
  nlohmann::json a = nlohmann::json::array();
  for (const auto& c : v) {
    a.push_back({{"source", c.source}, {"table", c.table}, {"chain", c.chain}, {"rules", c.rules}});
  }
  return a;
}

// Every iptables source and native nft (minus iptables-nft's own tables) against the
// targets; notes the flannel and istio chains found.
FirewallAnalysis analyse(const FirewallSnapshot& fw, const std::vector<FirewallTarget>& plain,
                         nlohmann::json& details) {
  FirewallAnalysis analysis;
  std::vector<ChainPresence> flannel, istio;
  for (const auto& src : fw.iptables) {
    analysis.merge(analyzeIptables(src.ruleset, src.name, src.tool, src.family, plain));
    for (auto& c : findChains(src.ruleset, src.name, {"FLANNEL-POSTRTG", "FLANNEL-FWD"})) flannel.push_back(c);
    for (auto& c : findChains(src.ruleset, src.name, {"ISTIO_POSTRT"})) istio.push_back(c);
  }
  if (fw.nft) {
    analysis.merge(analyzeNft(*fw.nft, plain, [&](const NftTable& t) {
      return (t.family == "ip" || t.family == "ip6") && fw.iptables_nft_tables.count({t.family, t.name});
    }));
    details["nft_tables_skipped_as_iptables_nft"] = fw.nft_tables_skipped;
    details["nft_native_tables"] = fw.nft->tables.size();
  }
  details["flannel_chains"] = chainsJson(flannel);
  details["istio_chains"] = chainsJson(istio);
  return analysis;
}

// Notes every blocking and conditional rule and every DROP policy the analysis found.
void describeAnalysis(const FirewallAnalysis& analysis, nlohmann::json& details) {
  details["blocking_rules"] = nlohmann::json::array();
  for (const auto& h : analysis.blocking) details["blocking_rules"].push_back(hitJson(h));
  details["conditional_rules"] = nlohmann::json::array();
  for (const auto& h : analysis.conditional) details["conditional_rules"].push_back(hitJson(h));
  details["policy_drop"] = nlohmann::json::array();
  for (const auto& p : analysis.policies) {
    nlohmann::json t = nlohmann::json::array();
    for (const auto& x : p.targets) t.push_back(x.label());
    details["policy_drop"].push_back({{"source", p.source},
                                      {"family", p.family},
                                      {"table", p.table},
                                      {"chain", p.chain},
                                      {"policy", p.policy},
                                      {"targets", t}});
  }
}

// VXLAN_PORT_FILTERED for one target and the rules (at least one) that block it.
Finding blockingFinding(const Target& target, const std::vector<const FirewallHit*>& hits) {
  Finding f = findingOf(codes::kVxlanPortFiltered);
  f.layer = target.layer;
  const std::string what = upperProto(target.t.protocol) + " " + std::to_string(target.t.port);
  f.summary = "a firewall rule " + (hits.front()->verdict == "REJECT" ? std::string("rejects ") : "drops ") + what +
              (target.layer == Layer::kOverlay ? " (VXLAN overlay)" : " (istiod)") +
              " on this node: " + hits.front()->table + " " + hits.front()->chain;
  std::string cmds;
  for (const auto* h : hits) {
    f.evidence.push_back(evidenceOf(*h));
    cmds += (cmds.empty() ? "" : "; ") + h->remedy;
  }
  if (target.layer == Layer::kOverlay) {
    f.remedy = what + " must be open between nodes for the VXLAN overlay (" + target.from +
               "). Delete the blocking rule" + (hits.size() > 1 ? "s" : "") + ": " + cmds +
               " — and fix whatever installs it (host firewall, security group agent) so it does not come back.";
  } else {
    f.remedy = what +
               " must be open from every node to istiod (ztunnel and istio-cni fetch config and "
               "certificates there). Delete the blocking rule" +
               std::string(hits.size() > 1 ? "s" : "") + ": " + cmds +
               " — and fix whatever installs it so it does not come back.";
  }
  return f;
}

// One finding per target that some rule blocks, in the targets' order.
std::vector<Finding> blockingFindings(const std::vector<Target>& targets, const FirewallAnalysis& analysis) {
  std::vector<Finding> findings;
  for (const auto& target : targets) {
    std::vector<const FirewallHit*> hits;
    for (const auto& h : analysis.blocking) {
      if (h.target == target.t) hits.push_back(&h);
    }
    if (!hits.empty()) findings.push_back(blockingFinding(target, hits));
  }
  return findings;
}

std::string blockingSummary(const FirewallAnalysis& analysis) {
  const FirewallHit& first = analysis.blocking.front();
  std::string summary = first.target.label() + " " + (first.verdict == "REJECT" ? "rejected" : "dropped") + " by " +
                        first.where() + ": " + first.rule;
  if (analysis.blocking.size() > 1) summary += " (+" + std::to_string(analysis.blocking.size() - 1) + " more)";
  return summary;
}

// DROP policies, conditional rules and unreadable sources, in that order.
std::vector<std::string> warningsOf(const FirewallAnalysis& analysis, const std::vector<std::string>& failed) {
  std::vector<std::string> warnings;
  for (const auto& p : analysis.policies) {
    std::string t;
    for (const auto& x : p.targets) t += (t.empty() ? "" : ", ") + x.label();
    warnings.push_back(p.source + " " + p.table + " " + p.chain + " policy " + p.policy + " applies to " + t +
                       " (no rule accepts it first)");
  }
  for (const auto& h : analysis.conditional) {
    warnings.push_back(h.target.label() + " may be " + (h.verdict == "REJECT" ? "rejected" : "dropped") + " by " +
                       h.where() + ": " + h.rule + " (depends on " + h.conditions + ")");
  }
  for (const auto& f : failed) warnings.push_back("could not read " + f);
  return warnings;
}

std::string okSummary(const std::vector<FirewallTarget>& plain, const FirewallSnapshot& fw, size_t rules_total) {
  std::string labels;
  for (const auto& t : plain) labels += (labels.empty() ? "" : ", ") + t.label();
  size_t used_sources =
      std::count_if(fw.sources.begin(), fw.sources.end(), [](const auto& s) { return s.read && s.used; });
  return "no rule drops " + labels + " (iptables " + std::string(backendName(fw.mode.mode)) + " mode; " +
         std::to_string(rules_total) + " rules in " + std::to_string(used_sources) + " sources)";
}

// Analyse what was read: FAIL on a blocking rule, else WARN on any doubt, else OK.
Verdict judge(const FirewallSnapshot& fw, const std::vector<Target>& targets, const SourceTally& tally,
              nlohmann::json& details) {
  const std::vector<FirewallTarget> plain = plainTargets(targets);
  const FirewallAnalysis analysis = analyse(fw, plain, details);
  describeAnalysis(analysis, details);
  if (!analysis.blocking.empty()) {
    return {CheckStatus::kFail, blockingSummary(analysis), blockingFindings(targets, analysis)};
  }
  std::vector<std::string> warnings = warningsOf(analysis, tally.failed);
  if (!warnings.empty()) {
    details["warnings"] = warnings;
    std::string summary = warnings.front();
    if (warnings.size() > 1) summary += " (+" + std::to_string(warnings.size() - 1) + " more)";
    return {CheckStatus::kWarn, summary, {}};
  }
  return {CheckStatus::kOk, okSummary(plain, fw, tally.rules_total), {}};
}

}  // namespace

FirewallCheck::FirewallCheck(const AgentConfig& config, NetlinkReader& netlink, CommandRunner& commands,
                             RulesetGeneration* generation, const Clock* clock)
    : config_(config), netlink_(netlink), commands_(commands), generation_(clock ? generation : nullptr), clock_(clock) {}

CheckResult FirewallCheck::run() {
  try {
    return runChecked();
  } catch (const std::exception& e) {
    return result(CheckStatus::kFail, std::string("firewall check failed unexpectedly: ") + e.what());
  }
}

CheckResult FirewallCheck::runChecked() {
  nlohmann::json details = nlohmann::json::object();
  const std::vector<Target> targets = chooseTargets(config_, netlink_, details);
  const FirewallSnapshot& fw = rules(details);
  const SourceTally tally = describeSources(fw, details);
  Verdict v = fw.anyRead() ? judge(fw, targets, tally, details) : unreadable(fw, tally);
  CheckResult r = result(v.status, std::move(v.summary));
  r.details = std::move(details);
  r.findings = std::move(v.findings);
  return r;
}

const FirewallSnapshot& FirewallCheck::rules(nlohmann::json& details) {
  std::optional<uint64_t> fingerprint;
  std::string unknown;
  if (generation_ != nullptr) {
    // Before the read: a change that lands during it moves the fingerprint again, so the
    // next round reads once more instead of trusting a read that may have missed it.
    auto fp = generation_->fingerprint();
    if (fp) {
      fingerprint = *fp;
    } else {
      unknown = fp.error().message;
    }
  }
  const auto now = clock_ ? clock_->monotonicNow() : std::chrono::steady_clock::time_point{};
  if (last_ && fingerprint && last_->fingerprint == fingerprint && now - last_->at < kFirewallRereadEvery) {
    ++reuses_;
    details["rules_read"] = "unchanged since the read " +
                            formatDuration(std::chrono::duration_cast<std::chrono::seconds>(now - last_->at)) +
                            " ago (the kernel's ruleset generation)";
    details["rules_reads"] = reads_;
    details["rules_reuses"] = reuses_;
    return last_->snapshot;
  }
  FirewallSnapshot snap = readFirewall(commands_, readOptions(config_));
  ++reads_;
  // Reusable only when complete: every source read (or its tool absent), no probe timed out.
  const bool complete = snap.mode.timed_out.empty() &&
                        std::all_of(snap.sources.begin(), snap.sources.end(),
                                    [](const FirewallSource& s) { return s.read || s.tool_missing; });
  last_ = LastRead{std::move(snap), complete ? fingerprint : std::nullopt, now};
  if (generation_ != nullptr) {
    details["rules_read"] = !unknown.empty() ? "read now: the kernel could not say whether they changed (" + unknown + ")"
                                             : "read now";
    details["rules_reads"] = reads_;
    details["rules_reuses"] = reuses_;
  }
  return last_->snapshot;
}

}  // namespace meshprobe::agent
