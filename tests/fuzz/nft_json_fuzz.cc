// `nft -j list ruleset` and `nft -j list chains` output as the agent reads it (nlohmann
// JSON, then the ruleset model: tables, chains, rules and their match expressions), then
// the analysis over hooked base chains. Seeds: tests/data/firewall/*.json.

#include "agent/firewall/firewall_analysis.h"
#include "agent/firewall/nft_ruleset.h"
#include "tests/fuzz/fuzz_target.h"

using namespace meshprobe::agent;

MESHPROBE_FUZZ_TARGET(nft_json) {
  const std::string_view text = meshprobe::fuzz::asText(data);
  auto rs = parseNftJson(text);
  if (rs.ok()) {
    const std::vector<FirewallTarget> targets = {{"udp", 4789}, {"tcp", 15012}};
    const FirewallAnalysis a = analyzeNft(rs.value(), targets);
    for (const auto& hit : a.blocking) FUZZ_CHECK(hit.verdict == "DROP" || hit.verdict == "REJECT");
  } else {
    FUZZ_CHECK(!rs.error().message.empty());
  }
  auto chains = parseNftChainTables(text);
  if (!chains.ok()) FUZZ_CHECK(!chains.error().message.empty());
}
