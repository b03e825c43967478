#pragma once
// Looking inside one pod netns: the seam between the ambient_redirection check's logic
// (pure, unit-tested with a fake inspector) and the kernel (setns in a dedicated thread,
// iptables-save run as a child of that thread, sock_diag and rtnetlink from that thread).

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "agent/ambient/pod_netns.h"
#include "agent/ambient/redirection.h"
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
PodInspection inspectCurrentNetns(CommandRunner& commands, SockDiag& sock_diag, const AddressSource& addresses,
                                  std::chrono::steady_clock::time_point deadline);

// Enters the namespace with runInNetns (agent/kernel/netns.h) and, from that thread, runs
// inspectCurrentNetns. The seams must act on the calling thread's namespace and outlive the
// process' last inspection (they are the agent's long-lived deps).
std::unique_ptr<PodNetnsInspector> makeKernelPodNetnsInspector(CommandRunner& commands, SockDiag& sock_diag,
                                                               AddressSource addresses = readNetnsAddresses);

// The iptables-save variants, in the order tried. Plain `iptables-save` only when neither
// of the explicit ones is installed.
inline const std::vector<std::string> kIptablesSaveTools = {"iptables-nft-save", "iptables-legacy-save"};
inline const std::string kIptablesSaveFallback = "iptables-save";

struct RulesReading {
  std::optional<IstioRules> rules;  // unset on error
  std::string error;
  std::string tool;                // the variant whose output was used
  std::vector<std::string> notes;  // what happened with the other variants
};

// Runs the iptables-save variants through `commands` (in the calling thread's netns),
// uses the first one whose output holds ISTIO_ chains (else the first that ran), parses
// it with parseIptablesSave and analyzes it. Every command is bounded by `deadline`.
RulesReading readIstioRules(CommandRunner& commands, std::chrono::steady_clock::time_point deadline);

}  // namespace meshprobe::agent
