#include "agent/daemon/daemon.h"

#include <google/protobuf/util/time_util.h>
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include "agent/checks/registry.h"
#include "agent/checks/vxlan_facts.h"
#include "agent/daemon/report_buffer.h"
#include "agent/daemon/peer_set.h"
#include "agent/daemon/report_builder.h"
#include "agent/daemon/stream_client.h"
#include "agent/doctor/doctor.h"
#include "agent/http/agent_http.h"
#include "agent/probe/prober.h"
#include "agent/probe/responder.h"

namespace meshprobe::agent {
namespace {

constexpr size_t kReportBufferCapacity = 120;  // two minutes of reports at 1 s
constexpr auto kMinCheckInterval = std::chrono::seconds(2);
// A peer missing from the aggregator's lists is still probed for this long (see PeerSet).
constexpr auto kPeerGrace = std::chrono::seconds(30);

// What the check thread learns and the report/stream side reads.
struct SharedState {
  std::mutex mu;
  std::optional<DoctorReport> doctor;  // the latest result of every check, registry order
  meshprobe::v1::Hello hello;
  std::atomic<uint64_t> doctor_generation{0};  // bumped whenever `doctor` changes
  std::atomic<bool> checks_done{false};          // the local-check thread has ended
  std::atomic<bool> network_checks_done{false};  // the network-check thread has ended
  std::atomic<bool> responder_bound{false};
};

// Sleeps until `until`, until stop is set, or until `wake()` returns true; returns false
// when stopping.
template <typename Wake>
bool waitUntilOr(std::chrono::steady_clock::time_point until, const std::atomic<bool>& stop, Wake wake) {
  while (!stop) {
    auto now = std::chrono::steady_clock::now();
    if (now >= until || wake()) return true;
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(until - now, std::chrono::milliseconds(50)));
  }
  return false;
}

// Sleeps until `until` or until stop is set; returns false when stopping.
bool waitUntil(std::chrono::steady_clock::time_point until, const std::atomic<bool>& stop) {
  while (!stop) {
    auto now = std::chrono::steady_clock::now();
    if (now >= until) return true;
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(until - now, std::chrono::milliseconds(50)));
  }
  return false;
}

}  // namespace

