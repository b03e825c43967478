#pragma once
// meshprobe.v1.Collector: one ServerBidiReactor per agent stream (gRPC callback API, the
// reactor deletes itself in OnDone).
//
// Protocol: the first message must be Hello (else the stream ends with INVALID_ARGUMENT
// naming the problem), within the Hello timeout of the stream opening (else sweep() ends
// it with DEADLINE_EXCEEDED: a stream that never speaks would otherwise be held, with its
// memory, for as long as its client likes); then Reports, and possibly a repeated Hello with the same node
// name when the agent's facts change. Right after its first Hello a stream gets the
// current PeerList; membership changes are coalesced for a window and then reach every
// identified stream as one message (MembershipFanout): a PeerDelta when its Hello set
// accepts_peer_deltas, else the whole PeerList. PeerList holds ALL members, the receiver
// included: the agent skips its own name.
// What a stream reads is decoded and handled off gRPC's threads, by the service's ingest workers: with
// gRPC's callback API the few threads that run the reactors also poll the sockets, so a
// reactor that waited for the cluster state's lock (a whole report, a diagnosis pass, a
// 5,000-member PeerList being built) held up every connection's I/O, down to new
// connections' HTTP/2 handshakes. A stream keeps one read outstanding, and the next read
// starts only after the worker handled the last message: per stream, messages are handled
// in order and at most one waits.
// Writes are serialized per stream (one outstanding write; membership messages that have
// not been sent yet absorb newer ones, MembershipQueue). A stream ending marks nothing by
// itself: staleness (ClusterState) decides. No exception crosses a reactor callback.

#include <grpcpp/grpcpp.h>

#include <boost/asio/thread_pool.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <set>
#include <string_view>

#include "aggregator/cluster_state.h"
#include "aggregator/membership_fanout.h"
#include "common/clock.h"
#include "common/metrics.h"
#include "meshprobe/v1/collector.grpc.pb.h"

namespace meshprobe::aggregator {

enum class IngestError : size_t {
  kFirstNotHello,  // a stream began with something other than Hello
  kInvalidHello,   // Hello failed validation (e.g. empty node name)
  kNodeRenamed,    // a later Hello on a stream carried another node name
  kEmptyMessage,   // AgentMessage with nothing set
  kUnknownNode,    // a Report arrived for a node the state had forgotten (re-added)
  kInternal,       // an exception caught at a reactor boundary
  kPermissionDenied,  // the client certificate may not report as the Hello's node
  kHelloTimeout,      // nothing read within the Hello timeout of the stream opening
  kUnparsable,        // a message that does not decode as AgentMessage
  kCount,
};
std::string_view ingestErrorReason(IngestError e);  // label value for metrics, e.g. "first_not_hello"

// Counters for /metrics. Gauges may be read at any time.
struct CollectorStats {
  std::atomic<int64_t> streams_open{0};      // gauge: every open Collector stream
  std::atomic<int64_t> connected_agents{0};  // gauge: open streams that said Hello
  std::atomic<uint64_t> hellos{0};
  std::atomic<uint64_t> reports_received{0};  // accepted reports
  std::atomic<uint64_t> delta_reports_received{0};  // of those, delta reports (Report.delta)
  std::atomic<uint64_t> reports_ignored{0};   // old or duplicate sequence numbers
  std::atomic<uint64_t> messages_read{0};     // AgentMessages read off streams (handled or waiting)
  std::atomic<uint64_t> peer_list_pushes{0};  // membership messages (PeerList or PeerDelta) queued to streams
  // Membership messages written to streams, and their encoded bytes: [0] PeerList ("full"),
  // [1] PeerDelta ("delta"). Counted when the write starts.
  std::array<std::atomic<uint64_t>, 2> membership_messages{};
  std::array<std::atomic<uint64_t>, 2> membership_bytes{};
  std::array<std::atomic<uint64_t>, static_cast<size_t>(IngestError::kCount)> ingest_errors{};
  // Per message handled: from its read off the stream to its being applied (waiting for an
  // ingest worker, decoding, applying), on the service's clock.
  Histogram message_seconds{Histogram::latencyBounds()};

