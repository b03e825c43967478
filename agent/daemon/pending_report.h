#pragma once
// A report as the agent keeps it until a stream sends it.
//
// Every interval the agent reports every probe target, but in steady state only the targets
// probed since the last report changed (under a probe budget, a few hundred of thousands).
// So a report holds its probe results as shared, immutable entries: ProbeEntries builds an
// entry once per change of its target, as the prober's stats version says, and every later
// report shares it until the target changes again. The stream's delta encoder
// (report_delta.h) compares versions before it compares contents, and copies only what it
// sends. A report of T targets of which C changed costs C conversions and T pointer copies,
// not T message builds.
//
// An entry keeps its result serialized (about 100 bytes) with the few fields the encoder
// compares beside it, not as a ProbeResult message: a message with its durations and
// timestamps is half a dozen allocations, about 520 bytes, and every target has an entry
// all the time (10,000 at 5,000 peers), while a result is parsed again only when a report
// carries it.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "agent/probe/prober.h"
#include "meshprobe/v1/collector.pb.h"

namespace meshprobe::agent {

struct ProbeEntry {
  // What the delta encoder (report_delta.h) compares of a result, taken when the entry is
  // built (ReportDeltaEncoder::summaryOf).
  struct Summary {
    bool quiet = false;  // ReportDeltaEncoder::quiet
    bool never = false;  // never probed
    int64_t rtt_p50_ns = 0;
    int64_t rtt_p99_ns = 0;
    uint32_t path_mtu_size = 0;
    bool has_last_probe = false;
  };

  std::string bytes;                     // the ProbeResult, serialized
  std::string key;                       // keyOf(result): layer and destination
  uint64_t version = 0;                  // the stats version it was built from; 0: unknown
  std::optional<int64_t> last_probe_ns;  // result.last_probe, as nanoseconds
  Summary summary;

  explicit ProbeEntry(const meshprobe::v1::ProbeResult& r, uint64_t v = 0);
  // The result, parsed again from `bytes`.
  meshprobe::v1::ProbeResult result() const;
  // Adds the result to `report`'s probes.
  void appendTo(meshprobe::v1::Report& report) const;
  // The encoder's key of a result: "<layer number>/<dst>".
  static std::string keyOf(const meshprobe::v1::ProbeResult& result);
};

struct PendingReport {
  meshprobe::v1::Report report;  // everything but the probe results
  std::vector<std::shared_ptr<const ProbeEntry>> probes;

  PendingReport() = default;
  // A whole Report as it is: its results become entries of unknown version (compared by
  // content).
  PendingReport(meshprobe::v1::Report whole);  // NOLINT(google-explicit-constructor)
  // The Report with every probe result in it.
  meshprobe::v1::Report whole() const;
};

// The daemon's entries, by the prober's target id.
class ProbeEntries {
 public:
  using Versions = std::vector<Prober::TargetVersion>;
  using StatsOf = std::function<std::vector<TargetStats>(const std::vector<uint64_t>& ids)>;

  // The entries of `versions`' targets, in that order: a target whose version is the one its
  // entry was built from keeps the entry; the others are built from `stats_of` (asked once,
  // for those only). Entries of targets no longer listed are forgotten.
  std::vector<std::shared_ptr<const ProbeEntry>> update(const Versions& versions, const StatsOf& stats_of);
  // From a prober: its versions() and stats(ids).
  std::vector<std::shared_ptr<const ProbeEntry>> update(const Prober& prober);

  uint64_t built() const { return built_; }  // entries built so far (for tests)

 private:
  std::unordered_map<uint64_t, std::shared_ptr<const ProbeEntry>> by_id_;
  uint64_t built_ = 0;
};

}  // namespace meshprobe::agent
