#pragma once
// Whether the packet-filter rules changed, without running a tool. Reading the rules means
// running iptables-save, ip6tables-save (both backends) and nft, several processes every
// check round; the kernel can say much more cheaply whether anything they would print
// changed:
//
// - nf_tables (native nft, and iptables-nft, which writes nf_tables rules): the ruleset
//   generation, NFT_MSG_GETGEN on NETLINK_NETFILTER. The kernel increments it on every
//   committed transaction (a rule, chain, table, set or element added, changed or
//   removed), which is how nft itself notices a concurrent change.
// - iptables-legacy (x_tables): no generation exists, so the tables the kernel holds
//   (/proc/thread-self/net/ip_tables_names, ip6_tables_names) are read with the same
//   getsockopt calls iptables-legacy-save makes (IPT_SO_GET_INFO, IPT_SO_GET_ENTRIES) and
//   hashed with every rule's packet and byte counters left out (they move with traffic,
//   the rules do not). A table that is not loaded is not asked for: asking would make the
//   kernel load it.
//
// Both are per network namespace: the calling thread's. Needs CAP_NET_ADMIN (and
// CAP_NET_RAW for the raw socket), as reading the rules does.

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>

#include "common/result.h"

namespace meshprobe::agent {

// The seam the firewall check asks before re-reading the rules.
class RulesetGeneration {
 public:
  virtual ~RulesetGeneration() = default;
  // A value that differs from an earlier one whenever a rule in the calling thread's
  // network namespace changed in between. An error means unknown: read the rules.
  virtual Result<uint64_t> fingerprint() = 0;
};

std::unique_ptr<RulesetGeneration> makeKernelRulesetGeneration(std::chrono::milliseconds timeout);

// The pieces, for tests.
// The generation in the kernel's answer to NFT_MSG_GETGEN (an NFT_MSG_NEWGEN message).
Result<uint32_t> parseNftGeneration(std::span<const uint8_t> reply);
// FNV-1a over an x_tables entry blob (IPT_SO_GET_ENTRIES' entrytable), each entry's
// xt_counters left out. ipv6: ip6t_entry layout, else ipt_entry. An entry whose
// next_offset does not fit the blob is an error.
Result<uint64_t> hashLegacyEntries(std::span<const uint8_t> entries, bool ipv6, uint64_t seed);

}  // namespace meshprobe::agent
