#pragma once
// The aggregator's findings written back to the Kubernetes API, the way node-problem-detector
// (NPD) reports a node's problems: a node condition `MeshprobeNetworkProblem` on every Node
// and an Event on the Node at each finding's onset and clear.
//
//   findings ──desiredCondition()──▶ per node: True (the most severe finding's code and
//      │                             summary) or False (NoMeshprobeNetworkProblem)
//      │                                   │ planConditionWrite(): only a change, or a heartbeat
//      │                                   ▼
//      │         PATCH /api/v1/nodes/NAME/status (application/strategic-merge-patch+json)
//      │
//      └─eventChanges()──▶ onset (Warning) / clear (Normal) ──EventSpamFilter──▶ POST (or
//                          PATCH count + lastTimestamp of the same event seen before)
//                          /api/v1/namespaces/default/events
//
// The condition is written with a strategic merge patch carrying only our condition:
// core/v1 NodeStatus.conditions has patchStrategy "merge" with patchMergeKey "type", so the
// apiserver merges our entry with the one of the same type and keeps the kubelet's Ready
// (a JSON merge patch would replace the whole list). Fields left out of an entry keep their
// value, which is how lastTransitionTime stays put while only reason or message change.
//
// Only the leader writes (is_leader(); unset = always). The reporter runs on its own io
// thread: a slow or unreachable API server delays only its own writes, never diagnosis.
// Everything that decides what to write is a pure function, exposed for tests.

// clang-format off
#include <utility>  // before awaitable.hpp: Boost 1.74 uses std::exchange without including it
// clang-format on
#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "aggregator/kube/client.h"
#include "aggregator/kube/objects.h"

namespace meshprobe::aggregator::kube {

inline constexpr const char* kProblemConditionType = "MeshprobeNetworkProblem";
inline constexpr const char* kNoProblemReason = "NoMeshprobeNetworkProblem";
inline constexpr const char* kNoProblemMessage = "meshprobe finds no network problem on this node";
inline constexpr const char* kEventComponent = "meshprobe-aggregator";

// What the reporter needs of a diagnosis finding (meshprobe.v1.Finding without the proto).
struct NodeFinding {
  std::string id;                  // stable identity: the same fault keeps its id
  std::string code;                // "VXLAN_PORT_FILTERED", ...
  int severity = 0;                // meshprobe.v1.Severity: INFO 1, WARNING 2, CRITICAL 3
  std::vector<std::string> nodes;  // blamed nodes
  std::string summary;
};

// The active findings of DiagnosisEngine::active() (any type with id(), code(), severity(),
// nodes(), summary()) as NodeFindings.
template <class Finding>
std::vector<NodeFinding> nodeFindings(const std::vector<Finding>& active) {
  std::vector<NodeFinding> out;
  out.reserve(active.size());
  for (const auto& f : active) {
    NodeFinding n{f.id(), f.code(), static_cast<int>(f.severity()), {}, f.summary()};
    for (const auto& node : f.nodes()) n.nodes.push_back(node);
    out.push_back(std::move(n));
  }
  return out;
}

// The part of a node condition we decide (the times are the writer's business).
struct ProblemCondition {
  std::string status;  // "True" | "False"
  std::string reason;
  std::string message;
  bool operator==(const ProblemCondition&) const = default;
};

// `node`'s condition from `findings`: True while a finding of at least `min_severity` blames
// it, with the most severe one's code as reason and summary as message (ties: the smaller
// code, then id, so the choice is stable); otherwise False with kNoProblemReason.
ProblemCondition desiredCondition(const std::vector<NodeFinding>& findings, const std::string& node, int min_severity);

// metav1.Time's JSON form: RFC 3339 in UTC with whole seconds ("2026-12-05T11:45:00Z").
std::string rfc3339(std::chrono::system_clock::time_point t);

// The strategic merge patch body for nodes/NAME/status: only our condition, with
// lastHeartbeatTime = now, and lastTransitionTime = now only when `transition`.
nlohmann::json conditionPatch(const ProblemCondition& c, std::chrono::system_clock::time_point now, bool transition);

enum class ConditionWrite {
  kNone,        // unchanged and the heartbeat is not due
  kHeartbeat,   // unchanged: refresh lastHeartbeatTime
  kUpdate,      // reason or message changed, same status: lastTransitionTime kept
  kTransition,  // status flips (or the condition is new): lastTransitionTime = now
};

struct WrittenCondition {
  ProblemCondition condition;
  std::chrono::steady_clock::time_point at;  // when this reporter last wrote it
};

// What to write for one node. `last`: what this reporter wrote (none since it became the
// leader); `observed`: the node's condition in the watched Node object, if any (decides
// whether a first write is a transition, so a new leader keeps lastTransitionTime).
ConditionWrite planConditionWrite(const std::optional<WrittenCondition>& last,
                                  const std::optional<ProblemCondition>& observed, const ProblemCondition& want,
                                  std::chrono::steady_clock::time_point now,
                                  std::chrono::steady_clock::duration heartbeat);

// A finding blaming a node, by (node, finding id).
using NodeFindingKey = std::pair<std::string, std::string>;
using NodeFindingSet = std::map<NodeFindingKey, NodeFinding>;

// The (node, finding) pairs of `findings` with at least `min_severity` whose node is in `nodes`.
NodeFindingSet nodeFindingSet(const std::vector<NodeFinding>& findings, const std::set<std::string>& nodes,
                              int min_severity);

struct EventChange {
  std::string node;
  NodeFinding finding;
  bool onset = true;  // false: cleared
};

// Onsets (in `after`, not in `before`) then clears (in `before`, not in `after`), each in key order.
std::vector<EventChange> eventChanges(const NodeFindingSet& before, const NodeFindingSet& after);

// client-go tools/record's EventSourceObjectSpamFilter: a token bucket per source + involved
// object (getSpamKey: component, host, kind, namespace, name, uid, apiVersion) holding
// `burst` tokens (25) refilled at one per `refill` (5 minutes), the buckets kept in an LRU
// of `max_keys` (4096) entries; an event without a token is dropped.
class EventSpamFilter {
 public:
  explicit EventSpamFilter(int burst = 25, std::chrono::steady_clock::duration refill = std::chrono::minutes(5),
                           size_t max_keys = 4096);
  // True (and takes a token) when an event for `key` may be sent at `now`.
  bool allow(const std::string& key, std::chrono::steady_clock::time_point now);

