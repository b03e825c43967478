// iptables-save / ip6tables-save text (legacy and nft variants) as the agent reads it from
// the node, then the analysis that walks the parsed chains (jumps, gotos, cycles) for
// rules dropping VXLAN or istiod traffic. Seeds: tests/data/firewall/*.txt and the
// ambient redirection captures in tests/data/ambient/*.txt.

#include "agent/firewall/firewall_analysis.h"
#include "agent/firewall/iptables_ruleset.h"
#include "tests/fuzz/fuzz_target.h"

using namespace meshprobe::agent;

MESHPROBE_FUZZ_TARGET(iptables_save) {
  auto rs = parseIptablesSave(meshprobe::fuzz::asText(data));
  if (!rs.ok()) {
    FUZZ_CHECK(!rs.error().message.empty());
    return;
  }
  // Every rule is at least "-A X" on a line of its own.
  FUZZ_CHECK(rs.value().ruleCount() <= data.size() / 4 + 1);
  const std::vector<FirewallTarget> targets = {{"udp", 4789}, {"udp", 8472}, {"tcp", 15012}};
  const FirewallAnalysis a = analyzeIptables(rs.value(), "iptables-nft-save", "iptables", "ip", targets);
  for (const auto& hit : a.blocking) FUZZ_CHECK(hit.verdict == "DROP" || hit.verdict == "REJECT");
  findChains(rs.value(), "iptables-nft-save", {"FLANNEL-FWD", "ISTIO_POSTRT"});
}
