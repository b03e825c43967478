// E2E tests of observability: the aggregator's and every agent's
// HTTP endpoints in the 4-node namespace mesh (mesh.h), `promtool check metrics` on every
// /metrics, a real Prometheus (Debian's /usr/bin/prometheus) in the control netns scraping
// them every second while a VXLAN fault is injected, and the metric names the monitoring
// manifests (manifests/monitoring/*.yaml|json) use, checked against live scrapes; and the
// agents' rotation metrics with a --probe-budget small enough that a 4-node mesh rotates.
//
// HTTP is fetched from inside the control netns (198.51.100.2) with bash's /dev/tcp, so
// nothing but the test's namespaces is ever contacted.

#include <dirent.h>

#include <cctype>
#include <fstream>
#include <regex>

#include "tests/e2e/mesh.h"

#ifndef MESHPROBE_SOURCE_DIR
#error "MESHPROBE_SOURCE_DIR must be defined by the build"
#endif

namespace meshprobe::e2e {
namespace {

constexpr uint16_t kAggregatorHttpPort = 9471;
constexpr uint16_t kAgentHttpPort = 9472;
constexpr uint16_t kPrometheusPort = 19090;  // inside the control netns: free by construction
constexpr const char* kPromtool = "/usr/bin/promtool";
constexpr const char* kPrometheus = "/usr/bin/prometheus";

struct HttpResult {
  int status = 0;  // 0: no response
  std::string headers;
  std::string body;
  std::string error;
  std::string describe(const std::string& what) const {
    return what + ": status " + std::to_string(status) + (error.empty() ? "" : " (" + error + ")") + "\n" + headers +
           "\n" + (body.size() > 2000 ? body.substr(0, 2000) + "..." : body);
  }
};

// One HTTP/1.1 request from inside `netns` (bash /dev/tcp; Connection: close).
HttpResult httpRequest(const std::string& netns, const std::string& host, uint16_t port, const std::string& target,
                       const std::string& method = "GET") {
  CmdOptions o;
  o.netns = netns;
  o.timeout = 10s;
  const std::string script =
      "exec 3<>/dev/tcp/$1/$2 || exit 7\n"
      "printf '%s %s HTTP/1.1\\r\\nHost: %s:%s\\r\\nConnection: close\\r\\nContent-Length: 0\\r\\n\\r\\n' "
      "\"$4\" \"$3\" \"$1\" \"$2\" >&3\n"
      "cat <&3\n";
  auto r = runCommand({"bash", "-c", script, "fetch", host, std::to_string(port), target, method}, o);
  HttpResult h;
  if (r.exit_code != 0) {
    h.error = r.describe();
    return h;
  }
  const auto end = r.out.find("\r\n\r\n");
  if (end == std::string::npos || r.out.rfind("HTTP/1.1 ", 0) != 0) {
    h.error = "not an HTTP response: " + r.out.substr(0, 200);
    return h;
  }
  h.status = std::atoi(r.out.c_str() + 9);
  h.headers = r.out.substr(0, end);
  h.body = r.out.substr(end + 4);
  return h;
}

// "" when promtool accepts `text`, else its complaint.
std::string promtoolMismatch(const std::string& text) {
  CmdOptions o;
  o.stdin_data = text;
  o.timeout = 20s;
  auto r = runCommand({kPromtool, "check", "metrics"}, o);
  return r.exit_code == 0 ? "" : r.describe() + "\n" + r.out;
}

std::string percentEncode(const std::string& s) {
  std::string out;
  const char* hex = "0123456789ABCDEF";
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '_' || c == '-' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

// Family names declared by "# TYPE name type" lines, with their type.
std::map<std::string, std::string> families(const std::string& exposition) {
  std::map<std::string, std::string> out;
  std::istringstream in(exposition);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("# TYPE ", 0) != 0) continue;
    std::istringstream l(line.substr(7));
    std::string name, type;
    l >> name >> type;
    out[name] = type;
  }
  return out;
}

std::string sampleValue(const std::string& exposition, const std::string& series) {
  std::istringstream in(exposition);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(series + " ", 0) == 0) return line.substr(series.size() + 1);
  }
  return "";
}

const std::vector<std::string> kCheckNames = {"vxlan_device", "vxlan_socket", "vxlan_fdb",          "firewall",
                                              "istiod",       "ztunnel",      "ambient_redirection"};

