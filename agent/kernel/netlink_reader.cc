#include "agent/kernel/netlink_reader.h"

#include "agent/kernel/netlink_dump.h"

namespace meshprobe::agent {

Result<SnapshotPtr> NetlinkReader::view() {
  auto snap = snapshot();
  if (!snap) return snap.error();
  return SnapshotPtr(std::make_shared<const NetlinkSnapshot>(std::move(snap).value()));
}

Result<NetlinkSnapshot> SharedSnapshotReader::snapshot() {
  auto v = view();
  if (!v) return v.error();
  return NetlinkSnapshot(**v);
}

Result<SnapshotPtr> SharedSnapshotReader::view() {
  std::unique_lock lock(mu_);
  for (;;) {
    if (round_ > 0 && pinned_round_ == round_) return *pinned_;
    if (!reading_) break;
    const uint64_t flight = flights_;
    cv_.wait(lock, [&] { return flights_ != flight; });
    if (round_ == 0) return *last_;  // no rounds: share the read that was in flight
  }
  reading_ = true;
  const uint64_t round = round_;
  lock.unlock();
  auto result = source_();  // the source has its own deadline
  lock.lock();
  reading_ = false;
  ++flights_;
  last_ = result;
  if (round > 0) {
    pinned_round_ = round;
    pinned_ = result;
  }
  cv_.notify_all();
  return result;
}

void SharedSnapshotReader::beginRound() {
  std::lock_guard lock(mu_);
  ++round_;
}

uint64_t SharedSnapshotReader::sourceReads() const {
  std::lock_guard lock(mu_);
  return flights_;
}

uint64_t SharedSnapshotReader::rounds() const {
  std::lock_guard lock(mu_);
  return round_;
}

std::unique_ptr<NetlinkReader> makeKernelNetlinkReader(std::chrono::milliseconds timeout) {
  return std::make_unique<SharedSnapshotReader>([timeout]() -> Result<SnapshotPtr> {
    auto snap = readSnapshot(timeout);
    if (!snap) return snap.error();
    return SnapshotPtr(std::make_shared<const NetlinkSnapshot>(std::move(snap).value()));
  });
}

}  // namespace meshprobe::agent