  uint64_t ingestErrors(IngestError e) const { return ingest_errors[static_cast<size_t>(e)].load(); }
  uint64_t ingestErrorsTotal() const;
};

class AgentStream;

inline constexpr std::chrono::seconds kDefaultHelloTimeout{10};
// Threads that handle what streams read. Reports are applied under the cluster state's lock
// one at a time anyway; a second thread lets a Hello (the membership lock) pass a report.
inline constexpr size_t kIngestWorkers = 2;

// Registered as a raw (ByteBuffer) method: the stream decodes what it reads on the ingest
// workers, and writes membership as the shared encoding of OutboundMessage.
class CollectorService final
    : public meshprobe::v1::Collector::WithRawCallbackMethod_Connect<meshprobe::v1::Collector::Service> {
 public:
  // Membership changes within `membership_window` (on `clock`) go out together; 0: each
  // change at once. The one-argument form: at once. A stream that has sent nothing for
  // `hello_timeout` (on `clock`) since it opened is ended by the next sweep(). A first
  // message read but still waiting for an ingest worker counts as sent: the agent kept
  // its side, and ending it would make the aggregator's own backlog cost a reconnect.
  explicit CollectorService(ClusterState& state);
  CollectorService(ClusterState& state, const Clock& clock, std::chrono::nanoseconds membership_window,
                   std::chrono::nanoseconds hello_timeout = kDefaultHelloTimeout);
  ~CollectorService() override;

  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* Connect(
      grpc::CallbackServerContext* context) override;

  // Forgets long-silent members (ClusterState::sweep) and pushes PeerList on change; ends
  // the streams that have not said Hello within the Hello timeout.
  // The server calls this periodically; tests call it after advancing a FakeClock.
  void sweep();

  // Sends the coalesced membership changes once their window has passed. The server calls
  // this every few tens of milliseconds; tests call it after advancing a FakeClock.
  void flushMembership();

  // Ends every open stream with `status` and refuses new ones (shutdown: agents see
  // UNAVAILABLE and reconnect to the next aggregator at once).
  void finishAll(const grpc::Status& status);

  const CollectorStats& stats() const { return stats_; }

  // Runs `job` on an ingest worker, after what is queued. Streams use it for each message
  // read; tests use it to occupy the workers so that messages wait in the queue.
  void post(std::function<void()> job);

 private:
  friend class AgentStream;

  // Called by streams (never while holding the stream's own lock).
  void onHello(AgentStream* stream, const meshprobe::v1::Hello& hello, bool first);
  void onReport(const meshprobe::v1::Hello& hello, const meshprobe::v1::Report& report);
  void onDone(AgentStream* stream);
  void countError(IngestError e) { ++stats_.ingest_errors[static_cast<size_t>(e)]; }
  void membershipChangedLocked(const MembershipDiff& diff);
  void flushDueLocked();
  void endSilentStreamsLocked();
  void countMembershipWrite(const OutboundMessage& out);

  ClusterState& state_;
  const Clock& clock_;
  const std::chrono::nanoseconds hello_timeout_;
  CollectorStats stats_;
  // Serializes membership changes with their broadcast, so PeerLists reach every
  // stream in the order the changes happened. Lock order: mu_, then a stream's lock.
  std::mutex mu_;
  std::set<AgentStream*> streams_;     // every open stream
  std::set<AgentStream*> identified_;  // streams that said Hello: membership receivers
  MembershipFanout fanout_;
  bool shutting_down_ = false;
  // Last member: joined first on destruction (a queued message still reaches the state).
  boost::asio::thread_pool ingest_{kIngestWorkers};
};

}  // namespace meshprobe::aggregator
