// KubeWatcher against the fake kube-apiserver on loopback HTTPS. Every wait polls the
// watcher's snapshot or counters with a deadline (tests/support/eventually.h); none sleeps.
#include "aggregator/kube/watcher.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tests/support/eventually.h"
#include "tests/support/fake_kube_apiserver.h"
#include "tests/support/mtls_pki.h"

namespace meshprobe::aggregator::kube {
namespace {

using nlohmann::json;
using test::eventually;
using test::FakeKubeApiServer;

json node(const std::string& name, bool ready = true) {
  return {{"metadata", {{"name", name}, {"labels", {{"kubernetes.io/hostname", name}}}}},
          {"status",
           {{"conditions", json::array({{{"type", "Ready"}, {"status", ready ? "True" : "False"}}})},
            {"addresses", json::array({{{"type", "InternalIP"}, {"address", "172.18.0.2"}}})}}}};
}
json ns(const std::string& name) { return {{"metadata", {{"name", name}}}, {"status", {{"phase", "Active"}}}}; }
json pod(const std::string& n, const std::string& name, bool host_network = false) {
  return {{"metadata", {{"namespace", n}, {"name", name}}},
          {"spec", {{"nodeName", "n1"}, {"hostNetwork", host_network}}},
          {"status",
           {{"phase", "Running"},
            {"podIPs", json::array({{{"ip", "10.244.0.5"}}})},
            {"containerStatuses", json::array({{{"name", "c"}, {"ready", true}, {"restartCount", 2}}})}}}};
}

class KubeWatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    token_file_ =
        (std::filesystem::temp_directory_path() / ("kube_token_" + std::to_string(::getpid()) + "_" +
                                                   ::testing::UnitTest::GetInstance()->current_test_info()->name()))
            .string();
    writeToken("good-token");
    ASSERT_TRUE(server_.start());
  }
  void TearDown() override {
    watcher_.reset();
    server_.stop();
    std::filesystem::remove(token_file_);
  }
  void writeToken(const std::string& t) {
    // Like the kubelet's projected volume: a new file renamed over the old one.
    const std::string tmp = token_file_ + ".new";
    std::ofstream(tmp) << t << "\n";
    std::filesystem::rename(tmp, token_file_);
  }
  KubeWatcher& startWatcher(WatcherOptions o = fastOptions()) {
    KubeConfig c;
    c.server = server_.url();
    c.ca_file = test::mtlsFile("ca.pem");
    c.token_file = token_file_;
    auto client = KubeClient::create(c);
    EXPECT_TRUE(client) << client.error().message;
    watcher_ = std::make_unique<KubeWatcher>(*client, o);
    watcher_->start();
    return *watcher_;
  }
  static WatcherOptions fastOptions() {
    WatcherOptions o;
    o.initial_backoff = std::chrono::milliseconds(20);
    o.max_backoff = std::chrono::milliseconds(200);
    return o;
  }
  KindCounters kind(Kind k) const { return watcher_->counters().of(k); }
  ::testing::AssertionResult synced() {
    return eventually("synced", [&] {
      auto o = watcher_->objects();
      return o->synced && o->status.state == ApiState::kSynced ? "" : "state " + o->status.detail;
    });
  }
  void seed() {
    server_.upsert("nodes", node("n1"));
    server_.upsert("namespaces", ns("default"));
    server_.upsert("namespaces", ns("istio-system"));
    server_.upsert("pods", pod("istio-system", "ztunnel-a"));
    server_.upsert("pods", pod("default", "web"));
    server_.upsert("pods", pod("default", "node-exporter", /*host_network=*/true));
  }

  FakeKubeApiServer server_;
  std::string token_file_;
  std::unique_ptr<KubeWatcher> watcher_;
};

TEST_F(KubeWatcherTest, ListThenWatchSeesAddsChangesAndDeletes) {
  seed();
  KubeWatcher& w = startWatcher();
  ASSERT_TRUE(synced());
  auto first = w.objects();
  ASSERT_EQ(first->nodes.size(), 1u);
  EXPECT_TRUE(first->nodes.at("n1").ready);
  EXPECT_EQ(first->namespaces.size(), 2u);
  // The pod filter: component pods whole, workload pods without containers, hostNetwork
  // workload pods not at all.
  ASSERT_EQ(first->pods.size(), 2u);
  EXPECT_EQ(first->pods.at("istio-system/ztunnel-a").containers.size(), 1u);
  EXPECT_EQ(first->pods.at("default/web").containers.size(), 0u);
  EXPECT_EQ(first->pods.at("default/web").pod_ips, std::vector<std::string>{"10.244.0.5"});
  EXPECT_FALSE(first->pods.contains("default/node-exporter"));

  server_.upsert("nodes", node("n2"));
  server_.upsert("nodes", node("n1", /*ready=*/false));
  server_.remove("pods", "default/web");
  EXPECT_TRUE(eventually("n2 added, n1 not ready, web gone", [&] {
    auto o = w.objects();
    if (!o->nodes.contains("n2")) return std::string("no n2");
    if (o->nodes.at("n1").ready) return std::string("n1 still ready");
    if (o->pods.contains("default/web")) return std::string("web still there");
    return std::string();
  }));
  EXPECT_GT(w.objects()->generation, first->generation);
  EXPECT_TRUE(first->nodes.at("n1").ready);  // an old snapshot never changes
  for (Kind k : {Kind::kNodes, Kind::kNamespaces, Kind::kPods}) {
    EXPECT_EQ(kind(k).lists, 1u) << resourceName(k);
    EXPECT_EQ(kind(k).relists_after_410, 0u);
  }
  EXPECT_EQ(kind(Kind::kNodes).events, 2u);
  EXPECT_EQ(kind(Kind::kNodes).resource_version, std::to_string(server_.resourceVersion() - 1));
}

