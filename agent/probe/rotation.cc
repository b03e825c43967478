#include "agent/probe/rotation.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "agent/stable_hash.h"

namespace meshprobe::agent {

namespace {

// The same in every agent (stable_hash.h); near-identical names ("node-1", "node-2") land
// far apart.
uint64_t nameHash(std::string_view s) { return splitmix64(fnv1a(s, kProbeHashBasis)); }

}  // namespace

size_t perRoundCapacity(double budget_per_second, Duration interval) {
  if (!(budget_per_second > 0) || interval <= Duration::zero()) return 1;
  double k = std::floor(budget_per_second * std::chrono::duration<double>(interval).count());
  if (!(k >= 1)) return 1;
  if (k > 1e15) return static_cast<size_t>(1e15);
  return static_cast<size_t>(k);
}

uint64_t roundOf(std::chrono::system_clock::time_point t, Duration interval) {
  if (interval <= Duration::zero()) interval = std::chrono::seconds(1);
  auto since = std::chrono::duration_cast<Duration>(t.time_since_epoch());
  if (since < Duration::zero()) return 0;
  return static_cast<uint64_t>(since.count() / interval.count());
}

RotationPlan::RotationPlan(std::vector<std::string> members, size_t per_round)
    : per_round_(per_round == 0 ? 1 : per_round) {
  std::erase_if(members, [](const std::string& m) { return m.empty(); });
  std::vector<std::pair<uint64_t, std::string>> keyed;
  keyed.reserve(members.size());
  for (auto& m : members) {
    uint64_t h = nameHash(m);
    keyed.emplace_back(h, std::move(m));
  }
  std::sort(keyed.begin(), keyed.end());
  keyed.erase(std::unique(keyed.begin(), keyed.end()), keyed.end());
  ring_.reserve(keyed.size());
  position_.reserve(keyed.size());
  for (auto& [h, name] : keyed) {
    position_.emplace(name, ring_.size());
    ring_.push_back(std::move(name));
  }
}

size_t RotationPlan::perRound() const {
  if (ring_.size() < 2) return 0;
  return std::min(per_round_, ring_.size() - 1);
}

size_t RotationPlan::coverageRounds() const {
  if (!sparse()) return 1;
  return (ring_.size() - 1 + per_round_ - 1) / per_round_;
}

std::optional<size_t> RotationPlan::positionOf(std::string_view name) const {
  auto it = position_.find(name);
  if (it == position_.end()) return std::nullopt;
  return it->second;
}

size_t RotationPlan::windowStart(uint64_t round) const {
  if (!sparse()) return 1;
  const size_t n = ring_.size();
  const size_t c = coverageRounds();
  const size_t q = static_cast<size_t>(round % c);
  if (q + 1 < c) return q * per_round_ + 1;
  return n - per_round_;  // the last phase: the k predecessors
}

bool RotationPlan::assignedAt(size_t src, size_t dst, uint64_t round) const {
  const size_t n = ring_.size();
  if (src >= n || dst >= n || src == dst) return false;
  const size_t d = (dst + n - src) % n;
  const size_t first = windowStart(round);
  return d >= first && d < first + perRound();
}

std::vector<size_t> RotationPlan::targetsAt(size_t src, uint64_t round) const {
  std::vector<size_t> out;
  const size_t n = ring_.size();
  if (src >= n) return out;
  const size_t first = windowStart(round);
  const size_t k = perRound();
  out.reserve(k);
  for (size_t j = 0; j < k; ++j) out.push_back((src + first + j) % n);
  return out;
}

bool RotationPlan::assigned(std::string_view src, std::string_view dst, uint64_t round) const {
  auto s = positionOf(src);
  auto d = positionOf(dst);
  return s && d && assignedAt(*s, *d, round);
}

std::vector<std::string> RotationPlan::targetsOf(std::string_view src, uint64_t round) const {
  std::vector<std::string> out;
  auto s = positionOf(src);
  if (!s) return out;
  for (size_t p : targetsAt(*s, round)) out.push_back(ring_[p]);
  return out;
}

std::vector<std::string> RotationPlan::sourcesOf(std::string_view dst, uint64_t round) const {
  std::vector<std::string> out;
  auto d = positionOf(dst);
  if (!d) return out;
  const size_t n = ring_.size();
  const size_t first = windowStart(round);
  const size_t k = perRound();
  out.reserve(k);
  // src = dst - distance for each distance in the window.
  for (size_t j = 0; j < k; ++j) out.push_back(ring_[(*d + n - (first + j) % n) % n]);
  return out;
}

ProbeRotation::ProbeRotation(std::vector<std::string> members, std::string self, size_t per_round)
    : plan_([&] {
        if (std::find(members.begin(), members.end(), self) == members.end()) members.push_back(self);
        return std::move(members);
      }(),
            per_round),
      self_(std::move(self)),
      self_position_(plan_.positionOf(self_).value_or(0)) {}

std::vector<std::string> ProbeRotation::peersForRound(uint64_t round) const { return plan_.targetsOf(self_, round); }

bool ProbeRotation::assigned(std::string_view peer, uint64_t round) const {
  if (peer == self_) return false;
  return assignedAt(plan_.positionOf(peer), round);
}

bool ProbeRotation::assignedAt(std::optional<size_t> peer_position, uint64_t round) const {
  if (peer_position == self_position_) return false;  // self is always a member
  if (!plan_.sparse() || !peer_position) return true;
  return plan_.assignedAt(self_position_, *peer_position, round);
}

}  // namespace meshprobe::agent
