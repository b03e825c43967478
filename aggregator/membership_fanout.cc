#include "aggregator/membership_fanout.h"

#include <algorithm>
#include <cstdint>
#include <unordered_map>

namespace meshprobe::aggregator {

namespace v1 = meshprobe::v1;

MembershipMessage peerListMessage(v1::PeerList current) {
  auto msg = std::make_shared<v1::AggregatorMessage>();
  *msg->mutable_peer_list() = std::move(current);
  return msg;
}

void MembershipFanout::add(MembershipSink* sink, bool accepts_deltas, const MembershipMessage& current) {
  receivers_[sink] = Receiver{accepts_deltas, seq_};
  sink->sendMembership(current);
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

void MembershipFanout::flush(const MembershipMessage& current_msg) {
  const v1::PeerList& current = current_msg->peer_list();
  if (pending_.empty()) {
    opened_.reset();
    return;
  }
  std::unordered_map<std::string, const v1::Peer*> by_name;
  for (const auto& p : current.peers()) by_name[p.node_name()] = &p;
  // The changes after `after`, as a delta (names in order: pending_ is sorted).
  auto deltaAfter = [&](uint64_t after) {
    auto msg = std::make_shared<v1::AggregatorMessage>();
    auto* delta = msg->mutable_peer_delta();
    for (const auto& [name, seq] : pending_) {
      if (seq <= after) continue;
      if (auto it = by_name.find(name); it != by_name.end()) {
        *delta->add_peers() = *it->second;
      } else {
        delta->add_left(name);
      }
    }
    return MembershipMessage(std::move(msg));
  };
  uint64_t first = UINT64_MAX;
  for (const auto& [name, seq] : pending_) first = std::min(first, seq);
  // Streams that saw none of the changes (most of them) share one delta.
  const MembershipMessage shared = deltaAfter(0);
  for (auto& [sink, r] : receivers_) {
    if (r.seen >= seq_) continue;  // joined after the last change: its PeerList has it all
    if (r.accepts_deltas) {
      sink->sendMembership(r.seen < first ? shared : deltaAfter(r.seen));
    } else {
      sink->sendMembership(current_msg);
    }
    r.seen = seq_;
  }
  pending_.clear();
  opened_.reset();
}

}  // namespace meshprobe::aggregator