class ObservabilityTest : public MeshTest {
 protected:
  void SetUp() override {
    MeshTest::SetUp();
    if (IsSkipped()) return;
    netns_ = mesh_->control().name();
  }

  HttpResult aggregator(const std::string& target, const std::string& method = "GET") {
    return httpRequest(netns_, Cluster::controlIp(), kAggregatorHttpPort, target, method);
  }
  HttpResult agent(int n, const std::string& target) {
    return httpRequest(netns_, Cluster::nodeIp(n), kAgentHttpPort, target);
  }

  // Every agent's /readyz answers 200 (responder bound, first check round done).
  ::testing::AssertionResult waitAgentsReady() {
    return eventually(
        "every agent's /readyz 200",
        [&] {
          std::string out;
          for (int n = 1; n <= mesh_->nodes(); ++n) {
            auto r = agent(n, "/readyz");
            if (r.status != 200) out += r.describe(nodeName(n) + " /readyz") + "\n";
          }
          return out;
        },
        30s);
  }

  std::string netns_;
};

// ======================= (a) promtool on every /metrics, (b) health endpoints =======================

TEST_F(ObservabilityTest, EveryMetricsEndpointPassesPromtoolAndHealthEndpointsBehave) {
  if (access(kPromtool, X_OK) != 0) GTEST_SKIP() << kPromtool << " is not installed (scripts/setup.sh)";
  // The aggregator is ready as soon as gRPC listens (the mesh waited for that).
  auto ready = aggregator("/readyz");
  EXPECT_EQ(ready.status, 200) << ready.describe("aggregator /readyz");
  auto healthz = aggregator("/healthz");
  EXPECT_EQ(healthz.status, 200) << healthz.describe("aggregator /healthz");
  ASSERT_TRUE(waitAgentsReady());
  ASSERT_TRUE(waitHealthy());

  // Aggregator: /metrics with every node up, /, /api/v1/state, 404, 405.
  auto m = aggregator("/metrics");
  ASSERT_EQ(m.status, 200) << m.describe("aggregator /metrics");
  EXPECT_NE(m.headers.find("Content-Type: text/plain; version=0.0.4"), std::string::npos) << m.headers;
  EXPECT_EQ(promtoolMismatch(m.body), "") << m.body;
  for (int n = 1; n <= mesh_->nodes(); ++n) {
    EXPECT_EQ(sampleValue(m.body, "meshprobe_node_up{node=\"" + nodeName(n) + "\"}"), "1") << m.body;
    EXPECT_EQ(sampleValue(m.body, "meshprobe_node_reachable_peers{node=\"" + nodeName(n) + "\",layer=\"OVERLAY\"}"),
              std::to_string(mesh_->nodes() - 1))
        << m.body;
  }
  EXPECT_EQ(sampleValue(m.body, "meshprobe_broken_pairs{layer=\"OVERLAY\"}"), "0") << m.body;
  EXPECT_EQ(sampleValue(m.body, "meshprobe_aggregator_connected_agents"), std::to_string(mesh_->nodes())) << m.body;
  EXPECT_EQ(m.body.find("meshprobe_pair_broken{"), std::string::npos) << m.body;
  // Delta reports: once a stream has its peer list, the agent writes only what changed (in a
  // healthy mesh, the findings) and the aggregator applies it. Polled: each agent's second
  // report after its peer list is the first delta.
  waitFor(
      [&] {
        const std::string v = sampleValue(aggregator("/metrics").body, "meshprobe_aggregator_delta_reports_received_total");
        return !v.empty() && std::stod(v) >= mesh_->nodes();
      },
      std::chrono::seconds(10), "a delta report from every agent");

  auto page = aggregator("/");
  EXPECT_EQ(page.status, 200) << page.describe("/");
  EXPECT_NE(page.headers.find("Content-Type: text/html"), std::string::npos) << page.headers;
  auto state = aggregator("/api/v1/state");
  EXPECT_EQ(state.status, 200) << state.describe("/api/v1/state");
  EXPECT_TRUE(nlohmann::json::accept(state.body)) << state.body;
  EXPECT_EQ(aggregator("/no/such/page").status, 404);
  auto post = aggregator("/metrics", "POST");
  EXPECT_EQ(post.status, 405) << post.describe("POST /metrics");
  auto head = aggregator("/healthz", "HEAD");
  EXPECT_EQ(head.status, 200) << head.describe("HEAD /healthz");
  EXPECT_EQ(head.body, "");

  // Agents: /metrics, /healthz, /readyz, /checks.
  for (int n = 1; n <= mesh_->nodes(); ++n) {
    SCOPED_TRACE(nodeName(n));
    auto am = agent(n, "/metrics");
    ASSERT_EQ(am.status, 200) << am.describe("agent /metrics");
    EXPECT_EQ(promtoolMismatch(am.body), "") << am.body;
    for (const char* kind : {"whole", "delta"}) {
      const std::string v = sampleValue(am.body, std::string("meshprobe_stream_reports_total{kind=\"") + kind + "\"}");
      EXPECT_TRUE(!v.empty() && std::stod(v) > 0) << kind << " reports: '" << v << "'\n" << am.body;
    }
    for (const auto& c : kCheckNames) {
      EXPECT_NE(am.body.find("meshprobe_check_ok{check=\"" + c + "\"}"), std::string::npos) << c << "\n" << am.body;
    }
    const std::string rtt_count = sampleValue(am.body, "meshprobe_probe_rtt_seconds_count{layer=\"OVERLAY\"}");
    EXPECT_GT(std::atol(rtt_count.c_str()), 0) << am.body;
    EXPECT_EQ(sampleValue(am.body, "meshprobe_stream_connected"), "1") << am.body;
    EXPECT_EQ(sampleValue(am.body, "meshprobe_probe_targets{layer=\"OVERLAY\"}"), std::to_string(mesh_->nodes() - 1))
        << am.body;
    EXPECT_EQ(agent(n, "/healthz").status, 200);

    auto checks = agent(n, "/checks");
    ASSERT_EQ(checks.status, 200) << checks.describe("agent /checks");
    EXPECT_NE(checks.headers.find("Content-Type: application/json"), std::string::npos) << checks.headers;
    auto j = nlohmann::json::parse(checks.body, nullptr, false);
    ASSERT_TRUE(j.is_object()) << checks.body;
    // The --once --output json shape: {"node", "checks": [{"name","status","summary","details"}], "findings"}.
    EXPECT_EQ(j.value("node", ""), nodeName(n));
    ASSERT_TRUE(j.contains("checks") && j["checks"].is_array()) << checks.body;
    ASSERT_TRUE(j.contains("findings") && j["findings"].is_array()) << checks.body;
    std::vector<std::string> names;
    for (const auto& c : j["checks"]) {
      names.push_back(c.value("name", ""));
      EXPECT_TRUE(c.contains("status") && c.contains("summary") && c.contains("details")) << c.dump();
    }
    EXPECT_EQ(names, kCheckNames) << checks.body;
  }

  // /checks has exactly the keys of `meshprobe-agent --once --output json` on the same node.
  AgentOptions once;
  once.timeout = 60s;
  auto run = runAgentOnce(
      mesh_->cluster().nodeNs(2),
      {"--node-name", nodeName(2), "--node-ip", Cluster::nodeIp(2), "--vxlan-port", "4789", "--istiod",
       Cluster::podIp(mesh_->istiodNode(), 10) + ":15012", "--istiod-ca", testCerts().ca, "--host-root", mesh_->hostRoot(2),
       "--netns-dir", mesh_->netnsDir(2), "--ztunnel-socket", mesh_->ztunnelSocket(2), "--output", "json"},
      once);
  ASSERT_TRUE(run.json.is_object()) << run.describe();
  auto live = nlohmann::json::parse(agent(2, "/checks").body, nullptr, false);
  ASSERT_TRUE(live.is_object());
  std::set<std::string> once_keys, live_keys;
  for (const auto& [k, _] : run.json.items()) once_keys.insert(k);
  for (const auto& [k, _] : live.items()) live_keys.insert(k);
  EXPECT_EQ(live_keys, once_keys);
  ASSERT_EQ(live["checks"].size(), run.json["checks"].size());
  for (size_t i = 0; i < live["checks"].size(); ++i) {
    std::set<std::string> a, b;
    for (const auto& [k, _] : live["checks"][i].items()) a.insert(k);
    for (const auto& [k, _] : run.json["checks"][i].items()) b.insert(k);
    EXPECT_EQ(a, b) << live["checks"][i].dump() << "\nvs\n" << run.json["checks"][i].dump();
    EXPECT_EQ(live["checks"][i]["name"], run.json["checks"][i]["name"]);
  }
}

