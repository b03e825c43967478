#include "agent/firewall/iptables_mode.h"

#include <algorithm>

namespace meshprobe::agent {

std::string_view backendName(IptablesBackend b) { return b == IptablesBackend::kNft ? "nft" : "legacy"; }

bool hasKubeHint(std::string_view text) {
  // Chain declarations (":KUBE-IPTABLES-HINT - [0:0]") at the start of a line.
  for (std::string_view chain : {":KUBE-IPTABLES-HINT ", ":KUBE-KUBELET-CANARY "}) {
    size_t pos = 0;
    while ((pos = text.find(chain, pos)) != std::string_view::npos) {
      if (pos == 0 || text[pos - 1] == '\n') return true;
      pos += chain.size();
    }
  }
  return false;
}

namespace {

std::string joinArgs(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) s += (s.empty() ? "" : " ") + a;
  return s;
}

bool permissionDenied(const CommandOutput& out) {
  for (const std::string* s : {&out.err, &out.out}) {
    if (s->find("Permission denied") != std::string::npos || s->find("Operation not permitted") != std::string::npos ||
        s->find("you must be root") != std::string::npos) {
      return true;
    }
  }
  return false;
}

class Budget {
 public:
  Budget(CommandRunner& runner, const FirewallReadOptions& opt)
      : runner_(runner), opt_(opt), deadline_(std::chrono::steady_clock::now() + opt.total) {}

  CommandOutput run(const std::vector<std::string>& argv) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      CommandOutput o;
      o.program = argv.empty() ? "" : argv[0];
      o.error = "not run: the firewall check's time budget (" + std::to_string(opt_.total.count()) + "ms) was used up";
      return o;
    }
    CommandOutput o = runner_.run(argv, std::min(left, opt_.per_command));
    if (o.program.empty() && !argv.empty()) o.program = argv[0];
    return o;
  }

 private:
  CommandRunner& runner_;
  const FirewallReadOptions& opt_;
  std::chrono::steady_clock::time_point deadline_;
};

// Runs an *-save command and parses it; records the source either way.
std::optional<IptablesRuleset> readSave(Budget& budget, FirewallSnapshot& snap, const std::vector<std::string>& argv,
                                        FirewallSource** source_out) {
  FirewallSource src;
  src.name = argv[0];
  src.command = joinArgs(argv);
  CommandOutput out = budget.run(argv);
  std::optional<IptablesRuleset> result;
  if (!out.succeeded()) {
    src.tool_missing = out.not_found;
    src.permission_denied = permissionDenied(out);
    src.error = explainFailure(out);
  } else if (auto rs = parseIptablesSave(out.out); !rs) {
    src.error = "unparsable output: " + rs.error().message;
  } else {
    src.read = true;
    src.tables = rs->tables.size();
    src.rules = rs->ruleCount();
    result = std::move(*rs);
  }
  snap.sources.push_back(std::move(src));
  *source_out = &snap.sources.back();
  return result;
}

}  // namespace

std::string explainFailure(const CommandOutput& out) {
  if (out.not_found) return "not installed (" + out.describe() + ")";
  if (out.timed_out) return out.describe();
  if (permissionDenied(out)) return "permission denied (needs root / CAP_NET_ADMIN): " + out.describe();
  return out.describe();
}

ModeDetection detectIptablesMode(CommandRunner& runner, std::chrono::milliseconds timeout) {
  ModeDetection d;
  auto noteFailure = [&d](const CommandOutput& out) {
    if (out.timed_out && d.timed_out.empty()) d.timed_out = out.describe();
  };
  CommandOutput nft = runner.run({"iptables-nft-save", "-t", "mangle"}, timeout);
  noteFailure(nft);
  if (nft.succeeded() && hasKubeHint(nft.out)) {
    d.mode = IptablesBackend::kNft;
    d.reason = "iptables-nft-save -t mangle shows kubelet's hint chain";
    return d;
  }
  CommandOutput legacy = runner.run({"iptables-legacy-save", "-t", "mangle"}, timeout);
  noteFailure(legacy);
  if (legacy.succeeded() && hasKubeHint(legacy.out)) {
    d.mode = IptablesBackend::kLegacy;
    d.reason = "iptables-legacy-save -t mangle shows kubelet's hint chain";
    return d;
  }
  d.mode = IptablesBackend::kNft;
  d.reason = d.timed_out.empty()
                 ? "no kubelet hint chain in either backend; nft is the default"
                 : "nft by default: a backend could not be read for kubelet's hint chain (" + d.timed_out + ")";
  return d;
}

