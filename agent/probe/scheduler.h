#pragma once
// Probe scheduling, pure and driven by a Clock: which target is due when.
// No I/O here; the Prober asks takeDue(), sends, and reports onReply()/onMiss().
//
// Each target gets a fixed offset inside the interval (a hash of seed + peer + layer +
// address), so targets are spread over the interval instead of firing together
// (Goldpinger #69); each regular probe adds a random jitter in [0, max_jitter). A miss of
// a regular probe schedules `retries` extra probes `retry_spacing` apart so a hard fault
// is confirmed within about three probes; a reply cancels retries not yet sent.
//
// Sparse probing (setRotation with a sparse ProbeRotation): a target's regular probe fires
// only in the rounds (roundOf(wall time of its slot)) where the rotation assigns its peer;
// its other slots are skipped (counted by skipped()) and it sleeps until the next assigned
// round. Retries after a miss are not rotated. Targets stay (their stats with them) whether
// assigned or not. Without a rotation, or with one that is not sparse, nothing changes.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <queue>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "agent/probe/rotation.h"
#include "common/clock.h"
#include "common/duration.h"
#include "common/finding.h"

namespace meshprobe::agent {

struct ProbeTarget {
  std::string peer;  // the peer's node name
  Layer layer = Layer::kUnderlay;
  std::string address;  // destination IP literal
  // OVERLAY: IP packet size of the DF-set path-MTU probes (the overlay MTU: min of both
  // ends' VXLAN device MTUs); 0 = no path-MTU probing. Not part of the identity: a
  // target whose size changes keeps its id and stats (targetLabel() leaves it out).
  uint32_t path_mtu_size = 0;

  bool operator==(const ProbeTarget&) const = default;
};

// "node-2/OVERLAY/10.244.2.0"
std::string targetLabel(const ProbeTarget& t);

using TargetId = uint64_t;

struct DueProbe {
  TargetId id = 0;
  bool retry = false;
  std::chrono::steady_clock::time_point scheduled;  // when it was due
};

struct SchedulerOptions {
  Duration interval = std::chrono::seconds(1);
  Duration max_jitter = std::chrono::milliseconds(50);  // clamped to interval / 4
  int retries = 2;
  Duration retry_spacing = std::chrono::milliseconds(200);
  std::string seed;       // e.g. this node's name, so agents spread differently
  uint64_t rng_seed = 0;  // jitter RNG; 0 = random
};

class ProbeScheduler {
 public:
  ProbeScheduler(const Clock& clock, SchedulerOptions options);

  // Replaces the target set. Targets already present keep their id and schedule; new ones
  // get their first probe at their offset in the current or next interval. Returns the
  // ids in the order of `targets` (duplicates in `targets` share one id).
  std::vector<TargetId> setTargets(const std::vector<ProbeTarget>& targets);

  // Probes due at or before now (the clock's monotonic time), each at most once.
  std::vector<DueProbe> takeDue();

  // When the next probe is due; nullopt with no targets.
  std::optional<std::chrono::steady_clock::time_point> nextDue();

  // Outcomes of a probe sent for `id` (unknown ids are ignored).
  void onReply(TargetId id);
  void onMiss(TargetId id, bool was_retry);

  // Which peers to probe in which round; nullptr = every target every interval. A sparse
  // plan that differs from the current one (ring or per-round count), or a switch between
  // sparse and full, re-plans every target's next regular probe (from the slot it waits
  // for: nothing is probed twice in a round); otherwise nothing changes.
  void setRotation(std::shared_ptr<const ProbeRotation> rotation);
  const std::shared_ptr<const ProbeRotation>& rotation() const { return rotation_; }
  // Regular slots skipped because the rotation did not assign the peer in that round.
  uint64_t skipped() const { return skipped_; }

  // The fixed offset of `id` inside the interval (for tests and debugging).
  std::optional<Duration> offsetOf(TargetId id) const;
  const ProbeTarget* target(TargetId id) const;
  size_t size() const { return entries_.size(); }
  const SchedulerOptions& options() const { return options_; }

 private:
  using TimePoint = std::chrono::steady_clock::time_point;
  struct Entry {
    ProbeTarget target;
    Duration offset{};
    uint64_t regular_gen = 0;
    uint64_t retry_gen = 0;
    TimePoint pending_slot{};  // the grid slot of the next regular probe
    std::optional<size_t> ring_position;  // the peer's in rotation_ (nullopt: none, or not a member)
  };
  struct Event {
    TimePoint at;
    TimePoint slot;  // the grid slot before jitter (regular probes)
    TargetId id;
    bool retry;
    uint64_t gen;
    bool operator>(const Event& o) const { return at > o.at || (at == o.at && id > o.id); }
  };

  TimePoint nextSlot(const Entry& e, TimePoint after);
  void scheduleRegular(TargetId id, Entry& e, TimePoint after);
  bool live(const Event& ev) const;
  // The first grid slot at or after `slot` whose round assigns the target's peer (`slot`
  // itself without a sparse rotation); counts the slots passed over in skipped_.
  TimePoint assignedSlot(const Entry& e, TimePoint slot);

  const Clock& clock_;
  SchedulerOptions options_;
  TimePoint epoch_;
  std::mt19937_64 rng_;
  TargetId next_id_ = 1;
  std::unordered_map<TargetId, Entry> entries_;
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> queue_;
  std::shared_ptr<const ProbeRotation> rotation_;
  uint64_t skipped_ = 0;
};

}  // namespace meshprobe::agent