Status runDaemon(const AgentConfig& config, const AgentDeps& deps, const std::atomic<bool>& stop) {
  std::optional<ProbeKey> key;
  if (!config.probe_key_file.empty()) {
    auto k = loadProbeKeyFile(config.probe_key_file);
    if (!k.ok()) return k.error();
    key = std::move(*k);
  } else {
    spdlog::warn("no --probe-key-file: probes are not authenticated (dev mode)");
  }

  ResponderOptions ropts;
  ropts.node_name = config.node_name;
  ropts.key = key;
  ropts.port = config.probe_port;
  Responder responder(ropts, deps.clock);
  if (auto st = responder.start(); !st.ok()) return st.error();
  auto state = std::make_shared<SharedState>();
  state->responder_bound = true;

  // Answered probes feed the RTT histograms of /metrics (on the prober's I/O thread).
  RttHistograms rtt;

  ProberOptions popts;
  popts.node_name = config.node_name;
  popts.key = key;
  popts.port = config.probe_port;
  popts.interval = config.interval;
  // Node-to-node RTTs are far below a millisecond: a probe unanswered after 500 ms is lost.
  // A short timeout lets a probe and its two retries confirm a hard fault in ~1.5 s.
  popts.timeout =
      std::min<Duration>(std::chrono::milliseconds(500), std::chrono::duration_cast<Duration>(config.interval * 0.8));
  popts.on_rtt = [&rtt](const ProbeTarget& target, Duration d) { rtt.observe(target.layer, d); };
  Prober prober(popts, deps.clock);
  if (auto st = prober.start(); !st.ok()) return st.error();
  if (!config.peers.empty()) {
    if (auto st = prober.setTargets(targetsFromStaticPeers(config.peers)); !st.ok())
      spdlog::warn("--peers: {}", st.error().message);
  }

  // /metrics, /healthz, /readyz, /checks: everything is read at request time. Started
  // before the checks and the stream so a port in use fails fast; the stream appears in
  // stream_view once it exists.
  ReportBuffer buffer(kReportBufferCapacity);
  std::atomic<StreamClient*> stream_view{nullptr};
  AgentHttp http(
      [&]() {
        AgentStatus s;
        s.node = config.node_name;
        {
          std::lock_guard lock(state->mu);
          s.doctor = state->doctor;
        }
        s.prober = prober.counters();
        for (const auto& t : prober.stats()) ++s.targets[t.target.layer];
        s.responder = responder.counters();
        s.responder_bound = state->responder_bound;
        if (StreamClient* sc = stream_view.load()) {
          s.stream_connected = sc->connected();
          s.stream_reconnects = sc->reconnects();
        }
        s.report_buffer_dropped = buffer.dropped();
        return s;
      },
      rtt);
  if (!config.http_listen.empty()) {
    auto port = http.start(config.http_listen);
    if (!port.ok()) return port.error();
    spdlog::info("serving /metrics, /healthz, /readyz, /checks on {} (port {})", config.http_listen, *port);
  }

  // Checks run on their own cadence in their own thread. Leaked on purpose: a check that
  // timed out may still run in a detached thread after shutdown.
  auto* directory = new PeerDirectory();  // leaked with the checks that read it
  AgentDeps check_deps = deps;
  check_deps.peers = directory;
  // Two groups on their own threads, so a check that waits on the network (istiod: a
  // connect timeout through a broken overlay) never delays what the node's own kernel
  // state says (device, socket, firewall rule, FDB). Both also run at once when the
  // prober confirms a target down or back: the evidence for a fault arrives with it.
  auto* all_checks = new std::vector<CheckPtr>(makeChecks(config, check_deps));
  auto* local_checks = new std::vector<CheckPtr>();
  auto* network_checks = new std::vector<CheckPtr>();
  std::vector<std::string> check_order;
  for (auto& c : *all_checks) {
    check_order.emplace_back(c->name());
    (c->name() == "istiod" ? network_checks : local_checks)->push_back(std::move(c));
  }
  state->hello = buildHello(config, nullptr, "");
  const auto check_interval = std::max<Duration>(config.interval, kMinCheckInterval);
  auto* parts = new std::vector<std::optional<DoctorReport>>(2);  // [local, network]; guarded by state->mu
  // Publishes one group's report and rebuilds the merged one (registry order).
  auto publish = [state, parts, check_order, &config](size_t part, DoctorReport report) {
    std::lock_guard lock(state->mu);
    (*parts)[part] = std::move(report);
    DoctorReport merged;
    merged.node = config.node_name;
    for (const auto& name : check_order) {
      for (const auto& p : *parts) {
        if (!p) continue;
        for (const auto& c : p->checks)
          if (c.name == name) merged.checks.push_back(c);
      }
    }
    for (const auto& p : *parts) {
      if (p) merged.findings.insert(merged.findings.end(), p->findings.begin(), p->findings.end());
    }
    state->doctor = std::move(merged);
    ++state->doctor_generation;
  };
  // Captures what outlives runDaemon (config, deps, stop belong to the caller; state,
  // parts and the checks are shared or leaked): after shutdown gives up on a slow round,
  // the thread may finish it after runDaemon returned. It touches the prober only while
  // `stop` is unset, and runDaemon waits for that before destroying the prober.
  auto check_loop = [state, publish, check_interval, &config, &deps, &stop, &prober](
                        size_t part, std::vector<CheckPtr>* checks, bool reads_facts) {
    uint64_t transitions_seen = prober.counters().transitions;
    while (!stop) {
      auto started = std::chrono::steady_clock::now();
      transitions_seen = prober.counters().transitions;
      if (reads_facts) {
        auto snapshot = deps.netlink.snapshot();
        auto subnet = readFlannelSubnet(config.hostPath(config.flannel_subnet_file));
        auto hello = buildHello(config, snapshot.ok() ? &*snapshot : nullptr, subnet ? subnet->subnet : "");
        std::lock_guard lock(state->mu);
        state->hello = std::move(hello);
      }
      publish(part, runDoctor(config.node_name, *checks, config.check_timeout, deps.clock));
      if (!waitUntilOr(started + check_interval, stop,
                       [&] { return prober.counters().transitions != transitions_seen; }))
        break;
    }
  };
  std::thread network_check_thread([check_loop, state, network_checks] {
    check_loop(1, network_checks, false);
    state->network_checks_done = true;
  });
  std::thread check_thread([check_loop, state, local_checks] {
    check_loop(0, local_checks, true);
    state->checks_done = true;
  });

  // Membership: the stream's PeerLists feed a PeerSet; its current peers drive the prober
  // and vxlan_fdb's expectations. Guarded by peer_mu (stream thread and report loop).
  std::mutex peer_mu;
  PeerSet peer_set(deps.clock, kPeerGrace);
  auto apply_peers = [&] {
    auto peers = peer_set.current();
    directory->set(expectationsFromPeers(peers, config.node_name));
    auto targets = targetsFromPeers(peers, config.node_name, [&] {
      std::lock_guard lock(state->mu);  // this node's VXLAN MTU, as its Hello reports it
      return state->hello.vxlan_mtu();
    }());
    spdlog::info("membership: {} peers, {} probe targets", peers.peers_size(), targets.size());
    if (auto st = prober.setTargets(targets); !st.ok()) spdlog::warn("peer list: {}", st.error().message);
  };

  std::unique_ptr<StreamClient> stream;
  if (!config.aggregator.empty()) {
    StreamClient::Callbacks cb;
    cb.hello = [state] {
      std::lock_guard lock(state->mu);
      return state->hello;
    };
    cb.on_peers = [&apply_peers, &peer_mu, &peer_set, &config](const meshprobe::v1::PeerList& peers) {
      std::lock_guard lock(peer_mu);
      if (peer_set.apply(peers, config.node_name)) apply_peers();
    };
    std::random_device rd;
    stream = std::make_unique<StreamClient>(
        meshprobe::v1::Collector::NewStub(StreamClient::makeChannel(config.aggregator)), buffer, cb,
        Backoff(std::chrono::milliseconds(200), std::chrono::seconds(2), rd()));
    stream->start();
    stream_view = stream.get();
    spdlog::info("streaming to aggregator {}", config.aggregator);
  } else {
    spdlog::info("standalone mode (no --aggregator)");
  }


  uint64_t sequence = 0;
  uint64_t transitions_reported = 0;
  uint64_t generation_reported = 0;
  uint32_t vxlan_mtu_applied = 0;
  auto next = std::chrono::steady_clock::now();
  while (!stop) {
    // A report every interval, and one at once when a target turns confirmed-down or
    // recovers or a check round finishes, so the aggregator sees a hard fault and the
    // node's own evidence for it without waiting for the next round.
    const uint64_t transitions = prober.counters().transitions;
    const uint64_t generation = state->doctor_generation;
    const bool early = transitions != transitions_reported || generation != generation_reported;
    if (!early && std::chrono::steady_clock::now() < next) {
      waitUntil(std::min(next, std::chrono::steady_clock::now() + std::chrono::milliseconds(50)), stop);
      continue;
    }
    transitions_reported = transitions;
    generation_reported = generation;
    next = std::chrono::steady_clock::now() + config.interval;
    if (stream) {
      uint32_t mtu = 0;
      {
        std::lock_guard lock(state->mu);
        mtu = state->hello.vxlan_mtu();
      }
      std::lock_guard lock(peer_mu);
      // The DF probe size follows this node's VXLAN MTU: re-target when it changes.
      if (peer_set.expire() || mtu != vxlan_mtu_applied) apply_peers();
      vxlan_mtu_applied = mtu;
    }
    meshprobe::v1::Report report;
    report.set_sequence(++sequence);
    auto wall = std::chrono::duration_cast<std::chrono::nanoseconds>(deps.clock.wallNow().time_since_epoch());
    *report.mutable_time() = google::protobuf::util::TimeUtil::NanosecondsToTimestamp(wall.count());
    {
      std::lock_guard lock(state->mu);
      if (state->doctor) {
        for (const auto& c : state->doctor->checks) *report.add_checks() = toProto(c);
        for (const auto& f : state->doctor->findings) *report.add_findings() = toProto(f);
      }
    }
    for (const auto& s : prober.stats()) *report.add_probes() = toProto(s);
    if (stream) buffer.push(std::move(report));
  }

  spdlog::info("shutting down");
  http.stop();
  stream_view = nullptr;
  if (stream) stream->stop();
  prober.stop();
  responder.stop();
  // A check round can take up to --check-timeout; shutdown must not. Give it half a
  // second, then leave it to the process exit (the caller _exits; nothing it uses is freed).
  auto give_up = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
  while (!(state->checks_done && state->network_checks_done) && std::chrono::steady_clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (state->checks_done) check_thread.join();
  else check_thread.detach();
  if (state->network_checks_done) network_check_thread.join();
  else network_check_thread.detach();
  return okStatus();
}

}  // namespace meshprobe::agent
