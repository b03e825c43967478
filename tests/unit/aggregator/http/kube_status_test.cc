// The Kubernetes watch as the aggregator shows it: meshprobe_aggregator_kube_* on /metrics,
// the /readyz line, and the server's log line when the API's state changes. The watch is a
// hand-built KubeView snapshot plus a counters function (no API server).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>

#include "aggregator/http/aggregator_http.h"
#include "aggregator/server.h"
#include "common/clock.h"
#include "tests/support/fake_kube_view.h"

namespace meshprobe::aggregator {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

using StubKubeView = testing::FakeKubeView;

std::map<std::string, std::string> parseSeries(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    auto sp = line.rfind(' ');
    out[line.substr(0, sp)] = line.substr(sp + 1);
  }
  return out;
}

size_t countPrefix(const std::map<std::string, std::string>& series, const std::string& prefix) {
  size_t n = 0;
  for (const auto& [k, _] : series) n += k.rfind(prefix, 0) == 0 ? 1 : 0;
  return n;
}

// promtool's lint of an exposition: its exit code, or -1 without promtool.
int promtoolCheck(const std::string& text, std::string* output) {
  const char* bin = "/usr/bin/promtool";
  if (access(bin, X_OK) != 0) return -1;
  char path[] = "/tmp/mp-kube-metrics-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0 || write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) return -2;
  close(fd);
  FILE* p = popen((std::string(bin) + " check metrics < " + path + " 2>&1").c_str(), "r");
  char buf[512];
  while (p && fgets(buf, sizeof buf, p)) *output += buf;
  int st = p ? pclose(p) : -1;
  unlink(path);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -3;
}

HttpRequest get(const std::string& path) {
  HttpRequest r;
  r.method = "GET";
  r.target = path;
  r.path = path;
  return r;
}

// Two nodes, one namespace, three pods; pods forbidden after a first sync.
kube::KubeObjects someObjects(kube::ApiState state, const std::string& detail) {
  kube::KubeObjects o;
  o.synced = true;
  o.status = {state, detail};
  for (const char* n : {"node-a", "node-b"}) o.nodes[n].name = n;
  o.namespaces["default"].name = "default";
  for (const char* p : {"default/web-1", "default/web-2", "istio-system/ztunnel-x"}) o.pods[p].name = p;
  return o;
}

kube::WatcherCounters someCounters() {
  kube::WatcherCounters c;
  auto& nodes = c.kinds[static_cast<size_t>(kube::Kind::kNodes)];
  nodes.lists = 2;
  nodes.relists_after_410 = 1;
  nodes.watch_restarts = 4;
  nodes.events = 9;
  auto& pods = c.kinds[static_cast<size_t>(kube::Kind::kPods)];
  pods.lists = 1;
  pods.errors = 5;
  pods.events = 30;
  return c;
}

class KubeStatusTest : public ::testing::Test {
 protected:
  KubeStatusTest() : state_(clock_, ClusterOptions{}), engine_(clock_, state_) {}

  AggregatorMetricsSources sources(bool with_counters = true) {
    AggregatorMetricsSources s{state_, engine_, nullptr, nullptr, &view_, {}};
    if (with_counters) s.kube_counters = [] { return someCounters(); };
    return s;
  }

  FakeClock clock_;
  ClusterState state_;
  DiagnosisEngine engine_;
  StubKubeView view_;
};

