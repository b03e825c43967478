#pragma once
// Delta reports: what one agent stream sends instead of a whole report every interval.
//
// The agent builds a whole Report every interval (every probe target, every check). On a
// stream whose aggregator accepts deltas (PeerList.accepts_report_deltas), the encoder sends
// only what changed since the previous report it sent on that stream (Report.delta):
//   - a probe result that is not quietly healthy, always (failing, lossy, an error or a
//     failure reason, missing path-MTU probes, or last probed longer ago than the coverage
//     window allows): new failures go out at once, a failing cell's counters stay current,
//     and the aggregator ages an old result as it would from a whole report;
//   - a never-probed result (a new target the rotation has not reached yet) once: it
//     stays what it was until its first probe, which changes it. Sent every time, a
//     5,000-node start in sparse mode would put every peer not yet probed (up to a
//     coverage period, 25 s at the default budget) into every agent's every report;
//   - a quietly healthy result when it was not quiet when last sent, was never sent, or its
//     RTT p50 or p99 moved by more than `rtt_move` (a quarter) of the value last sent —
//     measured against the last sent value, not a bucket edge, so a steady RTT jittering
//     around an edge does not flap;
//   - a check whose result changed (compared as bytes), the findings whole, pod_netns only
//     when it changed.
// A report is whole when: it is the stream's first (reset()), the aggregator does not accept
// deltas, or a probe target or a check disappeared since the last one sent (a delta cannot
// say "gone"). A member that joined since the last report (resendTo) gets all its results
// in the next delta.
//
// Results that follow: to an aggregator that accepts Report.results_follow, a whole report
// of more results than resultsPerReport() carries every result that is not quietly healthy
// and only that many of the others (in the report's order), marked results_follow; the
// aggregator keeps the cells it leaves out as they were. The results not sent yet (those,
// and a joined member's) go out in the deltas after it, failing ones at once and the
// others that many a report, and a report with any still owed is never held as quiet. At
// 5,000 peers a whole report is 10,000 results, about 1 MB: sent at once by every agent
// that (re)connects, it made each of the aggregator's connections size its read buffers
// for such messages for many minutes; in slices of 512 no message is much over 50 KB, and
// the row is complete within 20 intervals, inside the coverage period.
//
// The digest: every result goes out again once per digest period (digestPeriod: 30 s, the
// report's coverage period, or what keeps a whole cluster's digests within
// cluster_digest_rate, whichever is longest), so a change the aggregator missed cannot
// outlive it. It is spread over the deltas, a slice of the results in each (in the
// report's order, each slice where the last ended, its size the time since the last report
// as a share of the period), and every check and the pod netns list go out once per period.
// The whole report is the first digest: slices begin a period after it, so a result goes
// out again within two periods of the stream's whole report and then within every period,
// and a cluster of agents starting at once sends no digest during its start.
// Not a whole report per period: at 5,000 peers that is a 1 MB message from every agent
// every few minutes, and a message that large makes the aggregator's gRPC connection size
// its read buffers for the next ones too, for minutes, while a slice of the digest keeps
// every report small. To the aggregator a resent result is an ordinary delta entry.
//
// A quiet report: a delta that would carry nothing but its slice of the digest, healthy
// results whose RTT moved and checks whose details or duration moved (no other changed
// result, no check whose status or summary changed, the same pod netns list and the same
// findings by code, severity, layer and nodes, no checks due) may be left out until
// `hold` after the last report sent (encodeUnlessQuiet), when the aggregator asks for it
// (PeerList.quiet_report_interval): any other change still goes out at once, and the next
// report sent carries those moves and the slices of the reports left out. (Sub-millisecond
// RTTs move by a quarter all the time, and a check's duration every run: were those news,
// hardly a report would be quiet.)
//
// A result whose entry (pending_report.h) has the stats version the encoder last looked at
// is not compared again: unchanged since then, it goes out only if it is not quiet or has
// grown older than the coverage window, as the rules above say.
//
// One encoder per stream, used by the stream's one writer thread (not thread-safe).

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "agent/daemon/pending_report.h"
#include "meshprobe/v1/collector.pb.h"

