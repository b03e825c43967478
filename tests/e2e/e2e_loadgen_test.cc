// meshprobe-loadgen against the real aggregator binary on loopback (ephemeral ports):
// 50 simulated agents join, a node fault and a pair fault show in Diagnose with the right
// nodes and layers after the `injected` line, clear after SIGUSR2 and show again after
// SIGUSR1, nothing listening is a clear non-zero
// exit, an aggregator under --grpc-memory-limit takes in 1,000 agents with no stream
// lost, and large first reports whose results follow in deltas make a complete matrix.
// Needs no privileges; traffic stays on 127.0.0.1.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <regex>
#include <string>

#include "common/result.h"
#include "meshprobe/v1/query.grpc.pb.h"
#include "tests/e2e/harness.h"
#include "tests/support/eventually.h"

namespace meshprobe::e2e {
namespace {

using namespace std::chrono_literals;
using test::eventually;

constexpr const char* kLoadgen = MESHPROBE_LOADGEN_BIN;
constexpr const char* kAggregator = MESHPROBE_AGGREGATOR_BIN;

// The first "(port N)" in a log line that contains `what`; 0 until it is there.
int portFromLog(const std::string& log, const std::string& what) {
  std::regex re(what + R"(.*\(port ([0-9]+)\))");
  std::smatch m;
  return std::regex_search(log, m, re) ? std::atoi(m[1].str().c_str()) : 0;
}

bool hasNode(const v1::Finding& f, const std::string& name) {
  return std::find(f.nodes().begin(), f.nodes().end(), name) != f.nodes().end();
}

std::string describe(const v1::DiagnoseResponse& resp) {
  std::string s;
  for (const auto& f : resp.findings()) {
    s += f.code() + " layer=" + v1::Layer_Name(f.layer()) + " nodes=[";
    for (const auto& n : f.nodes()) s += n + " ";
    s += "]\n";
  }
  return s.empty() ? "(no findings)" : s;
}

class LoadgenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    aggregator_ = std::make_unique<Process>(
        "", std::vector<std::string>{kAggregator, "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
                                 "--insecure"},
        tmp_.sub("aggregator.log"));
    ASSERT_TRUE(eventually([&] { return portFromLog(aggregator_->log(), "serving gRPC") > 0; },
                           [&] { return aggregator_->describe(); }, 20s, 20ms));
    addr_ = "127.0.0.1:" + std::to_string(portFromLog(aggregator_->log(), "serving gRPC"));
    query_ = v1::Query::NewStub(grpc::CreateChannel(addr_, grpc::InsecureChannelCredentials()));
  }

  Result<v1::ListNodesResponse> listNodes() {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 3s);
    v1::ListNodesResponse resp;
    auto st = query_->ListNodes(&ctx, {}, &resp);
    if (!st.ok()) return Error{"ListNodes: " + st.error_message()};
    return resp;
  }
  Result<v1::DiagnoseResponse> diagnose() {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 3s);
    v1::DiagnoseResponse resp;
    auto st = query_->Diagnose(&ctx, {}, &resp);
    if (!st.ok()) return Error{"Diagnose: " + st.error_message()};
    return resp;
  }

  TempDir tmp_{"loadgen"};
  std::unique_ptr<Process> aggregator_;
  std::string addr_;
  std::unique_ptr<v1::Query::Stub> query_;
};

