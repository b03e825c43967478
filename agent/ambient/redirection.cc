#include "agent/ambient/redirection.h"

#include <arpa/inet.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <algorithm>
#include <charconv>
#include <sstream>

namespace meshprobe::agent {
namespace {

constexpr uint8_t kTcpListen = 10;

// Target arguments as single tokens, whichever way the model stored them
// ({"--to-ports", "15001"} or {"--to-ports 15001"}).
std::vector<std::string> tokens(const std::vector<std::string>& parts) {
  std::vector<std::string> out;
  for (const auto& p : parts) {
    std::istringstream in(p);
    std::string t;
    while (in >> t) out.push_back(t);
  }
  return out;
}

std::optional<uint16_t> leadingPort(std::string_view s) {
  unsigned v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr == s.data() || v == 0 || v > 65535) return std::nullopt;
  return static_cast<uint16_t>(v);  // "15001" or the first port of "15001-15002"
}

std::optional<uint16_t> flagPort(const std::vector<std::string>& toks, std::initializer_list<std::string_view> flags) {
  for (size_t i = 0; i + 1 < toks.size(); ++i) {
    for (auto f : flags) {
      if (toks[i] == f) return leadingPort(toks[i + 1]);
    }
  }
  return std::nullopt;
}

// The jump target, from the model or, failing that, from the raw arguments.
std::string targetOf(const IptablesRule& r) {
  if (!r.target.empty()) return r.target;
  for (size_t i = 0; i + 1 < r.args.size(); ++i) {
    if (r.args[i] == "-j" || r.args[i] == "--jump" || r.args[i] == "-g" || r.args[i] == "--goto") return r.args[i + 1];
  }
  return "";
}

// Port the rule sends traffic to, for REDIRECT and TPROXY targets.
std::optional<uint16_t> redirectPort(const IptablesRule& r, const std::string& target) {
  auto toks = tokens(r.target_args);
  auto args = tokens(r.args);
  if (target == "REDIRECT") {
    if (auto p = flagPort(toks, {"--to-ports", "--to-port"})) return p;
    return flagPort(args, {"--to-ports", "--to-port"});
  }
  if (target == "TPROXY") {
    if (auto p = flagPort(toks, {"--on-port"})) return p;
    return flagPort(args, {"--on-port"});
  }
  return std::nullopt;
}

}  // namespace

std::string_view redirectModeName(RedirectMode m) {
  switch (m) {
    case RedirectMode::kNone:
      return "none";
    case RedirectMode::kRedirect:
      return "REDIRECT";
    case RedirectMode::kTproxy:
      return "TPROXY";
  }
  return "none";
}

std::string_view podStateName(PodState s) {
  switch (s) {
    case PodState::kCaptured:
      return "captured";
    case PodState::kUncaptured:
      return "uncaptured";
    case PodState::kSidecar:
      return "sidecar";
    case PodState::kRulesWithoutListeners:
      return "rules_without_listeners";
    case PodState::kListenersWithoutRules:
      return "listeners_without_rules";
    case PodState::kUnknown:
      return "unknown";
  }
  return "unknown";
}

namespace {

constexpr int kLoopbackIfindex = 1;  // the loopback is the first device of every netns

// 169.254.0.0/16 or fe80::/10, whatever scope they were given.
bool linkLocal(const AddressInfo& a) {
  if (a.family == AF_INET) {
    in_addr v4{};
    if (inet_pton(AF_INET, a.address.c_str(), &v4) != 1) return false;
    return (ntohl(v4.s_addr) >> 16) == 0xa9fe;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, a.address.c_str(), &v6) != 1) return false;
  return v6.s6_addr[0] == 0xfe && (v6.s6_addr[1] & 0xc0) == 0x80;
}

}  // namespace

