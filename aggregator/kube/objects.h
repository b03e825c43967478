#pragma once
// What the aggregator keeps of the Kubernetes objects it watches: only the fields that
// the findings and remedies use, parsed from the API server's JSON (core/v1 Node,
// Namespace, Pod). Plain copyable values; the watcher publishes them as an immutable
// snapshot (KubeObjects) that readers share without locking.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace meshprobe::aggregator::kube {

using Labels = std::map<std::string, std::string>;

// One entry of a Node's or Pod's status.conditions.
struct Condition {
  std::string type;    // "Ready", "PodScheduled", "MeshprobeNetworkProblem", ...
  std::string status;  // "True", "False", "Unknown"
  std::string reason;
  std::string message;
};

struct NodeObject {
  std::string name;
  std::string uid;  // metadata.uid (the involvedObject of the Events written about it)
  Labels labels;
  bool ready = false;  // condition Ready is "True"
  bool unschedulable = false;
  std::vector<std::string> internal_ips;  // status.addresses of type InternalIP
  std::vector<Condition> conditions;
};

struct NamespaceObject {
  std::string name;
  Labels labels;
  bool terminating = false;  // status.phase "Terminating"
};

struct ContainerStatus {
  std::string name;
  bool ready = false;
  uint32_t restart_count = 0;
  std::string waiting_reason;   // state.waiting.reason, e.g. "CrashLoopBackOff"
  std::string waiting_message;
  std::string last_terminated_reason;  // lastState.terminated.reason, e.g. "Error", "OOMKilled"
  int last_exit_code = 0;
};

struct PodObject {
  std::string ns;    // metadata.namespace
  std::string name;  // metadata.name
  Labels labels;
  std::string node_name;  // spec.nodeName ("" while unscheduled)
  bool host_network = false;
  std::string phase;  // "Pending", "Running", "Succeeded", "Failed", "Unknown"
  bool ready = false;  // condition Ready is "True"
  bool deleting = false;  // metadata.deletionTimestamp is set
  std::vector<std::string> pod_ips;  // status.podIPs (or status.podIP)
  std::vector<Condition> conditions;  // PodScheduled False carries the scheduler's reason
  std::vector<ContainerStatus> containers;  // status.containerStatuses (init containers excluded)
  std::string owner_kind;  // the controller ownerReference: "DaemonSet", "ReplicaSet", ...
  std::string owner_name;

  std::string key() const { return ns + "/" + name; }
};

// How the watch stands, for /readyz, metrics and logs.
enum class ApiState {
  kOff,          // --kube off, or auto without a cluster or kubeconfig
  kConnecting,   // started, not every kind listed yet
  kSynced,       // every kind listed, watches running
  kUnreachable,  // the last request failed to connect or timed out; data may be stale
  kForbidden,    // 401/403 on a kind: the credentials or RBAC are wrong
};

struct ApiStatus {
  ApiState state = ApiState::kOff;
  std::string detail;  // one line naming the failing request and why ("" when synced)
};

// One consistent snapshot of everything watched. A new snapshot has a larger generation.
struct KubeObjects {
  uint64_t generation = 0;
  bool synced = false;  // each kind has been listed at least once (absence means something)
  ApiStatus status;
  std::map<std::string, NodeObject> nodes;             // by name
  std::map<std::string, NamespaceObject> namespaces;   // by name
  std::map<std::string, PodObject> pods;               // by "namespace/name"
};

// The seam between the Kubernetes client and what uses its data (diagnosis, the page, the
// CLI's answers). Tests implement it with hand-built snapshots.
class KubeView {
 public:
  virtual ~KubeView() = default;
  // Never null; an empty, unsynced snapshot with state kOff when Kubernetes is not used.
  virtual std::shared_ptr<const KubeObjects> objects() const = 0;
};

}  // namespace meshprobe::aggregator::kube
