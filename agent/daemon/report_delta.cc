#include "agent/daemon/report_delta.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <cstdlib>
#include <unordered_set>

namespace meshprobe::agent {

namespace v1 = meshprobe::v1;
using google::protobuf::util::TimeUtil;

namespace {

// What makes the findings news when it changes: each one's code, severity, layer and nodes
// (not its summary or evidence, whose numbers may move every round).
std::string findingsKey(const v1::Report& report) {
  std::string key;
  for (const auto& f : report.findings()) {
    key += f.code() + '/' + std::to_string(f.severity()) + '/' + std::to_string(f.layer());
    for (const auto& n : f.nodes()) key += '/' + n;
    key += '\n';
  }
  return key;
}

}  // namespace

void ReportDeltaEncoder::reset() {
  have_base_ = false;
  last_whole_ns_.reset();
  digest_ = DigestSchedule{};
  probes_.clear();
  checks_.clear();
  pod_netns_.reset();
  findings_.clear();
}

bool ReportDeltaEncoder::quiet(const v1::ProbeResult& p) {
  if (p.sent() == 0 || p.received() == 0 || p.consecutive_failures() > 0) return false;
  if (p.loss() != 0.0 || (p.has_recent_loss() && p.recent_loss() != 0.0)) return false;
  if (!p.error().empty() || p.failure() != v1::PROBE_FAILURE_UNSPECIFIED ||
      p.tcp_failure() != v1::PROBE_FAILURE_UNSPECIFIED) {
    return false;
  }
  if (p.has_path_mtu()) {
    const auto& m = p.path_mtu();
    if (m.consecutive_failures() > 0 || m.sent() > m.received() || !m.error().empty()) return false;
  }
  return true;
}

bool ReportDeltaEncoder::neverProbed(const v1::ProbeResult& p) {
  return p.sent() == 0 && !p.has_last_probe() && p.consecutive_failures() == 0 && p.error().empty() &&
         p.failure() == v1::PROBE_FAILURE_UNSPECIFIED && !p.has_path_mtu();
}

ProbeEntry::Summary ReportDeltaEncoder::summaryOf(const v1::ProbeResult& p) {
  ProbeEntry::Summary s;
  s.quiet = quiet(p);
  s.never = neverProbed(p);
  s.rtt_p50_ns = TimeUtil::DurationToNanoseconds(p.rtt_p50());
  s.rtt_p99_ns = TimeUtil::DurationToNanoseconds(p.rtt_p99());
  s.path_mtu_size = p.has_path_mtu() ? p.path_mtu().size() : 0;
  s.has_last_probe = p.has_last_probe();
  return s;
}

ReportDeltaEncoder::Sent ReportDeltaEncoder::sentOf(const ProbeEntry& entry) {
  Sent s;
  static_cast<ProbeEntry::Summary&>(s) = entry.summary;
  s.looked_at = entry.version;
  return s;
}

bool ReportDeltaEncoder::moved(int64_t before, int64_t now) const {
  const double base = static_cast<double>(std::max<int64_t>(before, 0));
  const double diff = static_cast<double>(std::llabs(now - before));
  if (base == 0.0) return now != before;
  return diff > options_.rtt_move * base;
}

ReportDeltaEncoder::SentCheck ReportDeltaEncoder::sentOf(const v1::CheckResult& check, std::string bytes) {
  return SentCheck{std::move(bytes), check.status(), check.summary()};
}

ReportDeltaEncoder::Change ReportDeltaEncoder::change(const Sent& before, const ProbeEntry::Summary& now) const {
  if (before.never) return now.never ? Change::kNone : Change::kOther;
  if (!before.quiet || !now.quiet) return Change::kOther;
  if (before.has_last_probe != now.has_last_probe) return Change::kOther;
  if (before.path_mtu_size != now.path_mtu_size) return Change::kOther;
  const bool rtt = moved(before.rtt_p50_ns, now.rtt_p50_ns) || moved(before.rtt_p99_ns, now.rtt_p99_ns);
  return rtt ? Change::kRtt : Change::kNone;
}

void ReportDeltaEncoder::remember(const PendingReport& pending) {
  const v1::Report& report = pending.report;
  probes_.clear();
  for (const auto& p : pending.probes) probes_[p->key] = sentOf(*p);
  checks_.clear();
  for (const auto& c : report.checks()) checks_[c.name()] = sentOf(c, c.SerializeAsString());
  if (report.has_pod_netns()) {
    pod_netns_ = report.pod_netns().SerializeAsString();
  } else {
    pod_netns_.reset();
  }
  findings_ = findingsKey(report);
  last_whole_ns_ = TimeUtil::TimestampToNanoseconds(report.time());
  have_base_ = true;
}

void ReportDeltaEncoder::resendTo(const std::vector<std::string>& members) {
  if (members.empty()) return;
  const std::unordered_set<std::string> names(members.begin(), members.end());
  std::erase_if(probes_, [&](const auto& kv) {
    const auto slash = kv.first.find('/');
    return slash != std::string::npos && names.count(kv.first.substr(slash + 1)) > 0;
  });
}

void DigestSchedule::whole(int64_t now_ns) {
  *this = DigestSchedule{};
  whole_ns_ = now_ns;
  last_ns_ = now_ns;
}

DigestSchedule::Slice DigestSchedule::next(int64_t now_ns, int64_t period_ns, size_t total) {
  period_ns = std::max<int64_t>(period_ns, 1);
  const int64_t slices_from = whole_ns_ + period_ns;
  const int64_t elapsed_ns = now_ns <= slices_from ? 0 : std::min(now_ns - std::max(last_ns_, slices_from), period_ns);
  last_ns_ = now_ns;
  const auto period = static_cast<uint64_t>(period_ns);
  credit_ = std::min<uint64_t>(credit_ + static_cast<uint64_t>(elapsed_ns) * total, period * total);
  Slice slice;
  slice.count = static_cast<size_t>(credit_ / period);
  credit_ -= static_cast<uint64_t>(slice.count) * period;
  slice.from = total == 0 ? 0 : cursor_ % total;
  cursor_ = total == 0 ? 0 : (slice.from + slice.count) % total;
  return slice;
}

size_t ReportDeltaEncoder::resultsPerReport(const Options& options, size_t results, uint64_t rounds) {
  if (options.results_per_report == 0 || rounds <= 1) return results;
  const uint64_t spread = rounds > 3 ? rounds - 2 : 1;  // the rest follow within rounds - 2 reports
  return std::max<size_t>(options.results_per_report, static_cast<size_t>((results + spread - 1) / spread));
}

size_t ReportDeltaEncoder::resultsPerReport(const v1::Report& report, size_t results) const {
  const int64_t coverage = TimeUtil::DurationToNanoseconds(report.coverage_period());
  const int64_t interval = TimeUtil::DurationToNanoseconds(report.probe_interval());
  const uint64_t rounds = coverage > 0 && interval > 0 ? static_cast<uint64_t>(coverage / interval) : 1;
  return resultsPerReport(options_, results, rounds);
}

std::chrono::nanoseconds ReportDeltaEncoder::digestPeriod(const Options& options, size_t results,
                                                          std::chrono::nanoseconds coverage) {
  auto period = std::max(options.digest_period, coverage);
  if (options.cluster_digest_rate > 0) {
    const double n = static_cast<double>(results);
    const double seconds = n * n / (2 * options.cluster_digest_rate);
    if (seconds > std::chrono::duration<double>(period).count()) {
      period = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(seconds));
    }
  }
  return period;
}

