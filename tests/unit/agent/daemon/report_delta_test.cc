#include "agent/daemon/report_delta.h"

#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace meshprobe::agent {
namespace {

namespace v1 = meshprobe::v1;
using google::protobuf::util::TimeUtil;

v1::ProbeResult probe(const std::string& dst, v1::Layer layer, uint32_t received = 10, int64_t p50_us = 200,
                      int64_t p99_us = 400) {
  v1::ProbeResult p;
  p.set_dst(dst);
  p.set_layer(layer);
  p.set_sent(10);
  p.set_received(received);
  p.set_loss(1.0 - received / 10.0);
  if (received == 0) p.set_consecutive_failures(3);
  *p.mutable_rtt_p50() = TimeUtil::MicrosecondsToDuration(p50_us);
  *p.mutable_rtt_p99() = TimeUtil::MicrosecondsToDuration(p99_us);
  *p.mutable_last_probe() = TimeUtil::SecondsToTimestamp(1000);
  return p;
}

v1::CheckResult check(const std::string& name, v1::CheckResult::Status status) {
  v1::CheckResult c;
  c.set_name(name);
  c.set_status(status);
  return c;
}

// A whole report at `t` seconds: peers a, b, c on both layers, two checks, one finding.
v1::Report report(uint64_t seq, int64_t t) {
  v1::Report r;
  r.set_sequence(seq);
  *r.mutable_time() = TimeUtil::SecondsToTimestamp(t);
  *r.mutable_coverage_period() = TimeUtil::SecondsToDuration(1);
  *r.mutable_probe_interval() = TimeUtil::SecondsToDuration(1);
  for (const char* dst : {"a", "b", "c"}) {
    for (v1::Layer l : {v1::UNDERLAY, v1::OVERLAY}) *r.add_probes() = probe(dst, l);
  }
  *r.add_checks() = check("vxlan_device", v1::CheckResult::OK);
  *r.add_checks() = check("istiod", v1::CheckResult::OK);
  r.add_findings()->set_code("SOME_FINDING");
  return r;
}

// An encoder whose digest period (an hour) leaves every delta of a test that spans a few
// seconds to the change rules alone.
ReportDeltaEncoder changesOnly() {
  ReportDeltaEncoder::Options o;
  o.digest_period = std::chrono::hours(1);
  return ReportDeltaEncoder(o);
}

std::set<std::string> dsts(const v1::Report& r) {
  std::set<std::string> out;
  for (const auto& p : r.probes()) out.insert(v1::Layer_Name(p.layer()) + "/" + p.dst());
  return out;
}

v1::ProbeResult* find(v1::Report& r, const std::string& dst, v1::Layer layer) {
  for (auto& p : *r.mutable_probes()) {
    if (p.dst() == dst && p.layer() == layer) return &p;
  }
  return nullptr;
}

TEST(ReportDelta, FirstReportIsWholeThenAnUnchangedOneCarriesNoProbes) {
  ReportDeltaEncoder enc;
  v1::Report first = enc.encode(report(1, 100), true);
  EXPECT_FALSE(first.delta());
  EXPECT_EQ(first.probes_size(), 6);
  v1::Report second = enc.encode(report(2, 101), true);
  EXPECT_TRUE(second.delta());
  EXPECT_EQ(second.sequence(), 2u);
  EXPECT_EQ(second.probes_size(), 0);
  EXPECT_EQ(second.checks_size(), 0);
  EXPECT_EQ(second.findings_size(), 1);  // findings always whole
  EXPECT_TRUE(second.has_coverage_period());
  EXPECT_EQ(enc.counters().whole, 1u);
  EXPECT_EQ(enc.counters().deltas, 1u);
  EXPECT_EQ(enc.counters().probes_omitted, 6u);
}

// A member that joined since the last report: the next delta carries all its results (the
// aggregator could not place them before it knew the member), and only those; one after it
// is quiet again. A member with no results yet, or unknown to the encoder, adds nothing.
TEST(ReportDelta, AJoinedMembersResultsGoInTheNextDeltaAndNothingElse) {
  ReportDeltaEncoder enc;
  enc.encode(report(1, 100), true);
  enc.resendTo({"b", "not-a-target"});
  v1::Report d = enc.encode(report(2, 101), true);
  ASSERT_TRUE(d.delta());
  EXPECT_EQ(dsts(d), (std::set<std::string>{"OVERLAY/b", "UNDERLAY/b"}));
  EXPECT_EQ(enc.encode(report(3, 102), true).probes_size(), 0);
  enc.resendTo({});
  EXPECT_EQ(enc.encode(report(4, 103), true).probes_size(), 0);
  EXPECT_EQ(enc.counters().whole, 1u);
}

// A target the rotation has not probed yet (sent 0, no last probe) goes out once, in the
// report where it first appears, and again only when its first probe changes it.
TEST(ReportDelta, ANeverProbedResultGoesOutOnceUntilItsFirstProbe) {
  auto with = [](uint64_t seq, int64_t t, bool probed) {
    v1::Report r = report(seq, t);
    v1::ProbeResult p;
    p.set_dst("new");
    p.set_layer(v1::OVERLAY);
    if (probed) p = probe("new", v1::OVERLAY);
    *r.add_probes() = p;
    return r;
  };
  ReportDeltaEncoder enc = changesOnly();
  enc.encode(report(1, 100), true);
  v1::Report d = enc.encode(with(2, 101, false), true);  // a new target, never probed
  ASSERT_TRUE(d.delta());
  EXPECT_EQ(dsts(d), std::set<std::string>{"OVERLAY/new"});
  EXPECT_EQ(enc.encode(with(3, 102, false), true).probes_size(), 0);
  EXPECT_EQ(enc.encode(with(4, 103, false), true).probes_size(), 0);
  EXPECT_EQ(dsts(enc.encode(with(5, 104, true), true)), std::set<std::string>{"OVERLAY/new"});
  EXPECT_EQ(enc.encode(with(6, 105, true), true).probes_size(), 0);
  // A resend (the member joined the aggregator since) carries it again, once.
  ReportDeltaEncoder again = changesOnly();
  again.encode(with(1, 100, false), true);
  again.resendTo({"new"});
  EXPECT_EQ(dsts(again.encode(with(2, 101, false), true)), std::set<std::string>{"OVERLAY/new"});
  EXPECT_EQ(again.encode(with(3, 102, false), true).probes_size(), 0);
}

TEST(ReportDelta, WithoutTheAggregatorsConsentEveryReportIsWhole) {
  ReportDeltaEncoder enc;
  for (int i = 1; i <= 3; ++i) {
    v1::Report r = enc.encode(report(i, 100 + i), false);
    EXPECT_FALSE(r.delta());
    EXPECT_EQ(r.probes_size(), 6);
  }
}

TEST(ReportDelta, FailingCellsAreAlwaysSentAndAHealedOneOnceMore) {
  ReportDeltaEncoder enc = changesOnly();
  enc.encode(report(1, 100), true);
  for (int i = 2; i <= 3; ++i) {
    v1::Report r = report(i, 100 + i);
    *find(r, "b", v1::OVERLAY) = probe("b", v1::OVERLAY, 0);
    v1::Report d = enc.encode(r, true);
    ASSERT_TRUE(d.delta());
    EXPECT_EQ(dsts(d), std::set<std::string>{"OVERLAY/b"}) << "report " << i;
  }
  v1::Report healed = enc.encode(report(4, 104), true);
  EXPECT_EQ(dsts(healed), std::set<std::string>{"OVERLAY/b"});
  EXPECT_EQ(enc.encode(report(5, 105), true).probes_size(), 0);
}

TEST(ReportDelta, LossIsSentAtOnceRttOnlyWhenItMovedByMoreThanAQuarter) {
  ReportDeltaEncoder enc;
  enc.encode(report(1, 100), true);
  v1::Report r = report(2, 101);
  *find(r, "a", v1::UNDERLAY) = probe("a", v1::UNDERLAY, 9);           // 10 % loss
  *find(r, "b", v1::UNDERLAY) = probe("b", v1::UNDERLAY, 10, 240);     // p50 +20 %: same
  *find(r, "c", v1::UNDERLAY) = probe("c", v1::UNDERLAY, 10, 260);     // p50 +30 %: moved
  *find(r, "c", v1::OVERLAY) = probe("c", v1::OVERLAY, 10, 200, 520);  // p99 +30 %: moved
  EXPECT_EQ(dsts(enc.encode(r, true)), (std::set<std::string>{"UNDERLAY/a", "UNDERLAY/c", "OVERLAY/c"}));
  // Against the value last sent: b drifting on by another +20 % (44 % in all) goes out now;
  // a, lossless again, goes out once as healed.
  v1::Report r3 = report(3, 102);
  *find(r3, "b", v1::UNDERLAY) = probe("b", v1::UNDERLAY, 10, 288);
  *find(r3, "c", v1::UNDERLAY) = probe("c", v1::UNDERLAY, 10, 260);
  *find(r3, "c", v1::OVERLAY) = probe("c", v1::OVERLAY, 10, 200, 520);
  EXPECT_EQ(dsts(enc.encode(r3, true)), (std::set<std::string>{"UNDERLAY/a", "UNDERLAY/b"}));
}

TEST(ReportDelta, AResultOlderThanTheCoverageWindowIsAlwaysSent) {
  ReportDeltaEncoder enc;
  enc.encode(report(1, 1000), true);  // every last_probe at 1000 s; window 1 s + 2 x 1 s
  v1::Report r = report(2, 1003);
  EXPECT_EQ(enc.encode(r, true).probes_size(), 0);  // 3 s: within the window
  v1::Report later = report(3, 1004);
  *find(later, "a", v1::UNDERLAY)->mutable_last_probe() = TimeUtil::SecondsToTimestamp(1004);
  EXPECT_EQ(dsts(enc.encode(later, true)).size(), 5u);  // 4 s: every other cell is too old
}

TEST(ReportDelta, OnlyChangedChecksAndAChangedPodNetnsList) {
  ReportDeltaEncoder enc;
  v1::Report r1 = report(1, 100);
  r1.mutable_pod_netns()->set_total(2);
  enc.encode(r1, true);
  v1::Report r2 = report(2, 101);
  r2.mutable_pod_netns()->set_total(2);
  r2.mutable_checks(1)->set_status(v1::CheckResult::FAIL);
  v1::Report d = enc.encode(r2, true);
  ASSERT_TRUE(d.delta());
  ASSERT_EQ(d.checks_size(), 1);
  EXPECT_EQ(d.checks(0).name(), "istiod");
  EXPECT_FALSE(d.has_pod_netns());
  v1::Report r3 = report(3, 102);
  r3.mutable_pod_netns()->set_total(3);
  r3.mutable_checks(1)->set_status(v1::CheckResult::FAIL);
  v1::Report d3 = enc.encode(r3, true);
  EXPECT_EQ(d3.checks_size(), 0);
  ASSERT_TRUE(d3.has_pod_netns());
  EXPECT_EQ(d3.pod_netns().total(), 3u);
}

TEST(ReportDelta, AVanishedTargetOrCheckMakesTheReportWhole) {
  ReportDeltaEncoder enc;
  enc.encode(report(1, 100), true);
  v1::Report fewer = report(2, 101);
  fewer.mutable_probes()->RemoveLast();
  v1::Report w = enc.encode(fewer, true);
  EXPECT_FALSE(w.delta());
  EXPECT_EQ(w.probes_size(), 5);
  // A new target is just a changed cell.
  v1::Report more = report(3, 102);
  *more.add_probes() = probe("d", v1::UNDERLAY);
  v1::Report d = enc.encode(more, true);
  EXPECT_TRUE(d.delta());
  EXPECT_EQ(dsts(d), (std::set<std::string>{"OVERLAY/c", "UNDERLAY/d"}));
  v1::Report no_check = report(4, 103);
  *no_check.add_probes() = probe("d", v1::UNDERLAY);
  no_check.mutable_checks()->RemoveLast();
  EXPECT_FALSE(enc.encode(no_check, true).delta());
}

// Reports of the same unchanged results every second from `from` to `to` seconds: for each
// result the report times it went out in, and for each check likewise. Every report must be
// a delta.
struct Sends {
  std::map<std::string, std::vector<int64_t>> probes;
  std::map<std::string, std::vector<int64_t>> checks;
  size_t most_in_one = 0;  // the most results one report carried
};
Sends unchangedReports(ReportDeltaEncoder& enc, v1::Report r, uint64_t& seq, int64_t from, int64_t to) {
  Sends out;
  for (int64_t t = from; t <= to; ++t) {
    r.set_sequence(++seq);
    *r.mutable_time() = TimeUtil::SecondsToTimestamp(t);
    for (auto& p : *r.mutable_probes()) *p.mutable_last_probe() = TimeUtil::SecondsToTimestamp(t);
    const v1::Report d = enc.encode(r, true);
    EXPECT_TRUE(d.delta()) << "report at " << t;
    for (const auto& p : d.probes()) out.probes[v1::Layer_Name(p.layer()) + "/" + p.dst()].push_back(t);
    for (const auto& c : d.checks()) out.checks[c.name()].push_back(t);
    out.most_in_one = std::max(out.most_in_one, static_cast<size_t>(d.probes_size()));
  }
  return out;
}

// The gaps between a result's sends from `from` (when a whole report sent everything) to
// `to`: the first one (whole report to first digest slice) and the longest after it.
struct Gaps {
  int64_t first = 0;
  int64_t later = 0;
};
Gaps gapsOf(const std::vector<int64_t>& times, int64_t from, int64_t to) {
  Gaps g;
  int64_t last = from;
  for (size_t i = 0; i < times.size(); ++i) {
    (i == 0 ? g.first : g.later) = std::max(i == 0 ? g.first : g.later, times[i] - last);
    last = times[i];
  }
  g.later = std::max(g.later, to - last);
  return g;
}

TEST(ReportDelta, TheDigestIsSpreadOverTheDeltasEveryResultOncePerPeriod) {
  ReportDeltaEncoder enc;  // 30 s
  uint64_t seq = 0;
  v1::Report r = report(++seq, 100);
  EXPECT_FALSE(enc.encode(r, true).delta());
  // Unchanged results, one report a second for two minutes: every report is a delta. The
  // whole report is the first digest, so the first slice goes out a period after it, and
  // then each result goes out within every 30 s; no report carries more than its share of
  // the digest (6 results in 30 reports: one).
  const Sends sends = unchangedReports(enc, r, seq, 101, 220);
  ASSERT_EQ(sends.probes.size(), 6u);
  for (const auto& [key, times] : sends.probes) {
    ASSERT_FALSE(times.empty()) << key;
    EXPECT_GT(times.front(), 130) << key;  // no digest within a period of the whole report
    const Gaps g = gapsOf(times, 100, 220);
    EXPECT_LE(g.first, 60) << key;
    EXPECT_LE(g.later, 30) << key;
    EXPECT_EQ(times.size(), 3u) << key;  // 90 s of slices: three periods
  }
  EXPECT_EQ(sends.most_in_one, 1u);
  // The checks go out whole once a period, not in every report.
  for (const char* name : {"vxlan_device", "istiod"}) {
    ASSERT_TRUE(sends.checks.count(name)) << name;
    EXPECT_EQ(sends.checks.at(name), (std::vector<int64_t>{130, 160, 190, 220})) << name;
  }
  // With a coverage period longer than 30 s, the digest period is that.
  ReportDeltaEncoder slow_enc;
  v1::Report slow = report(++seq, 100);
  *slow.mutable_coverage_period() = TimeUtil::SecondsToDuration(60);
  *slow.mutable_probe_interval() = TimeUtil::SecondsToDuration(1);
  EXPECT_FALSE(slow_enc.encode(slow, true).delta());
  const Sends slow_sends = unchangedReports(slow_enc, slow, seq, 101, 220);
  ASSERT_EQ(slow_sends.probes.size(), 6u);
  for (const auto& [key, times] : slow_sends.probes) {
    EXPECT_EQ(times.size(), 1u) << key;  // slices from 160 to 220: one period
    EXPECT_GT(times.front(), 160) << key;
  }
  // A new stream starts whole.
  enc.reset();
  EXPECT_FALSE(enc.encode(report(++seq, 221), true).delta());
}

// With a quiet report interval (PeerList.quiet_report_interval) a report with no news is
// left out until that long after the last one sent; any change goes out at once.
TEST(ReportDelta, AQuietReportWaitsForTheHoldButAChangeGoesOutAtOnce) {
  ReportDeltaEncoder enc;
  const auto hold = std::chrono::seconds(3);
  auto at = [&](v1::Report r) { return enc.encodeUnlessQuiet(PendingReport(r), true, hold); };
  ASSERT_TRUE(at(report(1, 100)).has_value());  // whole
  EXPECT_FALSE(at(report(2, 101)).has_value());
  EXPECT_FALSE(at(report(3, 102)).has_value());
  auto quiet = at(report(4, 103));  // the hold is over: a delta with no news
  ASSERT_TRUE(quiet.has_value());
  EXPECT_TRUE(quiet->delta());
  EXPECT_EQ(quiet->sequence(), 4u);
  EXPECT_EQ(quiet->probes_size(), 0);
  EXPECT_EQ(quiet->findings_size(), 1);
  EXPECT_FALSE(at(report(5, 104)).has_value());

  v1::Report check_changed = report(6, 105);  // a check's result changed
  check_changed.mutable_checks(0)->set_status(v1::CheckResult::FAIL);
  auto sent = at(check_changed);
  ASSERT_TRUE(sent.has_value());
  ASSERT_EQ(sent->checks_size(), 1);
  EXPECT_EQ(sent->checks(0).name(), "vxlan_device");

  v1::Report failing = report(7, 106);  // a new failure, the check as sent last
  failing.mutable_checks(0)->set_status(v1::CheckResult::FAIL);
  *find(failing, "b", v1::UNDERLAY) = probe("b", v1::UNDERLAY, 0);
  sent = at(failing);
  ASSERT_TRUE(sent.has_value());
  EXPECT_EQ(dsts(*sent), (std::set<std::string>{"UNDERLAY/b"}));
  failing.set_sequence(8);  // still failing: a failing cell's counters stay current
  *failing.mutable_time() = TimeUtil::SecondsToTimestamp(107);
  sent = at(failing);
  ASSERT_TRUE(sent.has_value());
  EXPECT_EQ(dsts(*sent), (std::set<std::string>{"UNDERLAY/b"}));

  v1::Report healed = report(9, 108);  // healed once more, then quiet
  healed.mutable_checks(0)->set_status(v1::CheckResult::FAIL);
  ASSERT_TRUE(at(healed).has_value());
  healed.set_sequence(10);
  *healed.mutable_time() = TimeUtil::SecondsToTimestamp(109);
  EXPECT_FALSE(at(healed).has_value());
  healed.set_sequence(11);
  *healed.mutable_time() = TimeUtil::SecondsToTimestamp(110);
  healed.mutable_findings(0)->set_code("ANOTHER_FINDING");  // new findings go out at once
  sent = at(healed);
  ASSERT_TRUE(sent.has_value());
  EXPECT_EQ(sent->findings(0).code(), "ANOTHER_FINDING");

  // A healthy result's RTT moved, a check took longer to run, a finding's evidence moved:
  // news that waits for the next report sent.
  for (int64_t t = 111; t <= 113; ++t) {
    healed.set_sequence(static_cast<uint64_t>(t));
    *healed.mutable_time() = TimeUtil::SecondsToTimestamp(t);
    *find(healed, "a", v1::OVERLAY) = probe("a", v1::OVERLAY, 10, 400, 800);
    *healed.mutable_checks(1)->mutable_duration() = TimeUtil::MillisecondsToDuration(t);
    healed.mutable_findings(0)->add_evidence("seen at " + std::to_string(t));
    sent = at(healed);
    if (t < 113) {
      EXPECT_FALSE(sent.has_value()) << t;
    } else {
      ASSERT_TRUE(sent.has_value());
      EXPECT_EQ(dsts(*sent), (std::set<std::string>{"OVERLAY/a"}));
      ASSERT_EQ(sent->checks_size(), 1);
      EXPECT_EQ(sent->checks(0).name(), "istiod");
      EXPECT_EQ(sent->findings(0).evidence_size(), 3);
    }
  }
  EXPECT_EQ(enc.counters().held, 6u);

  // A hold not above the probe interval holds nothing.
  ReportDeltaEncoder every;
  ASSERT_TRUE(every.encodeUnlessQuiet(PendingReport(report(1, 100)), true, std::chrono::seconds(1)).has_value());
  EXPECT_TRUE(every.encodeUnlessQuiet(PendingReport(report(2, 101)), true, std::chrono::seconds(1)).has_value());
  // Nor without the aggregator's consent to deltas: every report is whole.
  ReportDeltaEncoder whole_only;
  for (uint64_t i = 1; i <= 3; ++i) {
    auto r = whole_only.encodeUnlessQuiet(PendingReport(report(i, 100 + static_cast<int64_t>(i))), false, hold);
    ASSERT_TRUE(r.has_value());
    EXPECT_FALSE(r->delta());
  }
}

// The reports sent after quiet ones carry their digest shares: every result still goes out
// once per period, in reports a hold apart.
TEST(ReportDelta, ReportsAfterQuietOnesCarryTheirDigestShares) {
  ReportDeltaEncoder enc;  // 30 s
  const auto hold = std::chrono::seconds(3);
  uint64_t seq = 0;
  v1::Report r = report(++seq, 100);
  ASSERT_TRUE(enc.encodeUnlessQuiet(PendingReport(r), true, hold).has_value());
  std::map<std::string, std::vector<int64_t>> probes;
  std::vector<int64_t> sent_at;
  for (int64_t t = 101; t <= 220; ++t) {
    r.set_sequence(++seq);
    *r.mutable_time() = TimeUtil::SecondsToTimestamp(t);
    for (auto& p : *r.mutable_probes()) *p.mutable_last_probe() = TimeUtil::SecondsToTimestamp(t);
    auto d = enc.encodeUnlessQuiet(PendingReport(r), true, hold);
    if (!d) continue;
    EXPECT_TRUE(d->delta());
    sent_at.push_back(t);
    for (const auto& p : d->probes()) probes[v1::Layer_Name(p.layer()) + "/" + p.dst()].push_back(t);
  }
  // One report every 3 s (the checks' digest at 130, 160, 190, 220 falls on those too).
  ASSERT_EQ(sent_at.size(), 40u);
  for (size_t i = 1; i < sent_at.size(); ++i) EXPECT_EQ(sent_at[i] - sent_at[i - 1], 3) << sent_at[i];
  ASSERT_EQ(probes.size(), 6u);
  for (const auto& [key, times] : probes) {
    EXPECT_GT(times.front(), 130) << key;
    const Gaps g = gapsOf(times, 100, 220);
    EXPECT_LE(g.later, 30 + 3) << key;  // within a period, give or take a hold
    EXPECT_EQ(times.size(), 3u) << key;
  }
  EXPECT_EQ(enc.counters().held, 120u - 40u);
}

// Reports that come late (a slow stream) carry the share of the digest the time since the
// last one is due, at most every result once.
TEST(ReportDelta, ALateReportCarriesTheDigestShareOfItsGap) {
  ReportDeltaEncoder enc;
  enc.encode(report(1, 100), true);
  EXPECT_EQ(enc.encode(report(2, 110), true).probes_size(), 0);  // within a period of the whole report
  EXPECT_EQ(enc.encode(report(3, 125), true).probes_size(), 0);
  EXPECT_EQ(enc.encode(report(4, 140), true).probes_size(), 2);  // 10 s of slices, of 30: 2 of 6
  EXPECT_EQ(enc.encode(report(5, 155), true).probes_size(), 3);  // 15 s: 3
  EXPECT_EQ(enc.encode(report(6, 400), true).probes_size(), 6);  // far more than a period: all, once
  EXPECT_EQ(enc.counters().probes_refreshed, 11u);
  EXPECT_EQ(enc.counters().whole, 1u);
}

TEST(ReportDelta, TheDigestPeriodGrowsWithTheClusterSoItsDigestsStayWithinTheRate) {
  using std::chrono::seconds;
  const ReportDeltaEncoder::Options o;  // 30 s, 100,000 results a second
  EXPECT_EQ(ReportDeltaEncoder::digestPeriod(o, 6, seconds(1)), seconds(30));
  EXPECT_EQ(ReportDeltaEncoder::digestPeriod(o, 2000, seconds(5)), seconds(30));  // 1,000 nodes: 20 s < 30 s
  EXPECT_EQ(ReportDeltaEncoder::digestPeriod(o, 2000, seconds(45)), seconds(45));  // the coverage period
  EXPECT_EQ(ReportDeltaEncoder::digestPeriod(o, 10000, seconds(25)), seconds(500));  // 5,000 nodes
  // What the bound is for: N = T/2 agents' digests, each T results every P, within the rate.
  for (size_t t : {100U, 2000U, 5000U, 10000U, 20000U}) {
    const double p = std::chrono::duration<double>(ReportDeltaEncoder::digestPeriod(o, t, seconds(1))).count();
    EXPECT_LE((t / 2.0) * t / p, o.cluster_digest_rate * 1.0001) << t;
  }
  ReportDeltaEncoder::Options off = o;
  off.cluster_digest_rate = 0;
  EXPECT_EQ(ReportDeltaEncoder::digestPeriod(off, 10000, seconds(25)), seconds(30));
}

TEST(ReportDelta, ABigReportsDigestWaitsForItsLongerPeriod) {
  ReportDeltaEncoder::Options o;
  o.cluster_digest_rate = 0.5;  // 6 results: 36 / 1 = 36 s
  ReportDeltaEncoder enc(o);
  uint64_t seq = 0;
  v1::Report r = report(++seq, 100);
  enc.encode(r, true);
  const Sends sends = unchangedReports(enc, r, seq, 101, 208);
  ASSERT_EQ(sends.probes.size(), 6u);
  for (const auto& [key, times] : sends.probes) {
    EXPECT_GT(times.front(), 136) << key;
    const Gaps g = gapsOf(times, 100, 208);
    EXPECT_LE(g.first, 72) << key;
    EXPECT_LE(g.later, 36) << key;
    EXPECT_EQ(times.size(), 2u) << key;  // 72 s of slices: two periods of 36
  }
}

// The agent's reports share each target's entry until the target changes (its stats
// version moves), and the encoder skips comparing an entry whose version it has seen. Over
// a random run of changes (loss, failures, RTT drifts, never-probed targets, results
// growing old, joins, a vanished target, the digest), that shortcut sends exactly what
// comparing every result would.
TEST(ReportDelta, VersionedEntriesEncodeExactlyAsComparingEveryResult) {
  std::mt19937 rng(12345);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<uint32_t>(n)); };
  const std::vector<std::string> names{"a", "b", "c", "d", "e", "f", "g", "h"};
  struct Target {
    std::shared_ptr<const ProbeEntry> entry;
  };
  std::vector<Target> targets;
  uint64_t version = 0;
  auto fresh = [&](v1::ProbeResult r) { return std::make_shared<const ProbeEntry>(std::move(r), ++version); };
  for (const auto& n : names) {
    for (v1::Layer l : {v1::UNDERLAY, v1::OVERLAY}) {
      v1::ProbeResult never;
      never.set_dst(n);
      never.set_layer(l);
      targets.push_back({fresh(pick(3) == 0 ? never : probe(n, l))});
    }
  }
  ReportDeltaEncoder by_version;
  ReportDeltaEncoder by_content;
  size_t deltas = 0, omitted_by_version = 0;
  for (uint64_t seq = 1; seq <= 400; ++seq) {
    const int64_t now = 1000 + static_cast<int64_t>(seq);
    for (auto& t : targets) {
      if (pick(4) != 0) continue;  // most targets do not change between two reports
      v1::ProbeResult r = t.entry->result();
      switch (pick(6)) {
        case 0: r = probe(r.dst(), r.layer(), static_cast<uint32_t>(pick(11))); break;   // loss
        case 1: r = probe(r.dst(), r.layer(), 10, 150 + pick(150), 300 + pick(300)); break;  // RTT
        case 2: r = probe(r.dst(), r.layer()); break;                                  // healthy
        default: break;                                                                // re-probed
      }
      if (r.sent() > 0) *r.mutable_last_probe() = TimeUtil::SecondsToTimestamp(now - pick(8));
      t.entry = fresh(std::move(r));
    }
    PendingReport pending;
    pending.report.set_sequence(seq);
    *pending.report.mutable_time() = TimeUtil::SecondsToTimestamp(now);
    *pending.report.mutable_coverage_period() = TimeUtil::SecondsToDuration(2);
    *pending.report.mutable_probe_interval() = TimeUtil::SecondsToDuration(1);
    const bool drop_one = pick(50) == 0;  // a target missing from this report
    for (size_t i = drop_one ? 1 : 0; i < targets.size(); ++i) pending.probes.push_back(targets[i].entry);
    if (pick(40) == 0) {
      const std::vector<std::string> joined{names[static_cast<size_t>(pick(8))]};
      by_version.resendTo(joined);
      by_content.resendTo(joined);
    }
    const v1::Report a = by_version.encode(pending, true);
    const v1::Report b = by_content.encode(pending.whole(), true);  // entries of unknown version
    ASSERT_EQ(a.SerializeAsString(), b.SerializeAsString()) << "report " << seq;
    if (a.delta()) ++deltas;
  }
  omitted_by_version = by_version.counters().probes_omitted;
  EXPECT_GT(deltas, 300u);                 // the run was mostly deltas
  EXPECT_GT(omitted_by_version, 1000u);    // which left most results out
  EXPECT_EQ(omitted_by_version, by_content.counters().probes_omitted);
}

