#include "agent/ambient/privileges.h"

#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace meshprobe::agent {
namespace {

// The value after "Key:" on its own line of /proc/<PID>/status, or nullopt.
std::optional<std::string> field(std::string_view status, std::string_view key) {
  size_t pos = 0;
  while (pos < status.size()) {
    size_t end = status.find('\n', pos);
    if (end == std::string_view::npos) end = status.size();
    std::string_view line = status.substr(pos, end - pos);
    if (line.size() > key.size() && line.substr(0, key.size()) == key && line[key.size()] == ':') {
      return std::string(line.substr(key.size() + 1));
    }
    pos = end + 1;
  }
  return std::nullopt;
}

std::string missingCaps(const Privileges& p) {
  std::string out;
  for (int cap : {kCapSysPtrace, kCapSysAdmin}) {
    if (p.has(cap)) continue;
    out += (out.empty() ? "" : " and ") + capabilityName(cap);
  }
  return out;
}

std::string capsToAdd(const Privileges& p) {
  std::string out;
  for (int cap : {kCapSysPtrace, kCapSysAdmin}) {
    if (p.has(cap)) continue;
    out += (out.empty() ? "" : ", ") + capabilityName(cap).substr(4);  // "SYS_PTRACE"
  }
  return out;
}

}  // namespace

Privileges parseProcStatus(std::string_view status) {
  Privileges p;
  auto uid = field(status, "Uid");
  auto cap = field(status, "CapEff");
  if (!uid || !cap) return p;
  std::istringstream uids(*uid);
  unsigned long real = 0, effective = 0;
  if (!(uids >> real >> effective)) return p;
  std::istringstream caps(*cap);
  uint64_t eff = 0;
  if (!(caps >> std::hex >> eff)) return p;
  p.euid = static_cast<uint32_t>(effective);
  p.cap_eff = eff;
  p.known = true;
  return p;
}

Privileges currentPrivileges() {
  std::ifstream in("/proc/self/status");
  if (in) {
    std::stringstream text;
    text << in.rdbuf();
    Privileges p = parseProcStatus(text.str());
    if (p.known) return p;
  }
  // No /proc of our own: ask the kernel directly.
  __user_cap_header_struct header{};
  header.version = _LINUX_CAPABILITY_VERSION_3;
  header.pid = 0;
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  Privileges p;
  if (::syscall(SYS_capget, &header, data) != 0) return p;
  p.euid = static_cast<uint32_t>(::geteuid());
  p.cap_eff = static_cast<uint64_t>(data[0].effective) | (static_cast<uint64_t>(data[1].effective) << 32);
  p.known = true;
  return p;
}

std::string capabilityName(int cap) {
  switch (cap) {
    case kCapSysPtrace:
      return "CAP_SYS_PTRACE";
    case kCapSysAdmin:
      return "CAP_SYS_ADMIN";
    default:
      return "capability " + std::to_string(cap);
  }
}

std::string procNetnsAdvice(const Privileges& p) {
  if (!p.known) {
    return "run the agent as root with CAP_SYS_PTRACE and CAP_SYS_ADMIN (privileged: true) and hostPID: true";
  }
  if (p.euid != 0) {
    return "the agent runs as uid " + std::to_string(p.euid) +
           ", not root: run it as root (securityContext runAsUser: 0, privileged: true)";
  }
  if (const std::string missing = missingCaps(p); !missing.empty()) {
    return "the agent is root but lacks " + missing +
           ": add it to the container's securityContext.capabilities.add (" + capsToAdd(p) +
           ") or run it privileged";
  }
  return "the agent is root with CAP_SYS_PTRACE and CAP_SYS_ADMIN and is still denied: it is not in the host's PID "
         "namespace, or runs in a user namespace or under a sandboxing runtime (gVisor, Kata) or an LSM policy "
         "that denies it: run it with hostPID: true (or mount the host's /proc under --host-root), with the "
         "default runtime class";
}

std::string hostNetnsProblem(const std::string& path, int err, const Privileges& p, const std::string& proc_dir) {
  if (err == ENOENT) {
    return path + " does not exist: " + proc_dir +
           " is not the host's /proc, so the host's network namespace cannot be told from a pod's: mount the "
           "host's / (or its /proc) under --host-root, or run the agent with hostPID: true";
  }
  const std::string what = "cannot read " + path + " (" + std::strerror(err) + ")";
  if (err != EACCES && err != EPERM) return what;
  return what + ", so the host's network namespace cannot be told from a pod's: " + procNetnsAdvice(p);
}

}  // namespace meshprobe::agent
