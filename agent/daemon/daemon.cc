#include "agent/daemon/daemon.h"

#include <google/protobuf/util/time_util.h>
#include <spdlog/spdlog.h>

#include <array>
#include <mutex>
#include <random>
#include <thread>

#include "agent/checks/registry.h"
#include "agent/checks/vxlan_facts.h"
#include "agent/daemon/peer_set.h"
#include "agent/daemon/report_buffer.h"
#include "agent/daemon/report_builder.h"
#include "agent/daemon/stream_client.h"
#include "agent/http/agent_http.h"
#include "agent/probe/prober.h"
#include "agent/probe/responder.h"
#include "common/thread_name.h"

namespace meshprobe::agent {
namespace {

using TimePoint = std::chrono::steady_clock::time_point;

// About 80 s of reports at --interval 1s: one per probe interval plus one after each check
// round (every 2 s). Only the newest matters to the aggregator; older ones are dropped first.
constexpr size_t kReportBufferCapacity = 120;
constexpr auto kMinCheckInterval = std::chrono::seconds(2);
// A peer missing from the aggregator's lists is still probed for this long (see PeerSet).
constexpr auto kPeerGrace = std::chrono::seconds(30);
constexpr size_t kLocal = 0;
constexpr size_t kNetwork = 1;

// Lets another thread cut one loop's wait short. A poke that comes while the loop is busy
// is kept, so the loop's next wait returns at once; clear() at the start of a round drops
// the pokes that the round covers.
class Wakeup {
 public:
  void poke() {
    std::lock_guard lock(mu_);
    poked_ = true;
    waiting_.request_stop();  // no-op when nobody waits (a source with no stop state)
  }
  void clear() {
    std::lock_guard lock(mu_);
    poked_ = false;
  }
  // Until `deadline`, a poke, or `stop`; false when stopping.
  bool wait(const Clock& clock, TimePoint deadline, const std::stop_token& stop) {
    std::stop_source source;
    {
      std::lock_guard lock(mu_);
      if (poked_) return !stop.stop_requested();
      waiting_ = source;
    }
    {
      std::stop_callback link(stop, [&source] { source.request_stop(); });
      clock.waitUntil(deadline, source.get_token());
    }
    std::lock_guard lock(mu_);
    waiting_ = std::stop_source(std::nostopstate);
    return !stop.stop_requested();
  }

 private:
  std::mutex mu_;
  bool poked_ = false;
  std::stop_source waiting_{std::nostopstate};
};

// The Hello's node facts (VXLAN device, flannel subnet), shared with the job that reads them.
struct HelloBox {
  std::mutex mu;
  meshprobe::v1::Hello hello;
};

// Re-reads the Hello's facts as one more job of the local group, on a worker of its own, so
// a slow rtnetlink dump never holds up the loop (or stop()). Not a node check: its result
// is not in check_order and so never published.
class HelloFactsJob final : public Check {
 public:
  HelloFactsJob(const AgentConfig& config, NetlinkReader& netlink, std::shared_ptr<HelloBox> box)
      : config_(config), netlink_(netlink), box_(std::move(box)) {}
  std::string_view name() const override { return "hello_facts"; }
  CheckResult run() override {
    auto view = netlink_.view();  // the round's shared snapshot, as the checks read it
    auto subnet = readFlannelSubnet(config_.hostPath(config_.flannel_subnet_file));
    auto hello = buildHello(config_, view.ok() ? view->get() : nullptr, subnet ? subnet->subnet : "");
    std::lock_guard lock(box_->mu);
    box_->hello = std::move(hello);
    return result(CheckStatus::kOk, "");
  }

 private:
  const AgentConfig config_;  // a copy: an abandoned job may outlive the daemon
  NetlinkReader& netlink_;
  std::shared_ptr<HelloBox> box_;
};

// What an abandoned check may still touch: the caller's seams and the peer directory.
struct CheckKeepAlive {
  std::shared_ptr<const void> deps_owner;
  std::shared_ptr<PeerDirectory> directory;
};

}  // namespace

struct Daemon::Impl {
  Impl(AgentConfig c, const AgentDeps& d, std::shared_ptr<const void> owner, DaemonHooks h)
      : config(std::move(c)),
        deps(d),
        deps_owner(std::move(owner)),
        hooks(std::move(h)),
        buffer(kReportBufferCapacity),
        http([this] { return status(); }, rtt),
        peer_set(deps.clock, kPeerGrace) {}

