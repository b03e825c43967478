#pragma once
// The e2e "mesh": a namespace cluster (cluster.h) with istiod in a pod behind one node, the
// real meshprobe-aggregator in the control netns on the underlay and one real
// meshprobe-agent per node, plus the Query-API helpers (CLI --output json, the grpcurl-like
// reflection client), matrix parsing/expectations and the MeshTest fixture with deadline
// polling. Included by exactly one translation unit per e2e executable, which defines
// MESHPROBE_{AGENT,AGGREGATOR,CLI,REFLECTION_CLIENT}_BIN.
//
// Layout: node N = 198.51.100.(10+N), flannel.1 10.244.N.0 (VNI 1, port 4789), pod subnet
// 10.244.N.0/24. istiod is a TLS listener (openssl s_server, ALPN h2) in a pod netns behind
// node `istiod_node`'s cni0 at 10.244.<istiod_node>.10:15012, so the other nodes reach it
// only through VXLAN. Agents get temp --host-root/--netns-dir/--ztunnel-socket paths:
// nothing leaves the test's namespaces. The aggregator serves gRPC on 198.51.100.2:9470
// and HTTP on 198.51.100.2:9471; each agent's HTTP is on its node IP :9472.

#include <signal.h>
#include <unistd.h>

#include <algorithm>
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

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/e2e/cluster.h"
#include "tests/e2e/harness.h"
#include "tests/support/eventually.h"

extern char** environ;

#ifndef MESHPROBE_AGENT_BIN
#error "MESHPROBE_AGENT_BIN must be defined by the build"
#endif
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

constexpr int kNodes = 4;  // MeshOptions default
constexpr int kIstiodNode = 1;
constexpr uint16_t kGrpcPort = 9470;
constexpr const char* kStaleAfter = "3s";
constexpr const char* kWrongDst = "198.51.100.99";  // on the underlay subnet, nobody has it

// MPE2E_LOG_LEVEL=debug raises the daemons' log level (logs are kept with MPE2E_LOGS=DIR).
std::string logLevel() {
  const char* level = std::getenv("MPE2E_LOG_LEVEL");
  return level && *level ? level : "info";
}

std::string nodeName(int n) { return "node" + std::to_string(n); }
// A file of meshprobe's own test PKI (tests/data/mtls; README.md there lists them).
inline std::string mtlsFile(const std::string& name) { return std::string(MESHPROBE_TEST_MTLS_DIR) + "/" + name; }

double secondsSince(SteadyClock::time_point t0) {
  return std::chrono::duration<double>(SteadyClock::now() - t0).count();
}

std::string seconds(double s) {
  std::ostringstream o;
  o << std::fixed << std::setprecision(2) << s << "s";
  return o.str();
}