// ======================= (c) a real Prometheus sees a fault =======================

TEST_F(ObservabilityTest, PrometheusScrapesEveryTargetAndSeesNode3OverlayFault) {
  if (access(kPrometheus, X_OK) != 0) GTEST_SKIP() << kPrometheus << " is not installed (scripts/setup.sh)";
  TempDir dir("prometheus");
  std::string targets = "'" + Cluster::controlIp() + ":" + std::to_string(kAggregatorHttpPort) + "'";
  std::string agents;
  for (int n = 1; n <= mesh_->nodes(); ++n) {
    agents +=
        std::string(agents.empty() ? "" : ", ") + "'" + Cluster::nodeIp(n) + ":" + std::to_string(kAgentHttpPort) + "'";
  }
  writeFile(dir.sub("prometheus.yml"),
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n"
            "  - job_name: meshprobe-aggregator\n    static_configs:\n      - targets: [" +
                targets +
                "]\n"
                "  - job_name: meshprobe-agent\n    static_configs:\n      - targets: [" +
                agents + "]\n");
  dir.mkdir("data");
  const std::string listen = Cluster::controlIp() + ":" + std::to_string(kPrometheusPort);
  Process prometheus(netns_,
                     {kPrometheus, "--config.file=" + dir.sub("prometheus.yml"),
                      "--storage.tsdb.path=" + dir.sub("data"), "--web.listen-address=" + listen, "--log.level=warn"},
                     dir.sub("prometheus.log"));
  const pid_t pid = prometheus.pid();
  waitFor([pid] { return tcpListening(pid, kPrometheusPort); }, 60s, "prometheus listener", &prometheus);

  // Prometheus' instant query API: the result vector, or null with `error` set.
  auto query = [&](const std::string& promql, std::string* error) -> nlohmann::json {
    auto r = httpRequest(netns_, Cluster::controlIp(), kPrometheusPort, "/api/v1/query?query=" + percentEncode(promql));
    if (r.status != 200) {
      *error = r.describe("query " + promql);
      return nullptr;
    }
    auto j = nlohmann::json::parse(r.body, nullptr, false);
    if (!j.is_object() || j.value("status", "") != "success") {
      *error = "query " + promql + ": " + r.body;
      return nullptr;
    }
    return j["data"]["result"];
  };
  const auto diag = [&] { return "\n---- prometheus log ----\n" + prometheus.log(); };

  ASSERT_TRUE(waitHealthy());
  // Every target up, and meshprobe_node_up has a series for every node.
  ASSERT_TRUE(eventually(
      "Prometheus: up == 1 for all 5 targets and meshprobe_node_up for every node",
      [&] {
        std::string error;
        auto up = query("up == 1", &error);
        if (up.is_null()) return error;
        if (up.size() != static_cast<size_t>(mesh_->nodes() + 1)) return "up == 1: " + up.dump() + diag();
        auto nodes = query("meshprobe_node_up == 1", &error);
        if (nodes.is_null()) return error;
        std::set<std::string> seen;
        for (const auto& s : nodes) seen.insert(s["metric"].value("node", ""));
        for (int n = 1; n <= mesh_->nodes(); ++n) {
          if (!seen.count(nodeName(n))) return "meshprobe_node_up: no " + nodeName(n) + ": " + nodes.dump();
        }
        return std::string();
      },
      60s));

  mesh_->cluster().node(3).sh("iptables -A INPUT -p udp --dport 4789 -j DROP");
  const auto injected = SteadyClock::now();
  // node3's overlay row and column, and nothing else.
  std::set<std::pair<std::string, std::string>> want;
  for (int n = 1; n <= mesh_->nodes(); ++n) {
    if (n == 3) continue;
    want.insert({nodeName(3), nodeName(n)});
    want.insert({nodeName(n), nodeName(3)});
  }
  double seen = 0;
  EXPECT_TRUE(eventually(
      "Prometheus: meshprobe_pair_broken{layer=\"OVERLAY\"} is exactly node3's row and column",
      [&] {
        std::string error;
        auto broken = query("meshprobe_pair_broken{layer=\"OVERLAY\"}", &error);
        if (broken.is_null()) return error;
        std::set<std::pair<std::string, std::string>> got;
        for (const auto& s : broken) got.insert({s["metric"].value("src", ""), s["metric"].value("dst", "")});
        if (got != want) return "got " + broken.dump();
        auto underlay = query("meshprobe_pair_broken{layer=\"UNDERLAY\"}", &error);
        if (underlay.is_null()) return error;
        if (!underlay.empty()) return "UNDERLAY pairs broken too: " + underlay.dump();
        auto count = query("meshprobe_broken_pairs{layer=\"OVERLAY\"}", &error);
        if (count.is_null()) return error;
        if (count.size() != 1 || count[0]["value"][1] != std::to_string(want.size())) return "count " + count.dump();
        return std::string();
      },
      45s, &seen, injected));
  std::cout << "fault -> visible in Prometheus: " << seconds(seen) << std::endl;

  // Every node still has its meshprobe_node_up series (node3 is up: only VXLAN is dropped).
  std::string error;
  auto nodes = query("meshprobe_node_up", &error);
  ASSERT_FALSE(nodes.is_null()) << error;
  std::set<std::string> names;
  for (const auto& s : nodes) names.insert(s["metric"].value("node", ""));
  for (int n = 1; n <= mesh_->nodes(); ++n) EXPECT_TRUE(names.count(nodeName(n))) << nodes.dump();
  // The agents' RTT histograms are in Prometheus too.
  auto rtt = query("sum by (layer) (meshprobe_probe_rtt_seconds_count)", &error);
  ASSERT_FALSE(rtt.is_null()) << error;
  EXPECT_EQ(rtt.size(), 2u) << rtt.dump();

  mesh_->cluster().node(3).sh("iptables -D INPUT -p udp --dport 4789 -j DROP");
}