std::vector<std::string> podAddresses(const std::vector<AddressInfo>& addresses) {
  std::vector<std::string> out;
  for (const auto& a : addresses) {
    if (a.family != AF_INET && a.family != AF_INET6) continue;
    if (a.ifindex == kLoopbackIfindex || a.scope != RT_SCOPE_UNIVERSE || a.address.empty() || linkLocal(a)) continue;
    out.push_back(a.address);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::string joinPorts(const std::vector<uint16_t>& ports) {
  std::string out;
  for (auto p : ports) {
    if (!out.empty()) out += ",";
    out += std::to_string(p);
  }
  return out;
}

IstioRules analyzeIstioRules(const IptablesRuleset& ruleset) {
  IstioRules out;
  bool has_prert = false;
  bool has_sidecar_chain = false;
  bool tproxy = false;
  bool redirect = false;
  for (const auto& table : ruleset.tables) {
    const bool capture_table = table.name == "nat" || table.name == "mangle";
    for (const auto& chain : table.chains) {
      if (table.name == "nat" && chain.name == "ISTIO_INBOUND") has_sidecar_chain = true;
      if (!capture_table || chain.rules.empty()) continue;
      if (chain.name != "ISTIO_PRERT" && chain.name != "ISTIO_OUTPUT") continue;
      if (chain.name == "ISTIO_PRERT") has_prert = true;
      out.chains.push_back(table.name + "/" + chain.name);
      out.rule_count += chain.rules.size();
      for (const auto& rule : chain.rules) {
        std::string target = targetOf(rule);
        auto port = redirectPort(rule, target);
        if (!port) continue;
        out.ports.push_back(*port);
        if (target == "TPROXY") tproxy = true;
        if (target == "REDIRECT") redirect = true;
      }
    }
  }
  std::sort(out.ports.begin(), out.ports.end());
  out.ports.erase(std::unique(out.ports.begin(), out.ports.end()), out.ports.end());
  out.sidecar = has_sidecar_chain && !has_prert;
  out.present = !out.chains.empty() && !out.sidecar;
  out.mode = tproxy ? RedirectMode::kTproxy : redirect ? RedirectMode::kRedirect : RedirectMode::kNone;
  return out;
}

std::vector<uint16_t> ztunnelListenerPorts(const std::vector<InetSocket>& tcp_sockets) {
  std::vector<uint16_t> out;
  for (const auto& s : tcp_sockets) {
    if (s.state != kTcpListen) continue;
    if (std::find(kZtunnelInpodPorts.begin(), kZtunnelInpodPorts.end(), s.local_port) == kZtunnelInpodPorts.end()) {
      continue;
    }
    out.push_back(s.local_port);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

PodVerdict classifyPod(const PodInspection& in) {
  PodVerdict v;
  if (!in.error.empty()) {
    v.state = PodState::kUnknown;
    v.reason = in.error;
    return v;
  }
  if (!in.rules) {
    v.state = PodState::kUnknown;
    v.reason =
        "cannot read iptables rules: " + (in.rules_error.empty() ? std::string("unknown error") : in.rules_error);
    return v;
  }
  if (!in.listeners) {
    v.state = PodState::kUnknown;
    v.reason = "cannot read TCP listeners: " +
               (in.listeners_error.empty() ? std::string("unknown error") : in.listeners_error);
    return v;
  }
  const IstioRules& rules = *in.rules;
  const std::vector<uint16_t>& listening = *in.listeners;
  for (auto p : kZtunnelInpodPorts) {
    if (std::find(listening.begin(), listening.end(), p) == listening.end()) v.missing_listeners.push_back(p);
  }

  if (rules.sidecar) {
    v.state = PodState::kSidecar;
    v.reason = "Istio sidecar chains (ISTIO_INBOUND), not ambient";
    v.missing_listeners.clear();
    return v;
  }
  std::string rules_text;
  if (rules.present) {
    rules_text = "ISTIO rules in ";
    for (size_t i = 0; i < rules.chains.size(); ++i) rules_text += (i ? ", " : "") + rules.chains[i];
    if (rules.mode != RedirectMode::kNone) {
      rules_text += " (" + std::string(redirectModeName(rules.mode)) + " to " + joinPorts(rules.ports) + ")";
    }
  }
  if (rules.present && v.missing_listeners.empty()) {
    v.state = PodState::kCaptured;
    v.reason = rules_text + "; ztunnel listening on " + joinPorts(listening);
  } else if (rules.present) {
    v.state = PodState::kRulesWithoutListeners;
    v.reason = rules_text + " but no ztunnel listener on " + joinPorts(v.missing_listeners) +
               ": redirected traffic is blackholed";
  } else if (listening.empty()) {
    v.state = PodState::kUncaptured;
    v.reason = "no ISTIO rules and no ztunnel listeners: not in ambient (no HBONE)";
    v.missing_listeners.clear();
  } else {
    v.state = PodState::kListenersWithoutRules;
    v.missing_listeners.clear();
    v.reason = "ztunnel listening on " + joinPorts(listening) +
               " but no ISTIO_PRERT/ISTIO_OUTPUT rules: traffic is not captured (no HBONE)";
  }
  return v;
}

}  // namespace meshprobe::agent
