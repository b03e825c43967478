#pragma once
// Pod network namespaces on this node (docs/architecture.md, "Domain facts").
//
// Two sources: the files in --netns-dir (bind-mounted netns files, what CNI runtimes
// create: /var/run/netns/cni-...) and /proc/*/ns/net under --host-root. One namespace is
// listed once, identified by the (st_dev, st_ino) that stat() reports for it; the agent's
// own namespace and the host's (/proc/1/ns/net) are not pods and are left out. When the
// host's namespace cannot be identified (/proc/1/ns/net unreadable or absent), /proc is not
// scanned at all — a host process's namespace would pass for a pod's — and the enumeration
// says why and what to do (proc_skipped); the netns dir is still listed.

#include <sys/stat.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "agent/ambient/privileges.h"

namespace meshprobe::agent {

struct NetnsId {
  uint64_t dev = 0;
  uint64_t ino = 0;
  bool operator==(const NetnsId&) const = default;
};

struct PodNetns {
  std::string name;  // file name in the netns dir, or "pid:<PID>" when only seen in /proc
  std::string path;  // what to open for setns: <netns_dir>/<name> or <proc>/<PID>/ns/net
  NetnsId id;
};

struct NetnsSources {
  std::string netns_dir;   // --netns-dir
  std::string proc_dir;    // hostPath("/proc")
  std::string self_netns;  // the agent's own namespace: /proc/self/ns/net
  std::string host_netns;  // hostPath("/proc/1/ns/net")
};

struct NetnsEnumeration {
  std::vector<PodNetns> pods;       // netns-dir entries first (by name), then /proc ones (by PID)
  std::vector<std::string> notes;   // expected absences, e.g. "netns dir /var/run/netns does not exist"
  std::vector<std::string> errors;  // places the check should see but cannot (unreadable dir, EACCES)
  size_t proc_entries = 0;          // /proc/<PID> directories looked at
  size_t proc_unreadable = 0;       // of those, how many ns/net links could not be read (EACCES/EPERM)
  std::string proc_skipped;         // non-empty: /proc was not scanned because the host's netns is
                                    // unknown; why, and what to do (not a failure of the node)
};

// What the enumeration asks of the system; tests replace both.
struct NetnsProbe {
  // Who the agent runs as: asked only to explain a denied /proc/<PID>/ns/net.
  PrivilegesSource privileges = currentPrivileges;
  // stat(2) of a path: 0, or the errno. Empty: ::stat.
  std::function<int(const std::string& path, struct stat& st)> stat;
};

// Never throws; every failure to look somewhere ends up in notes, errors or proc_skipped.
NetnsEnumeration enumeratePodNetns(const NetnsSources& sources, const NetnsProbe& probe = {});

}  // namespace meshprobe::agent
