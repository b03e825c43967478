#pragma once
// What checks are built from: the config and the kernel/clock seams.

#include "agent/checks/peer_directory.h"
#include "agent/config.h"
#include "agent/firewall/ruleset_generation.h"
#include "agent/kernel/command_runner.h"
#include "agent/kernel/netlink_reader.h"
#include "agent/kernel/sock_diag.h"
#include "common/clock.h"

namespace meshprobe::agent {

struct AgentDeps {
  // Shared by every check of a round and the Hello: whoever runs a round calls
  // netlink.beginRound() first, and the round's reads then share one snapshot.
  NetlinkReader& netlink;
  SockDiag& sock_diag;
  CommandRunner& commands;
  const Clock& clock;
  const PeerDirectory* peers = nullptr;  // membership, in daemon mode
  // Whether the firewall rules changed since the last read (nullptr: read them every round).
  RulesetGeneration* rulesets = nullptr;
};

}  // namespace meshprobe::agent
