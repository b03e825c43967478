// E2E tests of the mesh (issue 3, DESIGN §2/§4/§7): a 4-node flannel-VXLAN "cluster" made
// of network namespaces, the real meshprobe-aggregator in a control netns on the underlay
// (198.51.100.2, so the diagnostic path never depends on the overlay), and one real
// meshprobe-agent per node (--interval 1s) streaming to it. Every assertion goes through
// the Query API: the grpcurl-like reflection client (mp_reflection_client, which learns the
// API only from grpc.reflection.v1alpha and speaks JSON) in the healthy test, the meshprobe
// CLI with --output json everywhere else. Readiness and every state change are polled with
// deadlines; the measured times (fault injection → visible in the API) are printed.
//
// Layout: node N = 198.51.100.(10+N), flannel.1 10.244.N.0 (VNI 1, port 4789), pod subnet
// 10.244.N.0/24. istiod is a TLS listener (openssl s_server, ALPN h2) in a pod netns behind
// node1's cni0 at 10.244.1.10:15012, so nodes 2..4 reach it only through VXLAN. Agents get
// temp --host-root/--netns-dir/--ztunnel-socket paths: nothing leaves the test's namespaces.

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/e2e/cluster.h"
#include "tests/e2e/harness.h"

extern char** environ;

#ifndef MESHPROBE_AGGREGATOR_BIN
#error "MESHPROBE_AGGREGATOR_BIN must be defined by the build"
#endif
#ifndef MESHPROBE_CLI_BIN
#error "MESHPROBE_CLI_BIN must be defined by the build"
#endif
#ifndef MESHPROBE_REFLECTION_CLIENT_BIN
#error "MESHPROBE_REFLECTION_CLIENT_BIN must be defined by the build"
#endif

namespace meshprobe::e2e {
namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr const char* kAggregatorBin = MESHPROBE_AGGREGATOR_BIN;
constexpr const char* kCliBin = MESHPROBE_CLI_BIN;
constexpr const char* kReflectionClientBin = MESHPROBE_REFLECTION_CLIENT_BIN;

constexpr int kNodes = 4;
constexpr int kIstiodNode = 1;
constexpr uint16_t kGrpcPort = 9470;
constexpr const char* kStaleAfter = "3s";
constexpr const char* kWrongDst = "198.51.100.99";  // on the underlay subnet, nobody has it
constexpr const char* kIstiodSan = "istiod.istio-system.svc";

// MPE2E_LOG_LEVEL=debug raises the daemons' log level (logs are kept with MPE2E_LOGS=DIR).
std::string logLevel() {
  const char* level = std::getenv("MPE2E_LOG_LEVEL");
  return level && *level ? level : "info";
}

std::string nodeName(int n) { return "node" + std::to_string(n); }

double secondsSince(SteadyClock::time_point t0) {
  return std::chrono::duration<double>(SteadyClock::now() - t0).count();
}

std::string seconds(double s) {
  std::ostringstream o;
  o << std::fixed << std::setprecision(2) << s << "s";
  return o.str();
}

// Polls `ready` every `every` until it returns true or `timeout` passes.
bool pollUntil(const std::function<bool()>& ready, std::chrono::milliseconds timeout,
               std::chrono::milliseconds every = 100ms) {
  const auto deadline = SteadyClock::now() + timeout;
  while (true) {
    if (ready()) return true;
    if (SteadyClock::now() >= deadline) return false;
    std::this_thread::sleep_for(every);  // poll interval, bounded by the deadline above
  }
}

// The agents and the aggregator inherit this process's environment: only our flags count.
void dropMeshprobeEnv() {
  std::vector<std::string> names;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    if (kv.rfind("MESHPROBE_", 0) == 0) names.push_back(kv.substr(0, kv.find('=')));
  }
  for (const auto& n : names) unsetenv(n.c_str());
}

// ---- istiod's test certificates (openssl CLI), once per process ----

struct Certs {
  std::string ca, cert, key;
};