TEST_F(KubeWatcherTest, BookmarkAdvancesTheResourceVersionSoACompactionNeedsNoRelist) {
  seed();
  KubeWatcher& w = startWatcher();
  ASSERT_TRUE(synced());
  ASSERT_TRUE(eventually([&] { return server_.activeWatches() == 3; }));
  const uint64_t rv = server_.upsert("pods", pod("default", "later"));
  server_.sendBookmarks();
  EXPECT_TRUE(eventually("nodes at the pod's RV by a bookmark", [&] {
    return kind(Kind::kNodes).resource_version == std::to_string(rv) ? "" : kind(Kind::kNodes).resource_version;
  }));
  EXPECT_GE(kind(Kind::kNodes).bookmarks, 1u);
  EXPECT_EQ(kind(Kind::kNodes).events, 0u);  // a bookmark is not an object
  EXPECT_TRUE(eventually([&] { return kind(Kind::kNamespaces).resource_version == std::to_string(rv); }));
  // Without the bookmark the nodes' watch would restart below the compaction point.
  server_.compact();
  server_.dropWatches();
  EXPECT_TRUE(eventually("every kind watching again", [&] {
    for (Kind k : {Kind::kNodes, Kind::kNamespaces, Kind::kPods})
      if (kind(k).watches < 2) return std::string(resourceName(k)) + " not re-watched";
    return std::string();
  }));
  for (Kind k : {Kind::kNodes, Kind::kNamespaces, Kind::kPods}) {
    EXPECT_EQ(kind(k).lists, 1u) << resourceName(k);
    EXPECT_EQ(kind(k).relists_after_410, 0u) << resourceName(k);
  }
  EXPECT_EQ(server_.stats().watch_expired, 0u);
  EXPECT_EQ(w.objects()->status.state, ApiState::kSynced);
}

TEST_F(KubeWatcherTest, CompactionThenDroppedWatchIs410AndARelist) {
  seed();
  KubeWatcher& w = startWatcher();
  ASSERT_TRUE(synced());
  ASSERT_TRUE(eventually([&] { return server_.activeWatches() == 3; }));
  const uint64_t rv = server_.upsert("nodes", node("n2"));
  ASSERT_TRUE(eventually([&] { return kind(Kind::kNodes).resource_version == std::to_string(rv); }));
  server_.compact();  // namespaces and pods are still at the older list RV
  server_.dropWatches();
  server_.upsert("namespaces", ns("made-while-cut"));  // seen by the relist or the watch after it
  EXPECT_TRUE(eventually("namespaces and pods listed again", [&] {
    return kind(Kind::kNamespaces).lists == 2 && kind(Kind::kPods).lists == 2 ? "" : "not yet";
  }));
  EXPECT_EQ(kind(Kind::kNamespaces).relists_after_410, 1u);
  EXPECT_EQ(kind(Kind::kPods).relists_after_410, 1u);
  EXPECT_EQ(kind(Kind::kNodes).relists_after_410, 0u);  // its RV was not compacted away
  EXPECT_EQ(kind(Kind::kNodes).lists, 1u);
  EXPECT_EQ(server_.stats().watch_expired, 2u);
  EXPECT_TRUE(eventually([&] { return w.objects()->namespaces.contains("made-while-cut"); }));
  EXPECT_TRUE(synced());
}

TEST_F(KubeWatcherTest, DroppedWatchIsWatchedAgainWithoutAList) {
  seed();
  KubeWatcher& w = startWatcher();
  ASSERT_TRUE(synced());
  ASSERT_TRUE(eventually([&] { return server_.activeWatches() == 3; }));
  server_.dropWatches();
  server_.upsert("nodes", node("n9"));  // while the watch is cut: delivered from history
  EXPECT_TRUE(eventually([&] { return w.objects()->nodes.contains("n9"); }));
  EXPECT_TRUE(eventually([&] { return kind(Kind::kPods).watch_restarts >= 1 && kind(Kind::kPods).watches >= 2; }));
  for (Kind k : {Kind::kNodes, Kind::kNamespaces, Kind::kPods}) EXPECT_EQ(kind(k).lists, 1u) << resourceName(k);
}

