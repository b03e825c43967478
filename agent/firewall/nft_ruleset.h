#pragma once
// The native nftables ruleset (`nft -j list ruleset`) as data: tables -> chains -> rules,
// each rule reduced to what the firewall analysis needs (protocol and port matches,
// whether other conditions restrict it, its verdict) plus a readable rendering close to
// `nft list ruleset` syntax. `xt` expressions (iptables-nft compat matches/targets that
// nft cannot show natively) are kept but marked as unmodelled.

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/firewall/iptables_ruleset.h"
#include "common/result.h"

namespace meshprobe::agent {

enum class NftVerdict { kNone, kAccept, kDrop, kReject, kReturn, kJump, kGoto, kOther };

struct NftPortMatch {
  std::vector<PortRange> ranges;  // resolved values (anonymous/named set, range, single, comparison)
  bool negated = false;           // "!="
  std::string set_name;           // "@name" when the values come from a named set
  bool unresolved = false;        // named set missing or not a port set: value unknown
};

struct NftProtoMatch {
  std::vector<std::string> protocols;  // "udp", "tcp", ...; lower case
  bool negated = false;
};

struct NftRule {
  std::string family, table, chain;
  uint64_t handle = 0;
  std::string text;  // readable rendering: "udp dport 4789 counter drop"
  std::string comment;
  std::vector<NftProtoMatch> protocols;  // all must hold (payload udp dport implies udp)
  std::vector<NftPortMatch> dports;      // all must hold; "th dport" counts too
  std::vector<NftPortMatch> sports;
  std::vector<std::string> restrictions;  // "iifname lo", "ip saddr 198.51.100.0/24", "udp sport 53"
  bool has_other_matches = false;         // ct / mark / limit / fib ... that we do not evaluate
  bool has_xt = false;                    // iptables-nft compat expression (unmodelled)
  bool ct_invalid_only = false;           // "ct state invalid" (never a healthy flow)
  bool daddr_loopback = false;            // ip daddr 127.0.0.0/8 / ip6 daddr ::1
  NftVerdict verdict = NftVerdict::kNone;
  std::string verdict_target;  // jump/goto chain; reject type
};

struct NftChain {
  std::string name;
  std::string type;  // filter, nat, route; empty for regular chains
  std::string hook;  // input, output, forward, prerouting, postrouting, ingress; empty = regular chain
  int prio = 0;
  std::string policy;  // accept / drop for base chains
  bool base() const { return !hook.empty(); }
  std::vector<NftRule> rules;
};

struct NftSet {
  std::string name;
  std::string type;              // "inet_service", "ipv4_addr", ...
  std::vector<PortRange> ports;  // elements when the set holds ports
  bool ports_known = false;
};

struct NftTable {
  std::string family;  // ip, ip6, inet, arp, bridge, netdev
  std::string name;
  std::vector<NftChain> chains;
  std::vector<NftSet> sets;
  const NftChain* chain(std::string_view chain_name) const;
  const NftSet* set(std::string_view set_name) const;
};

struct NftRuleset {
  std::vector<NftTable> tables;
  const NftTable* table(std::string_view family, std::string_view name) const;
  size_t ruleCount() const;
};

// Parses `nft -j list ruleset` output. Errors say what was wrong (JSON syntax error with
// its byte offset, missing "nftables" array, a rule for an unknown chain).
Result<NftRuleset> parseNftJson(std::string_view text);

// The (family, table) pairs named by `nft -j list chains` output (chain objects only, no
// table objects), in order of first appearance.
Result<std::vector<std::pair<std::string, std::string>>> parseNftChainTables(std::string_view text);

}  // namespace meshprobe::agent
