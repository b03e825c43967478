// meshprobe-loadgen: N simulated agents on the real Collector protocol, for measuring the
// aggregator at cluster scale without a cluster (see sim_model.h for what each node says).
//
// Each node is one Collector.Connect stream driven by gRPC's callback API (a
// ClientBidiReactor per stream); a few worker threads (--threads) build and start the
// writes, gRPC's own threads run the reactions. A node sends its Hello, counts itself
// connected at the first PeerList, then sends a Report every --interval (nodes spread
// evenly over the interval) probing its members, and one at once after a PeerDelta that
// adds a member if it has not reported for an interval (as an agent does).
// Like a current agent its Hello sets accepts_peer_deltas and it keeps its members as the
// agent's PeerSet does (SimPeers): the stream's first PeerList, then the PeerDeltas after
// it (a delta before the stream's first list is ignored and counted); --legacy-membership simulates agents that predate deltas (whole PeerLists
// only). A stream that ends is re-opened with the agent's own capped, jittered backoff.
// Reports are what an agent's ReportDeltaEncoder sends (agent/daemon/report_delta.h): the
// stream's first report whole — every known peer on both layers, as an agent reports all
// its targets, or, to an aggregator that accepts Report.results_follow and with a
// --probe-budget that makes the coverage period four intervals or more, the failing results
// and the first few hundred, the rest following in the deltas after it; after it, once
// the stream's PeerList accepts deltas, delta reports carrying the failing cells (a
// simulated healthy cell never changes, so the encoder would leave it out) and the
// encoder's slice of the digest: every result once per digest period
// (ReportDeltaEncoder::digestPeriod: 30 s up to about 1,200 nodes, longer above so a
// cluster's digests stay within the encoder's cluster rate; 500 s at 5,000 nodes), a share
// in each report from a period after the whole report on, and every check once per
// period. A delta with nothing but its slice is left out within the stream's
// PeerList.quiet_report_interval of the last report, as the encoder's encodeUnlessQuiet
// does. --whole-reports simulates agents that predate delta reports, --whole-first-reports
// agents whose first report carries every result; --whole-digests
// agents that send their digest as a whole report every digest period, --every-interval
// agents that report every interval even with nothing new (earlier releases' agents).
//
// `--shard I/K` simulates only every K-th node (index % K == I), so that K processes share a
// cluster one process cannot drive; every process knows every node's name and addresses.
//
// `--query-bench` instead times the Query API (ListNodes, Diagnose, GetMatrix).
#include <grpcpp/grpcpp.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <deque>
#include <cstdio>
#include <iostream>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include <google/protobuf/util/time_util.h>

#include "agent/daemon/backoff.h"
#include "agent/daemon/report_delta.h"
#include "agent/daemon/report_builder.h"
#include "agent/daemon/stream_client.h"
#include "agent/probe/rotation.h"
#include "bench/loadgen/sim_model.h"
#include "common/duration.h"
#include "common/flags.h"
#include "common/tls/tls.h"
#include "common/version.h"
#include "meshprobe/v1/collector.grpc.pb.h"
#include "meshprobe/v1/query.grpc.pb.h"

namespace po = boost::program_options;

namespace meshprobe::loadgen {
namespace {

using Steady = std::chrono::steady_clock;
using SysClock = std::chrono::system_clock;
using meshprobe::v1::AgentMessage;
using meshprobe::v1::AggregatorMessage;

struct Options {
  std::string aggregator;
  size_t nodes = 0;
  Duration interval = std::chrono::seconds(1);
  double probe_budget = 0;  // 0: full mesh
  Duration duration{};      // 0: until SIGINT/SIGTERM
  std::string prefix = "sim-";
  std::vector<FaultSpec> faults;
  Duration fault_after{};
  size_t threads = 2;
  size_t channels = 0;  // 0: one per node
  Duration connect_timeout = std::chrono::seconds(5);
  Duration ramp{};  // first connects spread evenly over this long
  bool watch_diagnose = false;
  bool legacy_membership = false;  // Hellos without accepts_peer_deltas
  bool whole_reports = false;      // never delta reports (agents that predate them)
  bool whole_digests = false;      // the digest as a whole report per period (the previous agents)
  bool every_interval = false;     // a report every interval, quiet or not (the previous agents)
  bool whole_first_reports = false;  // every result in a stream's first report (the previous agents)
  bool query_bench = false;
  size_t count = 200;
  size_t shard = 0;   // this process simulates the nodes whose index % shards == shard
  size_t shards = 1;
  meshprobe::tls::ClientConfig tls;  // the agent's TLS flags (the shared meshprobe-agent certificate)
};

double seconds(Duration d) { return std::chrono::duration<double>(d).count(); }

std::string unixSeconds(SysClock::time_point t) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6f", std::chrono::duration<double>(t.time_since_epoch()).count());
  return buf;
}

// A channel like the agent's (StreamClient::makeChannel), with a subchannel of its own so
// each channel is its own TCP connection, as each real agent's is.
std::shared_ptr<grpc::Channel> makeChannel(const std::string& target, const meshprobe::tls::ClientConfig& tls) {
  grpc::ChannelArguments args = meshprobe::agent::StreamClient::channelArguments();
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetMaxReceiveMessageSize(-1);
  return meshprobe::tls::createChannel(target, tls, args);
}

// Waits up to `timeout` for a connection to `target`.
bool canConnect(const std::string& target, const meshprobe::tls::ClientConfig& tls, Duration timeout) {
  auto channel = makeChannel(target, tls);
  return channel->WaitForConnected(SysClock::now() + std::chrono::duration_cast<SysClock::duration>(timeout));
}

struct Counters {
  std::atomic<uint64_t> connected{0};
  std::atomic<uint64_t> max_connected{0};
  std::atomic<uint64_t> streams_started{0};
  std::atomic<uint64_t> streams_failed{0};
  std::atomic<uint64_t> live_streams{0};
  std::atomic<uint64_t> reports_sent{0};
  std::atomic<uint64_t> delta_reports_sent{0};
  std::atomic<uint64_t> reports_held{0};  // quiet reports left out (PeerList.quiet_report_interval)
  std::atomic<uint64_t> results_follow{0};  // whole reports whose results followed in the deltas after them
  std::atomic<uint64_t> largest_report{0};  // bytes of the largest report message written
  std::atomic<uint64_t> report_bytes{0};
  std::atomic<uint64_t> reports_replaced{0};  // a newer report replaced one still waiting for the stream
  std::atomic<uint64_t> write_failures{0};
  std::atomic<uint64_t> peer_lists{0};  // membership messages received, by kind, and their bytes
  std::atomic<uint64_t> peer_deltas{0};
  std::atomic<uint64_t> peer_deltas_ignored{0};  // before the stream's first PeerList
  std::atomic<uint64_t> membership_full_bytes{0};
  std::atomic<uint64_t> membership_delta_bytes{0};
  std::mutex mu;
  std::string first_error;  // guarded by mu
  std::string last_error;   // guarded by mu
};

class Simulation;
class NodeStream;

struct Node {
  size_t index = 0;
  std::string name;
  AgentMessage hello;
  std::mutex mu;
  NodeStream* stream = nullptr;  // guarded by mu; owned by gRPC until OnDone
  bool connected = false;
  std::unique_ptr<SimPeers> peers;  // guarded by mu
  uint64_t sequence = 0;
  bool deltas_ok = false;       // this stream's PeerList accepts delta reports
  bool whole_on_stream = false;  // a whole report went out on this stream
  Steady::time_point last_checks{};   // every check last sent (the whole report or a digest)
  Duration quiet_hold{};              // this stream's PeerList.quiet_report_interval
  Steady::time_point last_whole{};    // the stream's last whole report
  agent::DigestSchedule digest;       // the digest slices, over targets 2 * dst + layer
  bool results_follow = false;        // this stream's PeerList accepts Report.results_follow
  size_t owed_from = SIZE_MAX;        // the first target (2 * dst + layer) still owed; SIZE_MAX: none
  std::deque<size_t> owed_joined;     // joined members whose results are still owed
  Steady::time_point next_report{};
  Steady::time_point last_report{};  // the last report built (early reports after a join)
  Steady::time_point reconnect_due{};
  agent::Backoff backoff{std::chrono::milliseconds(200), std::chrono::seconds(2), 0};
  bool fault_reported = false;  // a report with a failing result was written since the injection
  bool owed_recovery = false;   // healed: the next report carries the recovered results
};

class Simulation {
 public:
  Simulation(const Options& options, FaultSet faults);
  ~Simulation();

