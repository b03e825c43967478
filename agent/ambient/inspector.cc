#include "agent/ambient/inspector.h"

#include <algorithm>
#include <set>

#include "agent/kernel/netlink_dump.h"
#include "agent/kernel/netlink_parse.h"
#include "agent/kernel/netns.h"

namespace meshprobe::agent {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

std::string firstLine(const std::string& s) {
  auto end = s.find('\n');
  return end == std::string::npos ? s : s.substr(0, end);
}

// One line for a variant that did not give usable output.
std::string failure(const std::string& tool, const CommandOutput& out) {
  if (out.not_found) return tool + ": not found";
  if (out.timed_out) return tool + ": timed out";
  if (!out.error.empty()) return tool + ": " + out.error;
  std::string line = tool + ": exited " + std::to_string(out.exit_code);
  std::string err = firstLine(out.err);
  if (!err.empty()) line += ": " + err;
  return line;
}

bool holdsIstioChains(const std::string& save_output) { return save_output.find(":ISTIO_") != std::string::npos; }

class KernelPodNetnsInspector final : public PodNetnsInspector {
 public:
  KernelPodNetnsInspector(CommandRunner& commands, SockDiag& sock_diag, AddressSource addresses,
                          RulesetGeneration* generation)
      : commands_(commands), sock_diag_(sock_diag), addresses_(std::move(addresses)), generation_(generation) {}

  void retain(const std::vector<PodNetns>& pods) override {
    std::vector<std::string> keys;
    keys.reserve(pods.size());
    for (const auto& p : pods) keys.push_back(reusedRulesKey(p));
    reused_->retain(keys);
  }

  PodInspection inspect(const PodNetns& pod, milliseconds timeout) override {
    // Child processes get most of the budget, so they time out (and are killed by the
    // runner) before the caller stops waiting on the namespace thread.
    const auto work_deadline = steady_clock::now() + timeout * 9 / 10;
    CommandRunner* commands = &commands_;
    SockDiag* sock_diag = &sock_diag_;
    RulesetGeneration* generation = generation_;
    // Copies (and a shared memo): the namespace thread may outlive this call (and the
    // check) on a timeout.
    auto r = runInNetns(pod.path, timeout,
                        [commands, sock_diag, addresses = addresses_, work_deadline, generation, reused = reused_,
                         key = reusedRulesKey(pod)] {
                          RulesSource rules;
                          if (generation != nullptr) {
                            rules = [=](steady_clock::time_point deadline) {
                              return reused->read(key, *generation, *commands, steady_clock::now(), deadline);
                            };
                          }
                          return Result<PodInspection>(
                              inspectCurrentNetns(*commands, *sock_diag, addresses, work_deadline, rules));
                        });
    if (!r.ok()) {
      PodInspection in;
      in.error = r.error().message;
      in.error_errno = r.error().sys_errno;
      return in;
    }
    return std::move(r).value();
  }

 private:
  CommandRunner& commands_;
  SockDiag& sock_diag_;
  AddressSource addresses_;
  RulesetGeneration* generation_;
  std::shared_ptr<ReusedRules> reused_ = std::make_shared<ReusedRules>();
};

}  // namespace

Result<std::vector<AddressInfo>> readNetnsAddresses(steady_clock::time_point deadline) {
  auto dumper = RtnetlinkDumper::open();
  if (!dumper.ok()) return Error{"rtnetlink: " + dumper.error().message, dumper.error().sys_errno};
  auto bytes = dumper->dump(DumpKind::kAddresses, deadline);
  if (!bytes.ok()) return Error{"address dump: " + bytes.error().message, bytes.error().sys_errno};
  return parseAddrDump(*bytes);
}

PodInspection inspectCurrentNetns(CommandRunner& commands, SockDiag& sock_diag, const AddressSource& addresses,
                                  steady_clock::time_point deadline, const RulesSource& rules_source) {
  PodInspection in;
  auto listeners = sock_diag.tcpListeners();
  if (listeners.ok()) {
    in.listeners = ztunnelListenerPorts(*listeners);
  } else {
    in.listeners_error = listeners.error().message;
  }
  auto addrs = addresses(deadline);
  if (addrs.ok()) {
    in.addresses = podAddresses(*addrs);
  } else {
    in.addresses_error = addrs.error().message;
  }
  RulesReading rules = rules_source ? rules_source(deadline) : readIstioRules(commands, deadline);
  in.rules = std::move(rules.rules);
  in.rules_error = std::move(rules.error);
  in.iptables_tool = std::move(rules.tool);
  in.tool_notes = std::move(rules.notes);
  return in;
}