const Certs& certs() {
  static std::unique_ptr<TempDir> dir;
  static Certs c;
  if (dir) return c;
  dir = std::make_unique<TempDir>("certs");
  const std::string d = dir->path();
  mustRun({"openssl",
           "req",
           "-x509",
           "-newkey",
           "ec",
           "-pkeyopt",
           "ec_paramgen_curve:prime256v1",
           "-nodes",
           "-days",
           "2",
           "-subj",
           "/O=cluster.local/CN=e2e mesh root CA",
           "-addext",
           "basicConstraints=critical,CA:TRUE",
           "-addext",
           "keyUsage=critical,keyCertSign,cRLSign",
           "-keyout",
           d + "/ca.key",
           "-out",
           d + "/ca.pem"});
  mustRun({"openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj",
           "/O=cluster.local", "-keyout", d + "/server.key", "-out", d + "/server.csr"});
  writeFile(d + "/ext.cnf", std::string("subjectAltName=DNS:") + kIstiodSan +
                                "\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                                "extendedKeyUsage=serverAuth,clientAuth\n");
  mustRun({"openssl", "x509", "-req", "-in", d + "/server.csr", "-CA", d + "/ca.pem", "-CAkey", d + "/ca.key",
           "-CAcreateserial", "-days", "2", "-extfile", d + "/ext.cnf", "-out", d + "/server.pem"});
  c = {d + "/ca.pem", d + "/server.pem", d + "/server.key"};
  return c;
}

// ---- a matrix as the Query API returns it ----

struct Matrix {
  bool ok = false;    // the query succeeded and parsed
  std::string error;  // why not
  std::vector<std::string> nodes;
  std::map<std::pair<std::string, std::string>, std::string> cells;  // (src, dst) -> state
  size_t cell_count = 0;
  std::vector<std::string> not_ok;  // the JSON of every cell not OK (RTT, loss, last update)

  std::string state(const std::string& src, const std::string& dst) const {
    auto it = cells.find({src, dst});
    return it == cells.end() ? "(absent)" : it->second;
  }

  // A src x dst grid of states (ISTIOD: one column, "istiod").
  std::string render(const std::string& layer) const {
    if (!ok) return layer + ": query failed: " + error + "\n";
    std::set<std::string> dsts;
    for (const auto& [key, _] : cells) dsts.insert(key.second);
    std::ostringstream o;
    o << layer << " (" << cell_count << " cells)\n" << std::left << std::setw(10) << "src\\dst";
    for (const auto& d : dsts) o << std::setw(10) << d;
    o << "\n";
    std::set<std::string> srcs(nodes.begin(), nodes.end());
    for (const auto& [key, _] : cells) srcs.insert(key.first);
    for (const auto& s : srcs) {
      o << std::setw(10) << s;
      for (const auto& d : dsts) o << std::setw(10) << (s == d ? "-" : state(s, d) == "(absent)" ? "." : state(s, d));
      o << "\n";
    }
    for (const auto& c : not_ok) o << "  " << c << "\n";
    return o.str();
  }
};

// Cells of GetMatrixResponse JSON. Proto3 JSON leaves default fields out unless asked to
// print them: a missing state is STATE_UNSPECIFIED.
Matrix parseMatrix(const nlohmann::json& j) {
  Matrix m;
  if (!j.is_object()) {
    m.error = "not a JSON object";
    return m;
  }
  if (j.contains("nodes") && j["nodes"].is_array()) {
    for (const auto& n : j["nodes"]) m.nodes.push_back(n.get<std::string>());
  }
  if (j.contains("cells") && j["cells"].is_array()) {
    for (const auto& c : j["cells"]) {
      const std::string state = c.value("state", "STATE_UNSPECIFIED");
      m.cells[{c.value("src", ""), c.value("dst", "")}] = state;
      if (state != "OK") m.not_ok.push_back(c.dump());
      ++m.cell_count;
    }
  }
  m.ok = true;
  return m;
}

// Expected state of the cell src -> dst (node numbers): a state, several joined by '|',
// or "*" for "any".
using Expect = std::function<std::string(int src, int dst)>;

bool stateMatches(const std::string& want, const std::string& got) {
  if (want == "*") return true;
  return ("|" + want + "|").find("|" + got + "|") != std::string::npos;
}

// "" when every ordered pair of distinct nodes has exactly one cell in the expected state;
// else the grid and every mismatch.
std::string matrixMismatch(const std::string& layer, const Matrix& m, const Expect& expect) {
  if (!m.ok) return layer + ": query failed: " + m.error + "\n";
  std::string out;
  for (int s = 1; s <= kNodes; ++s) {
    for (int d = 1; d <= kNodes; ++d) {
      if (s == d) continue;
      const std::string want = expect(s, d), got = m.state(nodeName(s), nodeName(d));
      if (!stateMatches(want, got))
        out += "  " + nodeName(s) + "->" + nodeName(d) + ": want " + want + ", got " + got + "\n";
    }
  }
  const size_t pairs = kNodes * (kNodes - 1);
  if (m.cell_count != pairs)
    out += "  " + std::to_string(m.cell_count) + " cells, want " + std::to_string(pairs) + "\n";
  return out.empty() ? "" : m.render(layer) + out;
}

// Same for the ISTIOD column: one cell per node, dst "istiod".
std::string istiodMismatch(const Matrix& m, const std::function<std::string(int node)>& expect) {
  if (!m.ok) return "ISTIOD: query failed: " + m.error + "\n";
  std::string out;
  for (int n = 1; n <= kNodes; ++n) {
    const std::string want = expect(n), got = m.state(nodeName(n), "istiod");
    if (!stateMatches(want, got)) out += "  " + nodeName(n) + "->istiod: want " + want + ", got " + got + "\n";
  }
  return out.empty() ? "" : m.render("ISTIOD") + out;
}

const Expect kAllOk = [](int, int) { return std::string("OK"); };

// ---- the mesh: cluster + istiod + aggregator + one agent per node ----

enum class Via { kCli, kReflection };

class Mesh {
 public:
  Mesh() : tmp_("mesh"), cluster_(ClusterOptions{.nodes = kNodes}) {
    tmp_.mkdir("logs");
    control_ = &cluster_.addControl();
    istiod_pod_ = &cluster_.addPod(kIstiodNode, "istiod", 10);
    const auto& c = certs();
    istiod_ = std::make_unique<Process>(istiod_pod_->name(),
                                        std::vector<std::string>{"openssl", "s_server", "-accept", "15012", "-cert",
                                                                 c.cert, "-key", c.key, "-www", "-alpn", "h2"},
                                        tmp_.sub("logs/istiod.log"));
    pid_t istiod_pid = istiod_->pid();
    waitFor([istiod_pid] { return tcpListening(istiod_pid, 15012); }, 10s, "istiod listener on 15012", istiod_.get());
    for (int n = 1; n <= kNodes; ++n) {
      tmp_.mkdir(nodeName(n) + "/host/proc");
      tmp_.mkdir(nodeName(n) + "/netns");
      writeFile(tmp_.sub(nodeName(n) + "/host/run/flannel/subnet.env"),
                "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244." + std::to_string(n) +
                    ".1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n");
    }
    startAggregator();
    for (int n = 1; n <= kNodes; ++n) {
      agents_.push_back(
          std::make_unique<Process>(cluster_.nodeNs(n), agentArgs(n), tmp_.sub("logs/agent-" + nodeName(n) + ".log")));
    }
  }

  const Cluster& cluster() const { return cluster_; }
  Process& agent(int n) { return *agents_.at(n - 1); }
  Process& aggregator() { return *aggregator_; }
  std::string logsDir() const { return tmp_.sub("logs"); }
  static std::string grpcAddr() { return Cluster::controlIp() + ":" + std::to_string(kGrpcPort); }

  // (Re)starts the aggregator on the same address; returns once its gRPC port listens.
  void startAggregator() {
    ++aggregator_runs_;
    aggregator_ =
        std::make_unique<Process>(control_->name(),
                                  std::vector<std::string>{kAggregatorBin, "--grpc-listen", grpcAddr(), "--http-listen",
                                                           Cluster::controlIp() + ":9471", "--stale-after", kStaleAfter,
                                                           "--log-level", logLevel()},
                                  tmp_.sub("logs/aggregator-" + std::to_string(aggregator_runs_) + ".log"));
    pid_t pid = aggregator_->pid();
    waitFor([pid] { return tcpListening(pid, kGrpcPort); }, 20s, "aggregator gRPC listener", aggregator_.get());
  }

  std::vector<std::string> agentArgs(int n) const {
    const std::string dir = tmp_.sub(nodeName(n));
    return {kAgentBin,
            "--node-name",
            nodeName(n),
            "--node-ip",
            Cluster::nodeIp(n),
            "--aggregator",
            grpcAddr(),
            "--interval",
            "1s",
            "--vxlan-port",
            "4789",
            "--istiod",
            Cluster::podIp(kIstiodNode, 10) + ":15012",
            "--istiod-ca",
            certs().ca,
            "--host-root",
            dir + "/host",
            "--netns-dir",
            dir + "/netns",
            "--ztunnel-socket",
            dir + "/ztunnel.sock",
            "--check-timeout",
            "4s",
            "--log-level",
            logLevel()};
  }

  // ---- the Query API ----

  // meshprobe --aggregator ADDR --output json ARGS..., run in the control netns.
  CmdResult cli(const std::vector<std::string>& args) const {
    std::vector<std::string> argv = {kCliBin, "--aggregator", grpcAddr(), "--output", "json", "--timeout", "3s"};
    argv.insert(argv.end(), args.begin(), args.end());
    return runCommand(argv, queryOptions());
  }

  // mp_reflection_client [-d JSON] ADDR METHOD|list, run in the control netns (like grpcurl).
  CmdResult reflect(const std::string& method, const std::string& json = "") const {
    std::vector<std::string> argv = {kReflectionClientBin, "--timeout", "3s"};
    if (!json.empty()) argv.insert(argv.end(), {"-d", json});
    argv.insert(argv.end(), {grpcAddr(), method});
    return runCommand(argv, queryOptions());
  }

  // JSON of a successful query; null (and `error` set) otherwise.
  static nlohmann::json parse(const CmdResult& r, std::string* error) {
    if (r.exit_code != 0) {
      if (error) *error = r.describe();
      return nullptr;
    }
    auto j = nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) {
      if (error) *error = "not JSON: " + r.out.substr(0, 500);
      return nullptr;
    }
    return j;
  }

  Matrix matrix(const std::string& layer, Via via = Via::kCli) const {
    CmdResult r = via == Via::kCli ? cli({"matrix", "--layer", layer})
                                   : reflect("meshprobe.v1.Query/GetMatrix", R"({"layer":")" + layer + R"("})");
    std::string error;
    auto j = parse(r, &error);
    if (j.is_null()) {
      Matrix m;
      m.error = error;
      return m;
    }
    return parseMatrix(j);
  }

  nlohmann::json listNodes(Via via = Via::kCli, std::string* error = nullptr) const {
    return parse(via == Via::kCli ? cli({"nodes"}) : reflect("meshprobe.v1.Query/ListNodes", "{}"), error);
  }

  nlohmann::json getNode(const std::string& name, std::string* error = nullptr) const {
    return parse(cli({"node", name}), error);
  }

  // Everything that helps explain a failure: the three matrices, the nodes, log tails.
  std::string diagnostics() const {
    std::ostringstream o;
    o << "\n---- state at failure ----\n";
    for (const char* layer : {"UNDERLAY", "OVERLAY", "ISTIOD"}) o << matrix(layer).render(layer);
    std::string error;
    auto nodes = listNodes(Via::kCli, &error);
    o << "nodes: " << (nodes.is_null() ? error : nodes.dump()) << "\n";
    // Each agent's probe summaries (loss, recent loss, RTT p50/p99, misses) behind the cells.
    for (int n = 1; n <= kNodes; ++n) {
      auto node = getNode(nodeName(n), &error);
      if (node.is_null() || !node.contains("probes")) continue;
      for (const auto& p : node["probes"]) {
        o << "  probe " << nodeName(n) << "->" << p.value("dst", "?") << " " << p.value("layer", "?")
          << " sent=" << p.value("sent", 0u) << " received=" << p.value("received", 0u)
          << " loss=" << p.value("loss", 0.0)
          << " recentLoss=" << (p.contains("recentLoss") ? p["recentLoss"].dump() : "-")
          << " p50=" << p.value("rttP50", "-") << " p99=" << p.value("rttP99", "-")
          << " consecutiveFailures=" << p.value("consecutiveFailures", 0u) << " error=" << p.value("error", "") << "\n";
      }
    }
    auto tail = [](const std::string& s) { return s.size() > 1500 ? "..." + s.substr(s.size() - 1500) : s; };
    o << "---- aggregator log (run " << aggregator_runs_ << ") ----\n" << tail(aggregator_->log()) << "\n";
    for (int n = 1; n <= kNodes; ++n) {
      o << "---- agent " << nodeName(n) << " log ----\n" << tail(agents_[n - 1]->log()) << "\n";
    }
    return o.str();
  }

 private:
  CmdOptions queryOptions() const {
    CmdOptions o;
    o.netns = control_->name();
    o.timeout = 10s;
    o.drop_meshprobe_env = true;
    return o;
  }

  // Destroyed bottom-up: agents, aggregator, istiod, then the namespaces, then the temp dir.
  TempDir tmp_;
  Cluster cluster_;
  const TestNetns* control_ = nullptr;
  const TestNetns* istiod_pod_ = nullptr;
  int aggregator_runs_ = 0;
  std::unique_ptr<Process> istiod_;
  std::unique_ptr<Process> aggregator_;
  std::vector<std::unique_ptr<Process>> agents_;
};

