#include "aggregator/membership_fanout.h"

#include <algorithm>
#include <cstdint>
#include <unordered_map>

namespace meshprobe::aggregator {

namespace v1 = meshprobe::v1;

void MembershipFanout::add(MembershipSink* sink, bool accepts_deltas, const v1::PeerList& current) {
  receivers_[sink] = Receiver{accepts_deltas, seq_};
  v1::AggregatorMessage msg;
  *msg.mutable_peer_list() = current;
  sink->sendMembership(msg);
}

void MembershipFanout::remove(MembershipSink* sink) { receivers_.erase(sink); }

void MembershipFanout::changed(const MembershipDiff& diff) {
  if (diff.empty()) return;
  ++seq_;
  for (const auto* names : {&diff.added, &diff.removed, &diff.changed}) {
    for (const auto& n : *names) pending_[n] = seq_;
  }
  if (!opened_) opened_ = clock_.monotonicNow();
}

bool MembershipFanout::due() const { return opened_ && clock_.monotonicNow() - *opened_ >= window_; }

void MembershipFanout::flush(const v1::PeerList& current) {
  if (pending_.empty()) {
    opened_.reset();
    return;
  }
  std::unordered_map<std::string, const v1::Peer*> by_name;
  for (const auto& p : current.peers()) by_name[p.node_name()] = &p;
  // The changes after `after`, as a delta (names in order: pending_ is sorted).
  auto deltaAfter = [&](uint64_t after) {
    v1::AggregatorMessage msg;
    auto* delta = msg.mutable_peer_delta();
    for (const auto& [name, seq] : pending_) {
      if (seq <= after) continue;
      if (auto it = by_name.find(name); it != by_name.end()) {
        *delta->add_peers() = *it->second;
      } else {
        delta->add_left(name);
      }
    }
    return msg;
  };
  uint64_t first = UINT64_MAX;
  for (const auto& [name, seq] : pending_) first = std::min(first, seq);
  // Streams that saw none of the changes (most of them) share one delta.
  const v1::AggregatorMessage shared = deltaAfter(0);
  std::optional<v1::AggregatorMessage> full;
  for (auto& [sink, r] : receivers_) {
    if (r.seen >= seq_) continue;  // joined after the last change: its PeerList has it all
    if (r.accepts_deltas) {
      sink->sendMembership(r.seen < first ? shared : deltaAfter(r.seen));
    } else {
      if (!full) {
        full.emplace();
        *full->mutable_peer_list() = current;
      }
      sink->sendMembership(*full);
    }
    r.seen = seq_;
  }
  pending_.clear();
  opened_.reset();
}

}  // namespace meshprobe::aggregator