  Status start();
  Status startProbing(const std::optional<ProbeKey>& key);  // responder and prober
  void makeRunners();
  void startStream();  // with --aggregator
  void stop();
  void checkLoop(const std::stop_token& stop, size_t part);
  void reportLoop(const std::stop_token& stop);
  void publish(size_t part, DoctorReport report);
  void applyPeers();  // with peer_mu held
  AgentStatus status() const;
  void onTransition() {  // re-run both check groups and report, at once
    for (auto& w : check_wake) w.poke();
    report_wake.poke();
  }
  size_t checksRunning() const {
    return (local ? local->running() : 0) + (network ? network->running() : 0);
  }

  const AgentConfig config;
  const AgentDeps deps;
  const std::shared_ptr<const void> deps_owner;
  const DaemonHooks hooks;
  Duration check_interval{};
  bool started = false;
  bool stopped = false;

  RttHistograms rtt;  // answered probes, fed on the prober's I/O thread
  std::unique_ptr<Responder> responder;
  std::unique_ptr<Prober> prober;
  ReportBuffer buffer;
  ProbeEntries probe_entries;  // the report loop's
  AgentHttp http;
  std::unique_ptr<StreamClient> stream;

  std::shared_ptr<PeerDirectory> directory = std::make_shared<PeerDirectory>();
  std::unique_ptr<CheckRunner> local;    // and the Hello facts job
  std::unique_ptr<CheckRunner> network;  // istiod
  std::vector<std::string> check_order;  // registry order, for the merged report

  mutable std::mutex mu;  // guards doctor and parts
  std::optional<DoctorReport> doctor;
  meshprobe::v1::Report doctor_proto;  // `doctor` as a report's checks, findings, pod_netns
  std::array<std::optional<DoctorReport>, 2> parts;  // [local, network]
  std::shared_ptr<HelloBox> hello = std::make_shared<HelloBox>();

  std::array<Wakeup, 2> check_wake;  // [local, network]
  Wakeup report_wake;
  std::atomic<uint64_t> rounds[2] = {0, 0};
  std::atomic<uint64_t> reports{0};
  std::atomic<bool> responder_bound{false};
  std::atomic<size_t> loops_running{0};

  std::mutex peer_mu;  // membership: the stream thread and the report loop
  PeerSet peer_set;
  uint32_t vxlan_mtu_applied = 0;  // guarded by peer_mu