const nlohmann::json* findNode(const nlohmann::json& list, const std::string& name) {
  if (!list.is_object() || !list.contains("nodes") || !list["nodes"].is_array()) return nullptr;
  for (const auto& n : list["nodes"]) {
    if (n.value("name", "") == name) return &n;
  }
  return nullptr;
}

class MeshTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!havePrivileges(&why)) GTEST_SKIP() << why;
    dropMeshprobeEnv();
    mesh_ = std::make_unique<Mesh>();
  }
  void TearDown() override {
    // MPE2E_LOGS=DIR keeps every process log of each test under DIR/<test name>/.
    if (const char* keep = std::getenv("MPE2E_LOGS"); keep && *keep && mesh_) {
      const std::string dst = std::string(keep) + "/" + ::testing::UnitTest::GetInstance()->current_test_info()->name();
      runCommand({"mkdir", "-p", dst});
      runCommand({"sh", "-c", "cp -r \"$0\"/. \"$1\"/", mesh_->logsDir(), dst});
    }
    mesh_.reset();
  }

  // Polls `mismatch` (returns "" once the wanted state holds, else what differs) until it
  // holds or `timeout` passes. `elapsed` gets the seconds from `t0` to the first success.
  ::testing::AssertionResult eventually(const std::string& what, const std::function<std::string()>& mismatch,
                                        std::chrono::milliseconds timeout, double* elapsed = nullptr,
                                        SteadyClock::time_point t0 = SteadyClock::now()) {
    // MPE2E_VERBOSE=1 prints every change of the mismatch while waiting (what a slow wait waited on).
    const char* verbose = std::getenv("MPE2E_VERBOSE");
    std::string last;
    bool held = pollUntil(
        [&] {
          std::string now = mismatch();
          if (verbose && *verbose && now != last) {
            std::cerr << "[" << seconds(secondsSince(t0)) << "] " << what << ":\n" << (now.empty() ? "  holds\n" : now);
          }
          last = std::move(now);
          return last.empty();
        },
        timeout);
    if (held) {
      if (elapsed) *elapsed = secondsSince(t0);
      return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure() << "not within " << timeout.count() << " ms: " << what
                                         << "\n---- last mismatch ----\n"
                                         << last << mesh_->diagnostics();
  }

  // Several conditions watched together, so each gets its own time to first hold.
  struct Milestone {
    Milestone(std::string w, std::function<std::string()> f) : what(std::move(w)), mismatch(std::move(f)) {}
    std::string what;
    std::function<std::string()> mismatch;
    double elapsed = -1;  // seconds from t0 to the first time it held; -1: not yet
    std::string last;     // the last mismatch while pending
  };
  // Polls every pending milestone each round until all have held or `timeout` passes.
  ::testing::AssertionResult eventuallyEach(std::vector<Milestone>& milestones, std::chrono::milliseconds timeout,
                                            SteadyClock::time_point t0) {
    bool all = pollUntil(
        [&] {
          bool done = true;
          for (auto& m : milestones) {
            if (m.elapsed >= 0) continue;
            m.last = m.mismatch();
            if (m.last.empty()) {
              m.elapsed = secondsSince(t0);
            } else {
              done = false;
            }
          }
          return done;
        },
        timeout);
    if (all) return ::testing::AssertionSuccess();
    auto failure = ::testing::AssertionFailure();
    failure << "not within " << timeout.count() << " ms:";
    for (const auto& m : milestones) {
      if (m.elapsed < 0) failure << "\n---- " << m.what << " ----\n" << m.last;
    }
    return failure << mesh_->diagnostics();
  }

  std::string layerMismatch(const std::string& layer, const Expect& expect, Via via = Via::kCli) {
    return matrixMismatch(layer, mesh_->matrix(layer, via), expect);
  }

  // Both probe layers completely OK (and, with `istiod`, the ISTIOD column too).
  std::string healthyMismatch(bool istiod, Via via = Via::kCli) {
    std::string out = layerMismatch("UNDERLAY", kAllOk, via) + layerMismatch("OVERLAY", kAllOk, via);
    if (istiod) out += istiodMismatch(mesh_->matrix("ISTIOD", via), [](int) { return std::string("OK"); });
    return out;
  }

  ::testing::AssertionResult waitHealthy(Via via = Via::kCli, double* elapsed = nullptr) {
    return eventually(
        "every UNDERLAY, OVERLAY and ISTIOD cell OK", [&] { return healthyMismatch(true, via); }, 60s, elapsed);
  }

  std::unique_ptr<Mesh> mesh_;
};