TEST_F(KubeWatcherTest, RotatedTokenFileIsUsedForTheNextRequest) {
  seed();
  KubeWatcher& w = startWatcher();
  ASSERT_TRUE(synced());
  ASSERT_TRUE(eventually([&] { return server_.activeWatches() == 3; }));
  writeToken("rotated-token");
  server_.setToken("rotated-token");  // the old one is refused from now on
  server_.dropWatches();
  server_.upsert("nodes", node("n7"));
  EXPECT_TRUE(eventually([&] { return w.objects()->nodes.contains("n7"); }));
  EXPECT_TRUE(eventually([&] { return kind(Kind::kPods).watches >= 2 && kind(Kind::kNamespaces).watches >= 2; }));
  const auto stats = server_.stats();
  EXPECT_EQ(stats.unauthorized, 0u);
  EXPECT_EQ(stats.tokens.back(), "rotated-token");
  EXPECT_EQ(w.objects()->status.state, ApiState::kSynced);
}

TEST_F(KubeWatcherTest, ForbiddenPodsNameTheRequestWhileNodesStillSync) {
  seed();
  server_.forbid("list", "pods");
  KubeWatcher& w = startWatcher();
  EXPECT_TRUE(eventually("forbidden, nodes and namespaces listed", [&] {
    auto o = w.objects();
    if (o->status.state != ApiState::kForbidden) return std::string("state not forbidden");
    if (!o->nodes.contains("n1") || o->namespaces.size() != 2) return std::string("nodes/namespaces not listed");
    return std::string();
  }));
  auto o = w.objects();
  EXPECT_FALSE(o->synced);
  EXPECT_EQ(o->status.detail,
            "list pods at the cluster scope: forbidden: User \"system:serviceaccount:meshprobe:aggregator\" cannot "
            "list resource \"pods\" in API group \"\" at the cluster scope");
  EXPECT_EQ(kind(Kind::kNodes).state, ApiState::kSynced);
  EXPECT_GE(kind(Kind::kPods).errors, 1u);
  server_.allowAll();  // RBAC fixed: the backoff retries and the pods list succeeds
  EXPECT_TRUE(synced());
  EXPECT_EQ(w.objects()->pods.size(), 2u);
}

// Pods that ran to completion are left out by the server (fieldSelector
// status.phase!=Succeeded on the list and the watch); a pod that completes while watched
// leaves as DELETED (the watch cache's rule for an object that stops matching), and comes
// back as ADDED if it matches again.
TEST_F(KubeWatcherTest, CompletedPodsAreLeftOutAndOneThatCompletesLeavesTheWatch) {
  seed();
  json job = pod("default", "job-1");
  job["status"]["phase"] = "Succeeded";
  server_.upsert("pods", job);
  KubeWatcher& w = startWatcher();
  ASSERT_TRUE(synced());
  EXPECT_FALSE(w.objects()->pods.contains("default/job-1"));
  EXPECT_TRUE(w.objects()->pods.contains("default/web"));
  json done = pod("default", "web");
  done["status"]["phase"] = "Succeeded";
  server_.upsert("pods", done);
  EXPECT_TRUE(eventually("web gone once Succeeded",
                         [&] { return w.objects()->pods.contains("default/web") ? "still there" : ""; }));
  server_.upsert("pods", pod("default", "web"));  // (a new pod of that name)
  EXPECT_TRUE(eventually("web back", [&] { return w.objects()->pods.contains("default/web") ? "" : "not back"; }));
  int selected = 0;
  for (const auto& t : server_.stats().targets) {
    if (t.starts_with("/api/v1/pods?") && t.find("&fieldSelector=status.phase%21%3DSucceeded") != std::string::npos) {
      ++selected;
    }
    if (t.starts_with("/api/v1/nodes?")) {
      EXPECT_EQ(t.find("fieldSelector"), std::string::npos) << t;
    }
  }
  EXPECT_GE(selected, 2);  // the list and the watch
  EXPECT_EQ(kind(Kind::kPods).lists, 1u);
}

// A field selector the server does not support is a 400 with its message, named.
TEST_F(KubeWatcherTest, AFieldSelectorTheServerRefusesIsReported) {
  seed();
  WatcherOptions o = fastOptions();
  o.pod_field_selector = "spec.containers=x";
  KubeWatcher& w = startWatcher(o);
  EXPECT_TRUE(eventually("pods refused", [&] {
    auto d = w.objects()->status.detail;
    return d.find("field label not supported: spec.containers") != std::string::npos ? "" : "detail: " + d;
  }));
  EXPECT_FALSE(w.objects()->synced);
}