// A report's entries are the prober's results, built again only for targets whose stats
// version moved, and shared otherwise; a target that is gone is forgotten.
TEST(ProbeEntriesTest, OnlyTargetsWhoseVersionMovedAreBuiltAgain) {
  std::vector<uint64_t> asked;
  uint64_t moved = 0;  // target 2's stats version is 200 + moved
  auto stats_of = [&](const std::vector<uint64_t>& ids) {
    asked = ids;
    std::vector<TargetStats> out;
    for (uint64_t id : ids) {
      TargetStats s;
      s.id = id;
      s.version = id * 100 + (id == 2 ? moved : 0);
      s.target.peer = "peer-" + std::to_string(id);
      s.target.layer = Layer::kUnderlay;
      s.window_probes = 4;
      out.push_back(s);
    }
    return out;
  };
  ProbeEntries entries;
  auto first = entries.update({{1, 100}, {2, 200}, {3, 300}}, stats_of);
  ASSERT_EQ(first.size(), 3u);
  EXPECT_EQ(asked, (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_EQ(first[1]->result().dst(), "peer-2");
  EXPECT_EQ(first[1]->version, 200u);
  EXPECT_EQ(first[1]->key, "1/peer-2");

  asked.clear();
  auto same = entries.update({{1, 100}, {2, 200}, {3, 300}}, stats_of);
  EXPECT_TRUE(asked.empty());  // nothing moved: nothing asked
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(same[i], first[i]) << i;

  // 2 moved, 3 is gone, 4 is new.
  moved = 1;
  auto next = entries.update({{2, 201}, {1, 100}, {4, 400}}, stats_of);
  EXPECT_EQ(asked, (std::vector<uint64_t>{2, 4}));
  ASSERT_EQ(next.size(), 3u);
  EXPECT_NE(next[0], first[1]);
  EXPECT_EQ(next[0]->result().dst(), "peer-2");
  EXPECT_EQ(next[0]->version, 201u);
  EXPECT_EQ(next[1], first[0]);
  EXPECT_EQ(next[2]->result().dst(), "peer-4");
  EXPECT_EQ(entries.built(), 5u);

  // 3 was forgotten: listed again, it is built again.
  asked.clear();
  entries.update({{3, 300}}, stats_of);
  EXPECT_EQ(asked, (std::vector<uint64_t>{3}));
  // A target that vanished between the two asks is left out.
  auto none = entries.update({{9, 900}}, [](const std::vector<uint64_t>&) { return std::vector<TargetStats>{}; });
  EXPECT_TRUE(none.empty());
}

// A whole Report and its pending form say the same.
TEST(PendingReportTest, AWholeReportRoundTrips) {
  const v1::Report r = report(7, 100);
  const PendingReport pending(r);
  EXPECT_EQ(pending.probes.size(), 6u);
  EXPECT_EQ(pending.report.probes_size(), 0);
  EXPECT_EQ(pending.probes[0]->version, 0u);
  EXPECT_EQ(pending.whole().SerializeAsString(), r.SerializeAsString());
}

// ---- Results that follow (Report.results_follow) ----

// A whole report at `t` seconds of `peers` peers (p0000, p0001, ...) on both layers, healthy,
// whose coverage period is `rounds` intervals of 1 s.
v1::Report largeReport(uint64_t seq, int64_t t, int peers, int rounds) {
  v1::Report r;
  r.set_sequence(seq);
  *r.mutable_time() = TimeUtil::SecondsToTimestamp(t);
  *r.mutable_coverage_period() = TimeUtil::SecondsToDuration(rounds);
  *r.mutable_probe_interval() = TimeUtil::SecondsToDuration(1);
  for (int i = 0; i < peers; ++i) {
    char name[16];
    std::snprintf(name, sizeof name, "p%04d", i);
    for (v1::Layer l : {v1::UNDERLAY, v1::OVERLAY}) *r.add_probes() = probe(name, l);
  }
  *r.add_checks() = check("vxlan_device", v1::CheckResult::OK);
  return r;
}

TEST(ReportDeltaResultsFollow, TheLimitIsAFewHundredOrWhatFinishesWithinTheCoveragePeriod) {
  const ReportDeltaEncoder::Options o;
  EXPECT_EQ(ReportDeltaEncoder::resultsPerReport(o, 10'000, 25), 512u);
  EXPECT_EQ(ReportDeltaEncoder::resultsPerReport(o, 20'000, 25), 870u);  // ⌈20,000 / 23⌉
  EXPECT_EQ(ReportDeltaEncoder::resultsPerReport(o, 10'000, 3), 10'000u);  // too short to spread
  EXPECT_EQ(ReportDeltaEncoder::resultsPerReport(o, 10'000, 1), 10'000u);  // a full mesh
  EXPECT_EQ(ReportDeltaEncoder::resultsPerReport(o, 300, 25), 512u);
  ReportDeltaEncoder::Options off;
  off.results_per_report = 0;
  EXPECT_EQ(ReportDeltaEncoder::resultsPerReport(off, 10'000, 25), 10'000u);
}

TEST(ReportDeltaResultsFollow, AWholeReportCarriesTheFailingResultsAndAFewHundredTheDeltasTheRest) {
  ReportDeltaEncoder enc = changesOnly();
  enc.acceptResultsFollow(true);
  v1::Report r = largeReport(1, 1000, 1000, 25);  // 2,000 results
  *find(r, "p0900", v1::OVERLAY) = probe("p0900", v1::OVERLAY, 0);  // failing, far past the first 512
  const v1::Report first = enc.encode(r, true);
  EXPECT_FALSE(first.delta());
  EXPECT_TRUE(first.results_follow());
  ASSERT_EQ(first.probes_size(), 513);
  EXPECT_NE(find(const_cast<v1::Report&>(first), "p0900", v1::OVERLAY), nullptr);
  EXPECT_EQ(first.probes(0).dst(), "p0000");
  EXPECT_EQ(first.probes(511).dst(), "p0255");
  EXPECT_EQ(first.checks_size(), 1);
  EXPECT_EQ(enc.counters().results_follow, 1u);

  std::set<std::string> seen = dsts(first);
  int reports = 1;
  for (int64_t t = 1001; seen.size() < 2000 && t < 1100; ++t) {
    r.set_sequence(static_cast<uint64_t>(t - 999));
    *r.mutable_time() = TimeUtil::SecondsToTimestamp(t);
    if (t == 1001) *find(r, "p0999", v1::UNDERLAY) = probe("p0999", v1::UNDERLAY, 0);  // a new failure, owed
    const auto d = enc.encodeUnlessQuiet(PendingReport(r), true, std::chrono::seconds(3));
    ASSERT_TRUE(d) << "a report with results still owed is never held, t=" << t;
    EXPECT_TRUE(d->delta());
    EXPECT_FALSE(d->results_follow());
    v1::Report copy = *d;
    EXPECT_NE(find(copy, "p0900", v1::OVERLAY), nullptr);  // failing: in every report
    if (t == 1001) {
      EXPECT_NE(find(copy, "p0999", v1::UNDERLAY), nullptr) << "a new failure goes out at once";
    }
    EXPECT_LE(d->probes_size(), 512 + 2);  // the owed quiet ones, and the failing ones
    for (const auto& p : d->probes()) seen.insert(v1::Layer_Name(p.layer()) + "/" + p.dst());
    ++reports;
  }
  EXPECT_EQ(seen.size(), 2000u);
  EXPECT_EQ(reports, 4) << "1,488 owed: three deltas of up to 512";
  EXPECT_LE(reports, 25 - 2) << "within the coverage period";

  // Nothing owed any more: once the failing ones healed (news, sent), a report with no
  // news is held again.
  *find(r, "p0900", v1::OVERLAY) = probe("p0900", v1::OVERLAY);
  *find(r, "p0999", v1::UNDERLAY) = probe("p0999", v1::UNDERLAY);
  r.set_sequence(100);
  *r.mutable_time() = TimeUtil::SecondsToTimestamp(1005);
  const auto healed = enc.encodeUnlessQuiet(PendingReport(r), true, std::chrono::seconds(3));
  ASSERT_TRUE(healed);
  EXPECT_EQ(healed->probes_size(), 2);
  r.set_sequence(101);
  *r.mutable_time() = TimeUtil::SecondsToTimestamp(1006);
  EXPECT_FALSE(enc.encodeUnlessQuiet(PendingReport(r), true, std::chrono::seconds(3)));

  // Members that joined get their results a few hundred a delta too.
  std::vector<std::string> all;
  for (int i = 0; i < 1000; ++i) {
    char name[16];
    std::snprintf(name, sizeof name, "p%04d", i);
    all.push_back(name);
  }
  enc.resendTo(all);
  r.set_sequence(102);
  *r.mutable_time() = TimeUtil::SecondsToTimestamp(1007);
  const auto joined = enc.encodeUnlessQuiet(PendingReport(r), true, std::chrono::seconds(3));
  ASSERT_TRUE(joined);
  EXPECT_EQ(joined->probes_size(), 512);
}

TEST(ReportDeltaResultsFollow, EveryResultIsInTheWholeReportUnlessTheAggregatorAcceptsItAndTheCoverageIsLong) {
  {
    ReportDeltaEncoder enc = changesOnly();  // the aggregator's PeerList did not say it accepts it
    const v1::Report first = enc.encode(largeReport(1, 1000, 1000, 25), true);
    EXPECT_FALSE(first.results_follow());
    EXPECT_EQ(first.probes_size(), 2000);
  }
  {
    ReportDeltaEncoder enc = changesOnly();
    enc.acceptResultsFollow(true);
    const v1::Report first = enc.encode(largeReport(1, 1000, 1000, 1), true);  // a full mesh
    EXPECT_FALSE(first.results_follow());
    EXPECT_EQ(first.probes_size(), 2000);
  }
  {
    ReportDeltaEncoder enc = changesOnly();
    enc.acceptResultsFollow(true);
    const v1::Report first = enc.encode(largeReport(1, 1000, 1000, 25), false);  // no deltas
    EXPECT_FALSE(first.results_follow());
    EXPECT_EQ(first.probes_size(), 2000);
  }
  {
    ReportDeltaEncoder enc = changesOnly();
    enc.acceptResultsFollow(true);
    const v1::Report first = enc.encode(largeReport(1, 1000, 200, 25), true);  // 400 results
    EXPECT_FALSE(first.results_follow());
    EXPECT_EQ(first.probes_size(), 400);
  }
}

}  // namespace
}  // namespace meshprobe::agent