// ======================= (d) the monitoring manifests use exported names =======================

TEST_F(ObservabilityTest, EveryMetricTheMonitoringManifestsUseIsExported) {
  const std::string dir = std::string(MESHPROBE_SOURCE_DIR) + "/manifests/monitoring";
  std::vector<std::string> files;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      const std::string f = e->d_name;
      auto ends = [&](const std::string& s) {
        return f.size() > s.size() && f.compare(f.size() - s.size(), s.size(), s) == 0;
      };
      if (ends(".yaml") || ends(".json")) files.push_back(dir + "/" + f);
    }
    closedir(d);
  }
  if (files.empty()) GTEST_SKIP() << "no manifests/monitoring/*.yaml or *.json yet: nothing to check";

  // Every meshprobe_* name; recording-rule names (with ':') are not exported metrics.
  std::map<std::string, std::set<std::string>> used;  // name -> files
  const std::regex name_re("meshprobe_[A-Za-z0-9_:]+");
  for (const auto& f : files) {
    const std::string text = readFile(f);
    for (auto it = std::sregex_iterator(text.begin(), text.end(), name_re); it != std::sregex_iterator(); ++it) {
      const std::string name = it->str();
      if (name.find(':') != std::string::npos) continue;
      used[name].insert(f.substr(dir.size() + 1));
    }
  }
  ASSERT_FALSE(used.empty()) << "the monitoring manifests mention no meshprobe_* metric";

  ASSERT_TRUE(waitAgentsReady());
  ASSERT_TRUE(waitHealthy());
  std::map<std::string, std::string> exported;  // family -> type, over the aggregator and every agent
  auto add = [&](const HttpResult& r, const std::string& who) {
    ASSERT_EQ(r.status, 200) << r.describe(who + " /metrics");
    for (const auto& [name, type] : families(r.body)) exported[name] = type;
  };
  add(aggregator("/metrics"), "aggregator");
  for (int n = 1; n <= mesh_->nodes(); ++n) add(agent(n, "/metrics"), nodeName(n));

  auto isExported = [&](const std::string& name) {
    if (exported.count(name)) return true;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      const std::string s = suffix;
      if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0) {
        auto it = exported.find(name.substr(0, name.size() - s.size()));
        if (it != exported.end() && it->second == "histogram") return true;
      }
    }
    return false;
  };
  std::string missing;
  for (const auto& [name, where] : used) {
    if (isExported(name)) continue;
    missing += "  " + name + " (used in";
    for (const auto& f : where) missing += " " + f;
    missing += ")\n";
  }
  std::string all;
  for (const auto& [name, type] : exported) all += "  " + name + " " + type + "\n";
  EXPECT_EQ(missing, "") << "metrics the manifests use but nothing exports:\n" << missing << "exported:\n" << all;
  std::cout << used.size() << " metric names in " << files.size() << " monitoring manifests, all exported" << std::endl;
}