  void start();
  // Cancels every stream and waits (bounded) for gRPC to finish them.
  void stop();
  // Injects the faults (again, after heal()).
  void inject();
  // Ends the faults: each node's next report carries the results that recovered, as an
  // agent's delta does for cells whose state changed.
  void heal();

  Counters& counters() { return counters_; }
  size_t nodes() const { return nodes_.size(); }
  size_t simulated() const { return mine_.size(); }  // this shard's nodes
  const Options& options() const { return options_; }

  // --- called from the reactors ------------------------------------------------------
  void onPeerList(Node& n, const meshprobe::v1::PeerList& list);
  void onPeerDelta(Node& n, const meshprobe::v1::PeerDelta& delta);
  // The most members that are not simulated nodes any node holds.
  uint64_t foreignPeers();
  void onDone(Node& n, NodeStream* stream, const grpc::Status& status);
  meshprobe::v1::Collector::Stub* stubFor(const Node& n) { return stubs_[n.index % stubs_.size()].get(); }
  bool stopping() const { return stopping_; }
  // A report of `n` was written (the transport took it, on its way to the aggregator):
  // after the injection, the first one with a failing result times the fault's way out.
  void reportWritten(Node& n, const meshprobe::v1::Report& report);
  // When the nodes' first failing reports were written, in seconds after the injection:
  // the witnesses' (sorted), and the faulted node's own (negative: none in this shard).
  struct FaultReports {
    std::vector<double> witnesses;
    double faulted = -1;
    uint64_t faulted_bytes = 0;
  };
  FaultReports faultReports();

 private:
  struct WorkerCache {
    uint64_t round = 0;
    std::vector<meshprobe::v1::ProbeResult> healthy;  // [2 * dst + (overlay ? 1 : 0)]
  };
  void worker(size_t w);
  void buildReport(Node& n, meshprobe::v1::Report& report, WorkerCache& cache, Steady::time_point now);
  bool quietRound(Node& n, Steady::time_point now) const;

  Options options_;
  FaultSet faults_;
  std::vector<std::unique_ptr<Node>> nodes_;  // every node of the cluster, by index
  std::vector<size_t> mine_;                  // the indices this process simulates (its shard)
  Duration digest_period_{};                  // every result resent once per this (the agent's encoder's rule)
  size_t results_per_report_ = 0;             // owed results a report carries (the agent's encoder's rule)
  std::vector<agent::ProbeTarget> underlay_, overlay_;  // by node index
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<meshprobe::v1::Collector::Stub>> stubs_;
  std::vector<meshprobe::v1::CheckResult> checks_;
  std::unique_ptr<agent::RotationPlan> plan_;  // with --probe-budget
  std::vector<size_t> ring_to_index_, index_to_ring_;
  Counters counters_;
  SystemClock clock_;
  Steady::time_point start_{};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> injected_{false};
  // When the faults were last injected (set before injected_ turns true; read after it).
  std::atomic<Steady::rep> injected_steady_{0};
  std::atomic<SysClock::rep> injected_wall_{0};
  Steady::time_point injectedSteady() const { return Steady::time_point(Steady::duration(injected_steady_.load())); }
  SysClock::time_point injectedWall() const { return SysClock::time_point(SysClock::duration(injected_wall_.load())); }
  std::mutex fault_mu_;
  FaultReports fault_reports_;  // guarded by fault_mu_
  std::vector<std::thread> workers_;
};

class NodeStream : public grpc::ClientBidiReactor<AgentMessage, AggregatorMessage> {
 public:
  // With node.mu held.
  NodeStream(Simulation& sim, Node& node) : sim_(sim), node_(node) {
    node_.peers->streamStarted();
    sim_.stubFor(node_)->async()->Connect(&ctx_, this);
    write_ = node_.hello;
    writing_ = true;
    StartWrite(&write_);
    StartRead(&read_);
    AddHold();  // released when the read side ends: OnDone cannot run before that
    StartCall();
  }

  // With node_.mu held. The stream keeps at most one report waiting behind the write in
  // flight; a newer one replaces it (a real agent's buffer drops the oldest too).
  void send(AgentMessage&& msg) {
    if (broken_) return;
    if (writing_) {
      if (pending_) sim_.counters().reports_replaced++;
      pending_ = std::move(msg);
      return;
    }
    write_ = std::move(msg);
    writing_ = true;
    StartWrite(&write_);
  }
  void cancel() { ctx_.TryCancel(); }  // with node_.mu held
  bool broken() const { return broken_; }

