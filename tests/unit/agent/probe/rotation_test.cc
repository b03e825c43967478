#include "agent/probe/rotation.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>

namespace meshprobe::agent {
namespace {

using namespace std::chrono_literals;

std::vector<std::string> names(size_t n, std::string_view prefix = "node-") {
  std::vector<std::string> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(std::string(prefix) + std::to_string(i));
  return out;
}

// Agents of two versions run side by side during a rolling upgrade and must derive the
// same ring from the same members, so the ring order is pinned: these orders were computed
// outside this code from its definition (FNV-1a from basis 1469598103934665603 over the
// name's bytes, then splitmix64's finalizer, ascending).
TEST(RotationTest, TheRingOrderIsTheSameInEveryVersion) {
  std::vector<std::string> members = names(8);
  members.push_back("ip-10-0-1-7.ec2.internal");
  members.push_back("worker-a");
  const RotationPlan plan(members, 3);
  EXPECT_EQ(plan.ring(), (std::vector<std::string>{"node-5", "node-6", "worker-a", "node-2", "node-0", "node-4",
                                                   "node-1", "node-7", "ip-10-0-1-7.ec2.internal", "node-3"}));
}

TEST(RotationTest, PerRoundCapacityIsBudgetTimesIntervalAtLeastOne) {
  EXPECT_EQ(perRoundCapacity(200, 1s), 200u);
  EXPECT_EQ(perRoundCapacity(200, 250ms), 50u);
  EXPECT_EQ(perRoundCapacity(2.5, 1s), 2u);  // floor
  EXPECT_EQ(perRoundCapacity(0.5, 1s), 1u);  // at least one
  EXPECT_EQ(perRoundCapacity(0, 1s), 1u);
}

TEST(RotationTest, RoundIsUnixTimeOverInterval) {
  std::chrono::system_clock::time_point t{std::chrono::duration_cast<std::chrono::system_clock::duration>(10500ms)};
  EXPECT_EQ(roundOf(t, 1s), 10u);
  EXPECT_EQ(roundOf(t, 2s), 5u);
  EXPECT_EQ(roundOf(t, 500ms), 21u);
  EXPECT_EQ(roundOf(t + 499ms, 1s), 10u);
  EXPECT_EQ(roundOf(t + 500ms, 1s), 11u);
}

TEST(RotationTest, FullMeshWhenPeersFitTheBudget) {
  for (size_t n : {1u, 2u, 3u, 10u, 201u}) {
    ProbeRotation r(names(n), "node-0", 200);
    EXPECT_FALSE(r.sparse()) << n;
    EXPECT_EQ(r.coverageRounds(), 1u);
    for (uint64_t round : {0ull, 1ull, 12345ull}) {
      auto peers = r.peersForRound(round);
      EXPECT_EQ(peers.size(), n - 1) << n;
      std::set<std::string> distinct(peers.begin(), peers.end());
      EXPECT_EQ(distinct.size(), n - 1);
      EXPECT_FALSE(distinct.contains("node-0"));
      for (size_t i = 1; i < n; ++i) EXPECT_TRUE(r.assigned("node-" + std::to_string(i), round));
    }
  }
  // 202 members = 201 peers > 200: sparse.
  EXPECT_TRUE(ProbeRotation(names(202), "node-0", 200).sparse());
}

// Every ordered pair within coverageRounds() consecutive rounds (from an arbitrary start),
// each agent exactly min(k, N-1) distinct peers per round, never itself.
void checkCoverage(size_t n, size_t k, size_t source_step, uint64_t start_round) {
  RotationPlan plan(names(n), k);
  const size_t c = plan.coverageRounds();
  ASSERT_EQ(plan.sparse(), n - 1 > k);
  if (plan.sparse()) {
    ASSERT_EQ(c, (n - 1 + k - 1) / k);
  }
  const size_t per = plan.perRound();
  ASSERT_LE(per, k);
  std::vector<uint32_t> seen(n);
  for (size_t src = 0; src < n; src += source_step) {
    std::fill(seen.begin(), seen.end(), 0);
    for (uint64_t r = start_round; r < start_round + c; ++r) {
      auto targets = plan.targetsAt(src, r);
      ASSERT_EQ(targets.size(), per) << "n=" << n << " k=" << k;
      for (size_t t : targets) {
        ASSERT_NE(t, src);
        ++seen[t];
      }
    }
    for (size_t dst = 0; dst < n; ++dst) {
      if (dst == src) continue;
      ASSERT_GE(seen[dst], 1u) << "n=" << n << " k=" << k << " pair " << src << "->" << dst << " not probed in "
                               << c << " rounds from " << start_round;
    }
  }
}

TEST(RotationTest, EveryOrderedPairWithinTheCoverageBound) {
  for (size_t n : {2u, 3u, 10u, 101u, 1000u}) {
    for (size_t k : {1u, 2u, 3u, 7u, 50u, 200u}) {
      checkCoverage(n, k, 1, 0);
      checkCoverage(n, k, 1, 1'765'000'123);  // a round number of today, not a cycle start
    }
  }
  // 5000 members: every 13th source (all pairs of those), small and default budgets.
  for (size_t k : {1u, 97u, 200u, 1000u}) checkCoverage(5000, k, 13, 1'765'000'123);
}

TEST(RotationTest, EveryColumnWatchedByExactlyKAgentsEveryRound) {
  for (auto [n, k] : std::vector<std::pair<size_t, size_t>>{{3, 1}, {10, 3}, {101, 7}, {1000, 200}, {5000, 200}}) {
    RotationPlan plan(names(n), k);
    const size_t c = plan.coverageRounds();
    const size_t rounds = n >= 5000 ? 3 : c + 1;  // 5000: the first, a middle and the last phase
    std::vector<uint64_t> sample;
    for (size_t i = 0; i < rounds; ++i) sample.push_back(n >= 5000 ? std::vector<uint64_t>{0, c / 2, c - 1}[i] : i);
    std::vector<uint32_t> watchers(n);
    for (uint64_t r : sample) {
      std::fill(watchers.begin(), watchers.end(), 0);
      for (size_t src = 0; src < n; ++src)
        for (size_t t : plan.targetsAt(src, r)) ++watchers[t];
      for (size_t dst = 0; dst < n; ++dst) ASSERT_EQ(watchers[dst], k) << "n=" << n << " round " << r << " dst " << dst;
    }
  }
}

TEST(RotationTest, NameQueriesAgreeWithPositions) {
  RotationPlan plan(names(101), 7);
  for (uint64_t r = 0; r < plan.coverageRounds(); ++r) {
    for (const auto& dst : {std::string("node-0"), std::string("node-57")}) {
      auto sources = plan.sourcesOf(dst, r);
      ASSERT_EQ(sources.size(), 7u);
      size_t count = 0;
      for (const auto& src : plan.ring()) {
        bool a = plan.assigned(src, dst, r);
        auto t = plan.targetsOf(src, r);
        EXPECT_EQ(a, std::find(t.begin(), t.end(), dst) != t.end());
        EXPECT_EQ(a, std::find(sources.begin(), sources.end(), src) != sources.end());
        count += a;
      }
      EXPECT_EQ(count, 7u);
    }
  }
  EXPECT_FALSE(plan.assigned("node-0", "nobody", 0));
  EXPECT_TRUE(plan.targetsOf("nobody", 0).empty());
  ProbeRotation self(names(101), "node-3", 7);
  EXPECT_TRUE(self.assigned("not-a-member", 0));  // unknown peers are probed, not dropped
  EXPECT_FALSE(self.assigned("node-3", 0));
}

TEST(RotationTest, ThePositionQueryIsTheNameQuery) {
  // The scheduler and the prober ask by the peer's cached ring position every round;
  // it must answer exactly what the name query answers, sparse or not.
  for (size_t per_round : {size_t{7}, size_t{200}}) {
    ProbeRotation self(names(101), "node-3", per_round);
    for (uint64_t r = 0; r < self.coverageRounds() + 2; ++r) {
      size_t assigned = 0;
      for (const auto& peer : self.plan().ring()) {
        const bool by_name = self.assigned(peer, r);
        EXPECT_EQ(self.assignedAt(self.positionOf(peer), r), by_name) << peer << " round " << r;
        assigned += by_name;
      }
      EXPECT_EQ(assigned, std::min<size_t>(per_round, 100)) << "round " << r;
      EXPECT_TRUE(self.assignedAt(self.positionOf("not-a-member"), r));
      EXPECT_FALSE(self.assignedAt(self.positionOf("node-3"), r));
    }
  }
}

TEST(RotationTest, EveryAgentComputesTheSamePlanWhateverTheListOrder) {
  auto members = names(1000);
  std::vector<std::string> shuffled = members;
  std::mt19937 rng(7);
  std::shuffle(shuffled.begin(), shuffled.end(), rng);
  shuffled.push_back("node-5");  // a duplicate
  shuffled.push_back("");        // and an empty name, both dropped
  RotationPlan a(members, 50), b(shuffled, 50);
  ASSERT_EQ(a.ring(), b.ring());
  for (uint64_t r : {0ull, 3ull, 19ull, 1'765'000'000ull}) {
    for (size_t s = 0; s < 1000; s += 37) EXPECT_EQ(a.targetsAt(s, r), b.targetsAt(s, r));
    // An agent's own view is the global plan's row for it.
    ProbeRotation agent(shuffled, "node-42", 50);
    EXPECT_EQ(agent.peersForRound(r), a.targetsOf("node-42", r));
  }
  // The ring order is by hash, not by name: node-0 .. node-9 are not consecutive.
  RotationPlan small(names(10), 3);
  EXPECT_NE(small.ring(), names(10));
}

// A join (or leave) that keeps coverageRounds() changes, for each other agent and round, at
// most one old peer out of and one into its window: |old Δ (new \ {newcomer})| <= 2, so at
// most 2(N-1) of the N·k assignments of a round move, about 2/k of them.
void checkChurn(const std::vector<std::string>& before, const std::vector<std::string>& after, size_t k,
                const std::string& changed) {
  RotationPlan a(before, k), b(after, k);
  ASSERT_EQ(a.coverageRounds(), b.coverageRounds());
  const size_t c = a.coverageRounds();
  for (uint64_t r = 0; r < c; ++r) {
    size_t moved_total = 0;
    for (const auto& src : a.ring()) {
      if (src == changed || !b.contains(src)) continue;
      auto ta = a.targetsOf(src, r), tb = b.targetsOf(src, r);
      std::erase(ta, changed);
      std::erase(tb, changed);
      std::sort(ta.begin(), ta.end());
      std::sort(tb.begin(), tb.end());
      std::vector<std::string> diff;
      std::set_symmetric_difference(ta.begin(), ta.end(), tb.begin(), tb.end(), std::back_inserter(diff));
      ASSERT_LE(diff.size(), 2u) << src << " round " << r;
      moved_total += diff.size();
    }
    EXPECT_LE(moved_total, 2 * (a.size() - 1)) << "round " << r;
  }
}

TEST(RotationTest, AJoinOrLeaveMovesAtMostOnePeerPerAgentAndRound) {
  for (auto [n, k] : std::vector<std::pair<size_t, size_t>>{{101, 7}, {1000, 200}, {316, 30}}) {
    // Sizes where C stays put both ways (C changes only where N-1 crosses a multiple of k).
    auto before = names(n);
    auto joined = before;
    joined.push_back("newcomer");
    checkChurn(before, joined, k, "newcomer");
    auto left = before;
    std::erase(left, "node-17");
    checkChurn(before, left, k, "node-17");
  }
}

TEST(RotationTest, AJoinBarelyChangesWhoWatchesAColumn) {
  // Over a whole cycle, a column's witnesses are mostly the same agents after a join.
  auto before = names(1000);
  auto after = before;
  after.push_back("newcomer");
  RotationPlan a(before, 200), b(after, 200);
  ASSERT_EQ(a.coverageRounds(), b.coverageRounds());
  size_t same = 0, total = 0;
  for (uint64_t r = 0; r < a.coverageRounds(); ++r) {
    for (const char* dst : {"node-1", "node-500", "node-999"}) {
      auto sa = a.sourcesOf(dst, r), sb = b.sourcesOf(dst, r);
      std::set<std::string> s(sb.begin(), sb.end());
      for (const auto& x : sa) same += s.contains(x);
      total += sa.size();
    }
  }
  EXPECT_GE(same * 100, total * 98);  // at least 98% stay
}

}  // namespace
}  // namespace meshprobe::agent
