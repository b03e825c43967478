#include "aggregator/kube/parse.h"

#include <gtest/gtest.h>

namespace meshprobe::aggregator::kube {
namespace {

using nlohmann::json;

// Shaped like `kubectl get node -o json` on a kind cluster (trimmed, field names as served).
constexpr const char* kNode = R"({
  "kind": "Node", "apiVersion": "v1",
  "metadata": {"name": "worker-1", "uid": "6b1f", "resourceVersion": "48213",
    "creationTimestamp": "2024-05-01T10:00:00Z",
    "labels": {"kubernetes.io/hostname": "worker-1", "kubernetes.io/os": "linux"},
    "annotations": {"flannel.alpha.coreos.com/backend-type": "vxlan"}},
  "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"], "unschedulable": true,
    "taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]},
  "status": {
    "addresses": [{"type": "InternalIP", "address": "172.18.0.3"}, {"type": "Hostname", "address": "worker-1"},
                  {"type": "InternalIP", "address": "fc00:f853:ccd:e793::3"}],
    "conditions": [
      {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory", "message": "kubelet has sufficient memory available"},
      {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status"}],
    "nodeInfo": {"kubeletVersion": "v1.29.2"}}})";

constexpr const char* kPod = R"({
  "kind": "Pod", "apiVersion": "v1",
  "metadata": {"name": "ztunnel-7xk2p", "generateName": "ztunnel-", "namespace": "istio-system",
    "resourceVersion": "51002", "labels": {"app": "ztunnel", "controller-revision-hash": "5c9d"},
    "deletionTimestamp": "2024-05-02T08:00:00Z", "deletionGracePeriodSeconds": 30,
    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "ztunnel", "uid": "aa",
                         "controller": true, "blockOwnerDeletion": true}]},
  "spec": {"nodeName": "worker-1", "hostNetwork": false, "containers": [{"name": "istio-proxy"}]},
  "status": {"phase": "Running", "podIP": "10.244.1.7", "podIPs": [{"ip": "10.244.1.7"}, {"ip": "fd00:10:244:1::7"}],
    "hostIP": "172.18.0.3",
    "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False",
                    "reason": "ContainersNotReady", "message": "containers with unready status: [istio-proxy]"}],
    "initContainerStatuses": [{"name": "init", "ready": true, "restartCount": 0}],
    "containerStatuses": [{"name": "istio-proxy", "ready": false, "restartCount": 7,
      "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting failed container"}},
      "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled", "startedAt": "2024-05-02T07:55:00Z"}},
      "image": "istio/ztunnel:1.22.0"}]}})";

TEST(KubeParse, Node) {
  const NodeObject n = parseNode(json::parse(kNode));
  EXPECT_EQ(n.name, "worker-1");
  EXPECT_EQ(n.labels.at("kubernetes.io/hostname"), "worker-1");
  EXPECT_TRUE(n.ready);
  EXPECT_TRUE(n.unschedulable);
  EXPECT_EQ(n.internal_ips, (std::vector<std::string>{"172.18.0.3", "fc00:f853:ccd:e793::3"}));
  ASSERT_EQ(n.conditions.size(), 2u);
  EXPECT_EQ(n.conditions[0].reason, "KubeletHasSufficientMemory");
  EXPECT_EQ(resourceVersionOf(json::parse(kNode)), "48213");
}

TEST(KubeParse, Pod) {
  const PodObject p = parsePod(json::parse(kPod));
  EXPECT_EQ(p.key(), "istio-system/ztunnel-7xk2p");
  EXPECT_EQ(p.node_name, "worker-1");
  EXPECT_FALSE(p.host_network);
  EXPECT_EQ(p.phase, "Running");
  EXPECT_FALSE(p.ready);
  EXPECT_TRUE(p.deleting);
  EXPECT_EQ(p.pod_ips, (std::vector<std::string>{"10.244.1.7", "fd00:10:244:1::7"}));
  EXPECT_EQ(p.owner_kind, "DaemonSet");
  EXPECT_EQ(p.owner_name, "ztunnel");
  ASSERT_EQ(p.containers.size(), 1u);  // init containers excluded
  const ContainerStatus& c = p.containers[0];
  EXPECT_EQ(c.name, "istio-proxy");
  EXPECT_EQ(c.restart_count, 7u);
  EXPECT_EQ(c.waiting_reason, "CrashLoopBackOff");
  EXPECT_EQ(c.last_terminated_reason, "OOMKilled");
  EXPECT_EQ(c.last_exit_code, 137);
}

TEST(KubeParse, PendingPodWithOnlyPodIPAndNoOwner) {
  const PodObject p = parsePod(json::parse(R"({"metadata":{"name":"web","namespace":"default"},
    "spec":{"hostNetwork":true},"status":{"phase":"Pending","podIP":"10.244.2.9","conditions":[
    {"type":"PodScheduled","status":"False","reason":"Unschedulable","message":"0/3 nodes are available"}]}})"));
  EXPECT_TRUE(p.host_network);
  EXPECT_EQ(p.node_name, "");
  EXPECT_EQ(p.pod_ips, std::vector<std::string>{"10.244.2.9"});
  EXPECT_EQ(p.owner_kind, "");
  EXPECT_FALSE(p.deleting);
  ASSERT_EQ(p.conditions.size(), 1u);
  EXPECT_EQ(p.conditions[0].reason, "Unschedulable");
}