// ======================= 1. healthy =======================

// The way grpcurl does it: list services over reflection, then call Query methods with
// JSON requests built from the fetched descriptors.
TEST_F(MeshTest, HealthyClusterEveryCellOkThroughReflection) {
  auto list = mesh_->reflect("list");
  ASSERT_EQ(list.exit_code, 0) << list.describe();
  for (const char* service : {"meshprobe.v1.Query", "meshprobe.v1.Collector", "grpc.health.v1.Health",
                              "grpc.reflection.v1alpha.ServerReflection"}) {
    EXPECT_NE(list.out.find(service), std::string::npos) << service << " not listed:\n" << list.out;
  }

  double healthy = 0;
  ASSERT_TRUE(waitHealthy(Via::kReflection, &healthy));
  std::cout << "healthy (all " << kNodes * (kNodes - 1) << " UNDERLAY + OVERLAY cells and " << kNodes
            << " ISTIOD cells OK) after start: " << seconds(healthy) << std::endl;

  auto overlay = mesh_->matrix("OVERLAY", Via::kReflection);
  ASSERT_TRUE(overlay.ok) << overlay.error;
  EXPECT_EQ(overlay.nodes, (std::vector<std::string>{"node1", "node2", "node3", "node4"}));

  std::string error;
  auto nodes = mesh_->listNodes(Via::kReflection, &error);
  ASSERT_FALSE(nodes.is_null()) << error;
  ASSERT_TRUE(nodes.contains("nodes")) << nodes.dump(2);
  EXPECT_EQ(nodes["nodes"].size(), static_cast<size_t>(kNodes)) << nodes.dump(2);
  for (int n = 1; n <= kNodes; ++n) {
    const auto* node = findNode(nodes, nodeName(n));
    ASSERT_NE(node, nullptr) << nodeName(n) << " missing:\n" << nodes.dump(2);
    SCOPED_TRACE(node->dump());
    EXPECT_TRUE(node->value("up", false));
    EXPECT_EQ(node->value("nodeIp", ""), Cluster::nodeIp(n));
    EXPECT_EQ(node->value("overlayIp", ""), Cluster::vtepAddr(n));
    EXPECT_EQ(node->value("vtepMac", ""), Cluster::vtepMac(n));
    EXPECT_EQ(node->value("vxlanVni", 0u), 1u);
    EXPECT_EQ(node->value("vxlanPort", 0u), 4789u);
    EXPECT_EQ(node->value("podCidr", ""), Cluster::podSubnet(n));
  }
}

