#pragma once
// The prober: probes every target (peer × layer) over UDP once per interval,
// spread and jittered by ProbeScheduler, re-probes quickly after a miss, and after
// consecutive misses tries a TCP connect to the same port (tcp_reachable true = UDP is
// filtered, false = host down / unreachable / nothing listening).
//
// A reply counts only when it decodes (and authenticates, with a key), is a reply, and
// matches an outstanding sequence with the same send timestamp; late, duplicate,
// replayed and unknown replies are dropped and counted.
//
// Path MTU: a target with path_mtu_size > 0 (OVERLAY targets, from
// targetsFromPeers) also gets DF-set probes padded so the IP packet is exactly that size,
// sent from a second UDP socket with IP_MTU_DISCOVER = IP_PMTUDISC_PROBE (DF set, the
// kernel's cached path MTU ignored, so every probe really crosses the path at full size
// and a fixed path is seen at the next probe instead of after the cache expires). The
// responder answers with the same size, also DF, so both directions are covered. A DF
// probe goes out together with a regular (non-retry) probe: with the first one, then on
// every `path_mtu_every`-th one while it passes, and on every one while it fails until
// kPathMtuConfirm misses in a row confirm the fault (then every `path_mtu_every`-th
// again). DF probes have their own accounting (TargetStats::path_mtu); they never change
// the regular probes' loss, RTT, consecutive_failures, counters or on_rtt. EMSGSIZE on
// send is a failure whose error names the size and the kernel's IP_MTU for the
// destination; a timeout's error adds the kernel's IP_MTU when it is below the size (a
// VXLAN device learns a smaller path MTU from its underlay and caches it there). A new
// path_mtu_size for a target restarts its path-MTU history (the outcome of a probe still
// in flight at the old size is discarded).
//
// Probe budget: with probe_budget > 0 the prober limits its regular probes to
// perRoundCapacity(probe_budget, interval) peers per layer per round. The members of the
// rotation are this node and every peer of the targets; while they fit (peers <= that
// capacity) every target is probed every interval as above, beyond it the ProbeRotation
// (rotation.h) picks the peers of each round and the others wait for theirs. Retries and
// DF probes do not count against the budget (DF probes ride on regular probes, so they
// thin out with them).
//
// One io_context thread; start()/stop(); setTargets() and stats() from any thread.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/probe/packet.h"
#include "agent/probe/scheduler.h"
#include "common/clock.h"
#include "common/duration.h"
#include "common/result.h"