// Polls `ready` every `every` until it returns true or `timeout` passes (the shared loop of
// tests/support/eventually.h; mesh checks run the CLI or an RPC, so they poll every 100 ms).
constexpr std::chrono::milliseconds kMeshPollInterval = 100ms;
bool pollUntil(const std::function<bool()>& ready, std::chrono::milliseconds timeout,
               std::chrono::milliseconds every = kMeshPollInterval) {
  return test::pollUntil(ready, timeout, every);
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
std::string matrixMismatch(const std::string& layer, const Matrix& m, const Expect& expect, int nodes = kNodes) {
  if (!m.ok) return layer + ": query failed: " + m.error + "\n";
  std::string out;
  for (int s = 1; s <= nodes; ++s) {
    for (int d = 1; d <= nodes; ++d) {
      if (s == d) continue;
      const std::string want = expect(s, d), got = m.state(nodeName(s), nodeName(d));
      if (!stateMatches(want, got))
        out += "  " + nodeName(s) + "->" + nodeName(d) + ": want " + want + ", got " + got + "\n";
    }
  }
  const size_t pairs = static_cast<size_t>(nodes * (nodes - 1));
  if (m.cell_count != pairs)
    out += "  " + std::to_string(m.cell_count) + " cells, want " + std::to_string(pairs) + "\n";
  return out.empty() ? "" : m.render(layer) + out;
}

// Same for the ISTIOD column: one cell per node, dst "istiod".
std::string istiodMismatch(const Matrix& m, const std::function<std::string(int node)>& expect, int nodes = kNodes) {
  if (!m.ok) return "ISTIOD: query failed: " + m.error + "\n";
  std::string out;
  for (int n = 1; n <= nodes; ++n) {
    const std::string want = expect(n), got = m.state(nodeName(n), "istiod");
    if (!stateMatches(want, got)) out += "  " + nodeName(n) + "->istiod: want " + want + ", got " + got + "\n";
  }
  return out.empty() ? "" : m.render("ISTIOD") + out;
}

const Expect kAllOk = [](int, int) { return std::string("OK"); };

// ---- findings as Diagnose returns them ----

// One finding of DiagnoseResponse JSON (camelCase fields, enums as strings). Proto3 JSON
// leaves defaults out: a missing `nodes` is [] (the fault is outside every node), a
// missing `layer` is LAYER_UNSPECIFIED.
struct DiagFinding {
  std::string code, severity, layer, summary, remedy, id, onset_time;
  std::vector<std::string> nodes;  // as returned (order kept)
  std::vector<std::string> evidence;
  nlohmann::json raw;

  std::set<std::string> nodeSet() const { return {nodes.begin(), nodes.end()}; }
  // "CODE[node2,node3]/LAYER" ("[]" when no node is blamed).
  std::string key() const {
    std::string out = code + "[";
    for (size_t i = 0; i < nodes.size(); ++i) out += (i ? "," : "") + nodes[i];
    return out + "]/" + layer;
  }
  // Summary, evidence and remedy in one string (for "mentions" checks).
  std::string text() const {
    std::string out = summary;
    for (const auto& e : evidence) out += "\n" + e;
    return out + "\n" + remedy;
  }
  std::string describe() const {
    std::ostringstream o;
    o << key() << " " << severity << " id=" << id << " onset=" << onset_time << "\n    summary: " << summary;
    for (const auto& e : evidence) o << "\n    evidence: " << e;
    o << "\n    remedy: " << remedy;
    return o.str();
  }
};

struct Findings {
  bool ok = false;    // the query succeeded and parsed
  std::string error;  // why not
  std::vector<DiagFinding> list;

  std::string render() const {
    if (!ok) return "Diagnose failed: " + error + "\n";
    std::ostringstream o;
    o << list.size() << " active findings\n";
    for (const auto& f : list) o << "  " << f.describe() << "\n";
    return o.str();
  }
};

Findings parseFindings(const nlohmann::json& j) {
  Findings out;
  if (!j.is_object()) {
    out.error = "not a JSON object: " + j.dump();
    return out;
  }
  auto strings = [](const nlohmann::json& f, const char* field) {
    std::vector<std::string> v;
    if (f.contains(field) && f[field].is_array()) {
      for (const auto& x : f[field]) v.push_back(x.is_string() ? x.get<std::string>() : x.dump());
    }
    return v;
  };
  if (j.contains("findings") && j["findings"].is_array()) {
    for (const auto& f : j["findings"]) {
      if (!f.is_object()) {
        out.error = "finding is not an object: " + f.dump();
        return out;
      }
      DiagFinding d;
      d.code = f.value("code", "");
      d.severity = f.value("severity", "SEVERITY_UNSPECIFIED");
      d.layer = f.value("layer", "LAYER_UNSPECIFIED");
      d.summary = f.value("summary", "");
      d.remedy = f.value("remedy", "");
      d.id = f.value("id", "");
      d.onset_time = f.value("onsetTime", "");
      d.nodes = strings(f, "nodes");
      d.evidence = strings(f, "evidence");
      d.raw = f;
      out.list.push_back(std::move(d));
    }
  }
  out.ok = true;
  return out;
}

// ---- the mesh: cluster + istiod + aggregator + one agent per node ----

enum class Via { kCli, kReflection };

// How the mesh starts a daemon. Unset: its argv runs in its netns (`ip netns exec`). Set
// (tests/image runs the image's binaries in containers): called with the daemon's role
// ("aggregator", "agent-nodeN"), its netns and argv; returns the argv to run instead, in
// the test's own netns (entering the daemon's netns is then the launcher's job).
using Launcher = std::function<std::vector<std::string>(const std::string& role, const std::string& netns,
                                                        const std::vector<std::string>& argv)>;

struct MeshOptions {
  int nodes = kNodes;
  int istiod_node = kIstiodNode;
  std::string stale_after = kStaleAfter;
  std::vector<std::string> agent_args;       // appended to every agent's flags
  std::vector<std::string> aggregator_args;  // appended to the aggregator's flags
  Launcher launcher;                         // unset: ip netns exec
  // The Query API clients' --timeout (large meshes on a busy machine answer slower).
  std::chrono::seconds query_timeout = 3s;
  // Mutual TLS on the aggregator's gRPC port with the test PKI (tests/data/mtls): agents
  // node1..node4 present their per-node certificates (larger meshes the shared
  // meshprobe-agent one) and sign probes with one cluster key; the CLI and the reflection
  // client present the reader certificate. Off: every daemon and client runs with
  // --insecure (agent_args may still add --probe-key-file).
  bool tls = false;
  // The aggregator's serving pair (tests that rotate it point these at their own copies).
  std::string aggregator_cert = mtlsFile("aggregator.pem");
  std::string aggregator_key = mtlsFile("aggregator.key");
  std::string tls_refresh = "1s";
  // Called once the control netns exists and before the aggregator starts (e.g. to start a
  // stand-in the aggregator reaches inside that netns).
  std::function<void(const TestNetns& control)> before_aggregator;
  // The agents' --aggregator ("" = grpcAddr()): e.g. a Service address in front of several
  // aggregators.
  std::string agent_aggregator;
};

class Mesh {
 public:
  explicit Mesh(MeshOptions options = {})
      : options_(std::move(options)), tmp_("mesh"), cluster_(ClusterOptions{.nodes = options_.nodes}) {
    tmp_.mkdir("logs");
    // The secure setup also signs probes: one cluster key, as the manifests' Secret.
    if (options_.tls) writeFile(tmp_.sub("probe-key"), "mesh-test-probe-key\n", 0400);
    control_ = &cluster_.addControl();
    istiod_pod_ = &cluster_.addPod(options_.istiod_node, "istiod", 10);
    const auto& c = testCerts();
    istiod_ = std::make_unique<Process>(istiod_pod_->name(),
                                        std::vector<std::string>{"openssl", "s_server", "-accept", "15012", "-cert",
                                                                 c.cert, "-key", c.key, "-www", "-alpn", "h2"},
                                        tmp_.sub("logs/istiod.log"));
    pid_t istiod_pid = istiod_->pid();
    waitFor([istiod_pid] { return tcpListening(istiod_pid, 15012); }, 10s, "istiod listener on 15012", istiod_.get());
    for (int n = 1; n <= options_.nodes; ++n) {
      tmp_.mkdir(nodeName(n) + "/host/proc");
      tmp_.mkdir(nodeName(n) + "/netns");
      writeFile(tmp_.sub(nodeName(n) + "/host/run/flannel/subnet.env"),
                "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244." + std::to_string(n) +
                    ".1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n");
    }
    if (options_.before_aggregator) options_.before_aggregator(*control_);
    startAggregator();
    for (int n = 1; n <= options_.nodes; ++n) {
      agents_.push_back(launch("agent-" + nodeName(n), cluster_.nodeNs(n), agentArgs(n),
                               tmp_.sub("logs/agent-" + nodeName(n) + ".log")));
    }
  }

  const Cluster& cluster() const { return cluster_; }
  Process& agent(int n) { return *agents_.at(n - 1); }
  Process& aggregator() { return *aggregator_; }
  std::string logsDir() const { return tmp_.sub("logs"); }
  static std::string grpcAddr() { return Cluster::controlIp() + ":" + std::to_string(kGrpcPort); }
  static std::string httpAddr() { return Cluster::controlIp() + ":9471"; }
  int nodes() const { return options_.nodes; }
  int istiodNode() const { return options_.istiod_node; }
  const TestNetns& control() const { return *control_; }
  const TestNetns& istiodPod() const { return *istiod_pod_; }
  Process& istiod() { return *istiod_; }
  // Kills istiod's TLS listener (the "istiod down" fault).
  void stopIstiod() { istiod_.reset(); }
  // The agents' --host-root / --netns-dir / --ztunnel-socket of node n.
  std::string hostRoot(int n) const { return tmp_.sub(nodeName(n) + "/host"); }
  std::string netnsDir(int n) const { return tmp_.sub(nodeName(n) + "/netns"); }
  std::string ztunnelSocket(int n) const { return tmp_.sub(nodeName(n) + "/ztunnel.sock"); }
  std::string tmpDir() const { return tmp_.path(); }

  // (Re)starts the aggregator on the same address; returns once its gRPC port listens.
  void startAggregator() {
    ++aggregator_runs_;
    std::vector<std::string> args = {kAggregatorBin,   "--grpc-listen",       grpcAddr(), "--http-listen",
                                     httpAddr(),       "--stale-after",       options_.stale_after,
                                     "--log-level",    logLevel()};
    if (options_.tls) {
      args.insert(args.end(), {"--tls-cert", options_.aggregator_cert, "--tls-key", options_.aggregator_key,
                               "--tls-client-ca", mtlsFile("ca.pem"), "--tls-refresh", options_.tls_refresh});
    } else {
      args.push_back("--insecure");
    }
    args.insert(args.end(), options_.aggregator_args.begin(), options_.aggregator_args.end());
    // Hermetic: the aggregator never looks for the cluster of the machine the test runs on
    // (a CI runner in a pod has KUBERNETES_SERVICE_HOST and a service account) unless the
    // test points it at one.
    const bool kube_given = std::any_of(options_.aggregator_args.begin(), options_.aggregator_args.end(),
                                        [](const std::string& a) { return a == "--kube" || a == "--kubeconfig"; });
    if (!kube_given) args.insert(args.end(), {"--kube", "off"});
    aggregator_ = launch("aggregator", control_->name(), args,
                         tmp_.sub("logs/aggregator-" + std::to_string(aggregator_runs_) + ".log"));
    pid_t pid = aggregator_->pid();
    waitFor([pid] { return tcpListening(pid, kGrpcPort); }, 20s, "aggregator gRPC listener", aggregator_.get());
  }

  std::vector<std::string> agentArgs(int n) const {
    const std::string dir = tmp_.sub(nodeName(n));
    std::vector<std::string> args = {kAgentBin,
            "--node-name",
            nodeName(n),
            "--node-ip",
            Cluster::nodeIp(n),
            "--aggregator",
            options_.agent_aggregator.empty() ? grpcAddr() : options_.agent_aggregator,
            "--interval",
            "1s",
            "--vxlan-port",
            "4789",
            "--istiod",
            Cluster::podIp(options_.istiod_node, 10) + ":15012",
            "--istiod-ca",
            testCerts().ca,
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
    if (options_.tls) {
      const std::string identity = n <= 4 ? nodeName(n) : "meshprobe-agent";
      args.insert(args.end(), {"--aggregator-ca", mtlsFile("ca.pem"), "--tls-cert", mtlsFile(identity + ".pem"),
                               "--tls-key", mtlsFile(identity + ".key"), "--tls-server-name", "meshprobe-aggregator",
                               "--probe-key-file", tmp_.sub("probe-key")});
    } else {
      args.push_back("--insecure");
    }
    args.insert(args.end(), options_.agent_args.begin(), options_.agent_args.end());
    return args;
  }

  // Restarts node n's agent (after stopAgent or a crash) with the same flags.
  void restartAgent(int n) {
    agents_.at(n - 1) = launch("agent-" + nodeName(n), cluster_.nodeNs(n), agentArgs(n),
                               tmp_.sub("logs/agent-" + nodeName(n) + "-restarted.log"));
  }
  // Ends node n's agent (SIGTERM, then SIGKILL) and waits for it.
  void stopAgent(int n) { agents_.at(n - 1).reset(); }

  // ---- the Query API ----

  // The CLI's flags for the mesh's gRPC port: the reader certificate, or --insecure.
  std::vector<std::string> cliTlsArgs() const {
    if (!options_.tls) return {"--insecure"};
    return {"--aggregator-ca", mtlsFile("ca.pem"),         "--tls-cert",        mtlsFile("meshprobe-reader.pem"),
            "--tls-key",       mtlsFile("meshprobe-reader.key"), "--tls-server-name", "meshprobe-aggregator"};
  }

  // meshprobe --aggregator ADDR --output json ARGS..., run in the control netns.
  CmdResult cli(const std::vector<std::string>& args) const {
    std::vector<std::string> argv = {kCliBin, "--aggregator", grpcAddr(),    "--output",
                                     "json",  "--timeout",    queryTimeout()};
    auto tls = cliTlsArgs();
    argv.insert(argv.end(), tls.begin(), tls.end());
    argv.insert(argv.end(), args.begin(), args.end());
    return runCommand(argv, queryOptions());
  }

  // mp_reflection_client [-d JSON] ADDR METHOD|list, run in the control netns (like grpcurl).
  CmdResult reflect(const std::string& method, const std::string& json = "") const {
    std::vector<std::string> argv = {kReflectionClientBin, "--timeout", queryTimeout()};
    if (options_.tls)
      argv.insert(argv.end(), {"-cacert", mtlsFile("ca.pem"), "-cert", mtlsFile("meshprobe-reader.pem"), "-key",
                               mtlsFile("meshprobe-reader.key"), "-servername", "meshprobe-aggregator"});
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

  // Diagnose through the CLI (`meshprobe diagnose [--node N] --output json`): the active findings.
  Findings diagnose(const std::string& node = "") const {
    std::vector<std::string> args = {"diagnose"};
    if (!node.empty()) args.insert(args.end(), {"--node", node});
    std::string error;
    auto j = parse(cli(args), &error);
    if (j.is_null()) {
      Findings f;
      f.error = error;
      return f;
    }
    return parseFindings(j);
  }

  // Everything that helps explain a failure: the three matrices, the nodes, log tails.
  std::string diagnostics() const {
    std::ostringstream o;
    o << "\n---- state at failure ----\n";
    for (const char* layer : {"UNDERLAY", "OVERLAY", "ISTIOD"}) o << matrix(layer).render(layer);
    std::string error;
    auto nodes = listNodes(Via::kCli, &error);
    o << "nodes: " << (nodes.is_null() ? error : nodes.dump()) << "\n";
    o << "diagnose: " << diagnose().render();
    // Each agent's probe summaries (loss, recent loss, RTT p50/p99, misses) behind the cells.
    for (int n = 1; n <= options_.nodes; ++n) {
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
    for (int n = 1; n <= options_.nodes; ++n) {
      o << "---- agent " << nodeName(n) << " log ----\n" << tail(agents_[n - 1]->log()) << "\n";
    }
    return o.str();
  }

 private:
  std::unique_ptr<Process> launch(const std::string& role, const std::string& netns,
                                  const std::vector<std::string>& argv, const std::string& log) const {
    if (!options_.launcher) return std::make_unique<Process>(netns, argv, log);
    return std::make_unique<Process>("", options_.launcher(role, netns, argv), log);
  }

  std::string queryTimeout() const { return std::to_string(options_.query_timeout.count()) + "s"; }

  CmdOptions queryOptions() const {
    CmdOptions o;
    o.netns = control_->name();
    o.timeout = std::max<std::chrono::milliseconds>(10s, options_.query_timeout + 5s);
    o.drop_meshprobe_env = true;
    return o;
  }

  // Destroyed bottom-up: agents, aggregator, istiod, then the namespaces, then the temp dir.
  MeshOptions options_;
  TempDir tmp_;
  Cluster cluster_;
  const TestNetns* control_ = nullptr;
  const TestNetns* istiod_pod_ = nullptr;
  int aggregator_runs_ = 0;
  std::unique_ptr<Process> istiod_;
  std::unique_ptr<Process> aggregator_;
  std::vector<std::unique_ptr<Process>> agents_;
};

[[maybe_unused]] const nlohmann::json* findNode(const nlohmann::json& list, const std::string& name) {
  if (!list.is_object() || !list.contains("nodes") || !list["nodes"].is_array()) return nullptr;
  for (const auto& n : list["nodes"]) {
    if (n.value("name", "") == name) return &n;
  }
  return nullptr;
}

class MeshTest : public ::testing::Test {
 protected:
  // Subclasses change the mesh (node count, extra flags) here.
  virtual MeshOptions meshOptions() const { return {}; }

  void SetUp() override {
    std::string why;
    if (!havePrivileges(&why)) GTEST_SKIP() << why;
    dropMeshprobeEnv();
    mesh_ = std::make_unique<Mesh>(meshOptions());
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
    auto held = test::eventually(
        what,
        [&] {
          std::string now = mismatch();
          if (verbose && *verbose && now != last) {
            std::cerr << "[" << seconds(secondsSince(t0)) << "] " << what << ":\n" << (now.empty() ? "  holds\n" : now);
          }
          last = now;
          return now;
        },
        timeout, kMeshPollInterval);
    if (held) {
      if (elapsed) *elapsed = secondsSince(t0);
      return held;
    }
    return held << mesh_->diagnostics();
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
    return matrixMismatch(layer, mesh_->matrix(layer, via), expect, mesh_->nodes());
  }

  // Both probe layers completely OK (and, with `istiod`, the ISTIOD column too).
  std::string healthyMismatch(bool istiod, Via via = Via::kCli) {
    std::string out = layerMismatch("UNDERLAY", kAllOk, via) + layerMismatch("OVERLAY", kAllOk, via);
    if (istiod) {
      out += istiodMismatch(mesh_->matrix("ISTIOD", via), [](int) { return std::string("OK"); }, mesh_->nodes());
    }
    return out;
  }

  ::testing::AssertionResult waitHealthy(Via via = Via::kCli, double* elapsed = nullptr) {
    return eventually(
        "every UNDERLAY, OVERLAY and ISTIOD cell OK", [&] { return healthyMismatch(true, via); }, 60s, elapsed);
  }

  std::unique_ptr<Mesh> mesh_;
};

}  // namespace
}  // namespace meshprobe::e2e