// ======================= 2. VXLAN port dropped on node3 =======================

TEST_F(MeshTest, VxlanPortDroppedOnNode3FailsItsOverlayCellsOnly) {
  ASSERT_TRUE(waitHealthy());

  mesh_->cluster().node(3).sh("iptables -A INPUT -p udp --dport 4789 -j DROP");
  const auto injected = SteadyClock::now();
  // node3 drops every VXLAN packet it receives: its probes' replies and its peers' probes
  // (both travel inside VXLAN to node3), so its overlay row and column fail.
  const Expect node3Fails = [](int s, int d) { return std::string(s == 3 || d == 3 ? "FAIL" : "OK"); };
  const Expect node3FailsAnyOther = [](int s, int d) { return std::string(s == 3 || d == 3 ? "FAIL" : "*"); };
  double detection = 0;
  ASSERT_TRUE(eventually(
      "every OVERLAY cell to and from node3 FAIL", [&] { return layerMismatch("OVERLAY", node3FailsAnyOther); }, 30s,
      &detection, injected));
  std::cout << "detection: " << seconds(detection) << std::endl;

  // Nothing else: the other overlay pairs and the whole underlay stay OK.
  EXPECT_TRUE(eventually(
      "only node3's OVERLAY cells FAIL, every UNDERLAY cell OK",
      [&] { return layerMismatch("OVERLAY", node3Fails) + layerMismatch("UNDERLAY", kAllOk); }, 15s));

  mesh_->cluster().node(3).sh("iptables -D INPUT -p udp --dport 4789 -j DROP");
  const auto removed = SteadyClock::now();
  double recovery = 0;
  EXPECT_TRUE(eventually(
      "every OVERLAY and UNDERLAY cell OK again after the rule is removed",
      [&] { return layerMismatch("OVERLAY", kAllOk) + layerMismatch("UNDERLAY", kAllOk); }, 90s, &recovery, removed));
  std::cout << "recovery: " << seconds(recovery) << std::endl;
}