  void OnWriteDone(bool ok) override {
    std::lock_guard lock(node_.mu);
    if (!ok) {
      writing_ = false;
      broken_ = true;
      sim_.counters().write_failures++;
      return;
    }
    if (write_.has_report()) {
      sim_.reportWritten(node_, write_.report());
      sim_.counters().reports_sent++;
      if (write_.report().delta()) sim_.counters().delta_reports_sent++;
      if (write_.report().results_follow()) sim_.counters().results_follow++;
      const uint64_t bytes = write_.ByteSizeLong();
      sim_.counters().report_bytes += bytes;
      auto& largest = sim_.counters().largest_report;
      uint64_t prev = largest.load();
      while (bytes > prev && !largest.compare_exchange_weak(prev, bytes)) {
      }
    }
    if (pending_ && !broken_) {
      write_ = std::move(*pending_);
      pending_.reset();
      StartWrite(&write_);
    } else {
      writing_ = false;
    }
  }

  void OnReadDone(bool ok) override {
    if (ok) {
      if (read_.has_peer_list()) {
        sim_.counters().peer_lists++;
        sim_.counters().membership_full_bytes += read_.ByteSizeLong();
        sim_.onPeerList(node_, read_.peer_list());
      } else if (read_.has_peer_delta()) {
        sim_.counters().peer_deltas++;
        sim_.counters().membership_delta_bytes += read_.ByteSizeLong();
        sim_.onPeerDelta(node_, read_.peer_delta());
      }
      StartRead(&read_);
      return;
    }
    {
      std::lock_guard lock(node_.mu);
      broken_ = true;
    }
    RemoveHold();
  }

  void OnDone(const grpc::Status& status) override {
    sim_.onDone(node_, this, status);
    delete this;
  }

