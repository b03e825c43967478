#include "agent/daemon/stream_client.h"

#include <condition_variable>

#include <google/protobuf/util/time_util.h>
#include <spdlog/spdlog.h>

#include "agent/daemon/report_delta.h"
#include "common/grpc_keepalive.h"
#include "common/grpc_status.h"
#include "common/thread_name.h"

namespace meshprobe::agent {

using meshprobe::v1::AgentMessage;
using meshprobe::v1::AggregatorMessage;

StreamClient::StreamClient(std::unique_ptr<meshprobe::v1::Collector::StubInterface> stub, ReportBuffer& buffer,
                           Callbacks callbacks, Backoff backoff, std::shared_ptr<grpc::ChannelInterface> channel)
    : stub_(std::move(stub)),
      buffer_(buffer),
      callbacks_(std::move(callbacks)),
      channel_(std::move(channel)),
      backoff_(backoff),
      refusal_backoff_(backoff_.derived(kRefusalBase, kRefusalCap)) {}

StreamClient::~StreamClient() { stop(); }

grpc::ChannelArguments StreamClient::channelArguments() {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(kAgentKeepaliveTime.count()));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, static_cast<int>(kAgentKeepaliveTimeout.count()));
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  // gRPC also uses the minimum reconnect backoff as the connect timeout: 100 ms would abort
  // handshakes on a busy node. Retry quickly (initial 100 ms), but give a connect 2 s.
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 2'000);
  // Between failed connects at most 500 ms (gRPC's jitter adds up to 20 %): after a
  // failover the agents reach the new leader within about half a second of its Service
  // endpoint changing. While no aggregator answers, that is two SYNs a second per agent,
  // each refused at once by the Service's REJECT rule.
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 500);
  return args;
}

std::shared_ptr<grpc::Channel> StreamClient::makeChannel(const std::string& target, const tls::ClientConfig& tls) {
  return tls::createChannel(target, tls, channelArguments());
}

void StreamClient::start() {
  stopping_ = false;
  thread_ = std::thread([this] {
    nameThisThread("mp-stream");
    run();
  });
}

