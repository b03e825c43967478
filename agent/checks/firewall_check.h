#pragma once
// firewall: reads iptables (the backend kubelet uses, and the other one when it holds
// rules) and native nftables, and reports every rule that drops or rejects UDP on the
// VXLAN port (the device's own dstport) or TCP to istiod (--istiod port).
//
// Reading the rules runs several tools (iptables-save and ip6tables-save of both
// backends, nft). With a RulesetGeneration the check asks the kernel first whether any
// rule changed since the last read, and judges the rules it read then when none did; it
// reads them again anyway after kFirewallRereadEvery, and whenever the last read was not
// complete (a tool failed or timed out) or the kernel could not say.
#include <chrono>
#include <optional>

#include "agent/checks/check.h"
#include "agent/config.h"
#include "agent/kernel/command_runner.h"
#include "agent/firewall/iptables_mode.h"
#include "agent/firewall/ruleset_generation.h"
#include "agent/kernel/netlink_reader.h"
#include "common/clock.h"

namespace meshprobe::agent {

// A full read at least this often even when the kernel reports no change: the generation
// does not move for set elements that rules add from the packet path.
inline constexpr std::chrono::seconds kFirewallRereadEvery{60};

class FirewallCheck final : public Check {
 public:
  // generation and clock: both or neither (nullptr: read the rules every round).
  FirewallCheck(const AgentConfig& config, NetlinkReader& netlink, CommandRunner& commands,
                RulesetGeneration* generation = nullptr, const Clock* clock = nullptr);
  std::string_view name() const override { return "firewall"; }
  CheckResult run() override;

 private:
  CheckResult runChecked();
  // The rules to judge: the last read when the kernel says nothing changed, else a new one.
  const FirewallSnapshot& rules(nlohmann::json& details);

  const AgentConfig& config_;
  NetlinkReader& netlink_;
  CommandRunner& commands_;
  RulesetGeneration* generation_;
  const Clock* clock_;
  struct LastRead {
    FirewallSnapshot snapshot;
    std::optional<uint64_t> fingerprint;  // taken before the read; none: not reusable
    std::chrono::steady_clock::time_point at;
  };
  std::optional<LastRead> last_;
  uint64_t reads_ = 0;
  uint64_t reuses_ = 0;
};

}  // namespace meshprobe::agent
