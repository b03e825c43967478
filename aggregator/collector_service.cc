#include "aggregator/collector_service.h"

#include <google/protobuf/arena.h>
#include <grpcpp/support/proto_buffer_reader.h>
#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>

#include <exception>
#include <optional>
#include <string>

#include "common/duration.h"
#include "common/tls/tls.h"

namespace meshprobe::aggregator {

namespace v1 = meshprobe::v1;

std::string_view ingestErrorReason(IngestError e) {
  switch (e) {
    case IngestError::kFirstNotHello:
      return "first_not_hello";
    case IngestError::kInvalidHello:
      return "invalid_hello";
    case IngestError::kNodeRenamed:
      return "node_renamed";
    case IngestError::kEmptyMessage:
      return "empty_message";
    case IngestError::kUnknownNode:
      return "unknown_node";
    case IngestError::kInternal:
      return "internal";
    case IngestError::kPermissionDenied:
      return "permission_denied";
    case IngestError::kHelloTimeout:
      return "hello_timeout";
    case IngestError::kUnparsable:
      return "unparsable_message";
    case IngestError::kCount:
      break;
  }
  return "unknown";
}

uint64_t CollectorStats::ingestErrorsTotal() const {
  uint64_t total = 0;
  for (const auto& c : ingest_errors) total += c.load();
  return total;
}

// One agent's stream. Reads are sequential (one outstanding StartRead); writes go through
// a queue so at most one StartWrite is outstanding. `mu_` guards the write side and the
// finish state; the read side (in_bytes_, hello_, identified_) is touched only by the ingest
// worker handling the last message read and, once every reference is gone, release().
class AgentStream final : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>,
                          public MembershipSink {
 public:
  AgentStream(CollectorService* service, std::string peer, tls::PeerIdentity identity,
              std::chrono::steady_clock::time_point opened)
      : service_(service), peer_(std::move(peer)), identity_(std::move(identity)), opened_(opened) {}

  std::chrono::steady_clock::time_point opened() const { return opened_; }  // on the service's clock
  // Whether a message was read off the stream (it may still wait for a worker).
  bool heard() const { return heard_.load(); }
  // Each message read is decoded into an arena of its own, freed once it was applied. A
  // message parsed into the same object again would reuse that object's parts, and a
  // repeated field keeps every element it ever held: each of 5,000 streams kept the
  // results of its largest report (tens of small objects each), about 100 MiB in all once
  // the agents' digests made reports longer. The arena's first block holds a typical delta
  // report; a whole one (10,000 results at 5,000 nodes) takes blocks of up to 64 KiB.
  static google::protobuf::ArenaOptions parseArenaOptions() {
    google::protobuf::ArenaOptions options;
    options.start_block_size = 8 << 10;
    options.max_block_size = 64 << 10;
    return options;
  }

  void start() { StartRead(&in_bytes_); }

  // Thread-safe. Dropped once the stream is finishing. Messages waiting absorb newer ones
  // (MembershipQueue): a slow agent holds at most a PeerList and a PeerDelta, and never
  // loses a change.
  void sendMembership(MembershipMessage msg) override {
    ++service_->stats_.peer_list_pushes;  // counted first: the agent may read it before this returns
    std::lock_guard lock(mu_);
    if (finishing_) return;
    queue_.push(std::move(msg));
    if (!writing_) startWriteLocked();
  }

  // Thread-safe and idempotent; waits for an outstanding write before finishing.
  void finish(const grpc::Status& status) {
    std::lock_guard lock(mu_);
    finishLocked(status);
  }
  // As finish(); returns whether this call started the finish.
  bool finishIfOpen(const grpc::Status& status) {
    std::lock_guard lock(mu_);
    if (finishing_) return false;
    finishLocked(status);
    return true;
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the agent half-closed or the call was cancelled
      finish(grpc::Status::OK);
      return;
    }
    heard_.store(true);
    read_at_ = service_->clock_.monotonicNow();
    ++service_->stats_.messages_read;
    refs_.fetch_add(1);  // the worker's: the stream outlives OnDone until the message is handled
    service_->post([this] { handleRead(); });
  }