// ======================= 3. aggregator killed and restarted =======================

TEST_F(MeshTest, AggregatorKill9AndRestartEveryAgentReconnects) {
  ASSERT_TRUE(waitHealthy());

  mesh_->aggregator().kill9();
  ASSERT_FALSE(mesh_->aggregator().alive());
  auto down = mesh_->cli({"nodes"});
  EXPECT_NE(down.exit_code, 0) << "the Query API still answers after kill -9: " << down.describe();

  const auto restarted = SteadyClock::now();
  mesh_->startAggregator();  // same address; returns once it listens
  double reconnected = 0, complete = 0;
  ASSERT_TRUE(eventually(
      "every agent reconnected: ListNodes lists every node up",
      [&] {
        std::string error;
        auto nodes = mesh_->listNodes(Via::kCli, &error);
        if (nodes.is_null()) return error;
        for (int n = 1; n <= kNodes; ++n) {
          const auto* node = findNode(nodes, nodeName(n));
          if (node == nullptr || !node->value("up", false)) return nodeName(n) + " not up: " + nodes.dump();
        }
        return std::string();
      },
      30s, &reconnected, restarted));
  ASSERT_TRUE(eventually(
      "the matrix complete again: every UNDERLAY and OVERLAY cell OK",
      [&] { return healthyMismatch(/*istiod=*/false); }, 30s, &complete, restarted));
  std::cout << "aggregator restart -> every agent reconnected: " << seconds(reconnected) << std::endl;
  std::cout << "aggregator restart -> matrix complete: " << seconds(complete) << std::endl;
}

