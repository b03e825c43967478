#include "agent/firewall/firewall_analysis.h"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

namespace meshprobe::agent {

std::string FirewallHit::where() const {
  return source + " " + (family.empty() ? "" : family + " ") + table + " " + chain;
}

void FirewallAnalysis::merge(FirewallAnalysis other) {
  for (auto& h : other.blocking) blocking.push_back(std::move(h));
  for (auto& h : other.conditional) conditional.push_back(std::move(h));
  for (auto& p : other.policies) policies.push_back(std::move(p));
}

namespace {

// A rule reduced to what the walk needs; built from iptables or nft rules.
enum class Verdict { kNone, kAccept, kDrop, kReject, kReturn, kJump, kGoto };

struct PortConstraint {
  std::vector<PortRange> ranges;
  bool negated = false;
  bool unknown = false;  // values we could not resolve: may or may not contain the port
};

struct ProtoConstraint {
  std::vector<std::string> protocols;
  bool negated = false;
};

struct GRule {
  std::string text;
  std::vector<ProtoConstraint> protos;
  std::vector<PortConstraint> dports;
  std::vector<std::string> conditions;  // restrictions we do not evaluate
  bool benign = false;                  // conditional drop that never hits healthy overlay traffic
  Verdict verdict = Verdict::kNone;
  std::string jump;  // jump/goto target chain
  std::string remedy;
};

struct GChain {
  std::string name;
  std::string policy;  // upper case: ACCEPT / DROP; empty for user chains
  std::vector<GRule> rules;
};

struct GTable {
  std::string source, family, name;
  std::map<std::string, GChain, std::less<>> chains;
  std::vector<std::string> starts;
};

enum class Flow { kFallthrough, kAccepted, kDropped };
enum class PortFit { kNo, kAny, kExplicit, kUnknown };

bool protoFits(const GRule& r, const FirewallTarget& t) {
  for (const auto& c : r.protos) {
    bool in = std::find(c.protocols.begin(), c.protocols.end(), t.protocol) != c.protocols.end();
    if (in == c.negated) return false;
  }
  return true;
}

PortFit portFits(const GRule& r, const FirewallTarget& t) {
  bool explicit_match = false, unknown = false;
  for (const auto& c : r.dports) {
    if (c.unknown) {
      unknown = true;
      continue;
    }
    bool in = std::any_of(c.ranges.begin(), c.ranges.end(), [&](const PortRange& pr) { return pr.contains(t.port); });
    if (in == c.negated) return PortFit::kNo;
    if (!c.negated) explicit_match = true;
  }
  if (explicit_match) return PortFit::kExplicit;
  if (unknown) return PortFit::kUnknown;
  return PortFit::kAny;
}

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string s;
  for (const auto& e : v) s += (s.empty() ? "" : sep) + e;
  return s;
}

class Walker {
 public:
  Walker(const GTable& table, FirewallAnalysis& out) : table_(table), out_(out) {}

  void run(const FirewallTarget& target) {
    for (const auto& start : table_.starts) {
      auto it = table_.chains.find(start);
      if (it == table_.chains.end()) continue;
      std::vector<std::string> path{start};
      Flow f = walk(it->second, target, path, 0);
      if (f == Flow::kFallthrough && it->second.policy == "DROP") notePolicy(it->second, target);
    }
  }

 private:
  Flow walk(const GChain& chain, const FirewallTarget& target, std::vector<std::string>& path, int depth) {
    for (size_t i = 0; i < chain.rules.size(); ++i) {
      if (++steps_ > kMaxSteps) return Flow::kFallthrough;
      const GRule& r = chain.rules[i];
      if (!protoFits(r, target)) continue;
      PortFit pf = portFits(r, target);
      if (pf == PortFit::kNo) continue;
      const bool definite = r.conditions.empty() && pf != PortFit::kUnknown;
      switch (r.verdict) {
        case Verdict::kDrop:
        case Verdict::kReject: {
          if (pf == PortFit::kExplicit || definite) {
            record(out_.blocking, chain, i, r, target, path, false);
          } else if (!r.benign) {
            record(out_.conditional, chain, i, r, target, path, true);
          }
          if (definite) return Flow::kDropped;
          break;
        }
        case Verdict::kAccept:
          if (definite) return Flow::kAccepted;
          break;
        case Verdict::kReturn:
          if (definite) return Flow::kFallthrough;
          break;
        case Verdict::kJump:
        case Verdict::kGoto: {
          auto it = table_.chains.find(r.jump);
          if (it == table_.chains.end() || depth >= kMaxDepth) break;
          if (std::find(path.begin(), path.end(), r.jump) != path.end()) break;  // cycle
          path.push_back(r.jump);
          Flow f = walk(it->second, target, path, depth + 1);
          path.pop_back();
          if (definite && (r.verdict == Verdict::kGoto || f != Flow::kFallthrough)) return f;
          break;
        }
        case Verdict::kNone:
          break;
      }
    }
    return Flow::kFallthrough;
  }

