#pragma once
// Keeps the aggregator's view of Nodes, Namespaces and Pods current from the Kubernetes API,
// the way client-go's reflector does: per kind, list (limit + continue paging) → replace that
// kind's store → watch from the list's resourceVersion → apply events. BOOKMARK events only
// advance the resourceVersion. A watch that ends (the server's timeoutSeconds, a dropped
// connection) is opened again from the last resourceVersion without a list; "410 Gone" (HTTP
// 410 on a list page or a watch, or an ERROR event with code 410 "too old resource version")
// means the history is gone, so the kind is listed again. Other failures back off with
// jitter (0.8–1.2 × 1 s, doubling to 30 s): 401/403 set ApiState::kForbidden with a detail
// naming the verb, the resource and the server's message; connect, TLS and timeout failures
// (and any other HTTP error) set kUnreachable. Every kind is watched cluster-wide: one watch
// per kind, never per node; pods with a field selector (WatcherOptions::pod_field_selector).
//
// One io thread owned by the watcher runs the three kinds as coroutines; stop() (or the
// destructor) ends them and joins it. Each change is published as a new immutable
// KubeObjects (generation + 1) swapped in under a mutex: readers copy a shared_ptr and never
// wait on network I/O. Events that arrive in one read are applied together and published once.

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "aggregator/kube/client.h"
#include "aggregator/kube/objects.h"

namespace boost::asio {
class io_context;
}

namespace meshprobe::aggregator::kube {

enum class Kind { kNodes = 0, kNamespaces = 1, kPods = 2 };
inline constexpr size_t kKindCount = 3;
const char* resourceName(Kind kind);  // "nodes", "namespaces", "pods"

struct WatcherOptions {
  // Pods of these namespaces are kept whole (the mesh's and the network's own components).
  // Other pods are kept only when not hostNetwork, and without their container statuses.
  std::set<std::string> component_namespaces{"kube-system", "kube-flannel", "istio-system", "meshprobe"};
  // The pods' list and watch ask the server to leave out pods that ran to completion (Job
  // pods): no rule looks at them (agents, ztunnel, istio-cni and flannel never complete,
  // POD_NOT_CAPTURED counts Running pods). A pod that completes leaves the watch as DELETED.
  std::string pod_field_selector = "status.phase!=Succeeded";
  uint32_t page_size = 500;  // list ?limit=
  // Each watch asks the server to end it after a random time in this range (timeoutSeconds),
  // which spreads reconnections of several aggregators, as client-go does (5–10 min).
  std::chrono::seconds min_watch_timeout{300};
  std::chrono::seconds max_watch_timeout{600};
  // A watch that sends nothing for timeoutSeconds plus this is treated as dropped.
  std::chrono::seconds idle_margin{30};
  std::chrono::milliseconds initial_backoff{1000};
  std::chrono::milliseconds max_backoff{30'000};
};

// For metrics and tests: what each kind's loop has done, and where it stands.
struct KindCounters {
  uint64_t lists = 0;  // complete lists (all pages)
  uint64_t list_pages = 0;
  uint64_t watches = 0;            // watch streams opened (HTTP 200)
  uint64_t watch_restarts = 0;     // watches that ended and were opened again without a list
  uint64_t relists_after_410 = 0;  // lists because the resourceVersion was too old
  uint64_t errors = 0;             // failed requests (each one backs off)
  uint64_t events = 0;             // ADDED/MODIFIED/DELETED applied
  uint64_t bookmarks = 0;
  std::string resource_version;  // the last one seen (list, event or bookmark)
  ApiState state = ApiState::kConnecting;
  std::string detail;
};
struct WatcherCounters {
  std::array<KindCounters, kKindCount> kinds;
  uint64_t publishes = 0;
  const KindCounters& of(Kind k) const { return kinds[static_cast<size_t>(k)]; }
};

class KubeWatcher final : public KubeView {
 public:
  explicit KubeWatcher(std::shared_ptr<KubeClient> client, WatcherOptions options = {});
  ~KubeWatcher() override;  // stop()
  KubeWatcher(const KubeWatcher&) = delete;
  KubeWatcher& operator=(const KubeWatcher&) = delete;

  void start();  // starts the io thread; once
  void stop();   // ends every request and joins the thread (idempotent)

  std::shared_ptr<const KubeObjects> objects() const override;
  WatcherCounters counters() const;

  struct Loop;  // one kind's list/watch loop (internal)

 private:
  void publish();  // io thread

  std::shared_ptr<KubeClient> client_;
  WatcherOptions options_;
  std::unique_ptr<boost::asio::io_context> ioc_;
  std::thread thread_;

  // io thread only: the stores the snapshots are copied from.
  std::map<std::string, NodeObject> nodes_;
  std::map<std::string, NamespaceObject> namespaces_;
  std::map<std::string, PodObject> pods_;
  std::array<bool, kKindCount> listed_{};

  mutable std::mutex mu_;  // guards the two below; held only to copy or swap
  std::shared_ptr<const KubeObjects> snapshot_;
  WatcherCounters counters_;
};

}  // namespace meshprobe::aggregator::kube