  std::jthread local_thread;
  std::jthread network_thread;
  std::jthread report_thread;
};

Status Daemon::Impl::start() {
  std::optional<ProbeKey> key;
  if (!config.probe_key_file.empty()) {
    auto k = loadProbeKeyFile(config.probe_key_file);
    if (!k.ok()) return k.error();
    key = std::move(*k);
  } else {
    spdlog::warn("no --probe-key-file: probes are not authenticated (dev mode)");
  }

  if (auto st = startProbing(key); !st.ok()) return st;
  // /metrics, /healthz, /readyz, /checks: everything is read at request time. Started
  // before the checks and the stream so a port in use fails fast.
  if (!config.http_listen.empty()) {
    auto port = http.start(config.http_listen);
    if (!port.ok()) return port.error();
    spdlog::info("serving /metrics, /healthz, /readyz, /checks on {} (port {})", config.http_listen, *port);
  }
  makeRunners();
  startStream();
  local_thread = std::jthread([this](std::stop_token st) {
    nameThisThread("mp-checks-local");
    checkLoop(st, kLocal);
  });
  network_thread = std::jthread([this](std::stop_token st) {
    nameThisThread("mp-checks-net");
    checkLoop(st, kNetwork);
  });
  report_thread = std::jthread([this](std::stop_token st) {
    nameThisThread("mp-report");
    reportLoop(st);
  });
  loops_running = 3;
  return okStatus();
}

Status Daemon::Impl::startProbing(const std::optional<ProbeKey>& key) {
  ResponderOptions ropts;
  ropts.node_name = config.node_name;
  ropts.key = key;
  ropts.port = config.probe_port;
  responder = std::make_unique<Responder>(ropts, deps.clock);
  if (auto st = responder->start(); !st.ok()) return st.error();
  responder_bound = true;

  ProberOptions popts;
  popts.node_name = config.node_name;
  popts.key = key;
  popts.port = config.probe_port;
  popts.interval = config.interval;
  // Node-to-node RTTs are far below a millisecond: a probe unanswered after 500 ms is lost.
  // A short timeout lets a probe and its two retries confirm a hard fault in ~1.5 s.
  popts.timeout =
      std::min<Duration>(std::chrono::milliseconds(500), std::chrono::duration_cast<Duration>(config.interval * 0.8));
  // Peers beyond budget × interval are probed in a rotation (derived from the peer list
  // each setTargets() brings), so the probe cost stays flat as the cluster grows.
  popts.probe_budget = config.probe_budget;
  popts.on_rtt = [this](const ProbeTarget& target, Duration d) { rtt.observe(target.layer, d); };
  popts.on_transition = [this] { onTransition(); };
  prober = std::make_unique<Prober>(popts, deps.clock);
  if (auto st = prober->start(); !st.ok()) return st.error();
  if (!config.peers.empty()) {
    if (auto st = prober->setTargets(targetsFromStaticPeers(config.peers)); !st.ok())
      spdlog::warn("--peers: {}", st.error().message);
  }
  return okStatus();
}

// The registry's checks in two runners (network: istiod; local: the rest and the Hello
// facts job), sharing ownership of what they use with any worker abandoned on stop().
void Daemon::Impl::makeRunners() {
  AgentDeps check_deps = deps;
  check_deps.peers = directory.get();
  auto checks = hooks.make_checks ? hooks.make_checks(config, check_deps) : makeChecks(config, check_deps);
  std::vector<CheckPtr> local_checks;
  std::vector<CheckPtr> network_checks;
  for (auto& c : checks) {
    check_order.emplace_back(c->name());
    (c->name() == "istiod" ? network_checks : local_checks).push_back(std::move(c));
  }
  local_checks.push_back(std::make_unique<HelloFactsJob>(config, deps.netlink, hello));
  auto keep_alive = std::make_shared<CheckKeepAlive>(CheckKeepAlive{deps_owner, directory});
  local = std::make_unique<CheckRunner>(std::move(local_checks), deps.clock, keep_alive);
  network = std::make_unique<CheckRunner>(std::move(network_checks), deps.clock, keep_alive);
  hello->hello = buildHello(config, nullptr, "");
  check_interval = std::max<Duration>(config.interval, kMinCheckInterval);
}

void Daemon::Impl::startStream() {
  if (!config.aggregator.empty()) {
    StreamClient::Callbacks cb;
    cb.hello = [box = hello] {
      std::lock_guard lock(box->mu);
      return box->hello;
    };
    cb.on_peers = [this](const meshprobe::v1::PeerList& peers) {
      std::lock_guard lock(peer_mu);
      if (peer_set.apply(peers, config.node_name)) applyPeers();
    };
    cb.on_peer_delta = [this](const meshprobe::v1::PeerDelta& delta) {
      std::lock_guard lock(peer_mu);
      if (peer_set.applyDelta(delta, config.node_name)) applyPeers();
    };
    cb.on_members_joined = [this] { report_wake.poke(); };
    std::random_device rd;
    auto channel = StreamClient::makeChannel(config.aggregator, config.tls);
    stream = std::make_unique<StreamClient>(meshprobe::v1::Collector::NewStub(channel), buffer, cb,
                                            Backoff(std::chrono::milliseconds(200), std::chrono::seconds(1), rd()),
                                            channel);
    stream->setEarlyReportSpacing(config.interval);
    stream->start();
    spdlog::info("streaming to aggregator {}", config.aggregator);
  } else {
    spdlog::info("standalone mode (no --aggregator)");
  }
}

// A round every check_interval, and at once when the prober saw a transition since this
// round began: the evidence for a fault arrives with it.
void Daemon::Impl::checkLoop(const std::stop_token& stop, size_t part) {
  CheckRunner& runner = part == kLocal ? *local : *network;
  Wakeup& wake = check_wake[part];
  while (!stop.stop_requested()) {
    const TimePoint started = deps.clock.monotonicNow();
    wake.clear();
    // One rtnetlink snapshot for the round's checks and the Hello (the network group
    // reads none, and must not re-pin it in the middle of a local round).
    if (part == kLocal) deps.netlink.beginRound();
    DoctorReport report = runner.run(config.node_name, config.check_timeout, stop);
    if (stop.stop_requested()) break;  // cut short: not a verdict
    publish(part, std::move(report));
    if (!wake.wait(deps.clock, started + check_interval, stop)) break;
  }
}

// Publishes one group's report and rebuilds the merged one (registry order).
void Daemon::Impl::publish(size_t part, DoctorReport report) {
  {
    std::lock_guard lock(mu);
    parts[part] = std::move(report);
    DoctorReport merged;
    merged.node = config.node_name;
    for (const auto& name : check_order) {
      for (const auto& p : parts) {
        if (!p) continue;
        for (const auto& c : p->checks)
          if (c.name == name) merged.checks.push_back(c);
      }
    }
    for (const auto& p : parts) {
      if (p) merged.findings.insert(merged.findings.end(), p->findings.begin(), p->findings.end());
    }
    doctor = std::move(merged);
    // Converted once per round, not per report (a check's details go through JSON).
    doctor_proto.Clear();
    for (const auto& c : doctor->checks) *doctor_proto.add_checks() = toProto(c);
    for (const auto& f : doctor->findings) *doctor_proto.add_findings() = toProto(f);
    setPodNetns(doctor_proto, doctor->checks);  // the latest ambient_redirection run's pod netns
  }
  ++rounds[part];
  report_wake.poke();
}

void Daemon::Impl::applyPeers() {
  const auto peers = peer_set.view();  // under peer_mu, as every caller holds it
  directory->set(expectationsFromPeers(peers, config.node_name));
  uint32_t mtu = 0;
  {
    std::lock_guard lock(hello->mu);  // this node's VXLAN MTU, as its Hello reports it
    mtu = hello->hello.vxlan_mtu();
  }
  auto targets = targetsFromPeers(peers, config.node_name, mtu);
  spdlog::info("membership: {} peers, {} probe targets", peers.size(), targets.size());
  if (auto st = prober->setTargets(targets); !st.ok()) spdlog::warn("peer list: {}", st.error().message);
  if (auto rot = prober->rotationStatus(); rot.sparse) {
    spdlog::info("probe budget: {} peers per round of {} (--probe-budget {}), every pair within {} rounds",
                 rot.per_round, formatDuration(config.interval), config.probe_budget, rot.coverage_rounds);
  }
}

// A report every interval, and one at once when a target turns confirmed-down or recovers
// or a check round finishes, so the aggregator sees a hard fault and the node's own
// evidence for it without waiting for the next round.
void Daemon::Impl::reportLoop(const std::stop_token& stop) {
  uint64_t sequence = 0;
  while (!stop.stop_requested()) {
    report_wake.clear();
    if (stream) {
      uint32_t mtu = 0;
      {
        std::lock_guard lock(hello->mu);
        mtu = hello->hello.vxlan_mtu();
      }
      std::lock_guard lock(peer_mu);
      // The DF probe size follows this node's VXLAN MTU: re-target when it changes.
      if (peer_set.expire() || mtu != vxlan_mtu_applied) applyPeers();
      vxlan_mtu_applied = mtu;
    }
    PendingReport pending;
    meshprobe::v1::Report& report = pending.report;
    report.set_sequence(++sequence);
    auto wall = std::chrono::duration_cast<std::chrono::nanoseconds>(deps.clock.wallNow().time_since_epoch());
    *report.mutable_time() = google::protobuf::util::TimeUtil::NanosecondsToTimestamp(wall.count());
    {
      std::lock_guard lock(mu);
      report.MergeFrom(doctor_proto);  // the checks, findings and pod netns, as converted
    }
    pending.probes = probe_entries.update(*prober);  // rebuilt only where a target changed
    setCoverage(report, prober->rotationStatus(), config.interval);
    if (hooks.on_report) hooks.on_report(pending.whole());
    if (stream) buffer.push(std::move(pending));
    ++reports;
    if (!report_wake.wait(deps.clock, deps.clock.monotonicNow() + config.interval, stop)) break;
  }
}

AgentStatus Daemon::Impl::status() const {
  AgentStatus s;
  s.node = config.node_name;
  {
    std::lock_guard lock(mu);
    s.doctor = doctor;
  }
  s.prober = prober->counters();
  s.targets = prober->targetsPerLayer();
  s.rotation = prober->rotationStatus();
  s.responder = responder->counters();
  s.responder_bound = responder_bound;
  if (stream) {
    s.stream_connected = stream->connected();
    s.stream_reconnects = stream->reconnects();
    s.stream_peer_deltas_ignored = stream->peerDeltasIgnored();
    s.stream_reports_delta = stream->deltaReportsSent();
    s.stream_reports_held = stream->reportsHeld();
    s.stream_reports_whole = stream->reportsSent() - s.stream_reports_delta;
    s.stream_probes_omitted = stream->probesOmitted();
  }
  s.report_buffer_dropped = buffer.dropped();
  s.checks_running = checksRunning();
  return s;
}

void Daemon::Impl::stop() {
  if (!started || stopped) return;
  stopped = true;
  spdlog::info("shutting down");
  // The loops first: they read the prober and feed the stream. Every wait of theirs ends
  // on the stop request; a check round in progress is cut short, not waited for.
  for (std::jthread* t : {&local_thread, &network_thread, &report_thread}) t->request_stop();
  for (std::jthread* t : {&local_thread, &network_thread, &report_thread}) {
    if (t->joinable()) t->join();
  }
  loops_running = 0;
  http.stop();  // before the runners and the prober: it reads them
  if (stream) stream->stop();
  // A check still blocked in the kernel cannot be interrupted: its worker is abandoned and
  // keeps what it uses alive (CheckKeepAlive) until the check returns or the process ends.
  // One waiting for iptables-save / nft can: the tool (and what it started) is killed, so
  // none outlives the agent, and the check makes no new one.
  deps.commands.shutdown();
  if (local) local->shutdown();
  if (network) network->shutdown();
  if (prober) prober->stop();
  if (responder) responder->stop();
}

Daemon::Daemon(AgentConfig config, const AgentDeps& deps, std::shared_ptr<const void> deps_owner, DaemonHooks hooks)
    : impl_(std::make_unique<Impl>(std::move(config), deps, std::move(deps_owner), std::move(hooks))) {}

Daemon::~Daemon() { stop(); }

Status Daemon::start() {
  if (impl_->started) return Error{"the daemon was already started"};
  impl_->started = true;
  Status st = impl_->start();
  if (!st.ok()) impl_->stop();  // whatever did start
  return st;
}

void Daemon::stop() { impl_->stop(); }

void Daemon::proberTransition() { impl_->onTransition(); }

std::optional<DoctorReport> Daemon::doctor() const {
  std::lock_guard lock(impl_->mu);
  return impl_->doctor;
}

DaemonCounters Daemon::counters() const {
  const Impl& m = *impl_;
  DaemonCounters c;
  c.local_rounds = m.rounds[kLocal];
  c.network_rounds = m.rounds[kNetwork];
  c.reports = m.reports;
  c.checks_running = m.checksRunning();
  c.threads = m.loops_running + (m.local ? m.local->threads() : 0) + (m.network ? m.network->threads() : 0);
  return c;
}

uint16_t Daemon::probePort() const { return impl_->responder ? impl_->responder->udpPort() : 0; }

}  // namespace meshprobe::agent