  void record(std::vector<FirewallHit>& dst, const GChain& chain, size_t index, const GRule& r,
              const FirewallTarget& target, const std::vector<std::string>& path, bool conditional) {
    if (!seen_.insert({chain.name, index, target.protocol, target.port}).second) return;
    FirewallHit h;
    h.source = table_.source;
    h.family = table_.family;
    h.table = table_.name;
    h.chain = chain.name;
    h.path = path;
    h.rule = r.text;
    h.verdict = r.verdict == Verdict::kReject ? "REJECT" : "DROP";
    h.target = target;
    h.conditional = conditional;
    h.conditions = join(r.conditions, ", ");
    h.remedy = r.remedy;
    dst.push_back(std::move(h));
  }

  void notePolicy(const GChain& chain, const FirewallTarget& target) {
    for (auto& p : out_.policies) {
      if (p.source == table_.source && p.family == table_.family && p.table == table_.name && p.chain == chain.name) {
        p.targets.push_back(target);
        return;
      }
    }
    out_.policies.push_back(PolicyNote{table_.source, table_.family, table_.name, chain.name, chain.policy, {target}});
  }

  static constexpr int kMaxDepth = 64;
  static constexpr size_t kMaxSteps = 2'000'000;
  const GTable& table_;
  FirewallAnalysis& out_;
  std::set<std::tuple<std::string, size_t, std::string, uint16_t>> seen_;
  size_t steps_ = 0;
};

// --- iptables -> GTable --------------------------------------------------------------

// The chains the kernel calls, per table, that can drop the targets' packets.
const std::map<std::string, std::vector<std::string>, std::less<>> kIptablesStarts = {
    {"filter", {"INPUT", "FORWARD", "OUTPUT"}},
    {"raw", {"PREROUTING", "OUTPUT"}},
    {"mangle", {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}},
    {"security", {"INPUT", "FORWARD", "OUTPUT"}},
};

bool ctInvalidOnly(const IptablesRule& r) {
  const auto& a = r.args;
  for (size_t i = 0; i + 1 < a.size(); ++i) {
    if ((a[i] == "--ctstate" || a[i] == "--state") && a[i + 1] == "INVALID") return i == 0 || a[i - 1] != "!";
  }
  return false;
}

bool loopbackDestination(const IptablesRule& r) {
  if (r.destination.empty() || r.destination_negated) return false;
  return r.destination.rfind("127.", 0) == 0 || r.destination == "::1" || r.destination == "::1/128";
}

std::string neg(bool n) { return n ? "! " : ""; }

std::vector<std::string> unmodelledOptions(const IptablesRule& r) {
  // The options after "-m X" for modules we do not model, for the conditions text.
  std::vector<std::string> out;
  const auto& a = r.args;
  for (size_t i = 0; i + 1 < a.size(); ++i) {
    if ((a[i] == "-m" || a[i] == "--match") && a[i + 1] != "tcp" && a[i + 1] != "udp" && a[i + 1] != "multiport" &&
        a[i + 1] != "comment") {
      out.push_back("-m " + a[i + 1]);
    }
  }
  if (out.empty() && r.has_other_matches) out.push_back("other matches");
  return out;
}

GTable fromIptables(const IptablesTable& t, const std::string& source, const std::string& tool,
                    const std::string& family) {
  GTable g;
  g.source = source;
  g.family = family;
  g.name = t.name;
  std::set<std::string, std::less<>> names;
  for (const auto& c : t.chains) names.insert(c.name);
  for (const auto& c : t.chains) {
    GChain gc;
    gc.name = c.name;
    gc.policy = c.builtin() ? c.policy : "";
    for (const auto& r : c.rules) {
      GRule gr;
      gr.text = r.text;
      if (!r.protocol.empty()) gr.protos.push_back({{r.protocol}, r.protocol_negated});
      if (!r.dports.empty()) gr.dports.push_back({r.dports, r.dports_negated, false});
      if (!r.ports.empty()) gr.dports.push_back({r.ports, r.ports_negated, false});
      if (!r.sports.empty()) gr.conditions.push_back(neg(r.sports_negated) + "sport restricted");
      if (!r.source.empty()) gr.conditions.push_back(neg(r.source_negated) + "-s " + r.source);
      if (!r.destination.empty()) gr.conditions.push_back(neg(r.destination_negated) + "-d " + r.destination);
      if (!r.in_interface.empty()) gr.conditions.push_back(neg(r.in_interface_negated) + "-i " + r.in_interface);
      if (!r.out_interface.empty()) gr.conditions.push_back(neg(r.out_interface_negated) + "-o " + r.out_interface);
      if (r.has_other_matches) {
        for (auto& o : unmodelledOptions(r)) gr.conditions.push_back(std::move(o));
      }
      gr.benign = ctInvalidOnly(r) || loopbackDestination(r);
      if (r.target == "DROP") {
        gr.verdict = Verdict::kDrop;
      } else if (r.target == "REJECT") {
        gr.verdict = Verdict::kReject;
      } else if (r.target == "ACCEPT") {
        gr.verdict = Verdict::kAccept;
      } else if (r.target == "RETURN") {
        gr.verdict = Verdict::kReturn;
      } else if (!r.target.empty() && names.count(r.target)) {
        gr.verdict = r.is_goto ? Verdict::kGoto : Verdict::kJump;
        gr.jump = r.target;
      }
      std::string del = r.text;
      if (del.rfind("-A ", 0) == 0) del = "-D " + del.substr(3);
      gr.remedy = tool + (t.name == "filter" ? "" : " -t " + t.name) + " " + del;
      gc.rules.push_back(std::move(gr));
    }
    g.chains.emplace(c.name, std::move(gc));
  }
  if (auto it = kIptablesStarts.find(t.name); it != kIptablesStarts.end()) {
    for (const auto& s : it->second) {
      if (const IptablesChain* c = t.chain(s); c && c->builtin()) g.starts.push_back(s);
    }
  }
  return g;
}

// --- nft -> GTable ------------------------------------------------------------------

std::string upper(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::toupper(c); });
  return s;
}

