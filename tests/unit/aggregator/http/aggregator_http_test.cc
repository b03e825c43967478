#include "aggregator/http/aggregator_http.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>

#include "aggregator/server.h"
#include "aggregator/web/matrix_page_html.h"
#include "common/version.h"
#include "tests/unit/aggregator/test_util.h"

namespace meshprobe::aggregator {
namespace {

namespace v1 = meshprobe::v1;
using std::chrono::seconds;
using ::testing::HasSubstr;
using testing::makeCheck;
using testing::makeHello;
using testing::makeProbe;
using ::testing::Not;

// Series of a rendered exposition: every non-comment line, keyed by "name{labels}".
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

int promtool(const std::string& text, std::string* output) {
  const char* bin = "/usr/bin/promtool";
  if (access(bin, X_OK) != 0) return -1;
  char path[] = "/tmp/mp-agg-metrics-XXXXXX";
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

std::string name(int i) {
  char buf[16];
  snprintf(buf, sizeof buf, "node%04d", i);
  return buf;
}

class AggregatorMetricsTest : public ::testing::Test {
 protected:
  AggregatorMetricsTest() : state_(clock_, options()), engine_(clock_, state_) {}

  static ClusterOptions options() {
    ClusterOptions o;
    o.stale_after = seconds(10);
    o.forget_after = seconds(60);
    return o;
  }

  // n nodes; every node probes every other on UNDERLAY and OVERLAY; `broken(src, dst)`
  // pairs lose every OVERLAY probe.
  template <typename Broken>
  void feed(int n, Broken broken, uint64_t seq = 1) {
    for (int i = 1; i <= n; ++i) state_.applyHello(makeHello(name(i), i % 250 + 1), seq == 1);
    for (int i = 1; i <= n; ++i) {
      v1::Report r;
      r.set_sequence(seq);
      r.mutable_probes()->Reserve(2 * (n - 1));
      for (int j = 1; j <= n; ++j) {
        if (i == j) continue;
        auto* u = r.add_probes();
        u->set_dst(name(j));
        u->set_layer(v1::UNDERLAY);
        u->set_sent(10);
        u->set_received(10);
        auto* o = r.add_probes();
        o->set_dst(name(j));
        o->set_layer(v1::OVERLAY);
        o->set_sent(10);
        const bool b = broken(i, j);
        o->set_received(b ? 0 : 10);
        o->set_loss(b ? 1.0 : 0.0);
        if (b) o->set_consecutive_failures(5);
      }
      *r.add_checks() = makeCheck("istiod", v1::CheckResult::OK);
      ASSERT_EQ(state_.applyReport(name(i), r), ReportOutcome::kAccepted);
    }
  }

  std::string render(size_t* series = nullptr) {
    return renderAggregatorMetrics(AggregatorMetricsSources{state_, engine_, nullptr, nullptr}, series);
  }

  FakeClock clock_;
  ClusterState state_;
  DiagnosisEngine engine_;
};

TEST_F(AggregatorMetricsTest, SmallClusterSeries) {
  // node0003's overlay row and column FAIL.
  feed(4, [](int s, int d) { return s == 3 || d == 3; });
  const std::string text = render();
  auto s = parseSeries(text);
  for (int i = 1; i <= 4; ++i) EXPECT_EQ(s["meshprobe_node_up{node=\"" + name(i) + "\"}"], "1");
  EXPECT_EQ(s["meshprobe_node_reachable_peers{node=\"node0001\",layer=\"UNDERLAY\"}"], "3");
  EXPECT_EQ(s["meshprobe_node_reachable_peers{node=\"node0001\",layer=\"OVERLAY\"}"], "2");
  EXPECT_EQ(s["meshprobe_node_reachable_peers{node=\"node0003\",layer=\"OVERLAY\"}"], "0");
  EXPECT_EQ(s["meshprobe_broken_pairs{layer=\"OVERLAY\"}"], "6");
  EXPECT_EQ(s["meshprobe_broken_pairs{layer=\"UNDERLAY\"}"], "0");
  EXPECT_EQ(s["meshprobe_broken_pairs{layer=\"ISTIOD\"}"], "0");
  EXPECT_EQ(countPrefix(s, "meshprobe_pair_broken{"), 6u);
  EXPECT_EQ(s["meshprobe_pair_broken{src=\"node0003\",dst=\"node0001\",layer=\"OVERLAY\"}"], "1");
  EXPECT_EQ(s["meshprobe_pair_broken{src=\"node0002\",dst=\"node0003\",layer=\"OVERLAY\"}"], "1");
  EXPECT_EQ(s.count("meshprobe_pair_broken{src=\"node0001\",dst=\"node0002\",layer=\"OVERLAY\"}"), 0u);
  EXPECT_EQ(s["meshprobe_aggregator_nodes"], "4");
  EXPECT_EQ(s["meshprobe_aggregator_connected_agents"], "0");
  EXPECT_EQ(s["meshprobe_aggregator_ingest_errors_total{reason=\"first_not_hello\"}"], "0");
  EXPECT_EQ(s["meshprobe_aggregator_membership_messages_total{kind=\"full\"}"], "0");
  EXPECT_EQ(s["meshprobe_aggregator_membership_bytes_total{kind=\"delta\"}"], "0");
  EXPECT_EQ(s["meshprobe_aggregator_query_duration_seconds_count{method=\"GetMatrix\"}"], "0");
  EXPECT_EQ(s.count("meshprobe_build_info{version=\"" + std::string(kVersion) + "\"}"), 1u);

  std::string out;
  int rc = promtool(text, &out);
  if (rc != -1) {
    EXPECT_EQ(rc, 0) << out << "\n" << text;
  }
}

TEST_F(AggregatorMetricsTest, DiagnosisPassesByKind) {
  feed(3, [](int, int) { return false; });
  const uint64_t rules0 = engine_.rulePasses(), reused0 = engine_.skippedPasses();
  engine_.evaluate();
  engine_.evaluate();  // nothing changed: reused
  ASSERT_EQ(engine_.rulePasses() + engine_.skippedPasses(), rules0 + reused0 + 2);
  ASSERT_GE(engine_.skippedPasses(), reused0 + 1);
  auto s = parseSeries(render());
  EXPECT_EQ(s["meshprobe_aggregator_diagnosis_passes_total{kind=\"rules\"}"], std::to_string(engine_.rulePasses()));
  EXPECT_EQ(s["meshprobe_aggregator_diagnosis_passes_total{kind=\"reused\"}"],
            std::to_string(engine_.skippedPasses()));
  // Only the passes that ran the rules are timed.
  EXPECT_EQ(s["meshprobe_aggregator_diagnosis_pass_duration_seconds_count"], std::to_string(engine_.rulePasses()));
  EXPECT_EQ(s["meshprobe_aggregator_message_handling_seconds_count"], "0");
}

TEST_F(AggregatorMetricsTest, SummaryAgreesWithTheMatrix) {
  feed(5, [](int s, int d) { return (s + d) % 3 == 0; });
  // node0005 goes silent: its cells turn UNKNOWN; then a half-reporting node joins.
  clock_.advance(seconds(5));
  for (int i = 1; i <= 4; ++i) {
    v1::Report r;
    r.set_sequence(2);
    for (int j = 1; j <= 5; ++j) {
      if (i != j) *r.add_probes() = makeProbe(name(j), v1::OVERLAY, 10, (i * j) % 4 == 0 ? 0 : 10);
    }
    *r.add_probes() = makeProbe(std::string(kIstiodDst), v1::ISTIOD, 10, i == 2 ? 0 : 10);
    ASSERT_EQ(state_.applyReport(name(i), r), ReportOutcome::kAccepted);
  }
  clock_.advance(seconds(6));
  state_.applyHello(makeHello(name(6), 6), true);
  for (v1::Layer layer : {v1::UNDERLAY, v1::OVERLAY, v1::ISTIOD}) {
    SCOPED_TRACE(v1::Layer_Name(layer));
    auto m = state_.matrix(layer);
    auto sum = state_.matrixSummary(layer);
    ASSERT_TRUE(m.ok() && sum.ok());
    std::vector<std::string> nodes(m->nodes().begin(), m->nodes().end());
    EXPECT_EQ(sum->nodes, nodes);
    std::map<std::string, uint32_t> reachable;
    std::vector<std::pair<std::string, std::string>> failed;
    for (const auto& c : m->cells()) {
      if (c.state() == v1::Cell::OK || c.state() == v1::Cell::DEGRADED) ++reachable[c.src()];
      if (c.state() == v1::Cell::FAIL) failed.emplace_back(c.src(), c.dst());
    }
    for (size_t i = 0; i < sum->nodes.size(); ++i)
      EXPECT_EQ(sum->reachable[i], reachable[sum->nodes[i]]) << sum->nodes[i];
    EXPECT_EQ(sum->failed, failed);
  }
  EXPECT_FALSE(state_.matrixSummary(v1::AMBIENT).ok());
}

TEST_F(AggregatorMetricsTest, DepartedAndStaleNodes) {
  feed(3, [](int, int) { return false; });
  clock_.advance(seconds(11));  // everyone silent past --stale-after
  // node0001 and node0002 report again; node0003 stays silent.
  for (int i = 1; i <= 2; ++i) {
    v1::Report r;
    r.set_sequence(2);
    ASSERT_EQ(state_.applyReport(name(i), r), ReportOutcome::kAccepted);
  }
  auto s = parseSeries(render());
  EXPECT_EQ(s["meshprobe_node_up{node=\"node0003\"}"], "0");
  EXPECT_EQ(s["meshprobe_node_up{node=\"node0001\"}"], "1");
  clock_.advance(seconds(55));  // node0003 silent for 66 s > forget_after
  for (int i = 1; i <= 2; ++i) {
    v1::Report r;
    r.set_sequence(3);
    state_.applyReport(name(i), r);
  }
  state_.sweep();
  const std::string text = render();
  EXPECT_THAT(text, Not(HasSubstr("node0003")));
  EXPECT_THAT(text, HasSubstr("meshprobe_node_up{node=\"node0001\"} 1\n"));
}

TEST_F(AggregatorMetricsTest, ActiveFindingsAreSeries) {
  feed(4, [](int s, int d) { return s == 3 || d == 3; });
  engine_.evaluate();
  clock_.advance(seconds(2));
  feed(
      4, [](int s, int d) { return s == 3 || d == 3; }, 2);
  engine_.evaluate();
  const auto active = engine_.active();
  ASSERT_FALSE(active.empty()) << "the engine blames nobody for node0003's partition";
  auto s = parseSeries(render());
  std::set<std::string> want;
  for (const auto& f : active) {
    const std::string sev = v1::Severity_Name(f.severity());
    if (f.nodes().empty())
      want.insert("meshprobe_finding{code=\"" + f.code() + "\",node=\"\",severity=\"" + sev + "\"}");
    for (const auto& n : f.nodes())
      want.insert("meshprobe_finding{code=\"" + f.code() + "\",node=\"" + n + "\",severity=\"" + sev + "\"}");
  }
  std::set<std::string> got;
  for (const auto& [k, v] : s) {
    if (k.rfind("meshprobe_finding{", 0) == 0) {
      got.insert(k);
      EXPECT_EQ(v, "1");
    }
  }
  EXPECT_EQ(got, want);
  EXPECT_TRUE(got.count("meshprobe_finding{code=\"OVERLAY_PARTITION\",node=\"node0003\",severity=\"CRITICAL\"}"))
      << ::testing::PrintToString(got);
}

// The contract's series budget: at most 20·N + 100 series for N nodes with no
// broken pairs, and a broken pair costs exactly one meshprobe_pair_broken series.
TEST_F(AggregatorMetricsTest, CardinalityAtOneThousandNodes) {
  constexpr int kN = 1000;
  feed(kN, [](int, int) { return false; });
  size_t healthy = 0;
  render();  // warm up
  const auto t0 = std::chrono::steady_clock::now();
  const std::string text = render(&healthy);
  const auto took = std::chrono::steady_clock::now() - t0;
  std::cout << "/metrics at " << kN << " nodes: " << healthy << " series, " << text.size() << " bytes, rendered in "
            << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms" << std::endl;
  EXPECT_LE(healthy, 20u * kN + 100u);
  auto s = parseSeries(text);
  EXPECT_EQ(s.size(), healthy);
  EXPECT_EQ(countPrefix(s, "meshprobe_pair_broken{"), 0u);
  EXPECT_EQ(s["meshprobe_node_reachable_peers{node=\"node0500\",layer=\"OVERLAY\"}"], std::to_string(kN - 1));

  // Exactly 10 broken overlay pairs.
  std::set<std::pair<int, int>> broken;
  for (int k = 0; k < 10; ++k) broken.insert({1 + k * 97, 2 + k * 89});
  clock_.advance(seconds(1));
  for (const auto& [a, b] : broken) {
    v1::Report r;
    r.set_sequence(2);
    for (int j = 1; j <= kN; ++j) {
      if (j == a) continue;
      *r.add_probes() = makeProbe(name(j), v1::UNDERLAY, 10, 10);
      *r.add_probes() = makeProbe(name(j), v1::OVERLAY, 10, j == b ? 0 : 10);
    }
    ASSERT_EQ(state_.applyReport(name(a), r), ReportOutcome::kAccepted);
  }
  size_t with_broken = 0;
  auto s2 = parseSeries(render(&with_broken));
  EXPECT_EQ(countPrefix(s2, "meshprobe_pair_broken{"), 10u);
  for (const auto& [a, b] : broken) {
    EXPECT_EQ(s2["meshprobe_pair_broken{src=\"" + name(a) + "\",dst=\"" + name(b) + "\",layer=\"OVERLAY\"}"], "1");
  }
  EXPECT_EQ(s2["meshprobe_broken_pairs{layer=\"OVERLAY\"}"], "10");
  EXPECT_EQ(with_broken, healthy + 10);  // no findings yet: the engine has not evaluated
}

// ---- routes, and the HTTP server inside AggregatorServer ----

HttpRequest get(const std::string& path) {
  HttpRequest r;
  r.method = "GET";
  r.target = path;
  r.path = path;
  return r;
}

TEST_F(AggregatorMetricsTest, ReadyzWithLeaderElectionIsReadyOnlyOnTheLeader) {
  bool leading = false;
  std::string holder;
  AggregatorMetricsSources sources{state_, engine_, nullptr, nullptr};
  sources.is_leader = [&] { return leading; };
  sources.leader = [&] { return holder; };
  bool listening = true;
  AggregatorHttp http(sources, [&] { return listening; });
  auto r = http.handle(get("/readyz"));
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body, "follower: no leader yet\n");
  holder = "aggregator-0_x1y2";
  r = http.handle(get("/readyz"));
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body, "follower: the leader is aggregator-0_x1y2\n");
  EXPECT_EQ(http.handle(get("/healthz")).status, 200);  // a follower is alive, only not Ready
  leading = true;
  EXPECT_EQ(http.handle(get("/readyz")).status, 200);
  listening = false;  // the leader that stops listening is not Ready either
  EXPECT_EQ(http.handle(get("/readyz")).status, 503);
}

TEST_F(AggregatorMetricsTest, LeaderGaugeOnlyWithLeaderElection) {
  AggregatorMetricsSources sources{state_, engine_, nullptr, nullptr};
  EXPECT_THAT(renderAggregatorMetrics(sources), Not(HasSubstr("meshprobe_aggregator_leader")));
  bool leading = false;
  sources.is_leader = [&] { return leading; };
  EXPECT_THAT(renderAggregatorMetrics(sources), HasSubstr("\nmeshprobe_aggregator_leader 0\n"));
  leading = true;
  EXPECT_THAT(renderAggregatorMetrics(sources), HasSubstr("\nmeshprobe_aggregator_leader 1\n"));
}

TEST_F(AggregatorMetricsTest, Routes) {
  bool ready = false;
  AggregatorHttp http(AggregatorMetricsSources{state_, engine_, nullptr, nullptr}, [&] { return ready; });
  EXPECT_EQ(http.handle(get("/healthz")).status, 200);
  EXPECT_EQ(http.handle(get("/readyz")).status, 503);
  ready = true;
  EXPECT_EQ(http.handle(get("/readyz")).status, 200);
  auto page = http.handle(get("/"));
  EXPECT_EQ(page.status, 200);
  EXPECT_EQ(page.content_type, "text/html; charset=utf-8");
  EXPECT_EQ(page.body, std::string(web::kMatrixPageHtml));
  auto api = http.handle(get("/api/v1/state"));
  EXPECT_EQ(api.status, 200);
  EXPECT_EQ(api.content_type, "application/json");
  EXPECT_TRUE(nlohmann::json::accept(api.body)) << api.body;
  auto metrics = http.handle(get("/metrics"));
  EXPECT_EQ(metrics.content_type, kPrometheusContentType);
  EXPECT_EQ(http.handle(get("/nope")).status, 404);
}

HttpRequest get(const std::string& path, std::map<std::string, std::string> query) {
  HttpRequest r = get(path);
  r.query = std::move(query);
  return r;
}

// The page's JSON routes over a 70-node cluster (above the 64-node limit of cells=auto)
// whose node0003 fails on the overlay.
TEST_F(AggregatorMetricsTest, PageRoutes) {
  feed(70, [](int s, int d) { return s == 3 || d == 3; });
  AggregatorHttp http(AggregatorMetricsSources{state_, engine_, nullptr, nullptr}, [] { return true; });
  auto parse = [](const HttpResponse& r) {
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.content_type, "application/json");
    return nlohmann::json::parse(r.body, nullptr, false);
  };