bool FirewallSnapshot::anyRead() const {
  return std::any_of(sources.begin(), sources.end(), [](const FirewallSource& s) { return s.read; });
}

bool FirewallSnapshot::allToolsMissing() const {
  return !sources.empty() &&
         std::all_of(sources.begin(), sources.end(), [](const FirewallSource& s) { return s.tool_missing; });
}

FirewallSnapshot readFirewall(CommandRunner& runner, const FirewallReadOptions& options) {
  FirewallSnapshot snap;
  snap.sources.reserve(8);  // pointers into it are held briefly below
  Budget budget(runner, options);

  // Mode detection shares the budget: each probe gets the per-command limit.
  struct BudgetRunner final : CommandRunner {
    explicit BudgetRunner(Budget& b) : b_(b) {}
    CommandOutput run(const std::vector<std::string>& argv, std::chrono::milliseconds) override { return b_.run(argv); }
    Budget& b_;
  } budget_runner(budget);
  snap.mode = detectIptablesMode(budget_runner, options.per_command);

  const IptablesBackend chosen = snap.mode.mode;
  const IptablesBackend other = chosen == IptablesBackend::kNft ? IptablesBackend::kLegacy : IptablesBackend::kNft;
  for (IptablesBackend backend : {chosen, other}) {
    for (const char* fam : {"ip", "ip6"}) {
      const std::string base = std::string(fam) == "ip" ? "iptables" : "ip6tables";
      const std::string save = base + "-" + std::string(backendName(backend)) + "-save";
      FirewallSource* src = nullptr;
      auto rs = readSave(budget, snap, {save}, &src);
      if (!rs) continue;
      if (backend == IptablesBackend::kNft) {
        for (const auto& t : rs->tables) snap.iptables_nft_tables.insert({fam, t.name});
      }
      if (backend == other && rs->ruleCount() == 0) {
        src->used = false;  // the other backend only matters when it holds rules
        continue;
      }
      // Remedies name the tool the admin would type: plain iptables for the mode in use.
      std::string tool = backend == chosen ? base : base + "-" + std::string(backendName(backend));
      snap.iptables.push_back(IptablesSource{save, tool, fam, backend, std::move(*rs)});
    }
  }

  // Native nftables. `nft -j list ruleset` renders the iptables-nft tables too, which
  // takes seconds on a kube-proxy node (tens of thousands of rules): list the chains
  // (fast), then only the tables iptables-nft does not manage.
  FirewallSource src;
  src.name = "nft";
  src.command = "nft -j list chains";
  CommandOutput chains = budget.run({"nft", "-j", "list", "chains"});
  auto chains_rs = chains.succeeded() ? parseNftChainTables(chains.out)
                                      : Result<std::vector<std::pair<std::string, std::string>>>(Error{""});
  if (!chains.succeeded()) {
    src.tool_missing = chains.not_found;
    src.permission_denied = permissionDenied(chains);
    src.error = explainFailure(chains);
  } else if (!chains_rs) {
    src.error = "unparsable output: " + chains_rs.error().message;
  } else {
    NftRuleset merged;
    std::vector<std::string> errors;
    for (const auto& [family, name] : *chains_rs) {
      if ((family == "ip" || family == "ip6") && snap.iptables_nft_tables.count({family, name})) {
        snap.nft_tables_skipped.push_back(family + " " + name);
        continue;
      }
      const std::vector<std::string> argv{"nft", "-j", "list", "table", family, name};
      src.command += "; " + joinArgs(argv);
      CommandOutput out = budget.run(argv);
      if (!out.succeeded()) {
        errors.push_back(family + " " + name + ": " + explainFailure(out));
        continue;
      }
      auto rs = parseNftJson(out.out);
      if (!rs) {
        errors.push_back(family + " " + name + ": unparsable output: " + rs.error().message);
        continue;
      }
      for (auto& table : rs->tables) merged.tables.push_back(std::move(table));
    }
    src.read = true;
    src.tables = merged.tables.size();
    src.rules = merged.ruleCount();
    for (const auto& e : errors) src.error += (src.error.empty() ? "" : "; ") + e;
    snap.nft = std::move(merged);
  }
  snap.sources.push_back(std::move(src));
  return snap;
}

}  // namespace meshprobe::agent