namespace meshprobe::agent {

struct ProberOptions {
  std::string node_name;                 // sender name in requests (required)
  std::optional<ProbeKey> key;           // sign requests, require signed replies
  uint16_t port = kDefaultProbePort;     // destination port (UDP and the TCP check)
  std::string bind_address = "0.0.0.0";  // local address of the UDP socket
  Duration interval = std::chrono::seconds(1);
  Duration timeout{};  // 0 = 0.8 * min(interval, 1s)
  int retries = 2;     // extra probes after a miss
  Duration retry_spacing = std::chrono::milliseconds(200);
  Duration max_jitter{};      // 0 = interval / 20
  size_t window = 30;         // probes kept per target for loss / RTT / jitter
  size_t request_size = 128;  // padded request size (room for the responder's name)
  int tcp_check_after = 2;    // consecutive UDP misses before a TCP connect
  Duration tcp_timeout = std::chrono::milliseconds(500);
  Duration min_tick{};           // wake-up coalescing; 0 = interval/50 within [1ms, 20ms]
  uint64_t rng_seed = 0;         // jitter RNG; 0 = random
  int receive_buffer = 1 << 20;  // SO_RCVBUF (capped by net.core.rmem_max): absorbs reply bursts
  // Called on the prober's I/O thread for every matched reply (e.g. to feed an RTT
  // histogram). Must be cheap and must not call back into the Prober.
  std::function<void(const ProbeTarget&, Duration rtt)> on_rtt;
  // Called on the I/O thread whenever counters().transitions moves (a target turned
  // confirmed-down or recovered), so a daemon can act at once instead of polling. Same
  // rules as on_rtt.
  std::function<void()> on_transition;
  // DF path-MTU probe cadence in regular probes (see above); 1 = with every one. At the
  // default 1 s interval and 10, a node with N overlay peers sends N/10 probes/s of
  // about the overlay MTU (~145 B/s per peer each way at 1450).
  int path_mtu_every = 10;
  // Regular probes per second per layer (see above); 0 = no limit, every target every interval.
  double probe_budget = 0;
};

// Where the probe budget stands (Prober::rotationStatus).
struct ProbeRotationStatus {
  bool sparse = false;         // the peers do not all fit the budget: rotating
  size_t per_round = 0;        // peers probed per layer per round (all peers when not sparse)
  size_t coverage_rounds = 1;  // rounds within which every peer is probed; 1 = every round
  uint64_t skipped = 0;        // regular slots passed over because the peer was not assigned
  // Targets of each layer probed in the current round (all of them when not sparse).
  std::map<Layer, size_t> targets_this_round;
};

inline constexpr size_t kRecentProbes = 5;

// Why a probe failed, as a fact (the error text beside it is for people); it goes on the
// wire as meshprobe.v1.ProbeFailure.
enum class ProbeFailure { kNone, kTimeout, kRefused, kUnreachable, kMessageTooLong, kBadReply, kOther };
// The failure an errno (or Boost.Asio error value) stands for: ECONNREFUSED, ENETUNREACH /
// EHOSTUNREACH, EMSGSIZE, ETIMEDOUT; anything else is kOther.
ProbeFailure probeFailureOf(int err);
// DF probes missed in a row that confirm a path-MTU fault (probed every interval until then).
inline constexpr uint32_t kPathMtuConfirm = 3;

// DF-set probes of one OVERLAY target at the overlay MTU.
struct PathMtuStats {
  uint32_t size = 0;  // IP packet size of each DF probe; 0 = not probed
  uint64_t sent = 0;  // since the target was added (or its size changed)
  uint64_t received = 0;
  uint32_t consecutive_failures = 0;
  std::optional<std::chrono::system_clock::time_point> last_success;  // wall time
  // Last failure: "no reply within 500ms", "no reply within 500ms (kernel path MTU 1350)",
  // "send 1450 bytes with DF: EMSGSIZE (path MTU 1400)", "reply of 100 bytes to a
  // 1422-byte DF probe". Kept after a success; consecutive_failures says if it is current.
  std::string last_error;
  ProbeFailure last_failure = ProbeFailure::kNone;  // the same failure as a reason
};

struct TargetStats {
  ProbeTarget target;
  // The target's identity while it exists (the scheduler's TargetId), and the version of
  // everything below: it moves whenever any of it may have changed, and versions are never
  // reused by another target, so (id, version) equal means the same stats.
  uint64_t id = 0;
  uint64_t version = 0;
  uint64_t sent = 0;  // since the target was added
  uint64_t received = 0;
  // Over the last `window` completed probes:
  size_t window_probes = 0;
  double loss = 0;         // 0..1; 0 with no completed probe yet
  double recent_loss = 0;  // 0..1 over the last kRecentProbes completed probes (quick to recover)
  std::optional<Duration> rtt_p50;
  std::optional<Duration> rtt_p99;
  std::optional<Duration> jitter;  // mean |RTT(i) - RTT(i-1)| over consecutive replies
  std::optional<Duration> last_rtt;
  std::optional<std::chrono::system_clock::time_point> last_success;  // wall time
  // Wall time the last probe (regular or retry) was sent; under a probe budget a target
  // waits up to ProbeRotationStatus::coverage_rounds intervals between regular probes.
  std::optional<std::chrono::system_clock::time_point> last_probe;
  uint32_t consecutive_failures = 0;
  std::string last_error;             // "timeout after 800ms", "send: Network is unreachable", ...
  ProbeFailure last_failure = ProbeFailure::kNone;  // last_error as a reason
  std::optional<bool> tcp_reachable;  // result of the last TCP check while failing; reset on success
  std::string tcp_error;              // why the TCP check failed ("connection refused", "timed out")
  ProbeFailure tcp_failure = ProbeFailure::kNone;  // tcp_error as a reason (kRefused: the host is up)
  std::string responder;              // node name in the last reply (empty if it did not fit)
  PathMtuStats path_mtu;              // size 0 unless the target has a path_mtu_size
};

struct ProberCounters {
  uint64_t sent = 0;
  uint64_t send_errors = 0;
  uint64_t replies = 0;  // matched
  uint64_t timeouts = 0;
  uint64_t dropped_invalid = 0;  // malformed or not a reply
  uint64_t dropped_unauthenticated = 0;
  uint64_t dropped_late = 0;       // reply to a probe that had already timed out
  uint64_t dropped_duplicate = 0;  // second reply to an answered probe
  uint64_t dropped_unknown = 0;    // never-sent or long-forgotten sequence, or timestamp mismatch (replay)
  uint64_t tcp_checks = 0;
  // A target became confirmed-down (a probe and all its retries missed) or came back from
  // that. The daemon sends a report early when this moves, instead of at the next interval.
  uint64_t transitions = 0;
  // DF path-MTU probes, apart from everything above (which counts regular probes only;
  // the dropped_* counters count replies of both kinds).
  uint64_t path_mtu_sent = 0;
  uint64_t path_mtu_replies = 0;
  uint64_t path_mtu_failures = 0;  // timeouts, send errors (EMSGSIZE) and wrong-size replies
  // A target's DF probes reached kPathMtuConfirm misses in a row, or passed after that.
  uint64_t path_mtu_transitions = 0;
};

class Prober {
 public:
  Prober(ProberOptions options, const Clock& clock);
  ~Prober();  // stops
  Prober(const Prober&) = delete;
  Prober& operator=(const Prober&) = delete;

  // Opens the UDP socket and starts the I/O thread. Errors name the address.
  Status start();
  // Stops probing and joins the I/O thread (well within a second). Idempotent.
  void stop();

  // Replaces the target set at any time. Stats of targets that remain are kept. Targets
  // whose address is not an IP literal are skipped and returned as an error listing them
  // (the valid ones are still applied).
  Status setTargets(const std::vector<ProbeTarget>& targets);

  std::vector<TargetStats> stats() const;  // in setTargets() order
  // Each target's id and stats version, in setTargets() order: what a reader compares to
  // recompute only the stats that moved (see TargetStats::version).
  struct TargetVersion {
    uint64_t id = 0;
    uint64_t version = 0;
  };
  std::vector<TargetVersion> versions() const;
  // stats() of the targets `ids` names, in that order; ids of targets gone are left out.
  std::vector<TargetStats> stats(const std::vector<uint64_t>& ids) const;
  // How many targets each layer has (a layer without any is absent): what /metrics shows,
  // without building every target's stats.
  std::map<Layer, size_t> targetsPerLayer() const;
  ProberCounters counters() const;
  ProbeRotationStatus rotationStatus() const;
  uint16_t localPort() const;    // the UDP source port, valid after start()
  uint16_t dfLocalPort() const;  // the DF (path-MTU) probes' UDP source port
  const ProberOptions& options() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace meshprobe::agent