TEST(KubeParse, LenientOnMissingAndMistypedFields) {
  const PodObject p = parsePod(json::parse(R"({"metadata":{"name":5,"labels":{"a":1,"b":"x"}},
    "spec":"nope","status":{"containerStatuses":[{"restartCount":"3"}, 7],"podIPs":"x"}})"));
  EXPECT_EQ(p.name, "");
  EXPECT_EQ(p.labels, (Labels{{"b", "x"}}));
  ASSERT_EQ(p.containers.size(), 1u);
  EXPECT_EQ(p.containers[0].restart_count, 0u);
  EXPECT_NO_THROW(parseNode(json()));
  EXPECT_NO_THROW(parseNamespace(json::array()));
  const NamespaceObject ns = parseNamespace(json::parse(
      R"({"metadata":{"name":"team-a","labels":{"istio.io/dataplane-mode":"ambient"}},"status":{"phase":"Terminating"}})"));
  EXPECT_EQ(ns.name, "team-a");
  EXPECT_TRUE(ns.terminating);
  EXPECT_EQ(ns.labels.at("istio.io/dataplane-mode"), "ambient");
}

TEST(KubeParse, ListPage) {
  auto page = parseList(R"({"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"9001",
    "continue":"eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6OTAwMSwic3RhcnQiOiJhL2JcdTAwMDAifQ","remainingItemCount":12},
    "items":[{"metadata":{"name":"a"}},{"metadata":{"name":"b"}}]})");
  ASSERT_TRUE(page) << page.error().message;
  EXPECT_EQ(page->resource_version, "9001");
  EXPECT_FALSE(page->continue_token.empty());
  EXPECT_EQ(page->items.size(), 2u);
  EXPECT_FALSE(parseList("<html>"));
  EXPECT_FALSE(parseList(R"({"items":{}})"));
  auto empty = parseList(R"({"kind":"NodeList","metadata":{"resourceVersion":"1"},"items":null})");
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->items.empty());
}

TEST(KubeParse, WatchEvents) {
  auto added = parseWatchEvent(std::string(R"({"type":"ADDED","object":)") + kPod + "}");
  ASSERT_TRUE(added) << added.error().message;
  EXPECT_EQ(added->type, EventType::kAdded);
  EXPECT_EQ(added->resource_version, "51002");
  EXPECT_EQ(parsePod(added->object).name, "ztunnel-7xk2p");

  auto bookmark = parseWatchEvent(
      R"({"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":"60000",
      "annotations":{"k8s.io/initial-events-end":"true"}}}})");
  ASSERT_TRUE(bookmark);
  EXPECT_EQ(bookmark->type, EventType::kBookmark);
  EXPECT_EQ(bookmark->resource_version, "60000");

  // What the apiserver sends when the watch's resourceVersion was compacted away.
  auto gone = parseWatchEvent(
      R"j({"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
      "message":"too old resource version: 100 (250)","reason":"Expired","code":410}})j");
  ASSERT_TRUE(gone);
  EXPECT_EQ(gone->type, EventType::kError);
  EXPECT_EQ(gone->error.code, 410);
  EXPECT_EQ(gone->error.reason, "Expired");
  EXPECT_EQ(gone->error.message, "too old resource version: 100 (250)");

  // A Status without a code: its reason decides, as client-go's IsResourceExpired reads it.
  auto expired = parseWatchEvent(R"j({"type":"ERROR","object":{"kind":"Status","reason":"Expired"}})j");
  ASSERT_TRUE(expired);
  EXPECT_EQ(expired->error.code, 410);
  auto other = parseWatchEvent(R"j({"type":"ERROR","object":{"kind":"Status","reason":"InternalError"}})j");
  ASSERT_TRUE(other);
  EXPECT_EQ(other->error.code, 0);

  EXPECT_FALSE(parseWatchEvent(R"({"type":"SYNC","object":{}})"));
  EXPECT_FALSE(parseWatchEvent(R"({"type":"ADDED"})"));
  EXPECT_FALSE(parseWatchEvent("{\"type\":"));
}

TEST(KubeParse, Status) {
  const ApiError e = parseStatus(R"({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
    "message":"pods is forbidden: User \"system:serviceaccount:meshprobe:aggregator\" cannot list resource \"pods\" in API group \"\" at the cluster scope",
    "reason":"Forbidden","details":{"kind":"pods"},"code":403})",
                                 403);
  EXPECT_EQ(e.code, 403);
  EXPECT_EQ(e.reason, "Forbidden");
  EXPECT_TRUE(e.message.starts_with("pods is forbidden: User"));
  const ApiError raw = parseStatus("upstream connect error\nor disconnect", 503);
  EXPECT_EQ(raw.code, 503);
  EXPECT_EQ(raw.message, "upstream connect error or disconnect");
}

}  // namespace
}  // namespace meshprobe::aggregator::kube