  // Default and cells=auto at 70 nodes: only the broken cells.
  for (const auto& q :
       std::vector<std::map<std::string, std::string>>{{}, {{"cells", "auto"}}, {{"cells", "broken"}}}) {
    auto j = parse(http.handle(get("/api/v1/state", q)));
    ASSERT_FALSE(j.is_discarded());
    EXPECT_EQ(j["version"], 2);
    EXPECT_EQ(j["nodes"].size(), 70u);
    EXPECT_EQ(j["nodes"][2]["failing"]["OVERLAY"], 69);
    EXPECT_EQ(j["layers"][1]["cellsIncluded"], "broken");
    EXPECT_EQ(j["layers"][1]["cells"].size(), 2u * 69);
    EXPECT_EQ(j["layers"][0]["cells"].size(), 0u);
  }
  auto all = parse(http.handle(get("/api/v1/state", {{"cells", "all"}})));
  EXPECT_EQ(all["layers"][1]["cellsIncluded"], "all");
  EXPECT_EQ(all["layers"][1]["cells"].size(), 70u * 69);
  EXPECT_EQ(all["layers"][1]["counts"]["FAIL"], 2 * 69);
  EXPECT_EQ(http.handle(get("/api/v1/state", {{"cells", "every"}})).status, 400);

  auto m = parse(http.handle(get("/api/v1/matrix", {{"layer", "OVERLAY"}, {"format", "compact"}})));
  ASSERT_EQ(m["rows"].size(), 70u);
  EXPECT_EQ(m["rows"][0], "-OFO67");
  EXPECT_EQ(m["rows"][2], "F2-F67");
  EXPECT_EQ(m["counts"]["FAIL"], 2 * 69);
  EXPECT_EQ(http.handle(get("/api/v1/matrix", {{"layer", "AMBIENT"}})).status, 400);
  EXPECT_EQ(http.handle(get("/api/v1/matrix", {{"layer", "OVERLAY"}, {"format", "png"}})).status, 400);