  // On an ingest worker: handles the message read, then reads the next one.
  void handleRead() {
    bool keep_reading = false;
    if (!finishing()) {
      try {
        google::protobuf::Arena arena(parseArenaOptions());
        const v1::AgentMessage* msg = parseRead(arena);
        keep_reading = msg != nullptr && handle(*msg);
        service_->stats_.message_seconds.observe(
            std::chrono::duration<double>(service_->clock_.monotonicNow() - read_at_).count());
      } catch (const std::exception& e) {
        service_->countError(IngestError::kInternal);
        spdlog::error("collector stream from {}: {}", peer_, e.what());
        finish(grpc::Status(grpc::StatusCode::INTERNAL, std::string("aggregator error: ") + e.what()));
      } catch (...) {
        service_->countError(IngestError::kInternal);
        finish(grpc::Status(grpc::StatusCode::INTERNAL, "aggregator error"));
      }
    }
    if (keep_reading) {
      std::lock_guard lock(mu_);
      if (!finishing_) StartRead(&in_bytes_);
    }
    release();
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard lock(mu_);
    writing_ = false;
    if (pending_finish_) {
      Finish(*pending_finish_);
      pending_finish_.reset();
      return;
    }
    if (!ok) {
      finishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, "write to the agent failed"));
      return;
    }
    if (!queue_.empty()) startWriteLocked();
  }

  void OnDone() override { release(); }

 private:
  bool finishing() {
    std::lock_guard lock(mu_);
    return finishing_;
  }

  // Drops one reference (gRPC's, released by OnDone, or an ingest worker's); the last one
  // ends the stream for the service and deletes it. Then no worker touches the read side.
  void release() {
    if (refs_.fetch_sub(1) != 1) return;
    if (identified_) spdlog::info("agent stream of node {} ({}) closed", hello_.node_name(), peer_);
    service_->onDone(this);
    delete this;
  }

  // Decodes the message read into `arena` (here, on the ingest worker, not on the gRPC
  // thread that read it); ends the stream and returns null when it is not an AgentMessage.
  const v1::AgentMessage* parseRead(google::protobuf::Arena& arena) {
    auto* msg = google::protobuf::Arena::CreateMessage<v1::AgentMessage>(&arena);
    bool parsed = true;
    if (in_bytes_.Valid()) {  // else no buffer: an empty message
      grpc::ProtoBufferReader reader(&in_bytes_);
      parsed = msg->ParseFromZeroCopyStream(&reader) && reader.status().ok();
    }
    in_bytes_.Clear();
    if (parsed) return msg;
    service_->countError(IngestError::kUnparsable);
    spdlog::warn("ending Collector stream from {}: a message that is not a meshprobe.v1.AgentMessage", peer_);
    finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "could not decode the message as meshprobe.v1.AgentMessage"));
    return nullptr;
  }

  // Returns whether to keep reading.
  bool handle(const v1::AgentMessage& msg) {
    switch (msg.message_case()) {
      case v1::AgentMessage::kHello: {
        // Identity from Hello.identity, or from the flat fields of an agent that predates it.
        const v1::Hello hello = normalizedHello(msg.hello());
        if (auto st = validateHello(hello); !st.ok()) {
          service_->countError(IngestError::kInvalidHello);
          spdlog::warn("rejecting Collector stream from {}: {}", peer_, st.error().message);
          finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "invalid Hello: " + st.error().message));
          return false;
        }
        // The client certificate decides which node this stream may speak for. Reports
        // are bound to the stream's Hello, so checking every Hello covers them too.
        if (auto st = tls::mayReportAs(identity_, hello.node_name()); !st.ok()) {
          service_->countError(IngestError::kPermissionDenied);
          spdlog::warn("rejecting Collector stream from {}: {}", peer_, st.error().message);
          finish(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, st.error().message));
          return false;
        }
        if (identified_ && hello.node_name() != hello_.node_name()) {
          service_->countError(IngestError::kNodeRenamed);
          finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "this stream belongs to node '" + hello_.node_name() +
                                                                      "'; a Hello for node '" + hello.node_name() +
                                                                      "' needs its own stream"));
          return false;
        }
        const bool first = !identified_;
        hello_ = hello;
        identified_ = true;
        if (first)
          spdlog::info("agent {} connected from {} (version {})", hello.node_name(), peer_, hello.agent_version());
        service_->onHello(this, hello_, first);
        return true;
      }
      case v1::AgentMessage::kReport:
        if (!identified_) {
          service_->countError(IngestError::kFirstNotHello);
          spdlog::warn("rejecting Collector stream from {}: Report before Hello", peer_);
          finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                              "the first message on a Collector stream must be Hello (node name and overlay facts), "
                              "got Report"));
          return false;
        }
        service_->onReport(hello_, msg.report());
        return true;
      default:
        if (!identified_) {
          service_->countError(IngestError::kFirstNotHello);
          finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                              "the first message on a Collector stream must be Hello, got an empty AgentMessage"));
          return false;
        }
        service_->countError(IngestError::kEmptyMessage);
        return true;
    }
  }

  void startWriteLocked() {
    out_ = queue_.pop();
    writing_ = true;
    service_->countMembershipWrite(*out_);
    out_bytes_ = out_->wire();  // a reference to the message's one encoding, not a copy of it
    StartWrite(&out_bytes_);
  }

  void finishLocked(const grpc::Status& status) {
    if (finishing_) return;
    finishing_ = true;
    queue_.clear();
    if (writing_) {
      pending_finish_ = status;
    } else {
      Finish(status);
    }
  }

  CollectorService* const service_;
  const std::string peer_;
  const tls::PeerIdentity identity_;
  const std::chrono::steady_clock::time_point opened_;
  std::atomic<int> refs_{1};  // gRPC's until OnDone, plus one while a worker has a message
  std::atomic<bool> heard_{false};

  // Read side: touched by one thread at a time (gRPC's while reading, then the worker's).
  grpc::ByteBuffer in_bytes_;  // as read; decoded by the worker
  std::chrono::steady_clock::time_point read_at_;  // when it was read (CollectorStats::message_seconds)
  v1::Hello hello_;
  bool identified_ = false;

  // Write side and finish state.
  std::mutex mu_;
  MembershipQueue queue_;  // waiting to be written
  MembershipMessage out_;  // the message being written (shared with other streams' queues)
  grpc::ByteBuffer out_bytes_;  // its encoding, shared with every stream writing it
  bool writing_ = false;
  bool finishing_ = false;
  std::optional<grpc::Status> pending_finish_;
};

