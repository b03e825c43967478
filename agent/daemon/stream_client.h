#pragma once
// The agent's one stream to the aggregator (Collector.Connect). Sends Hello, then (once the
// stream's first PeerList has arrived) the reports from a ReportBuffer; hands every
// PeerList, and every PeerDelta that follows a PeerList on the same stream, to its callback (with on_peer_delta set, the Hello says
// accepts_peer_deltas; an aggregator that predates deltas sends PeerLists only). Reconnects with capped
// exponential backoff plus jitter (a longer one after a refusal); while disconnected, reports wait in the (bounded)
// buffer, whole. Each report is written whole or as a delta against the previous one on
// the same stream (ReportDeltaEncoder), once the stream's PeerList accepts deltas. Depends on the generated StubInterface so tests use an in-process server.

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "agent/daemon/backoff.h"
#include "agent/daemon/report_buffer.h"
#include "common/tls/tls.h"
#include "meshprobe/v1/collector.grpc.pb.h"

namespace meshprobe::agent {

class StreamClient {
 public:
  struct Callbacks {
    // Current identity and overlay facts; called before every write, a change is re-sent.
    std::function<meshprobe::v1::Hello()> hello;
    std::function<void(const meshprobe::v1::PeerList&)> on_peers;
    std::function<void(const meshprobe::v1::PeerDelta&)> on_peer_delta;
    // After a PeerDelta that adds or changes a member: the agent should report now (the
    // next report carries every result for the new members). Not called when a report
    // went out less than the early-report spacing ago: the next regular one carries them.
    std::function<void()> on_members_joined;
  };
  // Backoff after the aggregator refused a stream (PERMISSION_DENIED, UNAUTHENTICATED,
  // INVALID_ARGUMENT): a misconfiguration does not retry every second.
  static constexpr std::chrono::milliseconds kRefusalBase{2'000};
  static constexpr std::chrono::milliseconds kRefusalCap{30'000};

  // `channel`, when given, is the stub's channel: between attempts the client watches its
  // state, which is what makes a connect in progress complete (gRPC's synchronous client
  // advances a connection only on threads that poll it, or in its 5 s backup poller), and
  // tries again as soon as it is connected.
  StreamClient(std::unique_ptr<meshprobe::v1::Collector::StubInterface> stub, ReportBuffer& buffer,
               Callbacks callbacks, Backoff backoff, std::shared_ptr<grpc::ChannelInterface> channel = nullptr);
  ~StreamClient();

  // Delta reports (Report.delta) to an aggregator whose PeerList accepts them; on by
  // default. Call before start().
  void setReportDeltas(bool on) { report_deltas_ = on; }
  // The least time between a report and an early one asked for by a join
  // (on_members_joined); 0 (the default): every join asks. While thousands of agents join,
  // the aggregator sends a PeerDelta every membership window (about 300 ms), and every
  // agent reporting after each would triple what the aggregator ingests. The agent uses its
  // interval: a join never makes it report more often than its regular reports do, and the
  // next regular report (within an interval) carries the new members. Call before start().
  void setEarlyReportSpacing(std::chrono::nanoseconds spacing) { early_spacing_ = spacing; }

  void start();
  void stop();  // returns within about a second

  bool connected() const { return connected_; }
  // Streams re-established: accepted by the aggregator after an earlier accepted stream
  // ended (meshprobe_stream_reconnects_total).
  uint64_t reconnects() const { return reconnects_; }
  // Connection attempts that followed a failed or ended stream (every retry, accepted or not).
  uint64_t retries() const { return retries_; }
  uint64_t reportsSent() const { return reports_sent_; }
  // Of those, delta reports; and the probe results the deltas left out as unchanged.
  uint64_t deltaReportsSent() const { return delta_reports_sent_; }
  // Quiet reports left out within the stream's PeerList.quiet_report_interval.
  uint64_t reportsHeld() const { return reports_held_; }
  uint64_t probesOmitted() const { return probes_omitted_; }
  // PeerDeltas dropped because no PeerList had come on their stream yet.
  uint64_t peerDeltasIgnored() const { return peer_deltas_ignored_; }

  // A channel to HOST:PORT tuned to notice a restarted aggregator within seconds.
  // Mutual TLS when `tls` has files; plaintext otherwise (the caller checked --insecure).
  static std::shared_ptr<grpc::Channel> makeChannel(const std::string& target, const tls::ClientConfig& tls = {});
  // The arguments of that channel (keepalive, reconnect backoff), for tools that simulate agents.
  static grpc::ChannelArguments channelArguments();

 private:
  void run();
  void serveOneStream();
  void pause(std::chrono::milliseconds delay);  // between attempts
  meshprobe::v1::Hello currentHello() const;

  std::unique_ptr<meshprobe::v1::Collector::StubInterface> stub_;
  ReportBuffer& buffer_;
  Callbacks callbacks_;
  std::shared_ptr<grpc::ChannelInterface> channel_;  // may be null
  Backoff backoff_;          // connection failures and ended streams
  Backoff refusal_backoff_;  // streams the aggregator refused
  bool refused_ = false;     // the last stream ended in a refusal (run() thread only)

  std::atomic<bool> stopping_{false};
  std::atomic<bool> connected_{false};
  std::atomic<uint64_t> reconnects_{0};
  std::atomic<uint64_t> retries_{0};
  std::atomic<bool> ever_accepted_{false};
  std::atomic<uint64_t> reports_sent_{0};
  std::chrono::nanoseconds early_spacing_{0};
  // steady_clock time of the last report written (ns since its epoch), for early_spacing_.
  std::atomic<int64_t> last_report_ns_{std::numeric_limits<int64_t>::min() / 2};
  std::atomic<uint64_t> delta_reports_sent_{0};
  std::atomic<uint64_t> reports_held_{0};
  std::atomic<uint64_t> probes_omitted_{0};
  uint64_t probes_omitted_base_ = 0;  // streams before the current one (stream thread only)
  bool report_deltas_ = true;
  std::atomic<uint64_t> peer_deltas_ignored_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  grpc::ClientContext* active_ctx_ = nullptr;  // guarded by mu_
  std::string last_error_;                     // the stream thread's last logged failure
  std::thread thread_;
};

}  // namespace meshprobe::agent
