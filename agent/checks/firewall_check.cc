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

}  // namespace

FirewallCheck::FirewallCheck(const AgentConfig& config, NetlinkReader& netlink, CommandRunner& commands)
    : config_(config), netlink_(netlink), commands_(commands) {}

CheckResult FirewallCheck::run() {
  try {
    return runChecked();
  } catch (const std::exception& e) {
    return result(CheckStatus::kFail, std::string("firewall check failed unexpectedly: ") + e.what());
  }
}

CheckResult FirewallCheck::runChecked() {
  nlohmann::json details = nlohmann::json::object();

  // --- what to look for ---------------------------------------------------------------
  std::vector<Target> targets;
  std::optional<uint16_t> device_port;
  auto snap = netlink_.view();  // shared with the round's other readers, not copied
  if (snap) {
    VxlanDeviceChoice choice = chooseVxlanDevice(**snap, config_);
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
  if (config_.vxlan_port && (!device_port || *config_.vxlan_port != *device_port)) {
    targets.push_back({{"udp", *config_.vxlan_port}, Layer::kOverlay, "--vxlan-port"});
  }
  if (targets.empty()) {
    targets.push_back({{"udp", kIanaVxlanPort}, Layer::kOverlay, "IANA default; VXLAN device not read"});
    targets.push_back({{"udp", kLinuxVxlanPort}, Layer::kOverlay, "flannel's Linux default; VXLAN device not read"});
  }
  const auto istiod_port = portOf(config_.istiod);
  targets.push_back({{"tcp", istiod_port.value_or(kDefaultIstiodPort)},
                     Layer::kIstiod,
                     istiod_port ? "--istiod " + config_.istiod : "default istiod port"});
  std::vector<FirewallTarget> plain;
  for (const auto& t : targets) {
    plain.push_back(t.t);
    details["targets"].push_back(
        {{"protocol", t.t.protocol}, {"port", t.t.port}, {"layer", layerName(t.layer)}, {"from", t.from}});
  }

  // --- read ---------------------------------------------------------------------------
  FirewallReadOptions opt;
  auto budget = std::chrono::duration_cast<std::chrono::milliseconds>(config_.check_timeout) * 4 / 5;
  opt.total = std::max(budget, std::chrono::milliseconds(500));
  opt.per_command = std::min(opt.total, std::chrono::milliseconds(2000));
  FirewallSnapshot fw = readFirewall(commands_, opt);

  details["mode"] = std::string(backendName(fw.mode.mode));
  details["mode_reason"] = fw.mode.reason;
  size_t rules_total = 0;
  std::vector<std::string> failed_sources;
  for (const auto& s : fw.sources) {
    nlohmann::json j = {{"name", s.name}, {"command", s.command}, {"read", s.read}};
    if (s.read) {
      j["tables"] = s.tables;
      j["rules"] = s.rules;
      j["used"] = s.used;
      if (s.used) rules_total += s.rules;
      if (!s.used) j["note"] = "other iptables backend holds no rules";
      if (!s.error.empty()) {
        j["error"] = s.error;  // read, but part of it failed
        failed_sources.push_back(s.name + ": " + s.error);
      }
    } else {
      j["error"] = s.error;
      if (!s.tool_missing) failed_sources.push_back(s.name + ": " + s.error);
    }
    details["sources"].push_back(std::move(j));
  }
  details["rules_total"] = rules_total;

  if (!fw.anyRead()) {
    CheckResult r;
    if (fw.allToolsMissing()) {
      r = result(CheckStatus::kSkip, "no iptables or nft tools on this node: the firewall cannot be read");
    } else {
      std::string why = failed_sources.empty() ? "no source could be read" : failed_sources.front();
      r = result(CheckStatus::kFail, "cannot read the firewall: " + why);
    }
    r.details = std::move(details);
    return r;
  }

  // --- analyse ------------------------------------------------------------------------
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
  auto chainsJson = [](const std::vector<ChainPresence>& v) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& c : v)
      a.push_back({{"source", c.source}, {"table", c.table}, {"chain", c.chain}, {"rules", c.rules}});
    return a;
  };
  details["flannel_chains"] = chainsJson(flannel);
  details["istio_chains"] = chainsJson(istio);
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

  // --- verdict ------------------------------------------------------------------------
  if (!analysis.blocking.empty()) {
    std::vector<Finding> findings;
    for (const auto& target : targets) {
      std::vector<const FirewallHit*> hits;
      for (const auto& h : analysis.blocking) {
        if (h.target == target.t) hits.push_back(&h);
      }
      if (hits.empty()) continue;
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
      findings.push_back(std::move(f));
    }
    const FirewallHit& first = analysis.blocking.front();
    std::string summary = first.target.label() + " " + (first.verdict == "REJECT" ? "rejected" : "dropped") + " by " +
                          first.where() + ": " + first.rule;
    if (analysis.blocking.size() > 1) summary += " (+" + std::to_string(analysis.blocking.size() - 1) + " more)";
    CheckResult r = result(CheckStatus::kFail, summary);
    r.details = std::move(details);
    r.findings = std::move(findings);
    return r;
  }

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
  for (const auto& f : failed_sources) warnings.push_back("could not read " + f);
  if (!warnings.empty()) {
    details["warnings"] = warnings;
    std::string summary = warnings.front();
    if (warnings.size() > 1) summary += " (+" + std::to_string(warnings.size() - 1) + " more)";
    CheckResult r = result(CheckStatus::kWarn, summary);
    r.details = std::move(details);
    return r;
  }
  std::string labels;
  for (const auto& t : plain) labels += (labels.empty() ? "" : ", ") + t.label();
  size_t used_sources =
      std::count_if(fw.sources.begin(), fw.sources.end(), [](const auto& s) { return s.read && s.used; });
  CheckResult r = result(
      CheckStatus::kOk, "no rule drops " + labels + " (iptables " + std::string(backendName(fw.mode.mode)) + " mode; " +
                            std::to_string(rules_total) + " rules in " + std::to_string(used_sources) + " sources)");
  r.details = std::move(details);
  return r;
}

}  // namespace meshprobe::agent