  auto c = parse(http.handle(get("/api/v1/cell", {{"layer", "OVERLAY"}, {"src", name(1)}, {"dst", name(3)}})));
  EXPECT_EQ(c["state"], "FAIL");
  EXPECT_EQ(c["consecutiveFailures"], 5);
  auto ok = parse(http.handle(get("/api/v1/cell", {{"layer", "UNDERLAY"}, {"src", name(1)}, {"dst", name(2)}})));
  EXPECT_EQ(ok["state"], "OK");
  EXPECT_EQ(http.handle(get("/api/v1/cell", {{"layer", "OVERLAY"}, {"src", "nope"}, {"dst", name(2)}})).status, 404);
  EXPECT_EQ(http.handle(get("/api/v1/cell", {{"layer", "OVERLAY"}, {"src", name(1)}})).status, 400);
}

// cells=auto on a small cluster keeps the old shape: every cell, for the page's HTML tables.
TEST_F(AggregatorMetricsTest, SmallClusterStateHasEveryCell) {
  feed(4, [](int, int) { return false; });
  AggregatorHttp http(AggregatorMetricsSources{state_, engine_, nullptr, nullptr}, [] { return true; });
  auto j = nlohmann::json::parse(http.handle(get("/api/v1/state", {{"cells", "auto"}})).body);
  for (const auto& l : j["layers"]) {
    EXPECT_EQ(l["cellsIncluded"], "all") << l["layer"];
    EXPECT_EQ(l["cells"].size(), l["layer"] == "ISTIOD" ? 4u : 12u) << l["layer"];
  }
  EXPECT_EQ(nlohmann::json::parse(http.handle(get("/api/v1/state")).body)["layers"][1]["cells"].size(), 0u);
}

