#pragma once
// An in-process stand-in for kube-apiserver (core/v1 nodes, namespaces, pods) on loopback
// HTTPS, for the aggregator's Kubernetes client tests. It follows the documented API
// semantics (Kubernetes "API Concepts": efficient detection of changes, watch bookmarks,
// retrieving large results sets in chunks; k8s.io/apiserver's watch and list handlers and
// the etcd3 store's "too old resource version") rather than any one release:
//
//   - one global resourceVersion counter across kinds (etcd's revision); every change bumps
//     it and stamps the object's metadata.resourceVersion;
//   - list: {"kind":"<Kind>List","apiVersion":"v1","metadata":{"resourceVersion":"N"},"items":[...]},
//     with limit + continue (the token is base64 JSON {"v":"meta.k8s.io/v1","rv":N,"start":"key\u0000"}
//     as the etcd3 store encodes it; a token whose rv was compacted is HTTP 410 reason
//     Expired). Unlike etcd, later pages are served from the current state, not a snapshot
//     at rv (no MVCC here) — the pages still report the first page's resourceVersion;
//   - watch (?watch=1): HTTP 200, Transfer-Encoding: chunked, one JSON event per line.
//     resourceVersion "" or "0" starts with synthetic ADDED events of every object (the
//     watch cache's "any" semantics); an RV older than the compaction point gets a 200 and
//     then one ERROR event carrying a Status with code 410 reason "Expired" ("too old
//     resource version: R (C)"), and the stream ends — the apiserver's habit for watches,
//     not an HTTP 410; timeoutSeconds ends the stream cleanly; allowWatchBookmarks=true
//     enables BOOKMARK events (an object of the kind with only metadata.resourceVersion);
//   - authentication: "Authorization: Bearer <token>" must match the accepted token, or a
//     client certificate chaining to client_ca_file (user = its CN); otherwise 401 with the
//     Status {"message":"Unauthorized","reason":"Unauthorized","code":401};
//   - authorization: a denied verb on a resource is 403 with RBAC's message
//     `pods is forbidden: User "<user>" cannot list resource "pods" in API group "" at the
//     cluster scope` (reason Forbidden, details.kind = the resource).
//   - coordination.k8s.io/v1 leases (namespaced): GET, POST, PUT with the resourceVersion
//     check (409 Conflict), for leader election; see the Leases section of the .cc.
//   - core/v1 writes: PATCH nodes/NAME/status (strategic merge merges status.conditions by
//     type; merge-patch+json replaces the list), POST and PATCH namespaces/NS/events; see the
//     Writes section of the .cc.
//   - fieldSelector on list and watch ("f=v", "f==v", "f!=v", comma = AND) over the fields
//     each kind registers (pods: PodToSelectableFields, e.g. status.phase, spec.nodeName,
//     spec.hostNetwork); another field is 400 "field label not supported: F". A watch sees
//     a change as the watch cache's cacheWatcher filters it: an object that starts matching
//     is ADDED, one that stops matching is DELETED with its previous content (the event's
//     resourceVersion), and a list with a selector has no remainingItemCount.
// Not modelled: "too large resource version" waits, label selectors, other namespaced
// paths, protobuf, HTTP/2.
//
// Test controls (any thread): upsert/remove objects, compact (forget history), drop all
// watches (connections cut without the terminating chunk, like an apiserver restart),
// send bookmarks now, set the accepted token, forbid a verb, stop and start again on the
// same port (the store survives, as etcd would).

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace meshprobe::test {

class FakeKubeApiServer {
 public:
  struct Options {
    bool tls = true;
    std::string cert_file;  // serving certificate (default: the test PKI's aggregator.pem, SAN IP 127.0.0.1)
    std::string key_file;
    std::string client_ca_file;  // accept client certificates from this CA ("" = tokens only)
    std::string token = "good-token";
    std::string user = "system:serviceaccount:meshprobe:aggregator";
    std::chrono::milliseconds bookmark_interval{0};  // 0: bookmarks only on sendBookmarks()
    uint64_t first_resource_version = 1000;
  };

  struct Stats {
    uint64_t lists = 0;          // list requests answered 200 (pages)
    uint64_t watches = 0;        // watch streams opened
    uint64_t watch_expired = 0;  // watches answered with the 410 ERROR event
    uint64_t unauthorized = 0;
    uint64_t forbidden = 0;
    std::vector<std::string> tokens;   // the bearer token of each request, in order ("" = none)
    std::vector<std::string> targets;  // each request's target, in order
  };

  FakeKubeApiServer();
  explicit FakeKubeApiServer(Options options);
  ~FakeKubeApiServer();  // stop()
  FakeKubeApiServer(const FakeKubeApiServer&) = delete;
  FakeKubeApiServer& operator=(const FakeKubeApiServer&) = delete;

  // Listens on 127.0.0.1:port (0 = ephemeral; after stop(), start(port()) binds the same
  // one again). Returns false and logs on failure.
  bool start(uint16_t port = 0);
  void stop();  // closes the listener and every connection, joins the io thread
  uint16_t port() const;
  std::string url() const;  // "https://127.0.0.1:PORT"

  // resource: "nodes", "namespaces" or "pods" (pods need metadata.namespace). ADDED or
  // MODIFIED; returns the new resourceVersion.
  uint64_t upsert(const std::string& resource, nlohmann::json object);
  // DELETED ("name" or "namespace/name"); 0 when absent.
  uint64_t remove(const std::string& resource, const std::string& key);
  void compact();        // history before now is gone: older RVs get 410
  void dropWatches();    // cut every open watch connection
  void sendBookmarks();  // a BOOKMARK now on every watch that asked for them
  void setToken(const std::string& token);
  void forbid(const std::string& verb, const std::string& resource);  // ("list"|"watch", "pods")
  void allowAll();
  // Runs `hook` once, on the server's thread, right after the next list page that has a
  // continue token was sent (e.g. a write and a compaction that expire that token).
  void afterNextContinuedPage(std::function<void()> hook);
  // Leases (coordination.k8s.io/v1): the stored Lease NS/NAME (null when absent), and one
  // written as another replica would (metadata.namespace and name set; gets a new
  // resourceVersion, which is returned).
  nlohmann::json lease(const std::string& ns, const std::string& name) const;
  uint64_t putLease(nlohmann::json lease);
  // Runs `hook` once, on the server's thread, before the next Lease update is applied (e.g.
  // another replica's write in between a candidate's GET and PUT: the PUT then conflicts).
  void beforeNextLeaseUpdate(std::function<void()> hook);

  // Node status and Events (the "Writes" section of the .cc): node NAME's status.conditions
  // (an empty array when unknown), and every Event stored, oldest first.
  nlohmann::json nodeConditions(const std::string& name) const;
  std::vector<nlohmann::json> events() const;

  uint64_t resourceVersion() const;
  size_t activeWatches() const;
  Stats stats() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace meshprobe::test
