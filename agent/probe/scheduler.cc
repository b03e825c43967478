#include "agent/probe/scheduler.h"

#include <algorithm>

#include "agent/stable_hash.h"

namespace meshprobe::agent {

std::string targetLabel(const ProbeTarget& t) {
  return t.peer + "/" + std::string(layerName(t.layer)) + "/" + t.address;
}

ProbeScheduler::ProbeScheduler(const Clock& clock, SchedulerOptions options)
    : clock_(clock), options_(std::move(options)), epoch_(clock.monotonicNow()) {
  if (options_.interval <= Duration::zero()) options_.interval = std::chrono::seconds(1);
  options_.max_jitter = std::clamp(options_.max_jitter, Duration::zero(), options_.interval / 4);
  if (options_.retries < 0) options_.retries = 0;
  if (options_.retry_spacing <= Duration::zero()) options_.retry_spacing = std::chrono::milliseconds(200);
  rng_.seed(options_.rng_seed != 0 ? options_.rng_seed : std::random_device{}());
}

std::vector<TargetId> ProbeScheduler::setTargets(const std::vector<ProbeTarget>& targets) {
  std::unordered_map<TargetId, Entry> next;
  std::vector<TargetId> ids;
  ids.reserve(targets.size());
  TimePoint now = clock_.monotonicNow();
  std::unordered_map<std::string, TargetId> existing;
  for (const auto& [id, e] : entries_) existing.emplace(targetLabel(e.target), id);
  std::unordered_map<std::string, TargetId> taken;
  for (const auto& t : targets) {
    std::string label = targetLabel(t);
    TargetId found = 0;
    if (auto it = taken.find(label); it != taken.end()) {
      found = it->second;
    } else if (auto old = existing.find(label); old != existing.end()) {
      found = old->second;
      next.emplace(found, std::move(entries_.at(found)));
    }
    if (found == 0) {
      found = next_id_++;
      Entry e;
      e.target = t;
      if (rotation_) e.ring_position = rotation_->positionOf(t.peer);
      uint64_t h = splitmix64(fnv1a(
          t.address, fnv1a(layerName(t.layer), fnv1a(t.peer, fnv1a(options_.seed, kProbeHashBasis)))));
      e.offset = Duration(static_cast<int64_t>(h % static_cast<uint64_t>(options_.interval.count())));
      auto& placed = next.emplace(found, std::move(e)).first->second;
      scheduleRegular(found, placed, nextSlot(placed, now - Duration(1)));
    }
    taken.emplace(std::move(label), found);
    ids.push_back(found);
  }
  entries_ = std::move(next);
  return ids;
}

ProbeScheduler::TimePoint ProbeScheduler::nextSlot(const Entry& e, TimePoint after) {
  // Slots are epoch + offset + k * interval; the first one strictly after `after`.
  TimePoint first = epoch_ + e.offset;
  if (after < first) return first;
  auto k = (after - first) / options_.interval + 1;
  return first + k * options_.interval;
}

ProbeScheduler::TimePoint ProbeScheduler::assignedSlot(const Entry& e, TimePoint slot) {
  if (!rotation_ || !rotation_->sparse()) return slot;
  // The slot's wall time, hence its round; the target's slots are one interval apart, so
  // its i-th next slot is in round + i.
  const auto wall = clock_.wallNow() + std::chrono::duration_cast<std::chrono::system_clock::duration>(
                                           slot - clock_.monotonicNow());
  const uint64_t round = roundOf(wall, options_.interval);
  const uint64_t cycle = rotation_->coverageRounds();
  for (uint64_t i = 0; i <= cycle; ++i) {
    if (rotation_->assignedAt(e.ring_position, round + i)) {
      skipped_ += i;
      return slot + static_cast<int64_t>(i) * options_.interval;
    }
  }
  return slot;  // never assigned (its own node): keep the interval rather than stop
}

void ProbeScheduler::setRotation(std::shared_ptr<const ProbeRotation> rotation) {
  auto same = [](const ProbeRotation* a, const ProbeRotation* b) {
    if (a == nullptr || b == nullptr) return a == b;
    return a->self() == b->self() && a->perRound() == b->perRound() && a->plan().ring() == b->plan().ring();
  };
  auto sparse = [](const ProbeRotation* r) { return r != nullptr && r->sparse(); };
  // Full mesh before and after: the rotation is not consulted, nothing to re-plan.
  const bool replan = !same(rotation_.get(), rotation.get()) && (sparse(rotation_.get()) || sparse(rotation.get()));
  rotation_ = std::move(rotation);
  for (auto& [id, e] : entries_) {
    e.ring_position = rotation_ ? rotation_->positionOf(e.target.peer) : std::nullopt;
  }
  if (!replan) return;
  // Re-plan every target's next regular probe from the slot it was waiting for, or the
  // next grid slot after now if that is sooner (the old plan may have had it wait rounds):
  // that one if the new plan assigns its round, else the first the new plan assigns.
  const TimePoint now = clock_.monotonicNow();
  for (auto& [id, e] : entries_) {
    ++e.regular_gen;
    scheduleRegular(id, e, std::min(e.pending_slot, nextSlot(e, now)));
  }
}

void ProbeScheduler::scheduleRegular(TargetId id, Entry& e, TimePoint slot) {
  slot = assignedSlot(e, slot);
  e.pending_slot = slot;
  Duration jitter{};
  if (options_.max_jitter > Duration::zero()) {
    std::uniform_int_distribution<int64_t> dist(0, options_.max_jitter.count() - 1);
    jitter = Duration(dist(rng_));
  }
  queue_.push(Event{slot + jitter, slot, id, false, e.regular_gen});
}

bool ProbeScheduler::live(const Event& ev) const {
  auto it = entries_.find(ev.id);
  if (it == entries_.end()) return false;
  return ev.retry ? ev.gen == it->second.retry_gen : ev.gen == it->second.regular_gen;
}

std::vector<DueProbe> ProbeScheduler::takeDue() {
  std::vector<DueProbe> due;
  TimePoint now = clock_.monotonicNow();
  while (!queue_.empty() && queue_.top().at <= now) {
    Event ev = queue_.top();
    queue_.pop();
    if (!live(ev)) continue;
    auto& e = entries_.at(ev.id);
    due.push_back(DueProbe{ev.id, ev.retry, ev.at});
    if (!ev.retry) {
      // Next regular slot from the grid (no drift); after a stall, skip missed slots.
      TimePoint slot = ev.slot + options_.interval;
      if (slot + options_.max_jitter <= now) slot = nextSlot(e, now);
      scheduleRegular(ev.id, e, slot);
    }
  }
  return due;
}

std::optional<std::chrono::steady_clock::time_point> ProbeScheduler::nextDue() {
  while (!queue_.empty() && !live(queue_.top())) queue_.pop();
  if (queue_.empty()) return std::nullopt;
  return queue_.top().at;
}

void ProbeScheduler::onReply(TargetId id) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  ++it->second.retry_gen;  // cancels retries not yet sent
}

void ProbeScheduler::onMiss(TargetId id, bool was_retry) {
  auto it = entries_.find(id);
  if (it == entries_.end() || was_retry) return;
  Entry& e = it->second;
  ++e.retry_gen;  // one burst at a time: a newer miss replaces an older burst
  TimePoint now = clock_.monotonicNow();
  for (int i = 1; i <= options_.retries; ++i) {
    TimePoint at = now + i * options_.retry_spacing;
    queue_.push(Event{at, at, id, true, e.retry_gen});
  }
}

std::optional<Duration> ProbeScheduler::offsetOf(TargetId id) const {
  auto it = entries_.find(id);
  if (it == entries_.end()) return std::nullopt;
  return it->second.offset;
}

const ProbeTarget* ProbeScheduler::target(TargetId id) const {
  auto it = entries_.find(id);
  return it == entries_.end() ? nullptr : &it->second.target;
}

}  // namespace meshprobe::agent