namespace meshprobe::agent {

// The digest's schedule on one stream: which of a delta's results form its slice. Shared by
// the encoder and by meshprobe-loadgen, which simulates what agents send.
class DigestSchedule {
 public:
  struct Slice {
    size_t from = 0;   // the first result's index
    size_t count = 0;  // results from `from` on, wrapping around at the report's end
    bool contains(size_t i, size_t total) const { return total > 0 && (i + total - from) % total < count; }
  };
  // A whole report at `now_ns` (the stream's first digest): slices start a period after it,
  // from the first result.
  void whole(int64_t now_ns);
  // The slice of a delta at `now_ns` with `total` results: the results after the last slice,
  // as many as the time since the last report (counted from a period after the whole report
  // on, at most one period) is of `period_ns`. Counted in result-nanoseconds, so that T
  // reports of 1/T of the period add up to one result exactly.
  Slice next(int64_t now_ns, int64_t period_ns, size_t total);
  // The report time of the last whole report or slice.
  int64_t last() const { return last_ns_; }

 private:
  int64_t whole_ns_ = 0;
  int64_t last_ns_ = 0;
  size_t cursor_ = 0;    // where the next slice starts
  uint64_t credit_ = 0;  // results due × period (ns), not yet sent
};

class ReportDeltaEncoder {
 public:
  struct Options {
    std::chrono::nanoseconds digest_period = std::chrono::seconds(30);
    double rtt_move = 0.25;
    // Probe results per second that the digests of a whole cluster may send the
    // aggregator. A report of T results comes from a cluster of about N = T / 2 nodes (a
    // result per peer and layer), whose N digests of T results each every P seconds cost
    // the aggregator N·T / P results a second: P ≥ T² / (2·rate). 100,000 a second keeps
    // the digest period at 30 s up to about 2,450 results (1,200 nodes) and makes it 500 s
    // at 5,000 nodes, where every digest would otherwise cost the aggregator 1.7 M results
    // a second. It also keeps a healthy agent's reports small: at 5,000 nodes a report
    // every 3 s (quiet reports) carries a share of 60 results, about 5 KB, under the 6.5 KB
    // above which gRPC makes the aggregator's reads on that connection 64 KiB instead of
    // 8 KiB for minutes (twice the rate made every share about 11 KB). A stream's first
    // report is whole whatever this says, so a restarted aggregator is complete as fast as
    // before.
    double cluster_digest_rate = 100'000;
    // To an aggregator that accepts Report.results_follow: a whole report of more probe
    // results than this carries those that are not quietly healthy and this many others,
    // and each delta after it at most this many of the rest (resultsPerReport()). 0: a whole
    // report carries every result.
    size_t results_per_report = 512;
  };
  struct Counters {
    uint64_t whole = 0;           // whole reports sent
    uint64_t deltas = 0;          // delta reports sent
    uint64_t probes_sent = 0;     // probe results carried (whole and delta)
    uint64_t probes_omitted = 0;  // probe results a delta left out as unchanged
    uint64_t probes_refreshed = 0;  // probe results a delta carried as its slice of the digest
    uint64_t held = 0;              // quiet reports left out (encodeUnlessQuiet)
    uint64_t results_follow = 0;    // whole reports that left results for the deltas after them
  };

  ReportDeltaEncoder() : ReportDeltaEncoder(Options{}) {}
  explicit ReportDeltaEncoder(Options options) : options_(options) {}

  // A new stream: the next report is whole.
  void reset();
  // Members that joined (or changed) since the last report: the next delta carries every
  // result for them as if never sent. The aggregator could not place this agent's cells for a
  // member before it knew it (a restarted aggregator learns its members one Hello at a
  // time), and these are the only cells it may lack: the rest of the report stays a delta,
  // so a join costs each agent a few results, not a whole report.
  void resendTo(const std::vector<std::string>& members);
  // This stream's aggregator applies Report.results_follow (its PeerList says so).
  void acceptResultsFollow(bool accepted) { results_follow_accepted_ = accepted; }
  // `report` is a whole report; returns it whole or its delta against what this encoder
  // sent last. `deltas_accepted`: the stream's aggregator said it applies deltas.
  meshprobe::v1::Report encode(const PendingReport& report, bool deltas_accepted) {
    return *encodeUnlessQuiet(report, deltas_accepted, std::chrono::nanoseconds(0));
  }
  meshprobe::v1::Report encode(const meshprobe::v1::Report& report, bool deltas_accepted) {
    return encode(PendingReport(report), deltas_accepted);
  }
  // As encode(), but nothing (and nothing remembered as sent) when the report would be a
  // quiet delta less than `hold` (> 0) after the last report sent, by report time.
  std::optional<meshprobe::v1::Report> encodeUnlessQuiet(const PendingReport& report, bool deltas_accepted,
                                                         std::chrono::nanoseconds hold);

