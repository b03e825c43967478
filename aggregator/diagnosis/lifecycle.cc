#include "aggregator/diagnosis/lifecycle.h"

#include <algorithm>
#include <set>
#include <string_view>
#include <unordered_set>

namespace meshprobe::aggregator {

namespace v1 = meshprobe::v1;

namespace {

google::protobuf::Timestamp toTimestamp(std::chrono::system_clock::time_point t) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  google::protobuf::Timestamp ts;
  ts.set_seconds(ns / 1'000'000'000);
  ts.set_nanos(static_cast<int32_t>(ns % 1'000'000'000));
  return ts;
}

}  // namespace

FindingTracker::FindingTracker(LifecycleOptions options) : options_(options) {}

void FindingTracker::update(const std::vector<Candidate>& candidates, std::chrono::steady_clock::time_point now,
                            std::chrono::system_clock::time_point wall_now) {
  auto addHistory = [&](const std::string& id, v1::FindingTransition::State state,
                        std::chrono::system_clock::time_point when) {
    auto& h = history_[id];
    v1::FindingTransition t;
    *t.mutable_time() = toTimestamp(when);
    t.set_new_state(state);
    t.set_state(v1::FindingTransition::State_Name(state));  // the text older readers take
    h.push_back(std::move(t));
    if (h.size() > options_.history) h.erase(h.begin(), h.begin() + static_cast<long>(h.size() - options_.history));
  };

  std::set<std::string> seen, superseded;
  for (const auto& c : candidates) {
    for (const auto& id : c.supersedes) {
      superseded.insert(id);
      quarantined_until_[id] = now + options_.quarantine;
    }
  }
  std::erase_if(quarantined_until_, [&](const auto& q) { return q.second + options_.quarantine < now; });
  for (const auto& c : candidates) {
    const std::string& id = c.finding.id();
    if (!seen.insert(id).second) continue;  // first candidate of an id wins
    auto [it, inserted] = entries_.try_emplace(id);
    Entry& e = it->second;
    if (inserted) {
      e.first_seen = now;
      e.first_seen_wall = wall_now;
    }
    e.finding = c.finding;
    e.last_seen = now;
    e.last_seen_wall = wall_now;
    if (auto q = quarantined_until_.find(id); !e.active && q != quarantined_until_.end() && e.first_seen < q->second) {
      // Not before the quarantine ends: its onset clock starts there.
      e.first_seen_wall = wall_now + std::chrono::duration_cast<std::chrono::system_clock::duration>(q->second - now);
      e.first_seen = q->second;
    }
    if (!e.active && now - e.first_seen >= c.onset_after) {
      e.active = true;
      addHistory(id, v1::FindingTransition::ACTIVE, e.first_seen_wall);
      // A fault that comes back is a new occurrence: it leaves the cleared list.
      std::erase_if(cleared_, [&](const Cleared& cl) { return cl.finding.id() == id; });
    }
  }

  for (auto it = entries_.begin(); it != entries_.end();) {
    Entry& e = it->second;
    if (seen.count(it->first)) {
      ++it;
      continue;
    }
    if (!e.active) {  // a pending candidate that went away never became a finding
      it = entries_.erase(it);
      continue;
    }
    if (superseded.count(it->first)) {  // a vaguer guess that a finding now explains: gone at once
      it = entries_.erase(it);
      continue;
    }
    if (now - e.last_seen < options_.clear_after) {
      ++it;
      continue;
    }
    addHistory(it->first, v1::FindingTransition::CLEARED, e.last_seen_wall);
    Cleared cl{e.finding, now};
    *cl.finding.mutable_onset_time() = toTimestamp(e.first_seen_wall);
    *cl.finding.mutable_clear_time() = toTimestamp(e.last_seen_wall);
    *cl.finding.mutable_history() = {history_[it->first].begin(), history_[it->first].end()};
    cleared_.push_back(std::move(cl));
    it = entries_.erase(it);
  }

  std::erase_if(cleared_, [&](const Cleared& cl) { return now - cl.cleared_at > options_.keep_cleared; });
  // History of ids that are neither tracked nor recently cleared is forgotten. (A set of
  // the cleared ids: after a churn of thousands of findings, a scan of the cleared list per
  // history entry was millions of string compares a pass.)
  std::unordered_set<std::string_view> cleared_ids;
  for (const Cleared& cl : cleared_) cleared_ids.insert(cl.finding.id());
  for (auto it = history_.begin(); it != history_.end();) {
    const bool live = entries_.count(it->first) || cleared_ids.count(it->first);
    it = live ? std::next(it) : history_.erase(it);
  }
}

std::vector<v1::Finding> FindingTracker::active() const {
  std::vector<v1::Finding> out;
  for (const auto& [id, e] : entries_) {
    if (!e.active) continue;
    v1::Finding f = e.finding;
    *f.mutable_onset_time() = toTimestamp(e.first_seen_wall);
    f.clear_clear_time();
    if (auto h = history_.find(id); h != history_.end()) *f.mutable_history() = {h->second.begin(), h->second.end()};
    out.push_back(std::move(f));
  }
  return out;
}

std::vector<v1::Finding> FindingTracker::recentlyCleared() const {
  std::vector<v1::Finding> out;
  for (auto it = cleared_.rbegin(); it != cleared_.rend(); ++it) out.push_back(it->finding);
  return out;
}

}  // namespace meshprobe::aggregator
