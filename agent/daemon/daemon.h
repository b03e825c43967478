#pragma once
// Daemon mode: the probe responder and prober, the node checks on their own cadence, and
// (with --aggregator) the stream that carries reports out and peer lists in.
//
// Threads, all owned by the Daemon and joined by stop():
//   local checks    a round every max(--interval, 2s), and at once when the prober sees a
//                   target turn confirmed-down or recover (the node's kernel state: device,
//                   socket, firewall, FDB, ...; also re-reads the Hello's VXLAN facts)
//   network checks  the same cadence, apart, so a check that waits on the network (istiod:
//                   a connect timeout through a broken overlay) never delays the others
//   reports         a report every --interval, and at once on a prober transition or when
//                   a check round finishes
//   check workers   one per check (CheckRunner): a hung check ties up its own worker only
//                   and is not started again until it returns
// plus the responder's, the prober's, the HTTP server's and the stream's own threads. Every
// wait goes through the Clock seam, so the schedule is unit-tested with a FakeClock.
// stop() returns within about a second: a check still blocked in the kernel is abandoned to
// its worker, which owns what it touches (see CheckRunner).

#include <functional>
#include <memory>
#include <optional>

#include "agent/checks/deps.h"
#include "agent/config.h"
#include "agent/doctor/doctor.h"
#include "common/result.h"
#include "meshprobe/v1/collector.pb.h"

namespace meshprobe::agent {

// Seams for tests; the defaults are what the agent runs.
struct DaemonHooks {
  // Builds the checks (default: makeChecks). A check named "istiod" runs with the network
  // group, every other one with the local group.
  std::function<std::vector<CheckPtr>(const AgentConfig&, const AgentDeps&)> make_checks;
  // Sees every report built, on the report thread, also in standalone mode (where the
  // report is not sent anywhere).
  std::function<void(const meshprobe::v1::Report&)> on_report;
};

struct DaemonCounters {
  uint64_t local_rounds = 0;    // check rounds finished, local group
  uint64_t network_rounds = 0;  // check rounds finished, network group
  uint64_t reports = 0;         // reports built
  size_t checks_running = 0;    // checks whose run has not returned (hung ones included)
  size_t threads = 0;           // the daemon's own threads: the three loops + one worker per check
};

class Daemon {
 public:
  // `deps_owner` owns what `deps` refers to (the kernel seams, the clock): a check that is
  // abandoned on stop() keeps it alive until its run returns. Null when the caller keeps
  // them alive for the life of the process (or releases every hung check first, as tests do).
  Daemon(AgentConfig config, const AgentDeps& deps, std::shared_ptr<const void> deps_owner = nullptr,
         DaemonHooks hooks = {});
  ~Daemon();  // stop()
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Binds the responder, the prober and --http-listen, starts the stream (with
  // --aggregator) and the threads. Errors when a listener cannot start (port in use, bad
  // key); nothing is left running then.
  Status start();
  // Stops everything and joins the threads, within about a second. Idempotent.
  void stop();

  // What the prober's on_transition calls: re-run both check groups and report at once.
  void proberTransition();

  std::optional<DoctorReport> doctor() const;  // the latest merged check round
  DaemonCounters counters() const;
  uint16_t probePort() const;  // the responder's bound UDP port, after start()

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace meshprobe::agent