 private:
  Simulation& sim_;
  Node& node_;
  grpc::ClientContext ctx_;
  AgentMessage write_;
  AggregatorMessage read_;
  std::optional<AgentMessage> pending_;  // guarded by node_.mu, as are the two below
  bool writing_ = false;
  bool broken_ = false;
};

Simulation::Simulation(const Options& options, FaultSet faults) : options_(options), faults_(std::move(faults)) {
  const size_t n = options_.nodes;
  std::random_device rd;
  std::vector<std::string> names;
  for (size_t i = 0; i < n; ++i) {
    auto node = std::make_unique<Node>();
    node->index = i;
    const auto id = identityOf(options_.prefix, i, n);
    node->name = id.name;
    if (i % options_.shards == options_.shard) {  // another shard's node is only a name and addresses here
      mine_.push_back(i);
      *node->hello.mutable_hello() = helloFor(id);
      // A current agent's StreamClient says so when it has a delta callback.
      if (!options_.legacy_membership) node->hello.mutable_hello()->set_accepts_peer_deltas(true);
      node->peers = std::make_unique<SimPeers>(clock_, options_.prefix, n, i);
      node->backoff = agent::Backoff(std::chrono::milliseconds(200), std::chrono::seconds(1), rd());
    }
    underlay_.push_back({id.name, Layer::kUnderlay, id.node_ip, 0});
    overlay_.push_back({id.name, Layer::kOverlay, id.overlay_ip, agent::overlayPathMtu(kSimVxlanMtu, kSimVxlanMtu)});
    names.push_back(id.name);
    nodes_.push_back(std::move(node));
  }
  const size_t channels = options_.channels == 0 ? mine_.size() : std::min(options_.channels, mine_.size());
  for (size_t c = 0; c < channels; ++c) {
    channels_.push_back(makeChannel(options_.aggregator, options_.tls));
    stubs_.push_back(meshprobe::v1::Collector::NewStub(channels_.back()));
  }
  checks_ = healthyChecks();
  // A whole report carries a result per peer and layer; the agent's encoder spaces its
  // digests by that count (ReportDeltaEncoder::digestPeriod).
  digest_period_ = std::chrono::duration_cast<Duration>(agent::ReportDeltaEncoder::digestPeriod(
      agent::ReportDeltaEncoder::Options{}, 2 * (n - 1), std::chrono::nanoseconds(0)));
  // Agents with this probe budget have a coverage period of the rotation's rounds (one
  // round: a full mesh), which sets how many owed results each report carries.
  results_per_report_ = 2 * (n - 1);
  if (options_.probe_budget > 0) {
    plan_ = std::make_unique<agent::RotationPlan>(
        names, agent::perRoundCapacity(options_.probe_budget, options_.interval));
    results_per_report_ = agent::ReportDeltaEncoder::resultsPerReport(agent::ReportDeltaEncoder::Options{},
                                                                       2 * (n - 1), plan_->coverageRounds());
    ring_to_index_.resize(n);
    index_to_ring_.resize(n);
    for (size_t r = 0; r < plan_->ring().size(); ++r) {
      auto idx = indexOfName(options_.prefix, plan_->ring()[r], n);
      ring_to_index_[r] = *idx;
      index_to_ring_[*idx] = r;
    }
  }
}

Simulation::~Simulation() { stop(); }

void Simulation::start() {
  start_ = Steady::now();
  for (size_t i : mine_) {
    const auto offset = options_.ramp * static_cast<int64_t>(i) / static_cast<int64_t>(nodes_.size());
    nodes_[i]->reconnect_due = start_ + std::chrono::duration_cast<Steady::duration>(offset);
  }
  for (size_t w = 0; w < options_.threads; ++w) workers_.emplace_back([this, w] { worker(w); });
}

void Simulation::inject() {
  {
    std::lock_guard lock(fault_mu_);
    fault_reports_ = {};
  }
  for (size_t i : mine_) {
    std::lock_guard lock(nodes_[i]->mu);
    nodes_[i]->fault_reported = false;
  }
  injected_steady_ = Steady::now().time_since_epoch().count();
  injected_wall_ = SysClock::now().time_since_epoch().count();
  injected_ = true;
}

void Simulation::heal() {
  injected_ = false;
  for (size_t i : mine_) {
    std::lock_guard lock(nodes_[i]->mu);
    nodes_[i]->owed_recovery = !faults_.destinationsFrom(i, nodes_.size()).empty();
  }
}

void Simulation::reportWritten(Node& n, const meshprobe::v1::Report& report) {
  if (!injected_ || n.fault_reported) return;
  const bool failing = std::any_of(report.probes().begin(), report.probes().end(),
                                   [](const meshprobe::v1::ProbeResult& p) { return p.consecutive_failures() > 0; });
  if (!failing) return;
  n.fault_reported = true;
  const double after = std::chrono::duration<double>(Steady::now() - injectedSteady()).count();
  std::lock_guard lock(fault_mu_);
  if (faults_.faultedNode(n.index)) {
    fault_reports_.faulted = after;
    fault_reports_.faulted_bytes = report.ByteSizeLong();
  } else {
    fault_reports_.witnesses.push_back(after);
  }
}

Simulation::FaultReports Simulation::faultReports() {
  std::lock_guard lock(fault_mu_);
  FaultReports out = fault_reports_;
  std::sort(out.witnesses.begin(), out.witnesses.end());
  return out;
}

void Simulation::stop() {
  if (stopping_.exchange(true)) return;
  for (auto& t : workers_) t.join();
  for (auto& n : nodes_) {
    std::lock_guard lock(n->mu);
    if (n->stream) n->stream->cancel();
  }
  // Bounded: cancelled streams finish within milliseconds.
  const auto deadline = Steady::now() + std::chrono::seconds(10);
  while (counters_.live_streams > 0 && Steady::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

void Simulation::onPeerDelta(Node& n, const meshprobe::v1::PeerDelta& delta) {
  std::lock_guard lock(n.mu);
  if (!n.peers->onPeerDelta(delta)) {
    counters_.peer_deltas_ignored++;
    return;
  }
  // An agent reports at once after a delta that adds or changes a member if it has not
  // reported for an interval (StreamClient::setEarlyReportSpacing).
  const auto now = Steady::now();
  if (delta.peers_size() > 0 && n.connected && now - n.last_report >= options_.interval) {
    n.next_report = std::min(n.next_report, now);
  }
}

uint64_t Simulation::foreignPeers() {
  uint64_t most = 0;
  for (size_t i : mine_) {
    std::lock_guard lock(nodes_[i]->mu);
    most = std::max(most, nodes_[i]->peers->foreign());
  }
  return most;
}

void Simulation::onPeerList(Node& n, const meshprobe::v1::PeerList& list) {
  std::lock_guard lock(n.mu);
  n.peers->onPeerList(list);
  n.deltas_ok = !options_.whole_reports && list.accepts_report_deltas();
  n.results_follow = n.deltas_ok && !options_.whole_first_reports && list.accepts_results_follow();
  n.quiet_hold = list.has_quiet_report_interval() && !options_.whole_digests && !options_.every_interval
                     ? std::chrono::duration_cast<Duration>(std::chrono::nanoseconds(
                           google::protobuf::util::TimeUtil::DurationToNanoseconds(list.quiet_report_interval())))
                     : Duration{};
  if (!n.connected) {
    n.connected = true;
    n.backoff.reset();
    const uint64_t now_connected = ++counters_.connected;
    uint64_t prev = counters_.max_connected;
    while (now_connected > prev && !counters_.max_connected.compare_exchange_weak(prev, now_connected)) {
    }
    // Nodes report evenly spread over the interval, as independent agents do.
    const auto phase = options_.interval * static_cast<int64_t>(n.index) / static_cast<int64_t>(nodes_.size());
    n.next_report = Steady::now() + std::chrono::duration_cast<Steady::duration>(phase);
  }
}

void Simulation::onDone(Node& n, NodeStream* stream, const grpc::Status& status) {
  std::lock_guard lock(n.mu);
  if (n.stream == stream) n.stream = nullptr;
  if (n.connected) {
    n.connected = false;
    counters_.connected--;
  }
  if (!stopping_) {
    counters_.streams_failed++;
    {
      std::lock_guard elock(counters_.mu);
      counters_.last_error = n.name + ": " + std::to_string(status.error_code()) + " " + status.error_message();
      if (counters_.first_error.empty()) counters_.first_error = counters_.last_error;
    }
    n.reconnect_due = Steady::now() + n.backoff.next();
  }
  counters_.live_streams--;
}

bool Simulation::quietRound(Node& n, Steady::time_point now) const {
  // A delta that would carry nothing but its digest slice, within the stream's quiet
  // report interval of the last report (ReportDeltaEncoder::encodeUnlessQuiet): no failing
  // result, no member joined, no checks due.
  if (!n.deltas_ok || !n.whole_on_stream || n.quiet_hold <= options_.interval) return false;
  if (now - n.last_report >= n.quiet_hold || now - n.last_checks >= digest_period_) return false;
  if (n.peers->anyJoined()) return false;
  if (n.owed_from != SIZE_MAX || !n.owed_joined.empty() || n.owed_recovery) return false;  // results still owed
  return !injected_ || faults_.destinationsFrom(n.index, nodes_.size()).empty();
}

void Simulation::buildReport(Node& n, meshprobe::v1::Report& report, WorkerCache& cache, Steady::time_point now) {
  RoundFacts facts;
  facts.now = SysClock::now();
  facts.round = static_cast<uint64_t>((now - start_) / options_.interval) + 1;
  facts.probe_timeout = std::chrono::duration_cast<Duration>(
      0.8 * std::min<Duration>(options_.interval, std::chrono::seconds(1)));
  const bool injected = injected_;
  if (injected) {
    facts.failed_rounds = static_cast<uint64_t>((now - injectedSteady()) / options_.interval) + 1;
    facts.injected_at = injectedWall();
  }
  const size_t count = nodes_.size();
  if (cache.round != facts.round || cache.healthy.empty()) {
    cache.round = facts.round;
    cache.healthy.resize(2 * count);
    for (size_t j = 0; j < count; ++j) {
      cache.healthy[2 * j] = agent::toProto(targetStats(underlay_[j], j, false, facts));
      cache.healthy[2 * j + 1] = agent::toProto(targetStats(overlay_[j], j, false, facts));
    }
  }
  report.set_sequence(++n.sequence);
  *report.mutable_time() = google::protobuf::util::TimeUtil::NanosecondsToTimestamp(
      std::chrono::duration_cast<std::chrono::nanoseconds>(facts.now.time_since_epoch()).count());
  // Whole or delta as the agent's encoder decides.
  const bool whole = !n.deltas_ok || !n.whole_on_stream ||
                     (options_.whole_digests && now - n.last_whole >= digest_period_);
  // A delta's slice of the digest (ReportDeltaEncoder): the targets, in the agent's order,
  // from where the last slice ended, as many as the time since the last report is of the
  // digest period, and every check once per period.
  agent::DigestSchedule::Slice slice;
  const auto ns = [](Steady::time_point t) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  };
  if (whole || !n.deltas_ok) n.owed_recovery = false;  // every result goes out anyway
  if (whole) {
    n.whole_on_stream = true;
    n.last_checks = now;
    n.last_whole = now;
    n.digest.whole(ns(now));
    for (const auto& c : checks_) *report.add_checks() = c;
  } else if (!options_.whole_digests) {
    report.set_delta(true);
    slice = n.digest.next(ns(now), std::chrono::duration_cast<std::chrono::nanoseconds>(digest_period_).count(),
                          2 * count);
    if (now - n.last_checks >= digest_period_) {
      n.last_checks = now;
      for (const auto& c : checks_) *report.add_checks() = c;
    }
  } else {
    report.set_delta(true);
  }
  auto add = [&](size_t j) {
    if (j == n.index || !n.peers->known(j)) return;
    // The agent's target order: per peer (sorted by name), UNDERLAY then OVERLAY.
    for (int layer = 0; layer < 2; ++layer) {
      const Layer l = layer == 0 ? Layer::kUnderlay : Layer::kOverlay;
      if (injected && faults_.fails(n.index, j, l)) {
        *report.add_probes() = agent::toProto(targetStats(layer == 0 ? underlay_[j] : overlay_[j], j, true, facts));
      } else if (whole) {
        *report.add_probes() = cache.healthy[2 * j + static_cast<size_t>(layer)];
      }
    }
  };
  if (n.deltas_ok) {
    // An agent reports every target, probed this round or not; a delta only the failing ones.
    if (whole) {
      // To an aggregator that accepts it, a large agent's whole report carries the failing
      // results and the first per_report others; the rest follow, that many a delta
      // (ReportDeltaEncoder, "Results that follow").
      // Counted over the results the report has (known peers), as the encoder counts them.
      size_t upto = 0;
      for (size_t carried = 0; upto < count; ++upto) {
        if (upto == n.index || !n.peers->known(upto)) continue;
        if (n.results_follow && carried + 2 > results_per_report_) break;
        add(upto);
        carried += 2;
      }
      if (injected) {
        for (size_t j : faults_.destinationsFrom(n.index, count)) {
          if (j < upto || j == n.index || !n.peers->known(j)) continue;
          for (int layer = 0; layer < 2; ++layer) {
            const Layer l = layer == 0 ? Layer::kUnderlay : Layer::kOverlay;
            if (!faults_.fails(n.index, j, l)) continue;
            *report.add_probes() =
                agent::toProto(targetStats(layer == 0 ? underlay_[j] : overlay_[j], j, true, facts));
          }
        }
      }
      n.owed_joined.clear();  // a whole report carries every known member
      if (upto < count) {
        report.set_results_follow(true);
        n.owed_from = 2 * upto;
      } else {
        n.owed_from = SIZE_MAX;
      }
      n.peers->takeJoined();  // a whole report carries them already
    } else {
      // Results owed (the rest of a whole report whose results follow, and joined members'
      // results), at most results_per_report_ a report to an aggregator that accepts it.
      size_t room = n.results_follow ? results_per_report_ : SIZE_MAX;
      // Failing results, or after heal() the recovered ones: sent below, once.
      const bool recovering = !injected && n.owed_recovery;
      auto changed = [&](size_t j, Layer l) { return (injected || recovering) && faults_.fails(n.index, j, l); };
      if (n.owed_from != SIZE_MAX) {
        const size_t end = std::min(2 * count, n.owed_from + room);
        room -= end - n.owed_from;
        for (size_t t = n.owed_from; t < end; ++t) {
          const size_t j = t / 2;
          const Layer l = t % 2 == 0 ? Layer::kUnderlay : Layer::kOverlay;
          if (j == n.index || !n.peers->known(j) || changed(j, l)) continue;
          *report.add_probes() = cache.healthy[t];
        }
        n.owed_from = end < 2 * count ? end : SIZE_MAX;
      }
      if (injected) {
        for (size_t j : faults_.destinationsFrom(n.index, count)) add(j);
      }
      if (recovering) {
        for (size_t j : faults_.destinationsFrom(n.index, count)) {
          if (j == n.index || !n.peers->known(j)) continue;
          for (int layer = 0; layer < 2; ++layer) {
            if (changed(j, layer == 0 ? Layer::kUnderlay : Layer::kOverlay)) {
              *report.add_probes() = cache.healthy[2 * j + static_cast<size_t>(layer)];
            }
          }
        }
      }
      n.owed_recovery = false;
      // Members that joined since the last report: all their results, as the agent's
      // encoder resends them (the aggregator could not place them before it knew the member),
      // within the room left.
      std::vector<bool> joined(count, false);
      for (size_t j : n.peers->takeJoined()) n.owed_joined.push_back(j);
      while (!n.owed_joined.empty() && room >= 2) {
        const size_t j = n.owed_joined.front();
        n.owed_joined.pop_front();
        if (j == n.index || j >= count || !n.peers->known(j)) continue;
        room -= 2;
        joined[j] = true;
        for (int layer = 0; layer < 2; ++layer) {
          const Layer l = layer == 0 ? Layer::kUnderlay : Layer::kOverlay;
          if (changed(j, l)) continue;  // added above
          *report.add_probes() = cache.healthy[2 * j + static_cast<size_t>(layer)];
        }
      }
      // The digest slice: healthy targets not sent above already.
      for (size_t k = 0; k < slice.count; ++k) {
        const size_t t = (slice.from + k) % (2 * count);
        const size_t j = t / 2;
        const Layer l = t % 2 == 0 ? Layer::kUnderlay : Layer::kOverlay;
        if (j == n.index || !n.peers->known(j) || joined[j] || changed(j, l)) continue;
        *report.add_probes() = cache.healthy[t];
      }
    }
  } else if (plan_ && plan_->sparse()) {
    const uint64_t round = agent::roundOf(facts.now, options_.interval);
    auto ring = plan_->targetsAt(index_to_ring_[n.index], round);
    std::vector<size_t> peers;
    peers.reserve(ring.size());
    for (size_t r : ring) peers.push_back(ring_to_index_[r]);
    std::sort(peers.begin(), peers.end());  // names sort as indices do
    for (size_t j : peers) add(j);
  } else {
    for (size_t j = 0; j < count; ++j) add(j);
  }
}

void Simulation::worker(size_t w) {
  WorkerCache cache;
  const size_t step = options_.threads;
  while (!stopping_) {
    const auto now = Steady::now();
    auto wake = now + std::chrono::milliseconds(20);
    for (size_t k = w; k < mine_.size(); k += step) {
      Node& n = *nodes_[mine_[k]];
      std::lock_guard lock(n.mu);
      if (n.stream == nullptr) {
        if (now >= n.reconnect_due) {
          counters_.streams_started++;
          counters_.live_streams++;
          n.whole_on_stream = false;  // a new stream starts with a whole report
          n.deltas_ok = false;
          n.stream = new NodeStream(*this, n);
        } else {
          wake = std::min(wake, n.reconnect_due);
        }
        continue;
      }
      if (!n.connected || n.stream->broken()) continue;
      if (now >= n.next_report && quietRound(n, now)) {
        // The agent's encoder leaves this report out (encodeUnlessQuiet); the next one
        // carries its digest share.
        counters_.reports_held++;
        n.next_report = now + std::chrono::duration_cast<Steady::duration>(options_.interval);
      } else if (now >= n.next_report) {
        AgentMessage msg;
        buildReport(n, *msg.mutable_report(), cache, now);
        n.stream->send(std::move(msg));
        n.last_report = now;
        // The next one an interval after this one, as the agent's report loop waits (an
        // early report after a join moves the schedule too).
        n.next_report = now + std::chrono::duration_cast<Steady::duration>(options_.interval);
      }
      wake = std::min(wake, n.next_report);
    }
    std::this_thread::sleep_until(wake);  // next node due, at most 20 ms
  }
}

// ---- the Query API ------------------------------------------------------------------

bool findingMatches(const meshprobe::v1::Finding& f, const FaultSpec& fault) {
  const auto want = agent::toProto(fault.layer);
  if (f.layer() != want) return false;
  auto has = [&](const std::string& name) { return std::find(f.nodes().begin(), f.nodes().end(), name) != f.nodes().end(); };
  return fault.b.empty() ? has(fault.a) : has(fault.a) && has(fault.b);
}

// How many of the faults Diagnose shows (-1: the call failed). When it shows every one,
// `onset` gets the latest onset_time of the findings that show them: when the aggregator's
// diagnosis first saw the fault, before the finding became active (the onset hold).
int faultsShown(meshprobe::v1::Query::Stub& query, const std::vector<FaultSpec>& faults, SysClock::time_point* onset) {
  grpc::ClientContext ctx;
  ctx.set_deadline(SysClock::now() + std::chrono::seconds(5));
  meshprobe::v1::DiagnoseResponse resp;
  if (!query.Diagnose(&ctx, {}, &resp).ok()) return -1;
  SysClock::time_point latest{};
  int shown = 0;
  for (const auto& fault : faults) {
    const meshprobe::v1::Finding* seen = nullptr;
    for (const auto& f : resp.findings()) {
      if (seen == nullptr && findingMatches(f, fault)) seen = &f;
    }
    if (seen == nullptr) continue;
    ++shown;
    const auto at = SysClock::time_point(std::chrono::duration_cast<SysClock::duration>(std::chrono::nanoseconds(
        google::protobuf::util::TimeUtil::TimestampToNanoseconds(seen->onset_time()))));
    latest = std::max(latest, at);
  }
  if (shown == static_cast<int>(faults.size())) *onset = latest;
  return shown;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t idx = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5));
  return v[idx];
}

