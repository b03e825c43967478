#pragma once
// Finding lifecycle: onset and clear times, hysteresis and a short history.
//
//   candidate seen ──(persists onset_after)──▶ ACTIVE (onset_time = first seen)
//   ACTIVE, candidate absent ──(absent for clear_after)──▶ CLEARED (clear_time = last seen)
//   a candidate that comes back within clear_after never left: a flapping pair keeps one
//   finding instead of flapping it. An active finding that another candidate supersedes
//   (explains) ends at once and leaves no CLEARED record: it was a vaguer guess (which
//   codes supersede which is the finding catalogue's; the rules name the ids). History
//   keeps the last `history` transitions per id, each with its state as an enum and, for
//   older readers, as text.

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "aggregator/diagnosis/rules.h"
#include "meshprobe/v1/types.pb.h"

namespace meshprobe::aggregator {

struct LifecycleOptions {
  std::chrono::nanoseconds clear_after{std::chrono::seconds(5)};
  std::chrono::nanoseconds keep_cleared{std::chrono::minutes(10)};
  size_t history = 10;
  // A superseded guess cannot start again until this long after whatever explained it
  // was last seen: while a fault heals, the matrix lags the node's own evidence by a few
  // probes, and that lag is not a new fault.
  std::chrono::nanoseconds quarantine{std::chrono::seconds(5)};
};

class FindingTracker {
 public:
  explicit FindingTracker(LifecycleOptions options = {});

  void update(const std::vector<Candidate>& candidates, std::chrono::steady_clock::time_point now,
              std::chrono::system_clock::time_point wall_now);

  std::vector<meshprobe::v1::Finding> active() const;           // unsorted
  std::vector<meshprobe::v1::Finding> recentlyCleared() const;  // newest first

 private:
  struct Entry {
    meshprobe::v1::Finding finding;  // latest content
    std::chrono::steady_clock::time_point first_seen;
    std::chrono::steady_clock::time_point last_seen;
    std::chrono::system_clock::time_point first_seen_wall;
    std::chrono::system_clock::time_point last_seen_wall;
    bool active = false;
  };
  struct Cleared {
    meshprobe::v1::Finding finding;
    std::chrono::steady_clock::time_point cleared_at;
  };

  LifecycleOptions options_;
  std::map<std::string, Entry> entries_;  // by id: pending and active
  std::map<std::string, std::vector<meshprobe::v1::FindingTransition>> history_;
  std::vector<Cleared> cleared_;
  std::map<std::string, std::chrono::steady_clock::time_point> quarantined_until_;
};

}  // namespace meshprobe::aggregator
