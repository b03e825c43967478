#pragma once
// A notification-fed rtnetlink cache: subscribe (RTNLGRP_LINK, RTNLGRP_NEIGH — which
// carries FDB entries too —, RTNLGRP_IPV4/IPV6_ROUTE, RTNLGRP_IPV4/IPV6_IFADDR), dump once,
// then apply every RTM_NEW*/RTM_DEL* the kernel announces. Reads are O(1): the current
// state is an immutable snapshot behind an atomically swapped shared_ptr.
//
// The cache dumps again when it cannot trust what it holds: the kernel dropped
// notifications (ENOBUFS), a notification did not parse, a link was deleted or went up or
// down (the kernel flushes routes through it without announcing each one), an FDB entry
// for a MAC moved to another remote (the VXLAN driver replaces it in place and announces
// only the new one), and every `resync_interval` as a safety net.
//
// NetlinkCacheState is the state machine without I/O (unit-tested on captured
// notification bytes); NetlinkCache adds the sockets and its own thread.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>

#include "agent/kernel/netlink_reader.h"
#include "agent/kernel/netlink_types.h"
#include "common/result.h"

struct nlmsghdr;

namespace meshprobe::agent {

class NetlinkCacheState {
 public:
  // A dump: the new truth (clears needsDump()).
  void reset(NetlinkSnapshot dumped);
  // One datagram of notifications. Error: it did not parse (the caller should lose()).
  Status apply(std::span<const uint8_t> datagram);
  // Notifications were lost or cannot be trusted: the state needs a dump.
  void lose() { needs_dump_ = true; }

  bool needsDump() const { return needs_dump_; }
  bool changedSincePublish() const { return changed_; }
  // A shared copy of the state; clears changedSincePublish().
  SnapshotPtr publish();
  const NetlinkSnapshot& state() const { return state_; }
  uint64_t applied() const { return applied_; }  // notification messages applied

 private:
  Status applyMessage(const nlmsghdr* nlh);  // one rtnetlink notification
  void applyLink(uint16_t type, const LinkInfo& link);
  NetlinkSnapshot state_;
  bool needs_dump_ = true;
  bool changed_ = false;
  uint64_t applied_ = 0;
};

struct NetlinkCacheStats {
  uint64_t dumps = 0;          // full snapshots dumped (first one included)
  uint64_t dump_failures = 0;  // dumps that failed (retried after a second)
  uint64_t notifications = 0;  // notification messages applied
  uint64_t losses = 0;         // ENOBUFS or unparsable notifications
  uint64_t published = 0;      // snapshots published to readers
};

class NetlinkCache {
 public:
  struct Options {
    std::chrono::milliseconds dump_timeout{2000};
    std::chrono::milliseconds resync_interval{std::chrono::minutes(5)};
  };
  // Subscribes and dumps in the calling thread's network namespace, then starts the
  // cache's thread. Error when the subscription or the first dump fails.
  static Result<std::shared_ptr<NetlinkCache>> start(Options options);
  static Result<std::shared_ptr<NetlinkCache>> start() { return start(Options{}); }
  ~NetlinkCache();  // stops and joins the thread
  NetlinkCache(const NetlinkCache&) = delete;
  NetlinkCache& operator=(const NetlinkCache&) = delete;

  // The current state; Error while the cache is out of sync and its re-dump failed.
  Result<SnapshotPtr> current() const;
  NetlinkCacheStats stats() const;

 private:
  struct Impl;
  explicit NetlinkCache(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  std::jthread thread_;
};

// A reader over the cache for the daemon: beginRound() pins the cache's current snapshot
// (no dump), so a round's checks and the Hello see one state.
std::unique_ptr<NetlinkReader> makeCachedNetlinkReader(std::shared_ptr<NetlinkCache> cache);

}  // namespace meshprobe::agent