TEST_F(KubeStatusTest, SeriesFromTheSnapshotAndTheCounters) {
  view_.set(someObjects(kube::ApiState::kForbidden, "list pods: forbidden: pods is forbidden"));
  size_t series = 0;
  const std::string text = renderAggregatorMetrics(sources(), &series);
  auto s = parseSeries(text);
  EXPECT_EQ(s["meshprobe_aggregator_kube_api_up"], "0");
  EXPECT_EQ(s["meshprobe_aggregator_kube_state{state=\"forbidden\"}"], "1");
  for (const char* other : {"off", "connecting", "synced", "unreachable"}) {
    EXPECT_EQ(s["meshprobe_aggregator_kube_state{state=\"" + std::string(other) + "\"}"], "0") << other;
  }
  EXPECT_EQ(s["meshprobe_aggregator_kube_lists_total{kind=\"nodes\"}"], "2");
  EXPECT_EQ(s["meshprobe_aggregator_kube_lists_total{kind=\"namespaces\"}"], "0");
  EXPECT_EQ(s["meshprobe_aggregator_kube_lists_total{kind=\"pods\"}"], "1");
  EXPECT_EQ(s["meshprobe_aggregator_kube_relists_total{kind=\"nodes\"}"], "1");
  EXPECT_EQ(s["meshprobe_aggregator_kube_watch_restarts_total{kind=\"nodes\"}"], "4");
  EXPECT_EQ(s["meshprobe_aggregator_kube_errors_total{kind=\"pods\"}"], "5");
  EXPECT_EQ(s["meshprobe_aggregator_kube_errors_total{kind=\"nodes\"}"], "0");
  EXPECT_EQ(s["meshprobe_aggregator_kube_events_total{kind=\"pods\"}"], "30");
  EXPECT_EQ(s["meshprobe_aggregator_kube_objects{kind=\"nodes\"}"], "2");
  EXPECT_EQ(s["meshprobe_aggregator_kube_objects{kind=\"namespaces\"}"], "1");
  EXPECT_EQ(s["meshprobe_aggregator_kube_objects{kind=\"pods\"}"], "3");
  // The header's budget: 1 + 5 state series + 6 families × 3 kinds.
  EXPECT_EQ(countPrefix(s, "meshprobe_aggregator_kube_"), 1u + 5u + 6u * 3u);
  EXPECT_EQ(s.size(), series);
  EXPECT_THAT(text, HasSubstr("# TYPE meshprobe_aggregator_kube_errors_total counter\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE meshprobe_aggregator_kube_objects gauge\n"));
  std::string lint;
  if (int rc = promtoolCheck(text, &lint); rc != -1) {
    EXPECT_EQ(rc, 0) << lint << "\n" << text;
  }

  view_.setStatus(kube::ApiState::kSynced, "");
  s = parseSeries(renderAggregatorMetrics(sources()));
  EXPECT_EQ(s["meshprobe_aggregator_kube_api_up"], "1");
  EXPECT_EQ(s["meshprobe_aggregator_kube_state{state=\"synced\"}"], "1");
  EXPECT_EQ(s["meshprobe_aggregator_kube_state{state=\"forbidden\"}"], "0");
}

TEST_F(KubeStatusTest, WithoutCountersTheyReadZero) {
  view_.set(someObjects(kube::ApiState::kSynced, ""));
  auto s = parseSeries(renderAggregatorMetrics(sources(/*with_counters=*/false)));
  EXPECT_EQ(s["meshprobe_aggregator_kube_lists_total{kind=\"nodes\"}"], "0");
  EXPECT_EQ(s["meshprobe_aggregator_kube_errors_total{kind=\"pods\"}"], "0");
  EXPECT_EQ(s["meshprobe_aggregator_kube_objects{kind=\"pods\"}"], "3");
  EXPECT_EQ(s["meshprobe_aggregator_kube_api_up"], "1");
}

TEST_F(KubeStatusTest, NodeConditionAndEventCountersWhenTheReporterRuns) {
  view_.set(someObjects(kube::ApiState::kSynced, ""));
  auto s = parseSeries(renderAggregatorMetrics(sources()));
  EXPECT_EQ(countPrefix(s, "meshprobe_aggregator_kube_node_"), 0u);  // --node-conditions off
  AggregatorMetricsSources with = sources();
  with.node_status_counters = [] {
    kube::NodeStatusCounters c;
    c.condition_writes = 7;
    c.events_created = 3;
    c.events_aggregated = 2;
    c.events_throttled = 1;
    c.errors_forbidden = 4;
    c.errors_other = 5;
    return c;
  };
  s = parseSeries(renderAggregatorMetrics(with));
  EXPECT_EQ(s["meshprobe_aggregator_kube_node_condition_writes_total"], "7");
  EXPECT_EQ(s["meshprobe_aggregator_kube_node_events_total{result=\"created\"}"], "3");
  EXPECT_EQ(s["meshprobe_aggregator_kube_node_events_total{result=\"aggregated\"}"], "2");
  EXPECT_EQ(s["meshprobe_aggregator_kube_node_events_total{result=\"throttled\"}"], "1");
  EXPECT_EQ(s["meshprobe_aggregator_kube_write_errors_total{reason=\"forbidden\"}"], "4");
  EXPECT_EQ(s["meshprobe_aggregator_kube_write_errors_total{reason=\"other\"}"], "5");
}

TEST_F(KubeStatusTest, NoKubeSeriesWithoutTheApi) {
  auto s = parseSeries(renderAggregatorMetrics(AggregatorMetricsSources{state_, engine_, nullptr, nullptr}));
  EXPECT_EQ(countPrefix(s, "meshprobe_aggregator_kube_"), 0u);
  EXPECT_EQ(s["meshprobe_aggregator_nodes"], "0");  // the rest is there
}

