#pragma once
// Leader election on a coordination.k8s.io/v1 Lease, so that of several aggregator replicas
// exactly one is Ready (and writes to the Kubernetes API) at a time.
//
// Modelled on client-go's tools/leaderelection (leaderelection.go) with its LeaseLock
// (resourcelock/leaselock.go). What is copied:
//   - the defaults of kube-controller-manager: LeaseDuration 15s, RenewDeadline 10s,
//     RetryPeriod 2s; acquiring retries every RetryPeriod with JitterFactor 1.2
//     (wait.JitterUntil: RetryPeriod + rand[0,1) * 1.2 * RetryPeriod);
//   - tryAcquireOrRenew: GET the Lease; NotFound -> create it; otherwise, when the record
//     read differs from the one last observed, remember it and the time it was observed on
//     THIS process's monotonic clock. A Lease held by another identity is taken over only
//     when that observation is older than LeaseDuration: the Lease's renewTime is written by
//     another machine's clock and is never compared with ours;
//   - the update: holderIdentity, leaseDurationSeconds, acquireTime, renewTime (MicroTime,
//     RFC 3339 with 6 fractional digits, UTC) and leaseTransitions; a renewal keeps
//     acquireTime and leaseTransitions, a takeover increments leaseTransitions. The PUT
//     carries the metadata.resourceVersion of the Lease read, so two candidates racing for
//     an expired Lease cannot both win: the loser gets 409 Conflict and tries again later;
//   - renew: every RetryPeriod; when no renewal succeeded within RenewDeadline the leader
//     steps down (isLeader() false, logged) and goes back to acquiring;
//   - ReleaseOnCancel: on stop() a leader writes holderIdentity "" and
//     leaseDurationSeconds 1, so a follower takes over at its next retry instead of after
//     a whole LeaseDuration (an empty holder is free to take, expired or not).
// Changed, so that a crashed leader is replaced one LeaseDuration after its last renewal
// rather than up to 2.2 RetryPeriods + LeaseDuration + 1.2 RetryPeriods after it:
//   - while another identity holds the Lease, the acquire loop also wakes when that
//     observation turns LeaseDuration old, not only at its next jittered retry;
//   - a renewal by the holder seen before is dated on our clock by the difference of its
//     renewTime and the previous one (both from the holder's clock, so the offset between
//     the clocks cancels), kept only when that lands between our previous read and this
//     one — otherwise, as client-go, the time we saw it. The leader's margin is unchanged
//     in kind: it stops leading RenewDeadline after its last renewal, a follower takes over
//     LeaseDuration after it.
// Not copied: the OnNewLeader/OnStartedLeading callbacks (isLeader() and leader() are read
// instead), the ConfigMap/Endpoints locks, coordinated leader election (LeaseCandidate).
//
// One owned thread runs the loop and does its HTTP on an io_context of its own; stop()
// joins it. Time is the Clock's: the monotonic clock for expiry, renew deadlines and
// waits, the wall clock only for the timestamps written to the Lease.

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>

#include "aggregator/kube/client.h"
#include "common/clock.h"

namespace meshprobe::aggregator::kube {

struct LeaderElectionConfig {
  std::string lease_namespace = "meshprobe";
  std::string lease_name = "meshprobe-aggregator";
  std::string identity;  // this replica (main: hostname + "_" + random suffix)
  std::chrono::milliseconds lease_duration{15'000};
  std::chrono::milliseconds renew_deadline{10'000};
  std::chrono::milliseconds retry_period{2'000};
  double jitter_factor = 1.2;
  bool release_on_stop = true;
  // Uniform in [0, 1) for the jitter; unset: a seeded std::mt19937. Tests return 0.
  std::function<double()> random;
};

// The Lease's spec as client-go's LeaderElectionRecord.
struct LeaseRecord {
  std::string holder_identity;
  int lease_duration_seconds = 0;
  std::string acquire_time;  // MicroTime text as written ("" when absent)
  std::string renew_time;
  int lease_transitions = 0;
  bool operator==(const LeaseRecord&) const = default;
};

LeaseRecord leaseRecordFromJson(const nlohmann::json& lease);  // from a Lease object
nlohmann::json leaseSpecJson(const LeaseRecord& record);
// metav1.MicroTime's wire form: "2006-01-02T15:04:05.000000Z".
std::string formatMicroTime(std::chrono::system_clock::time_point t);
// RFC 3339 with an optional fraction and a Z or +hh:mm offset (what any writer of a Lease
// may put in renewTime); nullopt when it is not one.
std::optional<std::chrono::system_clock::time_point> parseMicroTime(std::string_view text);
// "renew deadline must be shorter than lease duration", ... ("" when valid).
std::string validateLeaderElection(const LeaderElectionConfig& config);

class LeaderElector {
 public:
  LeaderElector(std::shared_ptr<KubeClient> client, const Clock& clock, LeaderElectionConfig config);
  ~LeaderElector();  // stop()

  void start();
  // Releases the Lease when leading (release_on_stop) and joins the thread. Idempotent.
  void stop();

  bool isLeader() const { return leading_.load(); }
  // The holder of the Lease as last observed ("" = none yet, or released).
  std::string leader() const;
  const LeaderElectionConfig& config() const { return config_; }
  std::string describe() const { return config_.lease_namespace + "/" + config_.lease_name; }

 private:
  void run(std::stop_token stop);
  bool tryAcquireOrRenew();
  bool release();
  void reportTransition();
  std::chrono::nanoseconds jittered() const;
  // How long the acquire loop waits: the jittered retry period, or less when the Lease the
  // other holder last renewed expires (on our clock) before that.
  std::chrono::nanoseconds untilNextAttempt() const;
  // When a record read at `now` that differs from observed_ was written, on our clock.
  std::chrono::steady_clock::time_point observedAt(const LeaseRecord& changed,
                                                   std::chrono::steady_clock::time_point now) const;
  Result<HttpResult> call(const std::string& method, const std::string& target, const std::string& body);
  void logError(const std::string& what);

  std::shared_ptr<KubeClient> client_;
  const Clock& clock_;
  LeaderElectionConfig config_;
  std::string lease_path_;  // /apis/coordination.k8s.io/v1/namespaces/NS/leases/NAME

  std::atomic<bool> leading_{false};
  mutable std::mutex mu_;
  LeaseRecord observed_;  // guarded by mu_ (read by leader())
  // Loop thread only:
  std::chrono::steady_clock::time_point observed_time_{};
  // When the last successful GET of the Lease was sent (its record is no older than this).
  std::optional<std::chrono::steady_clock::time_point> last_read_asked_;
  nlohmann::json lease_;  // the Lease last read or written (its metadata.resourceVersion)
  std::string reported_leader_;
  bool reported_once_ = false;
  std::string last_error_;
  std::jthread thread_;
};

}  // namespace meshprobe::aggregator::kube