// ======================= 4. a stopped agent =======================

TEST_F(MeshTest, StoppedAgentIsStaleAndItsCellsUnknown) {
  ASSERT_TRUE(waitHealthy());

  Process& agent4 = mesh_->agent(4);
  const auto stopped = SteadyClock::now();
  ASSERT_TRUE(agent4.signal(SIGTERM));
  const bool exited = pollUntil([&] { return !agent4.alive(); }, 3s, 10ms);
  const double shutdown = secondsSince(stopped);
  ASSERT_TRUE(exited) << "node4's agent did not exit within 3 s of SIGTERM: " << agent4.describe();
  EXPECT_EQ(agent4.exitCode(), std::optional<int>(0)) << "not a clean shutdown: " << agent4.describe();
  std::cout << "agent SIGTERM -> exit " << agent4.exitCode().value_or(-1) << ": " << seconds(shutdown) << std::endl;

  // --stale-after 3s: node4 is down, and what it last said about others is no longer
  // believed — every cell from node4 is UNKNOWN, never a lingering OK.
  double stale = 0;
  ASSERT_TRUE(eventually(
      "node4 not up; every cell from node4 UNKNOWN (UNDERLAY, OVERLAY, ISTIOD)",
      [&] {
        std::string error;
        auto nodes = mesh_->listNodes(Via::kCli, &error);
        if (nodes.is_null()) return error;
        const auto* node4 = findNode(nodes, "node4");
        if (node4 == nullptr) return "node4 not listed: " + nodes.dump();
        if (node4->value("up", true)) return "node4 still up: " + node4->dump();
        const Expect fromNode4 = [](int s, int) { return std::string(s == 4 ? "UNKNOWN" : "*"); };
        return layerMismatch("UNDERLAY", fromNode4) + layerMismatch("OVERLAY", fromNode4) +
               istiodMismatch(mesh_->matrix("ISTIOD"), [](int n) { return std::string(n == 4 ? "UNKNOWN" : "*"); });
      },
      10s, &stale, stopped));
  std::cout << "agent stopped -> node4 stale, its cells UNKNOWN: " << seconds(stale) << " (--stale-after "
            << kStaleAfter << ")" << std::endl;

  // Its responder is gone too: the others' probes to node4 fail on both layers; the rest is fine.
  const Expect expect = [](int s, int d) { return std::string(s == 4 ? "UNKNOWN" : d == 4 ? "FAIL" : "OK"); };
  double unreachable = 0;
  EXPECT_TRUE(eventually(
      "cells to node4 FAIL on UNDERLAY and OVERLAY, cells from node4 UNKNOWN, the rest OK",
      [&] { return layerMismatch("UNDERLAY", expect) + layerMismatch("OVERLAY", expect); }, 30s, &unreachable,
      stopped));
  std::cout << "agent stopped -> cells to node4 FAIL: " << seconds(unreachable) << std::endl;
}

