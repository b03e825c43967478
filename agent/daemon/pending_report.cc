#include "agent/daemon/pending_report.h"

#include <google/protobuf/util/time_util.h>

#include "agent/daemon/report_builder.h"
#include "agent/daemon/report_delta.h"

namespace meshprobe::agent {

using google::protobuf::util::TimeUtil;

ProbeEntry::ProbeEntry(const meshprobe::v1::ProbeResult& r, uint64_t v)
    : bytes(r.SerializeAsString()), key(keyOf(r)), version(v), summary(ReportDeltaEncoder::summaryOf(r)) {
  if (r.has_last_probe()) last_probe_ns = TimeUtil::TimestampToNanoseconds(r.last_probe());
}

meshprobe::v1::ProbeResult ProbeEntry::result() const {
  meshprobe::v1::ProbeResult out;
  out.ParseFromString(bytes);  // serialized by the constructor: it parses
  return out;
}

void ProbeEntry::appendTo(meshprobe::v1::Report& report) const { report.add_probes()->ParseFromString(bytes); }

std::string ProbeEntry::keyOf(const meshprobe::v1::ProbeResult& result) {
  std::string key = std::to_string(static_cast<int>(result.layer()));
  key += '/';
  key += result.dst();
  return key;
}

PendingReport::PendingReport(meshprobe::v1::Report whole) {
  probes.reserve(static_cast<size_t>(whole.probes_size()));
  for (const auto& p : whole.probes()) probes.push_back(std::make_shared<const ProbeEntry>(p));
  whole.clear_probes();
  report = std::move(whole);
}

meshprobe::v1::Report PendingReport::whole() const {
  meshprobe::v1::Report out = report;
  out.mutable_probes()->Reserve(static_cast<int>(probes.size()));
  for (const auto& p : probes) p->appendTo(out);
  return out;
}

std::vector<std::shared_ptr<const ProbeEntry>> ProbeEntries::update(const Versions& versions,
                                                                    const StatsOf& stats_of) {
  std::vector<uint64_t> stale;
  for (const auto& v : versions) {
    auto it = by_id_.find(v.id);
    if (it == by_id_.end() || it->second->version != v.version) stale.push_back(v.id);
  }
  if (!stale.empty()) {
    // The stats may be newer than `versions` said (the prober kept probing): the entry takes
    // the version it was built from, so it is never older than its version claims.
    for (const auto& s : stats_of(stale)) {
      by_id_[s.id] = std::make_shared<const ProbeEntry>(toProto(s), s.version);
      ++built_;
    }
  }
  std::vector<std::shared_ptr<const ProbeEntry>> out;
  out.reserve(versions.size());
  for (const auto& v : versions) {
    auto it = by_id_.find(v.id);
    if (it != by_id_.end()) out.push_back(it->second);  // absent: gone between the two asks
  }
  if (by_id_.size() > out.size()) {
    std::unordered_map<uint64_t, std::shared_ptr<const ProbeEntry>> kept;
    kept.reserve(versions.size());
    for (const auto& v : versions) {
      auto it = by_id_.find(v.id);
      if (it != by_id_.end()) kept.emplace(v.id, std::move(it->second));
    }
    by_id_ = std::move(kept);
  }
  return out;
}

std::vector<std::shared_ptr<const ProbeEntry>> ProbeEntries::update(const Prober& prober) {
  return update(prober.versions(), [&prober](const std::vector<uint64_t>& ids) { return prober.stats(ids); });
}

}  // namespace meshprobe::agent