bool ReportDeltaEncoder::scan(const PendingReport& pending, int64_t now_ns) {
  const v1::Report& report = pending.report;
  // A result older than the coverage window (the aggregator's age rule: coverage period + 2
  // probe intervals) goes out every time, so the aggregator ages it to UNKNOWN as it would
  // from a whole report: an omitted cell is always one probed within its window.
  std::optional<int64_t> max_age_ns;
  const int64_t coverage = TimeUtil::DurationToNanoseconds(report.coverage_period());
  if (coverage > 0) {
    const int64_t interval =
        report.has_probe_interval() ? TimeUtil::DurationToNanoseconds(report.probe_interval()) : coverage;
    max_age_ns = coverage + 2 * std::max<int64_t>(interval, 0);
  }
  const size_t total = pending.probes.size();
  changed_.assign(total, 0);
  bool any_changed = false;  // beyond RTT moves, which may wait for the next report sent
  for (size_t i = 0; i < total; ++i) {
    const ProbeEntry& entry = *pending.probes[i];
    Sent* sent = found_[i];
    const bool old = max_age_ns && entry.last_probe_ns && now_ns - *entry.last_probe_ns > *max_age_ns;
    if (sent != nullptr && !old) {
      // Looked at in this version already: compared again it would give what it gave then,
      // which, after a send, is "send again" only for a result that is not quiet.
      const bool same = entry.version != 0 && sent->looked_at == entry.version;
      const Change c = same ? (!sent->quiet && !sent->never ? Change::kOther : Change::kNone)
                            : change(*sent, entry.summary);
      if (c == Change::kNone) {
        sent->looked_at = entry.version;
        continue;
      }
      changed_[i] = 1;
      any_changed = any_changed || c == Change::kOther;
      continue;
    }
    changed_[i] = 1;
    any_changed = true;
  }
  check_bytes_.clear();
  for (const auto& c : report.checks()) {
    check_bytes_.push_back(c.SerializeAsString());
    auto it = checks_.find(c.name());
    any_changed = any_changed || it == checks_.end() || it->second.status != c.status() ||
                  it->second.summary != c.summary();
  }
  scanned_pod_netns_.reset();
  if (report.has_pod_netns()) {
    scanned_pod_netns_ = report.pod_netns().SerializeAsString();
    any_changed = any_changed || !pod_netns_ || *pod_netns_ != *scanned_pod_netns_;
  }
  scanned_findings_ = findingsKey(report);
  return any_changed || scanned_findings_ != findings_;
}

