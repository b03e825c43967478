#pragma once
// Looking inside one pod netns: the seam between the ambient_redirection check's logic
// (pure, unit-tested with a fake inspector) and the kernel (setns in a dedicated thread,
// iptables-save run as a child of that thread, sock_diag and rtnetlink from that thread).

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "agent/ambient/pod_netns.h"
#include "agent/ambient/redirection.h"
#include "agent/firewall/ruleset_generation.h"
#include "agent/kernel/command_runner.h"
#include "agent/kernel/netlink_types.h"
#include "agent/kernel/sock_diag.h"

namespace meshprobe::agent {

class PodNetnsInspector {
 public:
  virtual ~PodNetnsInspector() = default;
  // Reads rules and listeners in `pod`'s namespace, within `timeout`. Never throws:
  // failures are in PodInspection::error / rules_error / listeners_error.
  virtual PodInspection inspect(const PodNetns& pod, std::chrono::milliseconds timeout) = 0;
  // The pods of the current round: whatever is remembered about any other may go.
  virtual void retain(const std::vector<PodNetns>& /*pods*/) {}
};

// What reading a namespace's rules gave (readIstioRules).
struct RulesReading {
  std::optional<IstioRules> rules;  // unset on error
  std::string error;
  std::string tool;                // the variant whose output was used
  std::vector<std::string> notes;  // what happened with the other variants
};

// The addresses of the calling thread's netns (every interface, IPv4 and IPv6), read by
// `deadline`. The kernel one is readNetnsAddresses; tests pass a fake.
using AddressSource = std::function<Result<std::vector<AddressInfo>>(std::chrono::steady_clock::time_point deadline)>;

// One RTM_GETADDR dump on a fresh rtnetlink socket (RtnetlinkDumper, parseAddrDump): the
// socket belongs to the namespace of the thread that opens it, so call it from inside.
Result<std::vector<AddressInfo>> readNetnsAddresses(std::chrono::steady_clock::time_point deadline);

// What the kernel inspector does once inside the pod's netns (the calling thread's): the
// ztunnel listeners (SockDiag::tcpListeners), the pod's addresses (podAddresses over
// `addresses`) and the rules (readIstioRules). Never sets PodInspection::error.
// `rules`, when set, reads the rules instead of readIstioRules (ReusedRules::read).
using RulesSource = std::function<RulesReading(std::chrono::steady_clock::time_point deadline)>;
PodInspection inspectCurrentNetns(CommandRunner& commands, SockDiag& sock_diag, const AddressSource& addresses,
                                  std::chrono::steady_clock::time_point deadline, const RulesSource& rules = {});

// Enters the namespace with runInNetns (agent/kernel/netns.h) and, from that thread, runs
// inspectCurrentNetns. The seams must act on the calling thread's namespace and outlive the
// process' last inspection (they are the agent's long-lived deps).
// With a RulesetGeneration, a pod's rules are read again only when the kernel's ruleset
// fingerprint in its namespace moved (ReusedRules below).
std::unique_ptr<PodNetnsInspector> makeKernelPodNetnsInspector(CommandRunner& commands, SockDiag& sock_diag,
                                                               AddressSource addresses = readNetnsAddresses,
                                                               RulesetGeneration* generation = nullptr);

// The iptables-save variants, in the order tried. Plain `iptables-save` only when neither
// of the explicit ones is installed.
inline const std::vector<std::string> kIptablesSaveTools = {"iptables-nft-save", "iptables-legacy-save"};
inline const std::string kIptablesSaveFallback = "iptables-save";

// Runs the iptables-save variants through `commands` (in the calling thread's netns),
// uses the first one whose output holds ISTIO_ chains (else the first that ran), parses
// it with parseIptablesSave and analyzes it. Every command is bounded by `deadline`.
RulesReading readIstioRules(CommandRunner& commands, std::chrono::steady_clock::time_point deadline);

// A full read at least this often even when the fingerprint did not move.
inline constexpr std::chrono::seconds kPodRulesRereadEvery{60};

// The last complete reading of each pod namespace's rules with the ruleset fingerprint
// taken just before it. Running iptables-save in every pod namespace every round is most
// of what the check costs on a node with many pods; the fingerprint (one netlink request
// and a few getsockopt calls) says when it would print something else. Thread-safe:
// namespaces are inspected in parallel, from their own threads.
class ReusedRules {
 public:
  // In the calling thread's namespace, `key` naming it (path and inode): the remembered
  // reading when `generation` gives the fingerprint it was taken with and it is younger
  // than kPodRulesRereadEvery at `now`, else readIstioRules. Only a complete reading is
  // remembered: no error, and every other variant either ran or is not installed (none
  // timed out or failed); nor one taken while the fingerprint could not be read.
  RulesReading read(const std::string& key, RulesetGeneration& generation, CommandRunner& commands,
                    std::chrono::steady_clock::time_point now, std::chrono::steady_clock::time_point deadline);
  // Forgets every namespace but these keys.
  void retain(const std::vector<std::string>& keys);
  size_t size() const;

 private:
  struct Entry {
    uint64_t fingerprint = 0;
    RulesReading reading;
    std::chrono::steady_clock::time_point at;
  };
  mutable std::mutex mu_;
  std::map<std::string, Entry> entries_;
};

// The ReusedRules key of a pod namespace: its path and its nsfs inode (a path can be
// reused by a new namespace).
std::string reusedRulesKey(const PodNetns& pod);

}  // namespace meshprobe::agent