TEST_F(LoadgenTest, FiftyNodesJoinAndInjectedFaultsShowInDiagnose) {
  const auto started = std::chrono::system_clock::now();
  Process loadgen("",
                  {kLoadgen, "--insecure", "--aggregator", addr_, "--nodes", "50", "--interval", "1s", "--duration", "120s",
                   "--fault-node", "sim-0007:underlay", "--fault-pair", "sim-0002:sim-0003:overlay", "--fault-after",
                   "3s", "--watch-diagnose"},
                  tmp_.sub("loadgen.log"));

  // Every simulated node is a member and up (reporting).
  EXPECT_TRUE(eventually(
      "50 sim nodes up",
      [&]() -> std::string {
        auto r = listNodes();
        if (!r.ok()) return r.error().message;
        size_t up = 0;
        for (const auto& n : r->nodes()) up += n.up() && n.name().rfind("sim-", 0) == 0 ? 1 : 0;
        if (r->nodes_size() == 50 && up == 50) return "";
        return std::to_string(r->nodes_size()) + " nodes, " + std::to_string(up) + " up\n" + loadgen.describe();
      },
      30s, 100ms));

  // One `injected <unix seconds>` line, within the run.
  std::smatch m;
  std::string log;
  ASSERT_TRUE(eventually(
      [&] {
        log = loadgen.log();
        return std::regex_search(log, m, std::regex(R"(injected ([0-9]+\.[0-9]+)\n)"));
      },
      [&] { return loadgen.describe(); }, 20s, 100ms));
  const double injected = std::atof(m[1].str().c_str());
  const double start_s = std::chrono::duration<double>(started.time_since_epoch()).count();
  EXPECT_GE(injected, start_s + 2.5);
  EXPECT_LE(injected, start_s + 20);

  // The node fault blames sim-0007 on UNDERLAY; the pair fault names both ends on OVERLAY;
  // no finding blames a healthy node.
  EXPECT_TRUE(eventually(
      "both faults in Diagnose",
      [&]() -> std::string {
        auto r = diagnose();
        if (!r.ok()) return r.error().message;
        bool node = false, pair = false;
        for (const auto& f : r->findings()) {
          node = node || (f.layer() == v1::UNDERLAY && hasNode(f, "sim-0007"));
          pair = pair || (f.layer() == v1::OVERLAY && hasNode(f, "sim-0002") && hasNode(f, "sim-0003"));
        }
        return node && pair ? "" : describe(*r);
      },
      30s, 100ms));
  auto r = diagnose();
  ASSERT_TRUE(r.ok()) << r.error().message;
  for (const auto& f : r->findings()) {
    for (const auto& n : f.nodes()) {
      EXPECT_TRUE(n == "sim-0007" || n == "sim-0002" || n == "sim-0003") << describe(*r);
    }
  }
  // --watch-diagnose: one `visible` line, after the injection, with the findings' onset
  // (when the diagnosis first saw both faults) between the injection and that time.
  ASSERT_TRUE(eventually(
      [&] {
        log = loadgen.log();
        return std::regex_search(
            log, m, std::regex(R"(visible ([0-9]+\.[0-9]+) after ([0-9]+\.[0-9]+) s \(onset after (-?[0-9]+\.[0-9]+) s\)\n)"));
      },
      [&] { return loadgen.describe(); }, 20s, 100ms));
  const double visible_at = std::atof(m[1].str().c_str()), after = std::atof(m[2].str().c_str()),
               onset_after = std::atof(m[3].str().c_str());
  EXPECT_NEAR(visible_at - injected, after, 0.5) << log;
  EXPECT_GT(after, 0.5) << log;  // at least a probe, a report and the onset hold
  EXPECT_GE(onset_after, 0.0) << log;
  EXPECT_LE(onset_after, after) << log;
  // Exactly one injected line.
  log = loadgen.log();
  size_t lines = 0;
  for (size_t pos = 0; (pos = log.find("injected ", pos)) != std::string::npos; ++pos) ++lines;
  EXPECT_EQ(lines, 1u) << log;

  // SIGUSR2 heals both faults: a `healed` line, the injection's fault reports on stderr
  // (every witness of sim-0007 and both pair ends wrote a failing report, and so did
  // sim-0007 itself), then `cleared` once Diagnose shows neither fault.
  loadgen.signal(SIGUSR2);
  ASSERT_TRUE(eventually([&] { return loadgen.log().find("\nhealed ") != std::string::npos; },
                         [&] { return loadgen.describe(); }, 10s, 50ms));
  log = loadgen.log();
  ASSERT_TRUE(std::regex_search(
      log, m, std::regex(R"(fault reports written after the injection: witnesses=([0-9]+) .* faulted_node_s=(-?[0-9.]+) )")))
      << log;
  EXPECT_EQ(std::atoi(m[1].str().c_str()), 49) << log;  // sim-0007's 49 peers (sim-0002/3 among them)
  EXPECT_GE(std::atof(m[2].str().c_str()), 0.0) << log;
  ASSERT_TRUE(eventually(
      [&] {
        log = loadgen.log();
        return std::regex_search(log, m, std::regex(R"(\ncleared after ([0-9]+\.[0-9]+) s\n)"));
      },
      [&] { return loadgen.describe(); }, 60s, 100ms));
  std::cout << "cleared after " << m[1].str() << " s" << std::endl;
  // The next reports carry the recovered results: the findings clear after their clear
  // hold (5 s) and a report interval, not when the agents' digests come round (30 s).
  EXPECT_LT(std::atof(m[1].str().c_str()), 12.0) << log;
  r = diagnose();
  ASSERT_TRUE(r.ok()) << r.error().message;
  for (const auto& f : r->findings()) {
    EXPECT_FALSE(hasNode(f, "sim-0007") && f.layer() == v1::UNDERLAY) << describe(*r);
    EXPECT_FALSE(hasNode(f, "sim-0002") && f.layer() == v1::OVERLAY) << describe(*r);
  }
  // SIGUSR1 injects them again: a second `injected` and a second `visible` line.
  loadgen.signal(SIGUSR1);
  ASSERT_TRUE(eventually(
      [&] {
        log = loadgen.log();
        size_t visible = 0;
        for (size_t pos = 0; (pos = log.find("\nvisible ", pos)) != std::string::npos; ++pos) ++visible;
        return visible == 2;
      },
      [&] { return loadgen.describe(); }, 30s, 100ms));
  lines = 0;
  for (size_t pos = 0; (pos = log.find("injected ", pos)) != std::string::npos; ++pos) ++lines;
  EXPECT_EQ(lines, 2u) << log;

  // SIGTERM ends the run with the summary.
  loadgen.signal(SIGTERM);
  EXPECT_TRUE(eventually([&] { return !loadgen.alive(); }, [&] { return loadgen.describe(); }, 15s, 50ms));
  EXPECT_EQ(loadgen.exitCode(), 0) << loadgen.describe();
  EXPECT_NE(loadgen.log().find("streams_connected_max=50 "), std::string::npos) << loadgen.describe();
  // Current agents: the aggregator starts every stream with a whole PeerList, so no delta
  // comes before one.
  EXPECT_NE(loadgen.log().find(" membership=delta "), std::string::npos) << loadgen.describe();
  EXPECT_NE(loadgen.log().find(" peer_deltas_ignored=0 "), std::string::npos) << loadgen.describe();
}

