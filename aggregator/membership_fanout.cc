#include "aggregator/membership_fanout.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <unordered_map>

namespace meshprobe::aggregator {

namespace v1 = meshprobe::v1;

const grpc::ByteBuffer& OutboundMessage::wire() const {
  std::call_once(encoded_, [this] {
    const size_t size = msg_.ByteSizeLong();
    auto* bytes = static_cast<uint8_t*>(std::malloc(std::max<size_t>(size, 1)));
    if (bytes == nullptr) throw std::bad_alloc();
    msg_.SerializeWithCachedSizesToArray(bytes);
    grpc::Slice slice(bytes, size, std::free);  // owns the bytes; freed with its last reference
    wire_ = grpc::ByteBuffer(&slice, 1);
  });
  return wire_;
}

MembershipMessage peerListMessage(v1::PeerList current) {
  v1::AggregatorMessage msg;
  *msg.mutable_peer_list() = std::move(current);
  return std::make_shared<const OutboundMessage>(std::move(msg));
}

void MembershipQueue::push(MembershipMessage msg) {
  const v1::AggregatorMessage& newer = msg->message();
  if (newer.has_peer_list()) {
    waiting_.clear();
  } else if (newer.has_peer_delta() && !waiting_.empty() && waiting_.back()->message().has_peer_delta()) {
    v1::AggregatorMessage merged = waiting_.back()->message();
    mergePeerDeltas(*merged.mutable_peer_delta(), newer.peer_delta());
    waiting_.back() = std::make_shared<const OutboundMessage>(std::move(merged));
    return;
  }
  waiting_.push_back(std::move(msg));
}

MembershipMessage MembershipQueue::pop() {
  MembershipMessage first = std::move(waiting_.front());
  waiting_.pop_front();
  return first;
}

void MembershipFanout::add(MembershipSink* sink, bool accepts_deltas) {
  auto [it, fresh] = receivers_.try_emplace(sink);
  if (fresh || !it->second.needs_list) ++joiners_;
  it->second = Receiver{accepts_deltas, /*needs_list=*/true, seq_};
  if (!opened_) opened_ = clock_.monotonicNow();
}

void MembershipFanout::remove(MembershipSink* sink) {
  auto it = receivers_.find(sink);
  if (it == receivers_.end()) return;
  if (it->second.needs_list) --joiners_;
  receivers_.erase(it);
}

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
  const v1::PeerList& current = current_msg->message().peer_list();
  opened_.reset();
  if (pending_.empty() && joiners_ == 0) return;
  std::unordered_map<std::string, const v1::Peer*> by_name;
  if (!pending_.empty()) {
    for (const auto& p : current.peers()) by_name[p.node_name()] = &p;
  }
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
    return std::make_shared<const OutboundMessage>(std::move(msg));
  };
  uint64_t first = UINT64_MAX;
  for (const auto& [name, seq] : pending_) first = std::min(first, seq);
  // Streams that saw none of the changes (most of them) share one delta.
  const MembershipMessage shared = pending_.empty() ? nullptr : deltaAfter(0);
  for (auto& [sink, r] : receivers_) {
    if (r.needs_list) {  // joined in the window: the list has every change
      sink->sendMembership(current_msg);
      r.needs_list = false;
      r.seen = seq_;
      continue;
    }
    if (r.seen >= seq_) continue;  // its PeerList was taken after the last change
    if (r.accepts_deltas) {
      sink->sendMembership(r.seen < first ? shared : deltaAfter(r.seen));
    } else {
      sink->sendMembership(current_msg);
    }
    r.seen = seq_;
  }
  joiners_ = 0;
  pending_.clear();
}

}  // namespace meshprobe::aggregator