namespace {
const SystemClock kSystemClock{};
}  // namespace

CollectorService::CollectorService(ClusterState& state) : CollectorService(state, kSystemClock, {}) {}

CollectorService::CollectorService(ClusterState& state, const Clock& clock, std::chrono::nanoseconds membership_window,
                                   std::chrono::nanoseconds hello_timeout)
    : state_(state), clock_(clock), hello_timeout_(hello_timeout), fanout_(clock, membership_window) {}

// The workers finish what is queued (each job releases its stream) before the members the
// jobs use go.
CollectorService::~CollectorService() { ingest_.join(); }

void CollectorService::post(std::function<void()> job) { boost::asio::post(ingest_, std::move(job)); }

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* CollectorService::Connect(
    grpc::CallbackServerContext* context) {
  auto* stream = new AgentStream(this, context->peer(), tls::identityOf(context->auth_context().get()),
                                 clock_.monotonicNow());
  bool refuse = false;
  {
    std::lock_guard lock(mu_);
    streams_.insert(stream);
    ++stats_.streams_open;
    refuse = shutting_down_;
  }
  if (refuse) {
    stream->finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "aggregator is shutting down"));
  } else {
    stream->start();
  }
  return stream;
}

void CollectorService::onHello(AgentStream* stream, const v1::Hello& hello, bool first) {
  std::lock_guard lock(mu_);
  ++stats_.hellos;
  if (first && identified_.insert(stream).second) ++stats_.connected_agents;
  MembershipDiff diff = state_.applyHello(hello, first);
  if (!diff.empty()) spdlog::info("membership changed ({})", diff.describe());
  membershipChangedLocked(diff);
  // The stream's PeerList goes out with the window's flush, built once for every stream
  // that joined in it, and has this change.
  if (first) fanout_.add(stream, hello.accepts_peer_deltas());
  flushDueLocked();
}