  const Counters& counters() const { return counters_; }

  // How many quietly healthy or never-probed results a report whose results follow carries
  // (whole or delta) of `results` results whose coverage period is `rounds` probe intervals:
  // options.results_per_report, or more if the rest would not follow within the coverage
  // period less two intervals; `results` (all of them) when results_per_report is 0 or the
  // coverage period is under four intervals (a full mesh is one).
  static size_t resultsPerReport(const Options& options, size_t results, uint64_t rounds);

  // The longest time between two whole reports of `results` probe results whose coverage
  // period is `coverage`: the largest of options.digest_period, `coverage` and
  // results² / (2 · options.cluster_digest_rate).
  static std::chrono::nanoseconds digestPeriod(const Options& options, size_t results,
                                               std::chrono::nanoseconds coverage);

  // A probe result the encoder may leave out while it stays as it is: answered, no loss,
  // no consecutive failures, no error or failure reason, path-MTU probes (if any) answered.
  static bool quiet(const meshprobe::v1::ProbeResult& probe);
  // What the encoder compares of `probe` (kept in its ProbeEntry).
  static ProbeEntry::Summary summaryOf(const meshprobe::v1::ProbeResult& probe);

 private:
  struct Sent : ProbeEntry::Summary {
    uint64_t looked_at = 0;  // the entry version last compared (0: unknown)
  };
  static Sent sentOf(const ProbeEntry& entry);
  // No probe went out yet and nothing failed: nothing to say but that.
  static bool neverProbed(const meshprobe::v1::ProbeResult& probe);
  // How `now` differs from what was sent: not at all, only in a healthy result's RTT (news
  // that may wait for the next report sent), or otherwise.
  enum class Change { kNone, kRtt, kOther };
  Change change(const Sent& before, const ProbeEntry::Summary& now) const;
  bool moved(int64_t before, int64_t now) const;
  void remember(const PendingReport& report);  // a whole report was sent
  // What a delta of `report` must carry besides its digest slice, against what was sent
  // last: fills changed_ (the results), check_bytes_, scanned_pod_netns_ and
  // scanned_findings_. True when any of it is news (see "A quiet report" above).
  bool scan(const PendingReport& report, int64_t now_ns);

  // The limit resultsPerReport() sets for `report`: its coverage period in its intervals.
  size_t resultsPerReport(const meshprobe::v1::Report& report, size_t results) const;

  Options options_;
  Counters counters_;
  bool results_follow_accepted_ = false;
  bool have_base_ = false;
  std::optional<int64_t> last_whole_ns_;                 // report time checks were last all sent
  DigestSchedule digest_;                                // the probe results' digest slices
  std::unordered_map<std::string, Sent> probes_;         // by layer + dst, as last sent
  struct SentCheck {
    std::string bytes;  // serialized
    meshprobe::v1::CheckResult::Status status = meshprobe::v1::CheckResult::STATUS_UNSPECIFIED;
    std::string summary;
  };
  static SentCheck sentOf(const meshprobe::v1::CheckResult& check, std::string bytes);
  std::unordered_map<std::string, SentCheck> checks_;  // by name, as last sent
  std::optional<std::string> pod_netns_;                 // serialized as last sent
  std::string findings_;                                 // findingsKey() of the last sent
  // encode()'s scratch: probes_ entries, then what scan() found
  std::vector<Sent*> found_;
  std::vector<uint8_t> changed_;          // per result: to send
  std::vector<std::string> check_bytes_;  // per check: serialized
  std::optional<std::string> scanned_pod_netns_;
  std::string scanned_findings_;
};

}  // namespace meshprobe::agent