TEST_F(KubeWatcherTest, WrongTokenIsForbiddenState) {
  writeToken("stale");
  KubeWatcher& w = startWatcher();
  EXPECT_TRUE(eventually([&] { return w.objects()->status.state == ApiState::kForbidden; }));
  EXPECT_TRUE(w.objects()->status.detail.find("unauthorized") != std::string::npos) << w.objects()->status.detail;
}

TEST_F(KubeWatcherTest, StoppedServerIsUnreachableThenSyncedAgainAfterRestart) {
  seed();
  KubeWatcher& w = startWatcher();
  ASSERT_TRUE(synced());
  const uint16_t port = server_.port();
  server_.stop();
  // The request cut by the stop may fail in any way (reset, broken pipe); the retries
  // after it cannot connect.
  EXPECT_TRUE(eventually("unreachable, cannot connect", [&] {
    auto o = w.objects();
    return o->status.state == ApiState::kUnreachable &&
                   o->status.detail.find("cannot connect to " + server_.url()) != std::string::npos
               ? ""
               : "state " + std::to_string(static_cast<int>(o->status.state)) + " detail " + o->status.detail;
  }));
  auto stale = w.objects();
  EXPECT_TRUE(stale->synced);  // listed once: the data is stale, not absent
  EXPECT_TRUE(stale->nodes.contains("n1"));
  EXPECT_NE(stale->status.detail.find("cannot connect to " + server_.url()), std::string::npos)
      << "state " << static_cast<int>(stale->status.state) << " detail [" << stale->status.detail << "]";
  server_.upsert("nodes", node("n5"));  // while down (the store is etcd: it survives)
  ASSERT_TRUE(server_.start(port));
  EXPECT_TRUE(synced());
  EXPECT_TRUE(eventually([&] { return w.objects()->nodes.contains("n5"); }));
}

TEST_F(KubeWatcherTest, ListsInPagesWithContinue) {
  for (int i = 0; i < 5; ++i) server_.upsert("namespaces", ns("ns-" + std::to_string(i)));
  WatcherOptions o = fastOptions();
  o.page_size = 2;
  KubeWatcher& w = startWatcher(o);
  ASSERT_TRUE(synced());
  EXPECT_EQ(w.objects()->namespaces.size(), 5u);
  EXPECT_EQ(kind(Kind::kNamespaces).lists, 1u);
  EXPECT_EQ(kind(Kind::kNamespaces).list_pages, 3u);
  int continues = 0;
  for (const auto& t : server_.stats().targets)
    if (t.find("/api/v1/namespaces?limit=2&continue=") == 0) ++continues;
  EXPECT_EQ(continues, 2);
}

TEST_F(KubeWatcherTest, ExpiredContinueTokenListsAgainFromTheStart) {
  for (int i = 0; i < 5; ++i) server_.upsert("namespaces", ns("ns-" + std::to_string(i)));
  // After the first page: a write, then a compaction past the token's resourceVersion.
  server_.afterNextContinuedPage([this] {
    server_.upsert("namespaces", ns("ns-late"));
    server_.compact();
  });
  WatcherOptions o = fastOptions();
  o.page_size = 2;
  KubeWatcher& w = startWatcher(o);
  ASSERT_TRUE(synced());
  EXPECT_EQ(kind(Kind::kNamespaces).relists_after_410, 1u);
  EXPECT_EQ(kind(Kind::kNamespaces).lists, 1u);       // one complete list
  EXPECT_EQ(kind(Kind::kNamespaces).list_pages, 3u);  // of the second attempt: 6 objects, 2 a page
  EXPECT_EQ(w.objects()->namespaces.size(), 6u);
}

TEST_F(KubeWatcherTest, StopJoinsPromptlyWithWatchesOpen) {
  seed();
  KubeWatcher& w = startWatcher();
  ASSERT_TRUE(synced());
  const auto before = std::chrono::steady_clock::now();
  w.stop();
  EXPECT_LT(std::chrono::steady_clock::now() - before, std::chrono::seconds(2));
  // The fake notices a client that went away when it next writes (the real apiserver
  // notices at once, through the request's context): changes make it write.
  EXPECT_TRUE(eventually([&] {
    server_.upsert("nodes", node("after-stop"));
    server_.upsert("namespaces", ns("after-stop"));
    server_.upsert("pods", pod("default", "after-stop"));
    return server_.activeWatches() == 0;
  }));
  EXPECT_FALSE(w.objects()->nodes.contains("after-stop"));
}

}  // namespace
}  // namespace meshprobe::aggregator::kube
