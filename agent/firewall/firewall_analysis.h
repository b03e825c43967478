#pragma once
// Which firewall rules can drop or reject the node's overlay and istiod traffic.
// Starting from the chains the kernel calls (iptables: filter INPUT/FORWARD/OUTPUT, raw
// and mangle hooks, security; nft: base chains on the prerouting/input/forward/output/
// postrouting hooks of ip/ip6/inet tables), the walk follows jumps and gotos into user
// chains (with a cycle guard) and reports every DROP/REJECT whose match could include a
// packet of a target (protocol + destination port). A rule that certainly accepts the
// target packet ends the walk of that hook (rules after it are shadowed); a built-in
// chain whose policy DROPs what fell through is reported as a note.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "agent/firewall/iptables_ruleset.h"
#include "agent/firewall/nft_ruleset.h"

namespace meshprobe::agent {

struct FirewallTarget {
  std::string protocol;  // "udp" / "tcp"
  uint16_t port = 0;
  std::string label() const { return protocol + "/" + std::to_string(port); }
  bool operator==(const FirewallTarget&) const = default;
};

struct FirewallHit {
  std::string source;  // "iptables-nft-save", "ip6tables-legacy-save", "nft"
  std::string family;  // "ip", "ip6", "inet" ...
  std::string table, chain;
  std::vector<std::string> path;  // chains from the hooked chain down to `chain`
  std::string rule;               // iptables-save text or nft rendering
  std::string verdict;            // "DROP" / "REJECT"
  FirewallTarget target;
  bool conditional = false;   // the match also depends on conditions we do not evaluate
  std::string conditions;     // which conditions ("-s 198.51.100.0/24", "xt match \"set\"")
  std::string remedy;         // a command that deletes the rule
  std::string where() const;  // "iptables-nft-save filter INPUT"
};

struct PolicyNote {
  std::string source, family, table, chain, policy;
  std::vector<FirewallTarget> targets;  // targets that reach the end of the chain
};

struct FirewallAnalysis {
  std::vector<FirewallHit> blocking;     // certainly or explicitly drop a target
  std::vector<FirewallHit> conditional;  // may drop a target depending on other conditions
  std::vector<PolicyNote> policies;      // built-in/base chain policy DROP reached by a target
  void merge(FirewallAnalysis other);
};

// `tool` is the command the remedy uses ("iptables", "ip6tables", "iptables-legacy").
FirewallAnalysis analyzeIptables(const IptablesRuleset& rs, const std::string& source, const std::string& tool,
                                 const std::string& family, const std::vector<FirewallTarget>& targets);

// skip_table: tables not to analyse (those iptables-nft manages, already read as iptables).
FirewallAnalysis analyzeNft(const NftRuleset& rs, const std::vector<FirewallTarget>& targets,
                            const std::function<bool(const NftTable&)>& skip_table = nullptr);

// Chains of interest that are present (flannel's FLANNEL-POSTRTG / FLANNEL-FWD, Istio's
// host ISTIO_POSTRT), with their rule counts.
struct ChainPresence {
  std::string source, table, chain;
  size_t rules = 0;
};
std::vector<ChainPresence> findChains(const IptablesRuleset& rs, const std::string& source,
                                      const std::vector<std::string>& names);

}  // namespace meshprobe::agent