// Agents whose probe budget makes a coverage period of 10 intervals (300 nodes, 30 probes a
// second): a stream's first report of all 598 results carries 512 of them and says the rest
// follow (Report.results_follow); the delta after it carries the other 86. The real
// aggregator applies both: every cell of both layers ends up OK, none UNKNOWN.
TEST_F(LoadgenTest, ResultsThatFollowALargeFirstReportCompleteEveryRow) {
  constexpr int kNodes = 300;
  Process loadgen("",
                  {kLoadgen, "--insecure", "--aggregator", addr_, "--nodes", std::to_string(kNodes), "--interval", "1s",
                   "--probe-budget", "30", "--duration", "120s"},
                  tmp_.sub("loadgen.log"));
  auto cells = [&](v1::Layer layer, v1::Cell::State state) -> Result<size_t> {
    size_t n = 0;
    std::string token;
    for (int page = 0; page < 100; ++page) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + 5s);
      v1::GetMatrixRequest req;
      req.set_layer(layer);
      req.add_states(state);
      req.set_page_token(token);
      v1::GetMatrixResponse resp;
      auto st = query_->GetMatrix(&ctx, req, &resp);
      if (!st.ok()) return Error{"GetMatrix: " + st.error_message()};
      for (const auto& c : resp.cells()) n += c.src() != c.dst() ? 1 : 0;
      token = resp.next_page_token();
      if (token.empty()) return n;
    }
    return Error{"GetMatrix: more than 100 pages"};
  };
  const size_t pairs = static_cast<size_t>(kNodes) * (kNodes - 1);
  EXPECT_TRUE(eventually(
      "every cell of both layers OK",
      [&]() -> std::string {
        auto r = listNodes();
        if (!r.ok()) return r.error().message;
        size_t up = 0;
        for (const auto& n : r->nodes()) up += n.up() ? 1 : 0;
        if (up != kNodes) return std::to_string(up) + " up\n" + loadgen.describe();
        for (v1::Layer layer : {v1::UNDERLAY, v1::OVERLAY}) {
          auto ok = cells(layer, v1::Cell::OK);
          if (!ok.ok()) return ok.error().message;
          if (*ok != pairs) return v1::Layer_Name(layer) + ": " + std::to_string(*ok) + " OK cells";
        }
        return "";
      },
      60s, 500ms));
  for (v1::Layer layer : {v1::UNDERLAY, v1::OVERLAY}) {
    auto unknown = cells(layer, v1::Cell::UNKNOWN);
    ASSERT_TRUE(unknown.ok()) << unknown.error().message;
    EXPECT_EQ(*unknown, 0u) << v1::Layer_Name(layer);
  }
  loadgen.signal(SIGTERM);
  EXPECT_TRUE(eventually([&] { return !loadgen.alive(); }, [&] { return loadgen.describe(); }, 15s, 50ms));
  EXPECT_EQ(loadgen.exitCode(), 0) << loadgen.describe();
  EXPECT_NE(loadgen.log().find(" stream_errors=0 "), std::string::npos) << loadgen.describe();
  // Streams that opened before most members joined had small first reports; the others split theirs.
  std::smatch m;
  const std::string log = loadgen.log();
  ASSERT_TRUE(std::regex_search(log, m, std::regex(R"( results_follow=([0-9]+) )"))) << log;
  EXPECT_GE(std::atoi(m[1].str().c_str()), 1) << log;
}


