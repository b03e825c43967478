#include "agent/ambient/pod_netns.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string_view>

namespace meshprobe::agent {
namespace {

std::string errnoText(int err) { return std::strerror(err); }

// The probe's stat, or stat(2).
int statPath(const NetnsProbe& probe, const std::string& path, struct stat& st) {
  if (probe.stat) return probe.stat(path, st);
  return ::stat(path.c_str(), &st) == 0 ? 0 : errno;
}

// stat() follows the /proc/PID/ns/net magic link (and a bind mount shows the nsfs inode),
// so (st_dev, st_ino) identifies the namespace itself.
std::optional<NetnsId> statNetns(const NetnsProbe& probe, const std::string& path, int& err,
                                 bool* is_dir = nullptr) {
  struct stat st {};
  if (int e = statPath(probe, path, st); e != 0) {
    err = e;
    return std::nullopt;
  }
  err = 0;
  if (is_dir != nullptr) *is_dir = S_ISDIR(st.st_mode);
  return NetnsId{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
}

bool isPid(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Lists a directory's entries (without "." and ".."); errno on failure.
std::optional<std::vector<std::string>> listDir(const std::string& dir, int& err) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    err = errno;
    return std::nullopt;
  }
  std::vector<std::string> names;
  errno = 0;
  while (struct dirent* e = ::readdir(d)) {
    std::string_view n = e->d_name;
    if (n != "." && n != "..") names.emplace_back(n);
    errno = 0;
  }
  err = errno;
  ::closedir(d);
  if (err != 0) return std::nullopt;
  return names;
}

std::string joinPath(const std::string& dir, const std::string& name) {
  if (!dir.empty() && dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

class Collector {
 public:
  explicit Collector(NetnsEnumeration& out) : out_(out) {}
  void exclude(NetnsId id) { excluded_.push_back(id); }
  // Adds a pod netns unless it is excluded or already listed.
  void add(std::string name, std::string path, NetnsId id) {
    if (std::find(excluded_.begin(), excluded_.end(), id) != excluded_.end()) return;
    for (const auto& p : out_.pods) {
      if (p.id == id) return;
    }
    out_.pods.push_back(PodNetns{std::move(name), std::move(path), id});
  }

 private:
  NetnsEnumeration& out_;
  std::vector<NetnsId> excluded_;
};

void fromNetnsDir(const NetnsProbe& probe, const std::string& dir, Collector& collector, NetnsEnumeration& out) {
  if (dir.empty()) return;
  int err = 0;
  auto names = listDir(dir, err);
  if (!names) {
    if (err == ENOENT) {
      out.notes.push_back("netns dir " + dir + " does not exist");
    } else {
      out.errors.push_back("cannot read netns dir " + dir + ": " + errnoText(err));
    }
    return;
  }
  std::sort(names->begin(), names->end());
  for (const auto& name : *names) {
    std::string path = joinPath(dir, name);
    bool is_dir = false;
    auto id = statNetns(probe, path, err, &is_dir);
    if (!id) {
      if (err != ENOENT) out.errors.push_back("cannot stat " + path + ": " + errnoText(err));
      continue;  // ENOENT: removed while we looked
    }
    if (is_dir) {
      out.notes.push_back("ignored directory " + path);
      continue;
    }
    collector.add(name, path, *id);
  }
}

void fromProc(const NetnsProbe& probe, const std::string& proc, Collector& collector, NetnsEnumeration& out) {
  int err = 0;
  auto names = listDir(proc, err);
  if (!names) {
    if (err == ENOENT) {
      out.notes.push_back(proc + " does not exist (check --host-root): process namespaces not listed");
    } else {
      out.errors.push_back("cannot read " + proc + ": " + errnoText(err));
    }
    return;
  }
  std::vector<long> pids;
  for (const auto& n : *names) {
    if (isPid(n) && n.size() < 12) pids.push_back(std::stol(n));
  }
  std::sort(pids.begin(), pids.end());
  for (long pid : pids) {
    ++out.proc_entries;
    std::string path = joinPath(proc, std::to_string(pid) + "/ns/net");
    auto id = statNetns(probe, path, err);
    if (!id) {
      // ENOENT/ESRCH: the process exited, or has no ns dir (fake trees); not an error.
      if (err == EACCES || err == EPERM) ++out.proc_unreadable;
      continue;
    }
    collector.add("pid:" + std::to_string(pid), path, *id);
  }
  if (out.proc_unreadable > 0) {
    out.errors.push_back("cannot read the network namespace of " + std::to_string(out.proc_unreadable) + " of " +
                         std::to_string(out.proc_entries) + " processes under " + proc +
                         " (permission denied): " + procNetnsAdvice(probe.privileges ? probe.privileges() : Privileges{}));
  }
}

}  // namespace

NetnsEnumeration enumeratePodNetns(const NetnsSources& sources, const NetnsProbe& probe) {
  NetnsEnumeration out;
  Collector collector(out);
  int err = 0;
  if (!sources.self_netns.empty()) {
    if (auto self = statNetns(probe, sources.self_netns, err)) {
      collector.exclude(*self);
    } else {
      out.notes.push_back("cannot identify the agent's own netns " + sources.self_netns + ": " + errnoText(err));
    }
  }
  bool scan_proc = !sources.proc_dir.empty();
  if (!sources.host_netns.empty()) {
    if (auto host = statNetns(probe, sources.host_netns, err)) {
      collector.exclude(*host);
    } else {
      struct stat st {};
      const bool proc_exists = !sources.proc_dir.empty() && statPath(probe, sources.proc_dir, st) == 0;
      if (err == ENOENT && !proc_exists) {
        // No /proc there at all: fromProc says so; nothing to tell apart.
        out.notes.push_back("host netns " + sources.host_netns + " not found: it is not excluded");
      } else if (scan_proc) {
        // Which netns is the host's is unknown: a host process's netns would pass for a
        // pod's, so that part of the check is skipped (with the reason), not failed.
        const Privileges who = (err == ENOENT || !probe.privileges) ? Privileges{} : probe.privileges();
        out.proc_skipped = hostNetnsProblem(sources.host_netns, err, who, sources.proc_dir);
        scan_proc = false;
      } else {
        out.notes.push_back("cannot identify the host netns " + sources.host_netns + ": " + errnoText(err));
      }
    }
  }
  fromNetnsDir(probe, sources.netns_dir, collector, out);
  if (scan_proc) fromProc(probe, sources.proc_dir, collector, out);
  return out;
}

}  // namespace meshprobe::agent
