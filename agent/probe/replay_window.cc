#include "agent/probe/replay_window.h"

#include <algorithm>

namespace meshprobe::agent {

ReplayWindow::ReplayWindow(size_t max_entries) : max_(std::max<size_t>(max_entries, 1)) {}

ReplayWindow::Verdict ReplayWindow::check(const std::string& key, uint64_t sequence) {
  auto it = index_.find(key);
  if (it == index_.end()) {
    if (index_.size() >= max_) {
      index_.erase(lru_.back().key);
      lru_.pop_back();
      ++evictions_;
    }
    lru_.push_front(Entry{key, sequence, {}, {}, 0});
    lru_.front().seen.set(0);
    index_.emplace(key, lru_.begin());
    return Verdict::kFresh;
  }
  if (it->second != lru_.begin()) lru_.splice(lru_.begin(), lru_, it->second);
  Entry& e = *it->second;
  if (sequence > e.top) {
    const uint64_t shift = sequence - e.top;
    if (shift >= kWindowSize) {
      e.seen.reset();
    } else {
      e.seen <<= static_cast<size_t>(shift);
    }
    e.seen.set(0);
    e.top = sequence;
    e.run_length = 0;
    return Verdict::kFresh;
  }
  const uint64_t behind = e.top - sequence;
  if (behind >= kWindowSize) return below(e, sequence);
  e.run_length = 0;
  if (e.seen.test(static_cast<size_t>(behind))) return Verdict::kReplayed;
  e.seen.set(static_cast<size_t>(behind));
  return Verdict::kFresh;
}

ReplayWindow::Verdict ReplayWindow::below(Entry& e, uint64_t sequence) {
  const bool continues = e.run_length > 0 && sequence > e.run[static_cast<size_t>(e.run_length - 1)] &&
                         sequence - e.run[static_cast<size_t>(e.run_length - 1)] <= kRestartMaxStep;
  if (!continues) e.run_length = 0;
  e.run[static_cast<size_t>(e.run_length++)] = sequence;
  if (e.run_length < kRestartRun) return Verdict::kReplayed;
  // The sender restarted below its old window: the window is now the run, its members
  // marked seen (those that fit), so replaying them is caught as well.
  e.seen.reset();
  e.top = sequence;
  for (uint64_t s : e.run) {
    if (sequence - s < kWindowSize) e.seen.set(static_cast<size_t>(sequence - s));
  }
  e.run_length = 0;
  return Verdict::kFresh;
}

}  // namespace meshprobe::agent