// ======================= (d) sparse probing under a small --probe-budget =======================

// --probe-budget 1 at --interval 1s: one peer per layer per round, 3 peers, so every agent
// rotates (every pair within 3 rounds). The cluster still turns healthy, the agents export
// the rotation, and a VXLAN drop on node3 still fails exactly its overlay row and column.
// With --stale-after 12s the aggregator's peer lists let agents leave out reports with no
// news for 3 s (quiet_report_interval): they do, and the fault and its healing still show.
class SparseProbingTest : public ObservabilityTest {
 protected:
  MeshOptions meshOptions() const override {
    MeshOptions o;
    o.agent_args = {"--probe-budget", "1"};
    o.stale_after = "12s";
    return o;
  }
};

TEST_F(SparseProbingTest, RotatingAgentsStillCoverEveryPairAndSeeANodeFault) {
  ASSERT_EQ(mesh_->nodes(), 4);
  double healthy = 0;
  ASSERT_TRUE(waitHealthy(Via::kCli, &healthy));
  std::cout << "healthy with --probe-budget 1 after start: " << seconds(healthy) << std::endl;

  // Each agent: 1 target per layer in the current round, every peer within 3 rounds, and
  // regular slots skipped (polled: the skip counter grows with every round).
  ASSERT_TRUE(eventually(
      "every agent exports the rotation (1 target per round and layer, coverage 3 rounds, slots skipped) and "
      "has left out quiet reports",
      [&] {
        std::string out;
        for (int n = 1; n <= mesh_->nodes(); ++n) {
          auto am = agent(n, "/metrics");
          if (am.status != 200) {
            out += am.describe(nodeName(n) + " /metrics") + "\n";
            continue;
          }
          const std::string cov = sampleValue(am.body, "meshprobe_probe_coverage_rounds");
          const std::string under = sampleValue(am.body, "meshprobe_probe_targets_per_round{layer=\"UNDERLAY\"}");
          const std::string over = sampleValue(am.body, "meshprobe_probe_targets_per_round{layer=\"OVERLAY\"}");
          const std::string skipped = sampleValue(am.body, "meshprobe_probe_rotation_skipped_total");
          const std::string held = sampleValue(am.body, "meshprobe_stream_reports_held_total");
          if (cov != "3" || under != "1" || over != "1" || std::atol(skipped.c_str()) <= 0 ||
              std::atol(held.c_str()) <= 0) {
            out += nodeName(n) + ": coverage_rounds=" + cov + " per_round UNDERLAY=" + under + " OVERLAY=" + over +
                   " skipped=" + skipped + " reports_held=" + held + "\n";
          }
        }
        return out;
      },
      15s));

  mesh_->cluster().node(3).sh("iptables -A INPUT -p udp --dport 4789 -j DROP");
  const auto injected = SteadyClock::now();
  const Expect node3Fails = [](int s, int d) { return std::string(s == 3 || d == 3 ? "FAIL" : "OK"); };
  double detection = 0;
  const bool detected = eventually(
      "only node3's OVERLAY cells FAIL, every UNDERLAY cell OK",
      [&] { return layerMismatch("OVERLAY", node3Fails) + layerMismatch("UNDERLAY", kAllOk); }, 40s, &detection,
      injected);
  EXPECT_TRUE(detected);
  if (detected) std::cout << "detection with --probe-budget 1: " << seconds(detection) << std::endl;
  mesh_->cluster().node(3).sh("iptables -D INPUT -p udp --dport 4789 -j DROP");
  EXPECT_TRUE(eventually(
      "every OVERLAY and UNDERLAY cell OK again after the rule is removed",
      [&] { return layerMismatch("OVERLAY", kAllOk) + layerMismatch("UNDERLAY", kAllOk); }, 90s));
}

}  // namespace
}  // namespace meshprobe::e2e