TEST(LoadgenNoAggregator, ExitsNonZeroNamingTheAddress) {
  // A port bound but not listening, held for the test: connects are refused.
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  socklen_t len = sizeof sa;
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len), 0);
  const std::string addr = "127.0.0.1:" + std::to_string(ntohs(sa.sin_port));

  const auto t0 = std::chrono::steady_clock::now();
  CmdOptions opts;
  opts.timeout = 30s;
  opts.drop_meshprobe_env = true;
  auto res = runCommand({kLoadgen, "--insecure", "--aggregator", addr, "--nodes", "10", "--connect-timeout", "2s"}, opts);
  const auto took = std::chrono::steady_clock::now() - t0;
  ::close(fd);
  EXPECT_FALSE(res.timed_out);
  EXPECT_EQ(res.exit_code, 1) << res.describe();
  EXPECT_NE(res.err.find("cannot connect to the aggregator at " + addr), std::string::npos) << res.err;
  // Bounded by --connect-timeout (2 s), with room for a loaded machine.
  EXPECT_LT(took, 15s);
}

// The smallest cap the flag accepts, 1,000 simulated agents joining at once, each starting
// with a whole report of 1,000 peers × 2 layers: the quota runs out and gRPC reclaims read
// buffers thousands of times meanwhile (GRPC_TRACE=resource_quota logs each), yet every
// agent is up and no stream ended.
TEST(LoadgenMemoryLimit, AThousandAgentsUnderTheSmallestCapLoseNoStream) {
  TempDir tmp{"loadgen-limit"};
  Process aggregator("",
                     {kAggregator, "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--insecure",
                      "--grpc-memory-limit", "32Mi"},
                     tmp.sub("aggregator.log"));
  ASSERT_TRUE(eventually([&] { return portFromLog(aggregator.log(), "serving gRPC") > 0; },
                         [&] { return aggregator.describe(); }, 20s, 20ms));
  EXPECT_NE(aggregator.log().find("gRPC transport buffers capped at 33554432 bytes"), std::string::npos)
      << aggregator.describe();
  const std::string addr = "127.0.0.1:" + std::to_string(portFromLog(aggregator.log(), "serving gRPC"));
  auto query = v1::Query::NewStub(grpc::CreateChannel(addr, grpc::InsecureChannelCredentials()));
  Process loadgen("", {kLoadgen, "--insecure", "--aggregator", addr, "--nodes", "1000", "--interval", "1s"},
                  tmp.sub("loadgen.log"));
  EXPECT_TRUE(eventually(
      "1000 sim nodes up",
      [&]() -> std::string {
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + 3s);
        v1::ListNodesResponse resp;
        auto st = query->ListNodes(&ctx, {}, &resp);
        if (!st.ok()) return "ListNodes: " + st.error_message();
        size_t up = 0;
        for (const auto& n : resp.nodes()) up += n.up() ? 1 : 0;
        if (resp.nodes_size() == 1000 && up == 1000) return "";
        return std::to_string(resp.nodes_size()) + " nodes, " + std::to_string(up) + " up\n" + loadgen.describe();
      },
      60s, 200ms));
  loadgen.signal(SIGTERM);
  EXPECT_TRUE(eventually([&] { return !loadgen.alive(); }, [&] { return loadgen.describe(); }, 30s, 50ms));
  EXPECT_EQ(loadgen.exitCode(), 0) << loadgen.describe();
  EXPECT_NE(loadgen.log().find(" stream_errors=0 "), std::string::npos) << loadgen.describe();
  EXPECT_NE(loadgen.log().find(" streams_started=1000 "), std::string::npos) << loadgen.describe();
}

TEST(LoadgenMemoryLimit, TheAggregatorRefusesACapBelow32Mi) {
  CmdOptions opts;
  opts.timeout = 30s;
  opts.drop_meshprobe_env = true;
  for (const char* bad : {"16Mi", "1.5Gi", "lots"}) {
    auto res = runCommand({kAggregator, "--insecure", "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
                           "--grpc-memory-limit", bad},
                          opts);
    EXPECT_EQ(res.exit_code, 2) << res.describe();
    EXPECT_NE(res.err.find(std::string("--grpc-memory-limit '") + bad + "' must be 0 (no cap) or"), std::string::npos)
        << res.err;
  }
}

}  // namespace
}  // namespace meshprobe::e2e