int queryBench(const Options& o) {
  auto channel = makeChannel(o.aggregator, o.tls);
  auto query = meshprobe::v1::Query::NewStub(channel);
  auto time = [&](const char* name, auto call) {
    std::vector<double> ms;
    uint64_t errors = 0, items = 0, bytes = 0;
    std::string last_error;
    for (size_t i = 0; i < o.count; ++i) {
      grpc::ClientContext ctx;
      ctx.set_deadline(SysClock::now() + std::chrono::seconds(10));  // a slower call counts as an error
      const auto t0 = Steady::now();
      auto [status, n, size] = call(ctx);
      const auto t1 = Steady::now();
      if (!status.ok()) {
        ++errors;
        last_error = std::to_string(status.error_code()) + " " + status.error_message();
        continue;
      }
      ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      items = n;
      bytes = size;
    }
    std::printf("query %s count=%zu errors=%llu p50_ms=%.3f p99_ms=%.3f items=%llu bytes=%llu%s%s\n", name, ms.size(),
                static_cast<unsigned long long>(errors), percentile(ms, 0.50), percentile(ms, 0.99),
                static_cast<unsigned long long>(items), static_cast<unsigned long long>(bytes),
                last_error.empty() ? "" : " last_error=", last_error.c_str());
    std::fflush(stdout);
    return errors == 0;
  };
  bool ok = true;
  ok &= time("ListNodes", [&](grpc::ClientContext& ctx) {
    meshprobe::v1::ListNodesResponse r;
    auto st = query->ListNodes(&ctx, {}, &r);
    return std::tuple{st, static_cast<uint64_t>(r.nodes_size()), static_cast<uint64_t>(r.ByteSizeLong())};
  });
  ok &= time("Diagnose", [&](grpc::ClientContext& ctx) {
    meshprobe::v1::DiagnoseResponse r;
    auto st = query->Diagnose(&ctx, {}, &r);
    return std::tuple{st, static_cast<uint64_t>(r.findings_size()), static_cast<uint64_t>(r.ByteSizeLong())};
  });
  ok &= time("GetMatrix(UNDERLAY)", [&](grpc::ClientContext& ctx) {
    meshprobe::v1::GetMatrixRequest req;
    req.set_layer(meshprobe::v1::UNDERLAY);
    meshprobe::v1::GetMatrixResponse r;
    auto st = query->GetMatrix(&ctx, req, &r);
    return std::tuple{st, static_cast<uint64_t>(r.cells_size()), static_cast<uint64_t>(r.ByteSizeLong())};
  });
  return ok ? 0 : 1;
}