GTable fromNft(const NftTable& t) {
  GTable g;
  g.source = "nft";
  g.family = t.family;
  g.name = t.name;
  for (const auto& c : t.chains) {
    GChain gc;
    gc.name = c.name;
    gc.policy = c.base() ? upper(c.policy.empty() ? "accept" : c.policy) : "";
    for (const auto& r : c.rules) {
      GRule gr;
      gr.text = r.text;
      for (const auto& p : r.protocols) gr.protos.push_back({p.protocols, p.negated});
      for (const auto& d : r.dports) gr.dports.push_back({d.ranges, d.negated, d.unresolved});
      gr.conditions = r.restrictions;
      if (r.has_xt) gr.conditions.push_back("iptables-nft xt expression (not modelled)");
      if (r.has_other_matches && !r.has_xt) gr.conditions.push_back("other matches");
      gr.benign = r.ct_invalid_only || r.daddr_loopback;
      switch (r.verdict) {
        case NftVerdict::kDrop:
          gr.verdict = Verdict::kDrop;
          break;
        case NftVerdict::kReject:
          gr.verdict = Verdict::kReject;
          break;
        case NftVerdict::kAccept:
          gr.verdict = Verdict::kAccept;
          break;
        case NftVerdict::kReturn:
          gr.verdict = Verdict::kReturn;
          break;
        case NftVerdict::kJump:
          gr.verdict = Verdict::kJump;
          break;
        case NftVerdict::kGoto:
          gr.verdict = Verdict::kGoto;
          break;
        default:
          gr.verdict = Verdict::kNone;
          break;
      }
      gr.jump = r.verdict_target;
      gr.remedy = "nft delete rule " + t.family + " " + t.name + " " + c.name + " handle " + std::to_string(r.handle);
      gc.rules.push_back(std::move(gr));
    }
    g.chains.emplace(c.name, std::move(gc));
  }
  if (t.family == "ip" || t.family == "ip6" || t.family == "inet") {
    static const std::set<std::string> kHooks = {"prerouting", "input", "forward", "output", "postrouting"};
    for (const auto& c : t.chains) {
      if (c.base() && kHooks.count(c.hook)) g.starts.push_back(c.name);
    }
  }
  return g;
}

}  // namespace

FirewallAnalysis analyzeIptables(const IptablesRuleset& rs, const std::string& source, const std::string& tool,
                                 const std::string& family, const std::vector<FirewallTarget>& targets) {
  FirewallAnalysis out;
  for (const auto& t : rs.tables) {
    if (!kIptablesStarts.count(t.name)) continue;  // nat: no DROP/REJECT there
    GTable g = fromIptables(t, source, tool, family);
    if (g.starts.empty()) continue;
    Walker w(g, out);
    for (const auto& target : targets) w.run(target);
  }
  return out;
}

FirewallAnalysis analyzeNft(const NftRuleset& rs, const std::vector<FirewallTarget>& targets,
                            const std::function<bool(const NftTable&)>& skip_table) {
  FirewallAnalysis out;
  for (const auto& t : rs.tables) {
    if (skip_table && skip_table(t)) continue;
    GTable g = fromNft(t);
    if (g.starts.empty()) continue;
    Walker w(g, out);
    for (const auto& target : targets) w.run(target);
  }
  return out;
}

std::vector<ChainPresence> findChains(const IptablesRuleset& rs, const std::string& source,
                                      const std::vector<std::string>& names) {
  std::vector<ChainPresence> out;
  for (const auto& t : rs.tables) {
    for (const auto& c : t.chains) {
      if (std::find(names.begin(), names.end(), c.name) != names.end()) {
        out.push_back(ChainPresence{source, t.name, c.name, c.rules.size()});
      }
    }
  }
  return out;
}

}  // namespace meshprobe::agent
