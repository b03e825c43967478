#pragma once
// iptables-save text as data: tables -> chains -> rules, each rule's arguments tokenized
// (quotes honoured) with the match fields the analysis needs pulled out. Used by the
// firewall check (host) and the ambient_redirection check (pod netns ISTIO_* chains).

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace meshprobe::agent {

struct PortRange {
  uint16_t first = 0;
  uint16_t last = 0;  // == first for a single port
  bool contains(uint16_t p) const { return p >= first && p <= last; }
};

struct IptablesRule {
  std::string chain;
  std::string text;               // the rule as iptables-save printed it ("-A INPUT ...")
  std::vector<std::string> args;  // tokens after "-A CHAIN"
  std::string protocol;           // "-p": "udp", "tcp", "" (any); lower case
  bool protocol_negated = false;
  std::vector<PortRange> dports;  // --dport / --dports / --destination-port(s); empty = any
  bool dports_negated = false;
  std::vector<PortRange> sports;
  bool sports_negated = false;
  std::vector<PortRange> ports;  // multiport --ports (source OR destination); empty = none
  bool ports_negated = false;
  std::string in_interface, out_interface;  // -i / -o
  std::string source, destination;          // -s / -d
  bool in_interface_negated = false, out_interface_negated = false;
  bool source_negated = false, destination_negated = false;
  std::vector<std::string> matches;      // "-m" module names in order ("udp", "multiport", "mark", ...)
  std::string target;                    // -j TARGET or -g TARGET; empty when none
  bool is_goto = false;                  // -g
  std::vector<std::string> target_args;  // tokens after the target: {"--to-ports", "15001"}
  bool has_other_matches = false;        // matches we do not model (conntrack, mark, set, ...)
  int line = 0;                          // 1-based line in the iptables-save text
};

struct IptablesChain {
  std::string name;
  std::string policy;  // "ACCEPT"/"DROP" for built-in chains, "-" for user chains
  bool builtin() const { return policy != "-"; }
  std::vector<IptablesRule> rules;
};

struct IptablesTable {
  std::string name;  // filter, nat, mangle, raw, security
  std::vector<IptablesChain> chains;
  const IptablesChain* chain(std::string_view name) const;
};

struct IptablesRuleset {
  std::vector<IptablesTable> tables;
  const IptablesTable* table(std::string_view name) const;
  size_t ruleCount() const;
};

// Parses the output of iptables-save / ip6tables-save (legacy or nft variant).
// Errors name the line number and what was wrong with it.
Result<IptablesRuleset> parseIptablesSave(std::string_view text);

}  // namespace meshprobe::agent