void raiseFileLimit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
}

// When the injected fault left this process: each node's first report with a failing
// result after the injection, as the transport took it (stderr; at heal and at the end).
void printFaultReports(Simulation& sim) {
  const Simulation::FaultReports fr = sim.faultReports();
  const auto& w = fr.witnesses;
  auto at = [&w](double q) { return w.empty() ? -1.0 : w[std::min(w.size() - 1, static_cast<size_t>(q * w.size()))]; };
  std::fprintf(stderr,
               "meshprobe-loadgen: fault reports written after the injection: witnesses=%zu first_s=%.3f p50_s=%.3f "
               "p95_s=%.3f last_s=%.3f faulted_node_s=%.3f faulted_node_bytes=%llu\n",
               w.size(), w.empty() ? -1.0 : w.front(), at(0.5), at(0.95), w.empty() ? -1.0 : w.back(), fr.faulted,
               static_cast<unsigned long long>(fr.faulted_bytes));
}

int run(const Options& o, const std::vector<FaultSpec>& faults) {
  std::string error;
  FaultSet fault_set(faults, o.prefix, o.nodes, &error);
  if (!error.empty()) {
    std::cerr << "meshprobe-loadgen: " << error << "\n";
    return 2;
  }
  raiseFileLimit();

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGUSR1);
  sigaddset(&signals, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  const auto t_start = Steady::now();
  Simulation sim(o, std::move(fault_set));
  sim.start();
  auto& c = sim.counters();
  std::unique_ptr<meshprobe::v1::Query::Stub> query;
  if (o.watch_diagnose && !faults.empty()) query = meshprobe::v1::Query::NewStub(makeChannel(o.aggregator, o.tls));

  bool ramped = false, injected = false, visible = false, healed = false, cleared = false;
  uint64_t injections = 0;
  auto last_progress = t_start;
  SysClock::time_point injected_wall{};
  Steady::time_point injected_steady{}, healed_steady{};
  auto last_watch = t_start;
  while (true) {
    timespec ts{0, 100'000'000};  // the main loop's tick: progress, injection, the end
    bool inject_now = false, heal_now = false;
    if (const int sig = sigtimedwait(&signals, nullptr, &ts); sig == SIGUSR1) {
      inject_now = true;
    } else if (sig == SIGUSR2) {
      heal_now = true;
    } else if (sig > 0) {
      std::cerr << "meshprobe-loadgen: signal; stopping\n";
      break;
    }
    const auto now = Steady::now();
    if (!ramped) {
      if (c.connected >= sim.simulated()) {
        ramped = true;
        std::fprintf(stderr, "meshprobe-loadgen: all %zu streams connected after %.2f s\n", sim.simulated(),
                     seconds(now - t_start));
      } else if (now - last_progress >= std::chrono::seconds(1)) {
        last_progress = now;
        std::fprintf(stderr, "meshprobe-loadgen: connected %llu/%zu (%.0f s)\n",
                     static_cast<unsigned long long>(c.connected.load()), sim.simulated(), seconds(now - t_start));
      }
    }
    if (!injected && !faults.empty() && (inject_now || (injections == 0 && now - t_start >= o.fault_after))) {
      injected = true;
      visible = healed = false;
      ++injections;
      sim.inject();
      injected_wall = SysClock::now();
      injected_steady = now;
      std::printf("injected %s\n", unixSeconds(injected_wall).c_str());
      std::fflush(stdout);
    }
    if (injected && heal_now) {
      printFaultReports(sim);
      sim.heal();
      injected = false;
      healed = true;
      cleared = false;
      healed_steady = now;
      std::printf("healed %s\n", unixSeconds(SysClock::now()).c_str());
      std::fflush(stdout);
    }
    if (healed && query && !cleared && now - last_watch >= std::chrono::milliseconds(100)) {
      last_watch = now;
      SysClock::time_point onset{};
      if (faultsShown(*query, faults, &onset) == 0) {
        cleared = true;
        std::printf("cleared after %.3f s\n", seconds(Steady::now() - healed_steady));
        std::fflush(stdout);
      }
    }
    if (injected && query && !visible && now - last_watch >= std::chrono::milliseconds(100)) {
      last_watch = now;
      SysClock::time_point onset{};
      if (faultsShown(*query, faults, &onset) == static_cast<int>(faults.size())) {
        visible = true;
        std::printf("visible %s after %.3f s (onset after %.3f s)\n", unixSeconds(SysClock::now()).c_str(),
                    seconds(Steady::now() - injected_steady), seconds(onset - injected_wall));
        std::fflush(stdout);
      }
    }
    if (o.duration.count() > 0 && now - t_start >= o.duration) break;
  }
  sim.stop();
  const uint64_t foreign = sim.foreignPeers();
  const double wall = seconds(Steady::now() - t_start);
  std::string first_error, last_error;
  {
    std::lock_guard lock(c.mu);
    first_error = c.first_error;
    last_error = c.last_error;
  }
  std::fprintf(
      stderr,
      "meshprobe-loadgen summary: nodes=%zu shard=%zu/%zu simulated=%zu wall_s=%.1f streams_connected_max=%llu streams_started=%llu "
      "stream_errors=%llu write_failures=%llu reports_sent=%llu report_bytes=%llu "
      "reports_replaced=%llu delta_reports=%llu reports_held=%llu results_follow=%llu largest_report=%llu membership=%s peer_lists=%llu peer_deltas=%llu peer_deltas_ignored=%llu "
      "membership_bytes=%llu membership_full_bytes=%llu membership_delta_bytes=%llu foreign_peers=%llu\n",
      o.nodes, o.shard, o.shards, sim.simulated(), wall, static_cast<unsigned long long>(c.max_connected.load()),
      static_cast<unsigned long long>(c.streams_started.load()),
      static_cast<unsigned long long>(c.streams_failed.load()),
      static_cast<unsigned long long>(c.write_failures.load()), static_cast<unsigned long long>(c.reports_sent.load()),
      static_cast<unsigned long long>(c.report_bytes.load()),
      static_cast<unsigned long long>(c.reports_replaced.load()),
      static_cast<unsigned long long>(c.delta_reports_sent.load()),
      static_cast<unsigned long long>(c.reports_held.load()), static_cast<unsigned long long>(c.results_follow.load()),
      static_cast<unsigned long long>(c.largest_report.load()), o.legacy_membership ? "legacy" : "delta",
      static_cast<unsigned long long>(c.peer_lists.load()), static_cast<unsigned long long>(c.peer_deltas.load()),
      static_cast<unsigned long long>(c.peer_deltas_ignored.load()),
      static_cast<unsigned long long>(c.membership_full_bytes + c.membership_delta_bytes),
      static_cast<unsigned long long>(c.membership_full_bytes.load()),
      static_cast<unsigned long long>(c.membership_delta_bytes.load()), static_cast<unsigned long long>(foreign));
  if (injected) printFaultReports(sim);
  if (!first_error.empty()) std::fprintf(stderr, "meshprobe-loadgen: first stream error: %s\n", first_error.c_str());
  if (!last_error.empty()) std::fprintf(stderr, "meshprobe-loadgen: last stream error: %s\n", last_error.c_str());
  return 0;
}

}  // namespace
}  // namespace meshprobe::loadgen