std::string httpGet(int port, const std::string& path) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    const std::string req = "GET " + path + " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    ::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
    const auto deadline = std::chrono::steady_clock::now() + seconds(5);
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 1000) <= 0) continue;
      char buf[8192];
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
  }
  ::close(fd);
  return out;
}

TEST(AggregatorServerHttpTest, ServesMetricsAndHealthNextToGrpc) {
  FakeClock clock;
  ServerOptions options;
  options.grpc_listen = "127.0.0.1:0";
  options.http_listen = "127.0.0.1:0";
  AggregatorServer server(clock, options);
  auto port = server.start();
  ASSERT_TRUE(port.ok()) << port.error().message;
  ASSERT_NE(server.httpPort(), 0);
  EXPECT_TRUE(server.ready());
  EXPECT_EQ(httpGet(server.httpPort(), "/readyz").rfind("HTTP/1.1 200", 0), 0u);
  EXPECT_EQ(httpGet(server.httpPort(), "/healthz").rfind("HTTP/1.1 200", 0), 0u);

  // A Query call is timed; the histogram shows it.
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(*port), grpc::InsecureChannelCredentials());
  auto query = v1::Query::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + seconds(10));
  v1::ListNodesRequest req;
  v1::ListNodesResponse resp;
  ASSERT_TRUE(query->ListNodes(&ctx, req, &resp).ok());
  const std::string metrics = httpGet(server.httpPort(), "/metrics");
  EXPECT_EQ(metrics.rfind("HTTP/1.1 200", 0), 0u) << metrics;
  EXPECT_THAT(metrics, HasSubstr("meshprobe_aggregator_query_duration_seconds_count{method=\"ListNodes\"} 1\n"));
  EXPECT_THAT(metrics, HasSubstr("meshprobe_aggregator_query_duration_seconds_count{method=\"Diagnose\"} 0\n"));
  EXPECT_THAT(metrics, HasSubstr("Content-Type: text/plain; version=0.0.4"));

  server.shutdown();
  EXPECT_FALSE(server.ready());
  EXPECT_EQ(httpGet(server.httpPort(), "/healthz"), "");  // closed with the server
}

TEST(AggregatorServerHttpTest, HttpPortInUseFailsStart) {
  FakeClock clock;
  ServerOptions a;
  a.grpc_listen = "127.0.0.1:0";
  a.http_listen = "127.0.0.1:0";
  AggregatorServer first(clock, a);
  ASSERT_TRUE(first.start().ok());
  ServerOptions b = a;
  b.http_listen = "127.0.0.1:" + std::to_string(first.httpPort());
  AggregatorServer second(clock, b);
  auto r = second.start();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "cannot listen for HTTP on " + b.http_listen + ": Address already in use");
  EXPECT_FALSE(second.ready());
}

}  // namespace
}  // namespace meshprobe::aggregator