 private:
  struct Bucket {
    double tokens;
    std::chrono::steady_clock::time_point updated;
    uint64_t used;  // LRU order
  };
  int burst_;
  std::chrono::steady_clock::duration refill_;
  size_t max_keys_;
  uint64_t tick_ = 0;
  std::map<std::string, Bucket> buckets_;
};

// A core/v1 Event on Node `node` (namespace `ns`), named as client-go names them
// ("<node>.<unix nanoseconds in hex>"), count 1, first and last timestamp `now`.
nlohmann::json nodeEvent(const std::string& ns, const std::string& node, const std::string& node_uid,
                         const EventChange& change, std::chrono::system_clock::time_point now);

struct NodeStatusCounters {
  uint64_t passes = 0;             // passes that saw a synced view
  uint64_t condition_writes = 0;   // successful PATCHes of nodes/status
  uint64_t events_created = 0;     // POSTed Events
  uint64_t events_aggregated = 0;  // PATCHed count/lastTimestamp of an Event sent before
  uint64_t events_throttled = 0;   // dropped by the spam filter
  uint64_t errors_forbidden = 0;   // 401/403 answers
  uint64_t errors_other = 0;       // transport failures and other non-2xx answers
};

struct NodeProblemOptions {
  std::chrono::milliseconds interval{1000};                                    // NPD's updatePeriod
  std::chrono::steady_clock::duration heartbeat = std::chrono::minutes(5);     // NPD's --k8s-exporter-heartbeat-period
  std::chrono::steady_clock::duration retry_after = std::chrono::seconds(10);  // NPD's resyncPeriod after a failure
  int min_severity = 2;  // WARNING: INFO findings do not set the condition
  std::string event_namespace = "default";
  int event_burst = 25;
  std::chrono::steady_clock::duration event_refill = std::chrono::minutes(5);
};

class NodeProblemReporter {
 public:
  using FindingsSource = std::function<std::vector<NodeFinding>()>;

  // `client` and `view` (not owned) outlive the reporter.
  NodeProblemReporter(std::shared_ptr<KubeClient> client, const KubeView& view, NodeProblemOptions options = {});
  ~NodeProblemReporter();  // stop()
  NodeProblemReporter(const NodeProblemReporter&) = delete;
  NodeProblemReporter& operator=(const NodeProblemReporter&) = delete;

  // Starts the io thread: every interval, one pass over `findings()` and the view's Nodes.
  // `is_leader` unset: always the leader. Once.
  void start(FindingsSource findings, std::function<bool()> is_leader = {});
  void stop();  // ends any request in flight and joins the thread (idempotent)

  NodeStatusCounters counters() const;

 private:
  boost::asio::awaitable<void> run();
  boost::asio::awaitable<void> pass();
  boost::asio::awaitable<bool> writeCondition(const std::string& node, const ProblemCondition& want,
                                              ConditionWrite how);
  boost::asio::awaitable<void> sendEvent(const std::string& node_uid, const EventChange& change);
  // Counts and logs a failed request; true when it was an authorization failure.
  bool failed(const std::string& verb, const std::string& resource, const std::string& what,
              const Result<HttpResult>& r);

  std::shared_ptr<KubeClient> client_;
  const KubeView& view_;
  const NodeProblemOptions options_;
  FindingsSource findings_;
  std::function<bool()> is_leader_;
  std::unique_ptr<boost::asio::io_context> ioc_;
  std::thread thread_;

  // io thread only:
  std::map<std::string, WrittenCondition> written_;  // by node; cleared while not the leader
  NodeFindingSet active_;                            // the last pass's (node, finding) pairs
  std::chrono::steady_clock::time_point paused_until_{};
  EventSpamFilter spam_;
  struct SentEvent {  // client-go eventLogger: the event sent for an exact key, for repeats
    std::string name;
    int count;
    std::string first_timestamp;
    uint64_t used;
  };
  std::map<std::string, SentEvent> sent_;
  uint64_t sent_tick_ = 0;
  std::set<std::pair<std::string, std::string>> logged_forbidden_;  // (verb, resource)

  mutable std::mutex mu_;
  NodeStatusCounters counters_;  // guarded by mu_
};

}  // namespace meshprobe::aggregator::kube
