#pragma once
// Reading the node's firewall: which iptables backend is in use (as
// kube-proxy's iptables-wrapper decides it), the iptables-save / ip6tables-save output of
// that backend (and of the other one when it holds rules), and the native nftables
// ruleset. Every command goes through the CommandRunner seam with a deadline; each
// source that could not be read says why.

#include <chrono>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/firewall/iptables_ruleset.h"
#include "agent/firewall/nft_ruleset.h"
#include "agent/kernel/command_runner.h"

namespace meshprobe::agent {

enum class IptablesBackend { kNft, kLegacy };
std::string_view backendName(IptablesBackend b);  // "nft" | "legacy"

// True when iptables-save output declares kubelet's/kube-proxy's hint chains
// (KUBE-IPTABLES-HINT or KUBE-KUBELET-CANARY).
bool hasKubeHint(std::string_view save_output);

struct ModeDetection {
  IptablesBackend mode = IptablesBackend::kNft;
  std::string reason;  // "iptables-nft-save -t mangle shows KUBE-IPTABLES-HINT", ...
  // The first mode probe that hit its deadline ("iptables-nft-save: timed out after 1600ms
  // (killed)"), else empty: a hung tool may have used up the time the sources needed.
  std::string timed_out;
};

// nft if `iptables-nft-save -t mangle` shows a hint chain, else legacy if
// `iptables-legacy-save -t mangle` does, else nft.
ModeDetection detectIptablesMode(CommandRunner& runner, std::chrono::milliseconds timeout);

struct FirewallSource {
  std::string name;           // "iptables-nft-save", "ip6tables-legacy-save", "nft"
  std::string command;        // the command line that was run
  bool read = false;          // output read and parsed
  bool tool_missing = false;  // binary not installed
  bool permission_denied = false;
  bool used = true;   // false: read but left out (other backend without rules)
  std::string error;  // why it could not be read
  size_t tables = 0;
  size_t rules = 0;
};

struct IptablesSource {
  std::string name;    // as in FirewallSource
  std::string tool;    // command for remedies: "iptables", "ip6tables-legacy", ...
  std::string family;  // "ip" / "ip6"
  IptablesBackend backend = IptablesBackend::kNft;
  IptablesRuleset ruleset;
};

struct FirewallSnapshot {
  ModeDetection mode;
  std::vector<FirewallSource> sources;
  std::vector<IptablesSource> iptables;
  std::optional<NftRuleset> nft;
  // nft tables that iptables-nft manages ({"ip", "filter"}, ...): already read through
  // iptables-nft-save, so not reported twice from the nft ruleset.
  std::set<std::pair<std::string, std::string>> iptables_nft_tables;
  std::vector<std::string> nft_tables_skipped;  // "ip filter": not listed, read as iptables-nft

  bool anyRead() const;
  bool allToolsMissing() const;
};

struct FirewallReadOptions {
  std::chrono::milliseconds per_command{2000};
  std::chrono::milliseconds total{4000};  // budget for all commands together
};

FirewallSnapshot readFirewall(CommandRunner& runner, const FirewallReadOptions& options = {});

// "permission denied (needs root / CAP_NET_ADMIN): <tool's message>", "not installed", ...
std::string explainFailure(const CommandOutput& out);

}  // namespace meshprobe::agent