TEST(KubeStatusLineTest, OneLinePerState) {
  EXPECT_EQ(kubeStatusLine({kube::ApiState::kSynced, ""}), "Kubernetes API synced");
  EXPECT_EQ(kubeStatusLine({kube::ApiState::kConnecting, "waiting for the first list"}),
            "Kubernetes API connecting: waiting for the first list");
  EXPECT_EQ(kubeStatusLine({kube::ApiState::kUnreachable, "list nodes: connect: Connection refused"}),
            "Kubernetes API unreachable: list nodes: connect: Connection refused");
  EXPECT_EQ(kubeStatusLine({kube::ApiState::kForbidden, "watch pods: forbidden: no\nRBAC"}),
            "Kubernetes API forbidden: watch pods: forbidden: no RBAC");
  EXPECT_EQ(kubeStatusLine({kube::ApiState::kOff, ""}), "Kubernetes API not used");
}

// The API never decides readiness: only the gRPC server does; the API adds its line.
TEST_F(KubeStatusTest, ReadyzSaysTheApiStateButKeepsItsStatus) {
  bool ready = true;
  AggregatorHttp http(sources(), [&] { return ready; });
  view_.set(someObjects(kube::ApiState::kUnreachable, "list pods: connect: Connection refused"));
  auto r = http.handle(get("/readyz"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "ready\nKubernetes API unreachable: list pods: connect: Connection refused\n");
  view_.setStatus(kube::ApiState::kForbidden, "watch nodes: forbidden: nodes is forbidden");
  r = http.handle(get("/readyz"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "ready\nKubernetes API forbidden: watch nodes: forbidden: nodes is forbidden\n");
  view_.setStatus(kube::ApiState::kSynced, "");
  EXPECT_EQ(http.handle(get("/readyz")).body, "ready\nKubernetes API synced\n");
  ready = false;
  r = http.handle(get("/readyz"));
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body, "not ready: the gRPC server is not listening\nKubernetes API synced\n");

  AggregatorHttp without(AggregatorMetricsSources{state_, engine_, nullptr, nullptr}, [] { return true; });
  EXPECT_EQ(without.handle(get("/readyz")).body, "ready\n");
}

// The server logs each change of the API's state once: warn on unreachable/forbidden, info
// on synced. Polls the captured log with a deadline (the diagnosis loop runs every 10 ms).
TEST(KubeStatusServerTest, LogsStateChangesOnce) {
  auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(256);
  auto previous = spdlog::default_logger();
  auto logger = std::make_shared<spdlog::logger>("kube-status-test", sink);
  logger->set_level(spdlog::level::info);
  logger->set_pattern("%l %v");
  spdlog::set_default_logger(logger);
  struct Restore {
    std::shared_ptr<spdlog::logger> previous;
    ~Restore() { spdlog::set_default_logger(previous); }
  } restore{previous};

  StubKubeView view;
  view.setStatus(kube::ApiState::kConnecting, "waiting for the first list");
  FakeClock clock;
  ServerOptions options;
  options.grpc_listen = "127.0.0.1:0";
  options.kube = &view;
  options.diagnosis_interval = std::chrono::milliseconds(10);
  AggregatorServer server(clock, options);
  ASSERT_TRUE(server.start().ok());

  const auto count = [&](const std::string& line) {
    size_t n = 0;
    for (const auto& l : sink->last_formatted()) n += l.find(line) != std::string::npos ? 1 : 0;
    return n;
  };
  const auto waitFor = [&](const std::string& line) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (count(line) == 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));  // polling, bounded by the deadline
    }
    return count(line);
  };

  view.setStatus(kube::ApiState::kUnreachable, "list nodes: connect: Connection refused");
  EXPECT_EQ(waitFor("warning Kubernetes API unreachable: list nodes: connect: Connection refused"), 1u);
  view.setStatus(kube::ApiState::kSynced, "");
  EXPECT_EQ(waitFor("info Kubernetes API synced"), 1u);
  view.setStatus(kube::ApiState::kForbidden, "watch pods: forbidden: pods is forbidden");
  EXPECT_EQ(waitFor("warning Kubernetes API forbidden: watch pods: forbidden: pods is forbidden"), 1u);
  server.shutdown();
  // Each state was logged once, however many passes saw it; the initial connecting is not.
  EXPECT_EQ(count("Kubernetes API unreachable"), 1u);
  EXPECT_EQ(count("Kubernetes API synced"), 1u);
  EXPECT_EQ(count("Kubernetes API connecting"), 0u);
}

}  // namespace
}  // namespace meshprobe::aggregator
