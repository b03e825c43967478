#pragma once
// Seam for reading rtnetlink state: links, addresses, neighbours, FDB (AF_BRIDGE) and
// routes as one NetlinkSnapshot. Tests substitute a fake that returns a prepared snapshot.
//
// One snapshot per check round: the kernel readers are SharedSnapshotReaders. After
// beginRound(), the first read of the round obtains one snapshot and every read until the
// next beginRound() — each check's and the Hello's — returns that same snapshot (or the
// same error). Before the first beginRound(), reads that overlap share one read.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>

#include "agent/kernel/netlink_types.h"
#include "common/result.h"

namespace meshprobe::agent {

using SnapshotPtr = std::shared_ptr<const NetlinkSnapshot>;

class NetlinkReader {
 public:
  virtual ~NetlinkReader() = default;
  // A copy of the state, for callers that keep or modify it.
  virtual Result<NetlinkSnapshot> snapshot() = 0;
  // The state, shared and immutable: what checks read (no copy). Default: wraps snapshot().
  virtual Result<SnapshotPtr> view();
  // Marks the start of a check round (see above). Default: nothing.
  virtual void beginRound() {}
};

// The round-sharing reader over any source of snapshots (a fresh dump, or the
// notification-fed cache of netlink_cache.h). Thread-safe.
class SharedSnapshotReader final : public NetlinkReader {
 public:
  using Source = std::function<Result<SnapshotPtr>()>;
  explicit SharedSnapshotReader(Source source) : source_(std::move(source)) {}

  Result<NetlinkSnapshot> snapshot() override;
  Result<SnapshotPtr> view() override;
  void beginRound() override;

  uint64_t sourceReads() const;  // how many reads reached the source
  uint64_t rounds() const;

 private:
  Source source_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  uint64_t round_ = 0;  // 0: no round begun yet
  uint64_t pinned_round_ = 0;
  std::optional<Result<SnapshotPtr>> pinned_;
  bool reading_ = false;
  uint64_t flights_ = 0;  // completed source reads
  std::optional<Result<SnapshotPtr>> last_;
};

// Dumps the calling thread's network namespace afresh for each round (the --once
// doctor); each dump has its own deadline of `timeout`.
std::unique_ptr<NetlinkReader> makeKernelNetlinkReader(std::chrono::milliseconds timeout);

}  // namespace meshprobe::agent