void CollectorService::onReport(const v1::Hello& hello, const v1::Report& report) {
  ReportOutcome outcome = state_.applyReport(hello.node_name(), report);
  if (outcome == ReportOutcome::kUnknownNode) {
    // Forgotten while its stream stayed open: the stream's Hello makes it a member again.
    std::lock_guard lock(mu_);
    countError(IngestError::kUnknownNode);
    MembershipDiff diff = state_.applyHello(hello, /*new_session=*/true);
    outcome = state_.applyReport(hello.node_name(), report);
    membershipChangedLocked(diff);
    flushDueLocked();
  }
  if (outcome == ReportOutcome::kAccepted) {
    ++stats_.reports_received;
    if (report.delta()) ++stats_.delta_reports_received;
  } else if (outcome == ReportOutcome::kOldSequence) {
    ++stats_.reports_ignored;
    spdlog::debug("ignoring report {} from {}: not newer than the last one", report.sequence(), hello.node_name());
  }
}

void CollectorService::onDone(AgentStream* stream) {
  std::lock_guard lock(mu_);
  streams_.erase(stream);
  if (identified_.erase(stream) > 0) --stats_.connected_agents;
  fanout_.remove(stream);
  --stats_.streams_open;
}

void CollectorService::membershipChangedLocked(const MembershipDiff& diff) { fanout_.changed(diff); }

void CollectorService::flushDueLocked() {
  if (fanout_.due()) fanout_.flush(peerListMessage(state_.peerList()));
}

void CollectorService::flushMembership() {
  std::lock_guard lock(mu_);
  flushDueLocked();
}

void CollectorService::countMembershipWrite(const OutboundMessage& out) {
  const v1::AggregatorMessage& msg = out.message();
  const size_t kind = msg.has_peer_delta() ? 1 : 0;
  if (!msg.has_peer_list() && !msg.has_peer_delta()) return;
  ++stats_.membership_messages[kind];
  stats_.membership_bytes[kind] += out.wire().Length();
}

void CollectorService::sweep() {
  std::lock_guard lock(mu_);
  endSilentStreamsLocked();
  MembershipDiff diff = state_.sweep();
  if (diff.empty()) return;
  spdlog::info("forgetting silent members ({})", diff.describe());
  membershipChangedLocked(diff);
  flushDueLocked();
}

void CollectorService::endSilentStreamsLocked() {
  const auto now = clock_.monotonicNow();
  size_t ended = 0;
  for (AgentStream* s : streams_) {
    // A stream whose first message waits for a worker is not silent: the backlog is ours.
    if (identified_.count(s) > 0 || s->heard() || now - s->opened() < hello_timeout_) continue;
    // A stream already finishing (waiting for its OnDone) is not ended or counted again.
    if (s->finishIfOpen(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                                     "no Hello within " + formatDuration(hello_timeout_) +
                                         " of opening the Collector stream"))) {
      countError(IngestError::kHelloTimeout);
      ++ended;
    }
  }
  if (ended > 0)
    spdlog::warn("ended {} Collector stream(s) that sent no Hello within {}", ended, formatDuration(hello_timeout_));
}

void CollectorService::finishAll(const grpc::Status& status) {
  std::lock_guard lock(mu_);
  shutting_down_ = true;
  for (AgentStream* s : streams_) s->finish(status);
}

}  // namespace meshprobe::aggregator