std::optional<v1::Report> ReportDeltaEncoder::encodeUnlessQuiet(const PendingReport& pending, bool deltas_accepted,
                                                               std::chrono::nanoseconds hold) {
  const v1::Report& report = pending.report;
  const int64_t now_ns = TimeUtil::TimestampToNanoseconds(report.time());
  const int64_t digest_ns =
      digestPeriod(options_, pending.probes.size(),
                   std::chrono::nanoseconds(report.has_coverage_period()
                                                ? TimeUtil::DurationToNanoseconds(report.coverage_period())
                                                : 0))
          .count();
  bool whole = !deltas_accepted || !have_base_ || now_ns < digest_.last();
  if (!whole) {
    // A target or a check that disappeared: only a whole report can say so. Every result
    // sent before must be in this report: as many found as remembered (a key listed twice
    // counts twice and makes the report whole, which is always correct).
    found_.clear();
    size_t found = 0;
    for (const auto& p : pending.probes) {
      auto it = probes_.find(p->key);
      found_.push_back(it == probes_.end() ? nullptr : &it->second);
      if (it != probes_.end()) ++found;
    }
    if (found != probes_.size()) whole = true;
    if (!whole) {
      std::unordered_set<std::string> names;
      for (const auto& c : report.checks()) names.insert(c.name());
      for (const auto& [name, sent] : checks_) {
        if (!names.count(name)) whole = true;
      }
    }
    if (report.has_pod_netns() != pod_netns_.has_value() && !report.has_pod_netns()) whole = true;
  }
  const size_t per_report = results_follow_accepted_ && deltas_accepted
                                ? resultsPerReport(report, pending.probes.size())
                                : pending.probes.size();
  if (whole) {
    remember(pending);
    digest_.whole(now_ns);
    ++counters_.whole;
    if (per_report >= pending.probes.size()) {
      counters_.probes_sent += pending.probes.size();
      return pending.whole();
    }
    // The results that are not quietly healthy, and per_report others: the rest are owed
    // (not remembered as sent), and the deltas after it carry them.
    v1::Report out = report;
    out.set_results_follow(true);
    size_t room = per_report;
    for (const auto& p : pending.probes) {
      if (p->summary.quiet || p->summary.never) {
        if (room == 0) {
          probes_.erase(p->key);
          continue;
        }
        --room;
      }
      p->appendTo(out);
    }
    ++counters_.results_follow;
    counters_.probes_sent += static_cast<uint64_t>(out.probes_size());
    return out;
  }

  // Every check and the pod netns list go out once per digest period.
  const bool refresh_rest = now_ns - *last_whole_ns_ >= digest_ns;
  const bool news = scan(pending, now_ns);
  // A hold not above the probe interval holds nothing: a report every interval.
  if (report.has_probe_interval() && hold.count() <= TimeUtil::DurationToNanoseconds(report.probe_interval())) {
    hold = std::chrono::nanoseconds(0);
  }
  if (hold.count() > 0 && !news && !refresh_rest && now_ns - digest_.last() < hold.count()) {
    ++counters_.held;  // nothing remembered: the next report is compared with the last sent
    return std::nullopt;
  }

  // The digest (DigestSchedule): this delta's slice of the results, and every check and the
  // pod netns list, small, once per period.
  const size_t total = pending.probes.size();
  const DigestSchedule::Slice slice = digest_.next(now_ns, digest_ns, total);
  if (refresh_rest) last_whole_ns_ = now_ns;

  v1::Report delta;
  delta.set_delta(true);
  delta.set_sequence(report.sequence());
  *delta.mutable_time() = report.time();
  if (report.has_coverage_period()) *delta.mutable_coverage_period() = report.coverage_period();
  if (report.has_probe_interval()) *delta.mutable_probe_interval() = report.probe_interval();
  *delta.mutable_findings() = report.findings();
  findings_ = std::move(scanned_findings_);
  for (int k = 0; k < report.checks_size(); ++k) {
    const auto& c = report.checks(k);
    std::string& bytes = check_bytes_[static_cast<size_t>(k)];
    auto it = checks_.find(c.name());
    if (!refresh_rest && it != checks_.end() && it->second.bytes == bytes) continue;
    *delta.add_checks() = c;
    checks_[c.name()] = sentOf(c, std::move(bytes));
  }
  size_t owed_room = per_report;  // results owed (never sent on this stream) this delta may carry
  for (size_t i = 0; i < total; ++i) {
    const bool refresh_it = slice.contains(i, total);
    if (!changed_[i] && !refresh_it) {
      ++counters_.probes_omitted;
      continue;
    }
    const ProbeEntry& entry = *pending.probes[i];
    if (found_[i] == nullptr && (entry.summary.quiet || entry.summary.never)) {
      if (owed_room == 0) continue;  // still owed: a later delta carries it
      --owed_room;
    }
    entry.appendTo(delta);
    if (refresh_it) ++counters_.probes_refreshed;
    if (Sent* sent = found_[i]; sent != nullptr) {
      *sent = sentOf(entry);
    } else {
      probes_[entry.key] = sentOf(entry);  // a rehash moves no element: found_ stays valid
    }
    ++counters_.probes_sent;
  }
  if (scanned_pod_netns_ && (refresh_rest || !pod_netns_ || *pod_netns_ != *scanned_pod_netns_)) {
    *delta.mutable_pod_netns() = report.pod_netns();
    pod_netns_ = std::move(*scanned_pod_netns_);
  }
  ++counters_.deltas;
  return delta;
}

}  // namespace meshprobe::agent
