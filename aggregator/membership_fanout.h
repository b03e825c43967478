#pragma once
// Who gets membership, and in what form. Every identified stream gets the whole PeerList
// after its first Hello, at the next flush. Later changes are coalesced: the first change
// or join opens a window (`window`, on the injected Clock), and when it has passed flush()
// sends ONE message per stream covering every change in it: the whole PeerList to the
// streams that joined in the window, a PeerDelta to streams whose agent set
// Hello.accepts_peer_deltas, the whole PeerList to the others (agents that predate deltas
// would take a delta for the whole list and drop peers). So N agents connecting at once
// cost each stream one PeerList plus a PeerDelta per window, not one PeerList per join,
// and the aggregator builds one PeerList per window, not one per joiner.
// A stream only gets the changes made after its own PeerList was taken.
// Messages are immutable and shared: the list or delta of one flush is built once and
// every stream's queue holds the same one (a 5,000-member PeerList is about 0.8 MB on the
// wire and 5,000 Peer messages to build, copy and free).
// Not thread-safe: CollectorService calls it under its membership lock.

#include <grpcpp/support/byte_buffer.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "aggregator/membership.h"
#include "common/clock.h"
#include "meshprobe/v1/collector.pb.h"

namespace meshprobe::aggregator {

// A membership message (peer_list or peer_delta), built once and shared by the streams
// it goes to, and its wire form, encoded once (on first use) and shared too. A typed gRPC
// write encodes a copy of its own for each stream and holds it until the transport has
// sent it, that is until the agent has read it: 5,000 agents starting at once each held a
// copy of the same 5,000-member PeerList (0.8 MB), gigabytes in all. A write of wire()
// only takes a reference to the one encoding.
class OutboundMessage {
 public:
  explicit OutboundMessage(meshprobe::v1::AggregatorMessage msg) : msg_(std::move(msg)) {}
  OutboundMessage(const OutboundMessage&) = delete;
  OutboundMessage& operator=(const OutboundMessage&) = delete;

  const meshprobe::v1::AggregatorMessage& message() const { return msg_; }
  // Thread-safe. The encoding, in one slice; copies of the buffer share its bytes.
  const grpc::ByteBuffer& wire() const;

 private:
  const meshprobe::v1::AggregatorMessage msg_;
  mutable std::once_flag encoded_;
  mutable grpc::ByteBuffer wire_;
};
using MembershipMessage = std::shared_ptr<const OutboundMessage>;

// `current` as a PeerList message.
MembershipMessage peerListMessage(meshprobe::v1::PeerList current);

// What one stream has yet to write, oldest first. A membership message not written yet
// absorbs a newer one, so a slow agent's queue stays short and says the same:
// - a PeerList replaces everything waiting (it has every change);
// - a PeerDelta is merged into a waiting PeerDelta (a message of this stream's own);
// - a PeerDelta behind a waiting PeerList waits after it. Folding it into the list would
//   copy the whole list for this stream alone (5,000 peers at 5,000 nodes), where the list
//   itself is one message shared with every stream it went to.
// So at most a PeerList and a PeerDelta wait. Not thread-safe: the stream locks.
class MembershipQueue {
 public:
  void push(MembershipMessage msg);
  MembershipMessage pop();  // the oldest; call only when !empty()
  bool empty() const { return waiting_.empty(); }
  size_t size() const { return waiting_.size(); }
  void clear() { waiting_.clear(); }

 private:
  std::deque<MembershipMessage> waiting_;
};

// A stream's write side, as membership sees it.
class MembershipSink {
 public:
  virtual ~MembershipSink() = default;
  virtual void sendMembership(MembershipMessage msg) = 0;
};

class MembershipFanout {
 public:
  // window 0: every change goes out at once (one message per change, as before deltas).
  MembershipFanout(const Clock& clock, std::chrono::nanoseconds window) : clock_(clock), window_(window) {}

  // A stream said its first Hello: it gets the whole list at the next flush (at once when
  // the window is 0); its join opens the window.
  void add(MembershipSink* sink, bool accepts_deltas);
  void remove(MembershipSink* sink);

  // Members added, removed or changed; the first change opens the window.
  void changed(const MembershipDiff& diff);
  // Whether changes or joiners wait and their window has passed.
  bool due() const;
  // Sends the waiting streams `current` (the membership now) and the others the waiting
  // changes. Streams that already have every change get nothing.
  void flush(const MembershipMessage& current);

  size_t receivers() const { return receivers_.size(); }

 private:
  struct Receiver {
    bool accepts_deltas = false;
    bool needs_list = false;  // joined since the last flush: gets the whole list
    uint64_t seen = 0;        // the last change its messages cover
  };
  const Clock& clock_;
  const std::chrono::nanoseconds window_;
  std::map<MembershipSink*, Receiver> receivers_;
  size_t joiners_ = 0;  // receivers with needs_list
  uint64_t seq_ = 0;                                             // numbers changes
  std::map<std::string, uint64_t> pending_;                      // name -> its last change
  std::optional<std::chrono::steady_clock::time_point> opened_;  // first waiting change or join
};

}  // namespace meshprobe::aggregator