std::unique_ptr<PodNetnsInspector> makeKernelPodNetnsInspector(CommandRunner& commands, SockDiag& sock_diag,
                                                               AddressSource addresses, RulesetGeneration* generation) {
  return std::make_unique<KernelPodNetnsInspector>(commands, sock_diag, std::move(addresses), generation);
}

std::string reusedRulesKey(const PodNetns& pod) {
  return pod.path + " " + std::to_string(pod.id.dev) + ":" + std::to_string(pod.id.ino);
}

RulesReading ReusedRules::read(const std::string& key, RulesetGeneration& generation, CommandRunner& commands,
                               steady_clock::time_point now, steady_clock::time_point deadline) {
  // Before the read: a change during it moves the fingerprint again, and the next round
  // reads once more.
  auto fp = generation.fingerprint();
  if (fp) {
    std::lock_guard lock(mu_);
    auto it = entries_.find(key);
    if (it != entries_.end() && it->second.fingerprint == *fp && now - it->second.at < kPodRulesRereadEvery) {
      return it->second.reading;
    }
  }
  RulesReading reading = readIstioRules(commands, deadline);
  const bool complete = reading.error.empty() && reading.rules &&
                        std::all_of(reading.notes.begin(), reading.notes.end(), [](const std::string& n) {
                          return n.ends_with(": no ISTIO_ chains") || n.ends_with(": not found");
                        });
  std::lock_guard lock(mu_);
  if (fp && complete) {
    entries_[key] = Entry{*fp, reading, now};
  } else {
    entries_.erase(key);
  }
  return reading;
}

void ReusedRules::retain(const std::vector<std::string>& keys) {
  std::set<std::string> keep(keys.begin(), keys.end());
  std::lock_guard lock(mu_);
  std::erase_if(entries_, [&keep](const auto& kv) { return !keep.count(kv.first); });
}

size_t ReusedRules::size() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

RulesReading readIstioRules(CommandRunner& commands, steady_clock::time_point deadline) {
  RulesReading out;
  struct Ran {
    std::string tool;
    std::string text;
  };
  std::vector<Ran> ran;       // variants that ran, in order
  std::optional<Ran> chosen;  // the first with ISTIO_ chains
  bool all_missing = true;

  auto attempt = [&](const std::string& tool) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - steady_clock::now());
    if (left <= milliseconds(0)) {
      out.notes.push_back(tool + ": not run (out of time)");
      all_missing = false;
      return;
    }
    CommandOutput res = commands.run({tool}, left);
    if (!res.not_found) all_missing = false;
    if (!res.succeeded()) {
      out.notes.push_back(failure(tool, res));
      return;
    }
    if (holdsIstioChains(res.out)) {
      chosen = Ran{tool, std::move(res.out)};
    } else {
      out.notes.push_back(tool + ": no ISTIO_ chains");
      ran.push_back(Ran{tool, std::move(res.out)});
    }
  };

  for (const auto& tool : kIptablesSaveTools) {
    attempt(tool);
    if (chosen) break;
  }
  if (!chosen && ran.empty() && all_missing) attempt(kIptablesSaveFallback);
  if (!chosen && !ran.empty()) chosen = std::move(ran.front());
  if (!chosen) {
    out.error = "no iptables-save variant could run";
    for (size_t i = 0; i < out.notes.size(); ++i) out.error += (i ? "; " : ": ") + out.notes[i];
    return out;
  }
  // The chosen variant's own note ("no ISTIO_ chains") is redundant with the verdict.
  std::erase(out.notes, chosen->tool + ": no ISTIO_ chains");
  out.tool = chosen->tool;
  auto parsed = parseIptablesSave(chosen->text);
  if (!parsed.ok()) {
    out.error = chosen->tool + " output could not be parsed: " + parsed.error().message;
    return out;
  }
  out.rules = analyzeIstioRules(*parsed);
  return out;
}

}  // namespace meshprobe::agent
