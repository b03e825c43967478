#include "agent/probe/scheduler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

namespace meshprobe::agent {
namespace {

using namespace std::chrono_literals;
using TimePoint = std::chrono::steady_clock::time_point;

std::vector<ProbeTarget> manyTargets(int peers) {
  std::vector<ProbeTarget> out;
  for (int i = 0; i < peers; ++i) {
    out.push_back({"node-" + std::to_string(i), Layer::kUnderlay, "198.51.100." + std::to_string(i % 250 + 1)});
    out.push_back({"node-" + std::to_string(i), Layer::kOverlay, "10.244." + std::to_string(i % 250) + ".0"});
  }
  return out;
}

SchedulerOptions opts() {
  SchedulerOptions o;
  o.interval = 1s;
  o.max_jitter = 50ms;
  o.retries = 2;
  o.retry_spacing = 200ms;
  o.seed = "node-0";
  o.rng_seed = 7;
  return o;
}

// Steps the fake clock in `step` increments for `span`, collecting every due probe with
// the time it was taken.
std::vector<std::pair<TimePoint, DueProbe>> run(FakeClock& clock, ProbeScheduler& s, Duration span,
                                                Duration step = 1ms) {
  std::vector<std::pair<TimePoint, DueProbe>> out;
  for (Duration t{}; t < span; t += step) {
    clock.advance(step);
    for (const auto& d : s.takeDue()) out.emplace_back(clock.monotonicNow(), d);
  }
  return out;
}

TEST(ProbeScheduler, OffsetsAreDistinctAndSpreadAcrossTheInterval) {
  FakeClock clock;
  ProbeScheduler s(clock, opts());
  auto ids = s.setTargets(manyTargets(1000));
  ASSERT_EQ(ids.size(), 2000u);
  std::set<int64_t> offsets;
  std::vector<int> buckets(10, 0);  // 100 ms buckets
  for (TargetId id : ids) {
    auto off = s.offsetOf(id);
    ASSERT_TRUE(off.has_value());
    ASSERT_GE(*off, 0ns);
    ASSERT_LT(*off, 1s);
    offsets.insert(off->count());
    ++buckets[static_cast<size_t>(*off / 100ms)];
  }
  EXPECT_EQ(offsets.size(), 2000u);  // no two targets share an offset
  for (int b : buckets) {
    // 200 expected per bucket; a uniform hash stays well within +-30 %.
    EXPECT_GT(b, 140);
    EXPECT_LT(b, 260);
  }
  // Probes actually go out spread: over one interval no millisecond carries more than a
  // handful of the 2000 probes.
  auto sent = run(clock, s, 1s + 100ms);
  std::map<int64_t, int> per_ms;
  for (const auto& [t, d] : sent)
    ++per_ms[std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count()];
  int worst = 0;
  for (const auto& [ms, n] : per_ms) worst = std::max(worst, n);
  EXPECT_LE(worst, 12);
  EXPECT_GE(sent.size(), 2000u);
}

TEST(ProbeScheduler, DifferentSeedsSpreadTheSamePeerDifferently) {
  FakeClock clock;
  SchedulerOptions a = opts(), b = opts();
  b.seed = "node-9";
  ProbeScheduler sa(clock, a), sb(clock, b);
  std::vector<ProbeTarget> t = {{"node-3", Layer::kUnderlay, "198.51.100.3"}};
  EXPECT_NE(*sa.offsetOf(sa.setTargets(t)[0]), *sb.offsetOf(sb.setTargets(t)[0]));
}

TEST(ProbeScheduler, EachTargetOncePerIntervalWithBoundedJitter) {
  FakeClock clock;
  ProbeScheduler s(clock, opts());
  auto ids = s.setTargets(manyTargets(50));
  TimePoint start = clock.monotonicNow();
  auto sent = run(clock, s, 10s);
  std::map<TargetId, std::vector<TimePoint>> by_target;
  for (const auto& [t, d] : sent) {
    EXPECT_FALSE(d.retry);
    by_target[d.id].push_back(t);
  }
  ASSERT_EQ(by_target.size(), ids.size());
  for (TargetId id : ids) {
    const auto& times = by_target[id];
    ASSERT_GE(times.size(), 9u);
    ASSERT_LE(times.size(), 10u);
    Duration off = *s.offsetOf(id);
    for (size_t k = 0; k < times.size(); ++k) {
      // k-th probe within [slot, slot + max_jitter] (+1 ms of stepping).
      TimePoint slot = start + off + static_cast<int64_t>(k) * 1s;
      EXPECT_GE(times[k], slot);
      EXPECT_LE(times[k], slot + 50ms + 1ms);
    }
  }
  // Jitter is actually applied: the delays after the slot are not all equal.
  std::set<int64_t> delays;
  for (TargetId id : ids) {
    delays.insert((by_target[id][0] - (start + *s.offsetOf(id))).count() / 1000000);
  }
  EXPECT_GT(delays.size(), 10u);
}

TEST(ProbeScheduler, MissTriggersQuickRetriesAndReplyCancelsThem) {
  FakeClock clock;
  ProbeScheduler s(clock, opts());
  TargetId id = s.setTargets({{"node-1", Layer::kOverlay, "10.244.1.0"}})[0];
  auto first = run(clock, s, 1s + 60ms);
  ASSERT_EQ(first.size(), 1u);
  // The probe times out 800 ms later.
  clock.advance(800ms);
  TimePoint miss_at = clock.monotonicNow();
  s.onMiss(id, /*was_retry=*/false);
  auto after = run(clock, s, 450ms);
  std::vector<std::pair<TimePoint, DueProbe>> retries;
  for (const auto& e : after) {
    if (e.second.retry) retries.push_back(e);
  }
  ASSERT_EQ(retries.size(), 2u);
  EXPECT_EQ(retries[0].first, miss_at + 200ms);
  EXPECT_EQ(retries[1].first, miss_at + 400ms);
  // A retry missing does not start another burst.
  s.onMiss(id, /*was_retry=*/true);
  for (const auto& e : run(clock, s, 1s)) EXPECT_FALSE(e.second.retry);

  // A miss, then a reply before the retries are sent: the retries are cancelled and the
  // regular schedule continues.
  s.onMiss(id, false);
  clock.advance(100ms);
  s.onReply(id);
  auto rest = run(clock, s, 3s);
  for (const auto& e : rest) EXPECT_FALSE(e.second.retry);
  EXPECT_GE(rest.size(), 2u);
}

TEST(ProbeScheduler, HardFaultConfirmedWithinThreeProbesNotNextRound) {
  // Simulates the prober: every probe times out after 800 ms. Three misses must be known
  // well before the second regular round would even have been sent and timed out.
  FakeClock clock;
  ProbeScheduler s(clock, opts());
  TargetId id = s.setTargets({{"node-1", Layer::kUnderlay, "198.51.100.1"}})[0];
  std::vector<std::pair<TimePoint, bool>> in_flight;  // deadline, retry
  int misses = 0;
  TimePoint first_send{};
  TimePoint third_miss{};
  for (int ms = 0; ms < 5000 && misses < 3; ++ms) {
    clock.advance(1ms);
    TimePoint now = clock.monotonicNow();
    for (auto it = in_flight.begin(); it != in_flight.end();) {
      if (it->first <= now) {
        s.onMiss(id, it->second);
        if (++misses == 3) third_miss = now;
        it = in_flight.erase(it);
      } else {
        ++it;
      }
    }
    for (const auto& d : s.takeDue()) {
      if (first_send == TimePoint{}) first_send = now;
      in_flight.emplace_back(now + 800ms, d.retry);
    }
  }
  ASSERT_EQ(misses, 3);
  // first miss at +800 ms, retries sent +200/+400 ms later, each timing out 800 ms on.
  EXPECT_LE(third_miss - first_send, 2000ms + 1ms);
}

TEST(ProbeScheduler, SetTargetsKeepsRemainingTargetsAndDropsRemoved) {
  FakeClock clock;
  ProbeScheduler s(clock, opts());
  ProbeTarget a{"node-1", Layer::kUnderlay, "198.51.100.1"};
  ProbeTarget b{"node-2", Layer::kUnderlay, "198.51.100.2"};
  ProbeTarget c{"node-3", Layer::kOverlay, "10.244.3.0"};
  auto ids1 = s.setTargets({a, b});
  auto ids2 = s.setTargets({b, c, b});
  EXPECT_EQ(ids2[0], ids1[1]);  // b kept its id
  EXPECT_NE(ids2[1], ids1[0]);
  EXPECT_EQ(ids2[2], ids2[0]);  // duplicates collapse
  EXPECT_EQ(s.size(), 2u);
  EXPECT_EQ(s.target(ids1[0]), nullptr);
  auto sent = run(clock, s, 2s);
  std::set<TargetId> seen;
  for (const auto& e : sent) seen.insert(e.second.id);
  EXPECT_EQ(seen, (std::set<TargetId>{ids2[0], ids2[1]}));
  // An address change is a different target.
  ProbeTarget b2 = b;
  b2.address = "198.51.100.22";
  EXPECT_NE(s.setTargets({b2})[0], ids2[0]);
}

TEST(ProbeScheduler, NextDueReportsTheEarliestProbe) {
  FakeClock clock;
  ProbeScheduler s(clock, opts());
  EXPECT_FALSE(s.nextDue().has_value());
  TargetId id = s.setTargets({{"node-1", Layer::kUnderlay, "198.51.100.1"}})[0];
  auto next = s.nextDue();
  ASSERT_TRUE(next.has_value());
  EXPECT_GE(*next, clock.monotonicNow());
  EXPECT_LE(*next, clock.monotonicNow() + *s.offsetOf(id) + 50ms);
  clock.advance(*next - clock.monotonicNow());
  EXPECT_EQ(s.takeDue().size(), 1u);
  EXPECT_GE(*s.nextDue(), clock.monotonicNow() + 1s - 50ms);
}

// ---- sparse probing (ProbeRotation) ----

// node-1 .. node-<peers>, both layers; this node is node-0.
std::vector<ProbeTarget> peerTargets(int peers) {
  std::vector<ProbeTarget> out;
  for (int i = 1; i <= peers; ++i) {
    out.push_back({"node-" + std::to_string(i), Layer::kUnderlay, "198.51.100." + std::to_string(i % 250 + 1)});
    out.push_back({"node-" + std::to_string(i), Layer::kOverlay, "10.244." + std::to_string(i % 250) + ".0"});
  }
  return out;
}

std::shared_ptr<const ProbeRotation> rotationFor(int peers, size_t per_round) {
  std::vector<std::string> members;
  for (int i = 0; i <= peers; ++i) members.push_back("node-" + std::to_string(i));
  return std::make_shared<const ProbeRotation>(members, "node-0", per_round);
}

// The round of a probe's due time (its wall time, from the clock's wall/monotonic pair).
uint64_t roundAt(const FakeClock& clock, TimePoint due, Duration interval) {
  auto wall = clock.wallNow() - std::chrono::duration_cast<std::chrono::system_clock::duration>(
                                    clock.monotonicNow() - due);
  return roundOf(wall, interval);
}

TEST(ProbeScheduler, SparseProbesOnlyTheAssignedPeersEachRound) {
  FakeClock clock;
  SchedulerOptions o = opts();
  o.max_jitter = 0ns;  // so a probe's due time is its slot and its round is exact
  ProbeScheduler s(clock, o);
  auto rotation = rotationFor(100, 10);  // 101 members, k = 10: C = 10 rounds
  ASSERT_TRUE(rotation->sparse());
  ASSERT_EQ(rotation->coverageRounds(), 10u);
  s.setRotation(rotation);
  s.setTargets(peerTargets(100));
  EXPECT_EQ(s.size(), 200u);  // every target is kept

  const uint64_t first = roundOf(clock.wallNow(), 1s);
  auto sent = run(clock, s, 21s);
  std::map<std::pair<uint64_t, Layer>, std::set<std::string>> per_round;
  for (const auto& [t, d] : sent) {
    ASSERT_FALSE(d.retry);
    const ProbeTarget* target = s.target(d.id);
    ASSERT_NE(target, nullptr);
    uint64_t r = roundAt(clock, d.scheduled, 1s);
    EXPECT_TRUE(rotation->assigned(target->peer, r)) << target->peer << " round " << r;
    EXPECT_TRUE(per_round[std::make_pair(r, target->layer)].insert(target->peer).second) << "twice in round " << r;
  }
  // Every whole round: exactly k peers per layer, the rotation's own list.
  for (uint64_t r = first + 1; r < first + 21; ++r) {
    for (Layer layer : {Layer::kUnderlay, Layer::kOverlay}) {
      const auto& got = per_round[{r, layer}];
      auto want = rotation->peersForRound(r);
      EXPECT_EQ(got, std::set<std::string>(want.begin(), want.end())) << "round " << r;
      EXPECT_EQ(got.size(), 10u);
    }
  }
  // Every peer within C rounds.
  std::set<std::string> covered;
  for (uint64_t r = first + 1; r <= first + 10; ++r)
    covered.insert(per_round[{r, Layer::kUnderlay}].begin(), per_round[{r, Layer::kUnderlay}].end());
  EXPECT_EQ(covered.size(), 100u);
  EXPECT_GT(s.skipped(), 0u);
}

TEST(ProbeScheduler, SparseStillRetriesAfterAMiss) {
  FakeClock clock;
  ProbeScheduler s(clock, opts());
  auto rotation = rotationFor(100, 10);
  s.setRotation(rotation);
  s.setTargets(peerTargets(100));
  // Wait for the first regular probe, miss it: two retries follow 200 ms apart, although
  // the peer is not assigned again for several rounds.
  std::optional<DueProbe> first;
  for (int i = 0; i < 3000 && !first; ++i) {
    clock.advance(1ms);
    for (const auto& d : s.takeDue()) {
      if (!first) first = d;
    }
  }
  ASSERT_TRUE(first.has_value());
  const std::string peer = s.target(first->id)->peer;
  s.onMiss(first->id, false);
  auto sent = run(clock, s, 500ms);
  int retries = 0;
  for (const auto& [t, d] : sent) retries += d.id == first->id && d.retry;
  EXPECT_EQ(retries, 2);
  // And the next round does not assign it (k = 10 of 100 peers, windows of 10 distances).
  EXPECT_FALSE(rotation->assigned(peer, roundOf(clock.wallNow(), 1s) + 1));
}

TEST(ProbeScheduler, FullMeshRotationChangesNothing) {
  FakeClock c1, c2;
  ProbeScheduler plain(c1, opts()), rotated(c2, opts());
  auto full = rotationFor(100, 200);  // 100 peers <= 200 per round
  ASSERT_FALSE(full->sparse());
  rotated.setRotation(full);
  plain.setTargets(peerTargets(100));
  rotated.setTargets(peerTargets(100));
  auto a = run(c1, plain, 3s), b = run(c2, rotated, 3s);
  ASSERT_EQ(a.size(), b.size());
  ASSERT_GE(a.size(), 400u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    EXPECT_EQ(a[i].second.id, b[i].second.id);
  }
  EXPECT_EQ(rotated.skipped(), 0u);
}

TEST(ProbeScheduler, SwitchingToSparseReplansWithoutProbingTwiceInARound) {
  FakeClock clock;
  SchedulerOptions o = opts();
  o.max_jitter = 0ns;
  ProbeScheduler s(clock, o);
  s.setTargets(peerTargets(100));
  auto before = run(clock, s, 1500ms);  // full mesh for a while
  auto rotation = rotationFor(100, 10);
  s.setRotation(rotation);
  s.setRotation(rotationFor(100, 10));  // an equal plan: no re-planning
  auto after = run(clock, s, 3s);
  std::map<std::pair<uint64_t, TargetId>, int> count;
  for (const auto& [t, d] : before) ++count[{roundAt(clock, d.scheduled, 1s), d.id}];
  for (const auto& [t, d] : after) {
    uint64_t r = roundAt(clock, d.scheduled, 1s);
    EXPECT_TRUE(rotation->assigned(s.target(d.id)->peer, r));
    EXPECT_EQ(++count[std::make_pair(r, d.id)], 1) << "target " << d.id << " twice in round " << r;
  }
  EXPECT_LE(after.size(), 3u * 2 * 10 + 2 * 10);
  s.setRotation(nullptr);  // back to every target every interval
  auto full = run(clock, s, 2s);
  EXPECT_GE(full.size(), 200u);
}

}  // namespace
}  // namespace meshprobe::agent