int main(int argc, char** argv) {
  using namespace meshprobe;
  using namespace meshprobe::loadgen;
  Options o;
  std::string interval = "1s", duration = "0", fault_after = "0", connect_timeout = "5s", ramp = "0", shard = "0/1";
  std::vector<std::string> fault_nodes, fault_pairs;
  po::options_description desc(
      "meshprobe-loadgen: N simulated agents on the Collector protocol, to load an aggregator.\n"
      "Every flag also reads MESHPROBE_<FLAG>; flags win.\n\nFlags");
  // clang-format off
  desc.add_options()
      ("help,h", "print this help and exit")
      ("version", "print the version and exit")
      ("aggregator", po::value(&o.aggregator), "aggregator gRPC HOST:PORT (required)")
      ("nodes", po::value(&o.nodes), "simulated agents, 1..32768 (required unless --query-bench)")
      ("interval", po::value(&interval)->default_value(interval), "report interval of every node")
      ("probe-budget", po::value(&o.probe_budget)->default_value(0),
       "probes per second per layer each node may send (agent/probe/rotation.h): report only the peers the "
       "rotation assigns to the round; 0 = full mesh")
      ("duration", po::value(&duration)->default_value(duration), "stop after this long (0: at SIGINT/SIGTERM)")
      ("name-prefix", po::value(&o.prefix)->default_value(o.prefix), "node names are PREFIX0001, PREFIX0002, ...")
      ("fault-node", po::value(&fault_nodes)->composing(),
       "NAME:LAYER (underlay|overlay): every probe to and from NAME on LAYER fails (repeatable)")
      ("fault-pair", po::value(&fault_pairs)->composing(),
       "A:B:LAYER: probes between A and B on LAYER fail, both ways (repeatable)")
      ("fault-after", po::value(&fault_after)->default_value(fault_after),
       "inject the faults this long after start (or at SIGUSR1); prints `injected <unix seconds>` on stdout. "
       "SIGUSR2 heals them (the next reports carry the recovered results; prints `healed <unix seconds>`), and "
       "SIGUSR1 injects them again")
      ("watch-diagnose", po::bool_switch(&o.watch_diagnose),
       "after injection poll Diagnose (every 100 ms) and print `visible <unix seconds> after <s> s (onset after "
       "<s> s)` once it shows every fault; the onset is the findings' onset_time, when the diagnosis first saw the "
       "fault. After a heal, print `cleared after <s> s` once it shows none of them")
      ("legacy-membership", po::bool_switch(&o.legacy_membership),
       "simulate agents that predate membership deltas: the Hello leaves accepts_peer_deltas unset, so the "
       "aggregator sends whole PeerLists only (default: current agents, one PeerList per stream then PeerDeltas)")
      ("whole-reports", po::bool_switch(&o.whole_reports),
       "simulate agents that predate delta reports: every report whole (default: whole on each stream's first "
       "report, then, once the aggregator accepts them, deltas with the changed cells and a slice of the digest)")
      ("whole-digests", po::bool_switch(&o.whole_digests),
       "simulate agents whose digest is a whole report every digest period instead of a slice in each delta "
       "(the agents of the previous release)")
      ("whole-first-reports", po::bool_switch(&o.whole_first_reports),
       "simulate agents that send every result in a stream's first report (the agents of the previous release; "
       "default: as current agents, to an aggregator that accepts it the results beyond a few hundred follow in "
       "the deltas after it, when --probe-budget makes the coverage period four intervals or more)")
      ("every-interval", po::bool_switch(&o.every_interval),
       "simulate agents that send a report every interval even with nothing new (the agents of the previous "
       "release; default: as current agents, a quiet report only every PeerList.quiet_report_interval)")
      ("ramp", po::value(&ramp)->default_value(ramp),
       "spread the nodes' first connects evenly over this long (0: all at once, like a restarted aggregator's agents)")
      ("shard", po::value(&shard)->default_value(shard),
       "I/K: simulate only the nodes whose index modulo K is I (0-based), so that K processes, one per shard, "
       "share a cluster too big for one; each prints its own summary")
      ("threads", po::value(&o.threads)->default_value(o.threads), "worker threads building and sending reports")
      ("channels", po::value(&o.channels)->default_value(0),
       "gRPC channels (TCP connections) shared by the nodes; 0 = one per node, as real agents")
      ("connect-timeout", po::value(&connect_timeout)->default_value(connect_timeout),
       "give up when the aggregator cannot be reached within this long")
      ("query-bench", po::bool_switch(&o.query_bench),
       "instead of simulating: time --count calls each of ListNodes, Diagnose, GetMatrix(UNDERLAY)")
      ("count", po::value(&o.count)->default_value(o.count), "calls per RPC with --query-bench");
  // clang-format on
  meshprobe::tls::addClientFlags(desc, o.tls, "plaintext (an aggregator run with --insecure)");
  po::variables_map vm;
  auto outcome = parseFlags(argc, argv, desc, vm);
  if (!outcome.ok()) {
    std::cerr << "meshprobe-loadgen: " << outcome.error().message << "\n";
    return 2;
  }
  if (*outcome == ParseOutcome::kHelp) {
    std::cout << desc << "\n";
    return 0;
  }
  if (*outcome == ParseOutcome::kVersion) {
    std::cout << "meshprobe-loadgen " << kVersion << "\n";
    return 0;
  }
  auto bad = [](const std::string& msg) {
    std::cerr << "meshprobe-loadgen: " << msg << "\n";
    return 2;
  };
  if (o.aggregator.empty()) return bad("--aggregator HOST:PORT is required");
  if (auto st = meshprobe::tls::finishClientConfig(o.tls, /*require_choice=*/false); !st.ok())
    return bad(st.error().message);
  auto iv = parseDuration(interval), du = parseDuration(duration), fa = parseDuration(fault_after),
       ct = parseDuration(connect_timeout), rp = parseDuration(ramp);
  if (!iv || iv->count() <= 0) return bad("--interval '" + interval + "' is not a positive duration");
  if (!du || du->count() < 0) return bad("--duration '" + duration + "' is not a duration");
  if (!fa || fa->count() < 0) return bad("--fault-after '" + fault_after + "' is not a duration");
  if (!ct || ct->count() <= 0) return bad("--connect-timeout '" + connect_timeout + "' is not a positive duration");
  if (!rp || rp->count() < 0) return bad("--ramp '" + ramp + "' is not a duration");
  o.ramp = *rp;
  o.interval = *iv;
  o.duration = *du;
  o.fault_after = *fa;
  o.connect_timeout = *ct;
  if (o.threads < 1 || o.threads > 64) return bad("--threads must be 1..64");
  {
    size_t i = 0, k = 0;
    char slash = 0, extra = 0;
    if (std::sscanf(shard.c_str(), "%zu%c%zu%c", &i, &slash, &k, &extra) != 3 || slash != '/' || k < 1 || i >= k ||
        shard.find_first_not_of("0123456789/") != std::string::npos) {
      return bad("--shard '" + shard + "' is not I/K with 0 <= I < K");
    }
    o.shard = i;
    o.shards = k;
  }
  if (o.probe_budget < 0) return bad("--probe-budget must not be negative");
  if (!o.query_bench && (o.nodes < 1 || o.nodes > kMaxNodes)) {
    return bad("--nodes must be 1.." + std::to_string(kMaxNodes));
  }
  std::vector<FaultSpec> faults;
  for (const auto& f : fault_nodes) {
    auto spec = parseNodeFault(f);
    if (!spec.ok()) return bad(spec.error().message);
    faults.push_back(*spec);
  }
  for (const auto& f : fault_pairs) {
    auto spec = parsePairFault(f);
    if (!spec.ok()) return bad(spec.error().message);
    faults.push_back(*spec);
  }
  if (!canConnect(o.aggregator, o.tls, o.connect_timeout)) {
    std::cerr << "meshprobe-loadgen: cannot connect to the aggregator at " << o.aggregator << " within "
              << formatDuration(o.connect_timeout) << "\n";
    return 1;
  }
  if (o.query_bench) return queryBench(o);
  return run(o, faults);
}