void StreamClient::stop() {
  stopping_ = true;
  {
    std::lock_guard lock(mu_);
    if (active_ctx_) active_ctx_->TryCancel();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void StreamClient::run() {
  while (!stopping_) {
    serveOneStream();
    if (stopping_) break;
    ++retries_;
    // A refusal (identity, Hello) is a configuration to fix: back off long. Anything else
    // (aggregator down, a Service without a Ready endpoint during a failover) retries within
    // a second; gRPC's own connect backoff (channelArguments) spaces the real connects.
    auto delay = refused_ ? refusal_backoff_.next() : backoff_.next();
    spdlog::debug("aggregator stream down; reconnecting in {} ms", delay.count());
    pause(delay);
  }
}

void StreamClient::pause(std::chrono::milliseconds delay) {
  using Clock = std::chrono::steady_clock;
  const auto end = Clock::now() + delay;
  // Not after a refusal, nor on a channel that is connected already (the stream ended, the
  // connection did not): then the delay is the whole backoff.
  if (channel_ && !refused_ && channel_->GetState(true) != GRPC_CHANNEL_READY) {
    // Waiting on the channel's state polls it, so a connect in progress completes here
    // rather than in gRPC's backup poller up to 5 s later (a TCP connection accepted by a
    // new leader then sat unused until the connect deadline closed it); once it is
    // connected, try at once. In steps of 100 ms, so stop() is not kept waiting.
    while (!stopping_) {
      const auto now = Clock::now();
      if (now >= end) return;
      const auto step = std::min<Clock::duration>(end - now, std::chrono::milliseconds(100));
      if (channel_->WaitForConnected(std::chrono::system_clock::now() + step)) return;
    }
    return;
  }
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, delay, [&] { return stopping_.load(); });
}

meshprobe::v1::Hello StreamClient::currentHello() const {
  meshprobe::v1::Hello hello = callbacks_.hello();
  if (callbacks_.on_peer_delta) hello.set_accepts_peer_deltas(true);
  return hello;
}

void StreamClient::serveOneStream() {
  grpc::ClientContext ctx;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    active_ctx_ = &ctx;
  }
  auto stream = stub_->Connect(&ctx);
  AgentMessage hello_msg;
  *hello_msg.mutable_hello() = currentHello();
  std::string last_hello = hello_msg.hello().SerializeAsString();

  // The backoff starts over only once the aggregator has accepted this stream (its first
  // membership message): a stream refused right after the Hello (a certificate that may
  // not report as this node) keeps backing off instead of retrying every 200 ms.
  std::atomic<bool> accepted{false};
  std::atomic<bool> deltas_accepted{false};  // this stream's PeerLists say so
  std::atomic<bool> results_follow_accepted{false};  // likewise
  std::atomic<int64_t> quiet_hold_ns{0};      // PeerList.quiet_report_interval (0: none)
  // Members that joined (or changed) since the last report: the next one carries all their
  // results (ReportDeltaEncoder::resendTo), because the aggregator could not place this
  // agent's cells for a member before it knew it (a restarted aggregator learns its members
  // one Hello at a time). Written by the reader, taken by the writer.
  std::mutex joined_mu;
  std::vector<std::string> joined;
  // No report before the stream's first PeerList: every member in that list is known to the
  // aggregator when the report arrives, and every member that joins later comes as a
  // PeerDelta (see `joined`). A report sent before the list could name members the
  // aggregator learns only in the same coalescing window as this stream's own join, and the
  // list that announces them would not make this agent resend their results.
  std::condition_variable list_cv;
  bool list_seen = false;  // under joined_mu
  ReportDeltaEncoder encoder;                // the stream's first report is whole
  if (stream->Write(hello_msg)) {
    connected_ = true;
    spdlog::info("connected to the aggregator");
    std::atomic<bool> reader_done{false};
    std::thread reader([&] {
      nameThisThread("mp-stream-read");
      AggregatorMessage msg;
      bool have_list = false;  // a delta applies on top of this stream's PeerList
      while (stream->Read(&msg)) {
        if (!accepted.exchange(true) && ever_accepted_.exchange(true)) ++reconnects_;
        if (msg.has_peer_list()) {
          const bool first = !have_list;
          have_list = true;
          deltas_accepted = report_deltas_ && msg.peer_list().accepts_report_deltas();
          results_follow_accepted = msg.peer_list().accepts_results_follow();
          quiet_hold_ns = msg.peer_list().has_quiet_report_interval()
                              ? google::protobuf::util::TimeUtil::DurationToNanoseconds(
                                    msg.peer_list().quiet_report_interval())
                              : 0;
          if (callbacks_.on_peers) callbacks_.on_peers(msg.peer_list());
          if (first) {  // after on_peers: the first report follows the list being applied
            {
              std::lock_guard lock(joined_mu);
              list_seen = true;
            }
            list_cv.notify_all();
          }
          // A cleared message keeps its parsed fields for reuse: the whole member list (about
          // 600 bytes a peer) would stay allocated for the stream's life. Deltas are small.
          AggregatorMessage fresh;
          msg.Swap(&fresh);
        } else if (msg.has_peer_delta() && callbacks_.on_peer_delta) {
          if (!have_list) {
            ++peer_deltas_ignored_;
            spdlog::warn("ignoring a membership delta that came before the peer list on this stream");
            continue;
          }
          callbacks_.on_peer_delta(msg.peer_delta());
          if (msg.peer_delta().peers_size() > 0) {
            {
              std::lock_guard lock(joined_mu);
              for (const auto& p : msg.peer_delta().peers()) joined.push_back(p.node_name());
            }
            // A report now rather than at the next interval: the new leader after a failover
            // is complete as soon as the last member's Hello is answered. Unless one just
            // went out: then the next regular report carries them (see setEarlyReportSpacing).
            const int64_t now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                       std::chrono::steady_clock::now().time_since_epoch())
                                       .count();
            if (callbacks_.on_members_joined && now_ns - last_report_ns_ >= early_spacing_.count()) {
              callbacks_.on_members_joined();
            }
          }
        }
      }
      reader_done = true;
    });
    while (!stopping_ && !reader_done) {
      {
        // Bounded so that stop() and a stream that ends are noticed (reader_done is set
        // outside the lock).
        std::unique_lock lock(joined_mu);
        if (!list_cv.wait_for(lock, std::chrono::milliseconds(100), [&] { return list_seen; })) continue;
      }
      auto report = buffer_.pop(std::chrono::milliseconds(100));
      if (!report) continue;
      AgentMessage hello_now;
      *hello_now.mutable_hello() = currentHello();
      std::string serialized = hello_now.hello().SerializeAsString();
      if (serialized != last_hello) {
        if (!stream->Write(hello_now)) {
          buffer_.pushFront(std::move(*report));
          break;
        }
        last_hello = std::move(serialized);
      }
      AgentMessage msg;
      {
        std::lock_guard lock(joined_mu);
        encoder.resendTo(joined);
        joined.clear();
      }
      encoder.acceptResultsFollow(results_follow_accepted);
      auto encoded = encoder.encodeUnlessQuiet(*report, deltas_accepted,
                                               std::chrono::nanoseconds(quiet_hold_ns.load()));
      if (!encoded) {  // nothing new: the aggregator hears from this agent later
        ++reports_held_;
        continue;
      }
      *msg.mutable_report() = std::move(*encoded);
      // Stamped before the write: Write() may return after the aggregator has read the
      // report and answered with a PeerDelta, which the reader must see as coming right
      // after a report (no early one).
      last_report_ns_ = std::chrono::duration_cast<std::chrono::nanoseconds>(
                            std::chrono::steady_clock::now().time_since_epoch())
                            .count();
      if (!stream->Write(msg)) {
        buffer_.pushFront(std::move(*report));  // whole: the next stream starts over
        break;
      }
      ++reports_sent_;
      if (msg.report().delta()) ++delta_reports_sent_;
      probes_omitted_ = probes_omitted_base_ + encoder.counters().probes_omitted;
    }
    if (connected_ && !stopping_) spdlog::warn("aggregator stream ended; reconnecting");
    connected_ = false;
    probes_omitted_base_ += encoder.counters().probes_omitted;
    ctx.TryCancel();
    reader.join();
  }
  grpc::Status status = stream->Finish();
  if (accepted) {
    backoff_.reset();
    refusal_backoff_.reset();
  }
  refused_ = false;
  if (!status.ok() && !stopping_) {
    // Refusals name what to fix (identity, Hello); say them loudly. Connection failures
    // (aggregator down, TLS handshake) once per distinct message, then at debug.
    const std::string what = status.error_message() + " (" + grpcStatusCodeName(status.error_code()) + ")";
    switch (status.error_code()) {
      case grpc::StatusCode::PERMISSION_DENIED:
      case grpc::StatusCode::UNAUTHENTICATED:
      case grpc::StatusCode::INVALID_ARGUMENT:
        refused_ = true;
        spdlog::error("the aggregator refused this agent's stream: {}", what);
        break;
      default:
        if (what != last_error_) {
          spdlog::warn("aggregator stream: {}", what);
        } else {
          spdlog::debug("aggregator stream: {}", what);
        }
    }
    last_error_ = what;
  } else {
    last_error_.clear();
  }
  std::lock_guard lock(mu_);
  active_ctx_ = nullptr;
}

}  // namespace meshprobe::agent
