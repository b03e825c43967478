#pragma once
// Who the agent runs as, for telling apart why a /proc/<PID>/ns/net link cannot be read:
// not root, root without the capability the kernel asks for, or root with every
// capability and still denied (another PID namespace without the host's /proc, a user
// namespace, a sandboxing runtime). The lookup is a seam (PrivilegesSource) so the advice
// is unit-tested for each case.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace meshprobe::agent {

// Capability numbers (linux/capability.h) the ambient check depends on.
inline constexpr int kCapSysPtrace = 19;  // reading another process's /proc/<PID>/ns/* (ptrace access check)
inline constexpr int kCapSysAdmin = 21;   // setns() into a pod's network namespace

struct Privileges {
  bool known = false;  // false: the lookup failed; nothing below is meaningful
  uint32_t euid = 0;
  uint64_t cap_eff = 0;  // effective capability set (CapEff)
  bool has(int cap) const { return cap >= 0 && cap < 64 && ((cap_eff >> cap) & 1u) != 0; }
};

using PrivilegesSource = std::function<Privileges()>;

// Parses /proc/<PID>/status: "Uid:" (real, effective, saved, fs) and "CapEff:" (hex).
// known = false unless both are present and well formed.
Privileges parseProcStatus(std::string_view status);

// This process: /proc/self/status, else geteuid() + capget(2).
Privileges currentPrivileges();

// "CAP_SYS_PTRACE" for kCapSysPtrace, "CAP_SYS_ADMIN", else "capability N".
std::string capabilityName(int cap);

// Why `path` (the host's /proc/1/ns/net) could not be stat()ed with `err` and what to do
// about it, for the agent's `privileges`. `proc_dir` is the /proc it was looked up in.
std::string hostNetnsProblem(const std::string& path, int err, const Privileges& privileges,
                             const std::string& proc_dir);

// What to do when other processes' /proc/<PID>/ns/net cannot be read (EACCES/EPERM).
std::string procNetnsAdvice(const Privileges& privileges);

}  // namespace meshprobe::agent
