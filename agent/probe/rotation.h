#pragma once
// Sparse, rotating probing: which peers an agent probes in which round, so that an agent's
// probe cost stays flat however large the cluster. Pure logic, no I/O, no clock reads.
//
// A round is floor(unix wall time / interval) (roundOf): every agent computes the same
// round number without talking to the others. Each agent may send k = perRoundCapacity()
// regular probes per layer per round (the --probe-budget × the interval).
//
// With N members and N - 1 <= k every agent probes every peer every round (full mesh, the
// behaviour of small clusters). Above that (sparse) the plan is a ring: the members ordered
// by a 64-bit hash of their node name (ties by name), so a joining node lands at a random
// position. Let C = ceil((N - 1) / k) and q = round mod C. In phase q < C - 1 the member at
// ring position i probes its successors at distances q*k + 1 .. q*k + k; in the last phase
// (q = C - 1) it probes its k predecessors (distances N - k .. N - 1), which cover what is
// left of the distances (C - 1)*k + 1 .. N - 1. Therefore:
//  - every agent probes exactly k peers per round (never more than its capacity);
//  - every peer is probed by exactly k agents every round (one per distance in the window);
//  - every ordered pair (src, dst) is probed at least once in any C consecutive rounds;
//  - the plan depends on the member list alone (not its order, not who computes it);
//  - a join or leave that does not change C shifts, for each other agent and round, at
//    most one peer out of its window and one into it (a window is a run of consecutive ring
//    positions; the newcomer shifts it by one place). When C changes (N - 1 crosses a
//    multiple of k) the phase of each round changes and the rotation restarts. Either way
//    every pair is probed within C rounds of the first round under the new member list.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/duration.h"

namespace meshprobe::agent {

// Regular probes one agent may send per layer per round: floor(budget × interval), at
// least 1 (a budget below one probe per interval still probes one peer per round).
size_t perRoundCapacity(double budget_per_second, Duration interval);

// floor(unix time / interval); interval <= 0 counts as 1 s. Times before the epoch are round 0.
uint64_t roundOf(std::chrono::system_clock::time_point t, Duration interval);

// The global plan: for every (source, round) the peers probed. Cheap queries (O(1) for
// assigned(), O(k) for the lists) after an O(N log N) construction.
class RotationPlan {
 public:
  // `members`: every node name (duplicates and empty names are dropped). per_round: k, as
  // from perRoundCapacity (0 counts as 1).
  RotationPlan(std::vector<std::string> members, size_t per_round);

  size_t size() const { return ring_.size(); }  // N
  // Peers each agent probes per round: min(k, N - 1).
  size_t perRound() const;
  bool sparse() const { return ring_.size() > 1 && ring_.size() - 1 > per_round_; }
  // Rounds within which every ordered pair is probed: ceil((N - 1) / k); 1 when not sparse.
  size_t coverageRounds() const;

  const std::vector<std::string>& ring() const { return ring_; }  // in ring order
  std::optional<size_t> positionOf(std::string_view name) const;
  bool contains(std::string_view name) const { return positionOf(name).has_value(); }

  // Whether `src` probes `dst` in `round`. False if either is not a member or src == dst.
  bool assigned(std::string_view src, std::string_view dst, uint64_t round) const;
  // Peers `src` probes in `round` (in ring order from src); empty if src is not a member.
  std::vector<std::string> targetsOf(std::string_view src, uint64_t round) const;
  // Agents that probe `dst` in `round` (the column's witnesses); empty if not a member.
  std::vector<std::string> sourcesOf(std::string_view dst, uint64_t round) const;

  // The same by ring position (0 .. N-1), for callers that iterate over everything.
  bool assignedAt(size_t src, size_t dst, uint64_t round) const;
  std::vector<size_t> targetsAt(size_t src, uint64_t round) const;

 private:
  // Window of distances probed in `round`: [first, first + perRound()) along the ring.
  size_t windowStart(uint64_t round) const;

  struct NameHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::vector<std::string> ring_;
  std::unordered_map<std::string, size_t, NameHash, std::equal_to<>> position_;
  size_t per_round_ = 1;
};

// One agent's view of the plan.
class ProbeRotation {
 public:
  // `members`: all node names including `self` (added if missing).
  ProbeRotation(std::vector<std::string> members, std::string self, size_t per_round);

  bool sparse() const { return plan_.sparse(); }
  size_t perRound() const { return plan_.perRound(); }
  size_t coverageRounds() const { return plan_.coverageRounds(); }
  const std::string& self() const { return self_; }
  const RotationPlan& plan() const { return plan_; }

  // Peers this agent probes in `round` (all peers when not sparse).
  std::vector<std::string> peersForRound(uint64_t round) const;
  // Whether this agent probes `peer` in `round`. Not sparse: true for every peer. Sparse: a
  // name that is not a member is always true (it is probed every round rather than never).
  bool assigned(std::string_view peer, uint64_t round) const;
  // The same by the peer's ring position (positionOf: nullopt when not a member), without
  // a name lookup: for callers that ask every round for every target.
  std::optional<size_t> positionOf(std::string_view peer) const { return plan_.positionOf(peer); }
  bool assignedAt(std::optional<size_t> peer_position, uint64_t round) const;

 private:
  RotationPlan plan_;
  std::string self_;
  size_t self_position_ = 0;
};

}  // namespace meshprobe::agent