// ======================= 5. a stale FDB entry on node1 for node4 =======================

TEST_F(MeshTest, StaleFdbEntryOnNode1ForNode4) {
  ASSERT_TRUE(waitHealthy());

  mesh_->cluster().node(1).sh("bridge fdb replace " + Cluster::vtepMac(4) + " dev flannel.1 dst " + kWrongDst +
                              " self permanent");
  const auto injected = SteadyClock::now();
  const std::string fdb = mesh_->cluster().node(1).sh("bridge fdb show dev flannel.1");
  ASSERT_NE(fdb.find(Cluster::vtepMac(4) + " dst " + kWrongDst), std::string::npos) << fdb;

  // Which cells fail. node1 -> node4: node1 encapsulates for node4's VTEP MAC towards the
  // wrong IP, so the probe never arrives. node4 -> node1 fails as well, although node4's
  // own FDB is right: its probe reaches node1, but node1's reply to 10.244.4.0 goes out
  // through the same stale FDB entry (to 198.51.100.99) and is lost. So the OVERLAY FAIL
  // set is exactly {node1->node4, node4->node1} (observed every run; {node1->node4} alone
  // would need a reply path that avoids node1's FDB, and there is none); every other
  // overlay pair and the whole underlay (no VXLAN involved) stay OK.
  const Expect oneToFour = [](int s, int d) { return std::string(s == 1 && d == 4 ? "FAIL" : "*"); };
  const Expect expect = [](int s, int d) {
    return std::string((s == 1 && d == 4) || (s == 4 && d == 1) ? "FAIL" : "OK");
  };
  std::string fdb_check;  // node1's vxlan_fdb as GetNode returned it, once it names the entry
  std::vector<Milestone> milestones = {
      {"OVERLAY node1->node4 FAIL", [&] { return layerMismatch("OVERLAY", oneToFour); }},
      {"OVERLAY FAIL set is exactly {node1->node4, node4->node1}, everything else and every UNDERLAY cell OK",
       [&] { return layerMismatch("OVERLAY", expect) + layerMismatch("UNDERLAY", kAllOk); }},
      // The same asymmetry shows in the ISTIOD column: istiod sits behind node1's cni0, so
      // its answers to node4 leave node1 through the stale entry too; node1..3 still reach it.
      {"ISTIOD: node4 FAIL (replies from behind node1 take the stale entry), node1..node3 OK",
       [&] {
         return istiodMismatch(mesh_->matrix("ISTIOD"), [](int n) { return std::string(n == 4 ? "FAIL" : "OK"); });
       }},
      // node1's own vxlan_fdb check, against membership (node4's Hello says its VTEP MAC sits
      // at 198.51.100.14), names node4's entry as stale.
      {"node1's vxlan_fdb (GetNode node1) FAIL naming node4's FDB entry (node4 or " + std::string(kWrongDst) + ")",
       [&] {
         std::string error;
         auto node = mesh_->getNode("node1", &error);
         if (node.is_null()) return error;
         if (!node.contains("checks") || !node["checks"].is_array()) return "no checks: " + node.dump();
         for (const auto& c : node["checks"]) {
           if (c.value("name", "") != "vxlan_fdb") continue;
           std::string text = c.value("summary", "") + " " + (c.contains("details") ? c["details"].dump() : "");
           bool names = containsNoCase(text, "node4") || containsNoCase(text, kWrongDst);
           if (c.value("status", "") == "FAIL" && names) {
             fdb_check = c.value("summary", "");
             return std::string();
           }
           return "vxlan_fdb: " + c.dump();
         }
         return "no vxlan_fdb check: " + node.dump();
       }},
  };
  EXPECT_TRUE(eventuallyEach(milestones, 30s, injected));
  const char* labels[] = {"node1->node4 OVERLAY FAIL", "OVERLAY FAIL set {node1->node4, node4->node1}",
                          "ISTIOD node4 FAIL", "node1's vxlan_fdb FAIL naming node4"};
  for (size_t i = 0; i < milestones.size(); ++i) {
    std::cout << "stale fdb: " << labels[i] << ": "
              << (milestones[i].elapsed >= 0 ? seconds(milestones[i].elapsed) : "not seen") << std::endl;
  }
  if (!fdb_check.empty()) std::cout << "stale fdb: vxlan_fdb summary: " << fdb_check << std::endl;
}

}  // namespace
}  // namespace meshprobe::e2e
