// Mutual TLS on the aggregator's gRPC port, end to end in namespaces: the real aggregator,
// agents, CLI and a grpcurl-like reflection client with the test PKI (tests/data/mtls).
// Agents node1..node4 present per-node certificates; the CLI and reflection client a
// reader certificate.
#include <filesystem>

#include "tests/e2e/mesh.h"

namespace meshprobe::e2e {
namespace {

namespace fs = std::filesystem;

class TlsMeshTest : public MeshTest {
 protected:
  MeshOptions meshOptions() const override {
    MeshOptions o;
    o.tls = true;
    // The serving pair in a directory the test may rewrite (rotation), re-read every second.
    o.aggregator_cert = serving_dir_.sub("tls.crt");
    o.aggregator_key = serving_dir_.sub("tls.key");
    o.tls_refresh = "1s";
    return o;
  }
  void SetUp() override {
    writeFile(serving_dir_.sub("tls.crt"), readFile(mtlsFile("aggregator.pem")));
    writeFile(serving_dir_.sub("tls.key"), readFile(mtlsFile("aggregator.key")), 0600);
    MeshTest::SetUp();
  }

  // GET on the aggregator's plaintext HTTP port (bash /dev/tcp, as the observability test).
  std::string aggregatorMetrics() {
    CmdOptions o;
    o.netns = mesh_->control().name();
    o.timeout = 10s;
    auto r = runCommand({"bash", "-c",
                         "exec 3<>/dev/tcp/$1/$2 || exit 7; printf 'GET /metrics HTTP/1.1\\r\\nHost: x\\r\\n"
                         "Connection: close\\r\\n\\r\\n' >&3; cat <&3",
                         "fetch", Cluster::controlIp(), "9471"},
                        o);
    return r.out;
  }

  // The serving certificate a TLS client sees now (openssl s_client with the reader
  // certificate, from the control netns), PEM.
  std::string servedCertificate() {
    CmdOptions o;
    o.netns = mesh_->control().name();
    o.timeout = 10s;
    auto r = runCommand({"sh", "-c",
                         "openssl s_client -connect \"$1\" -servername meshprobe-aggregator -CAfile \"$2\" "
                         "-cert \"$3\" -key \"$4\" </dev/null 2>/dev/null | openssl x509",
                         "served", Mesh::grpcAddr(), mtlsFile("ca.pem"), mtlsFile("meshprobe-reader.pem"),
                         mtlsFile("meshprobe-reader.key")},
                        o);
    return r.out;
  }

  TempDir serving_dir_{"serving"};
};

bool has(const std::string& s, const std::string& what) { return s.find(what) != std::string::npos; }
std::string tail(const std::string& s, size_t n) { return s.size() <= n ? s : s.substr(s.size() - n); }
// The value of one series in a /metrics text ("" when absent).
std::string metricValue(const std::string& text, const std::string& series) {
  auto at = text.find("\n" + series + " ");
  if (at == std::string::npos) return "";
  at += series.size() + 2;
  return text.substr(at, text.find('\n', at) - at);
}

// Every cell OK over mutual TLS, read through the CLI and the reflection client with the
// reader certificate (grpcurl -cacert -cert -key: list, then a Query call).
TEST_F(TlsMeshTest, HealthyOverMutualTlsCliAndReflectionWithReaderCertificate) {
  double healthy = 0;
  ASSERT_TRUE(waitHealthy(Via::kCli, &healthy));
  std::cout << "healthy over mutual TLS after start: " << seconds(healthy) << std::endl;
  auto list = mesh_->reflect("list");
  ASSERT_EQ(list.exit_code, 0) << list.describe();
  EXPECT_TRUE(has(list.out, "meshprobe.v1.Query")) << list.out;
  std::string error;
  auto nodes = mesh_->listNodes(Via::kReflection, &error);
  ASSERT_FALSE(nodes.is_null()) << error;
  EXPECT_EQ(nodes["nodes"].size(), static_cast<size_t>(mesh_->nodes())) << nodes.dump(2);
}

// node2's certificate claiming node3: refused with both names, node3's facts unchanged.
TEST_F(TlsMeshTest, CertificateForNode2CannotReportAsNode3) {
  ASSERT_TRUE(waitHealthy());
  std::vector<std::string> args = mesh_->agentArgs(2);
  // Same flags as node2's agent (its certificate), but the name node3 and other ports.
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == "--node-name") args[i + 1] = "node3";
  }
  args.insert(args.end(), {"--http-listen", "127.0.0.1:19472", "--probe-port", "19473"});
  TempDir logs("impostor");
  Process impostor(mesh_->cluster().nodeNs(2), args, logs.sub("agent.log"));
  EXPECT_TRUE(eventually(
      "the impostor's stream refused with PERMISSION_DENIED naming node2 and node3",
      [&] {
        std::string log = readFile(logs.sub("agent.log"));
        return has(log, "PERMISSION_DENIED") && has(log, "'node2'") && has(log, "'node3'") ? "" : tail(log, 1500);
      },
      20s));
  EXPECT_TRUE(eventually(
      "the aggregator counts the refusal",
      [&] {
        auto v = metricValue(aggregatorMetrics(),
                             "meshprobe_aggregator_ingest_errors_total{reason=\"permission_denied\"}");
        return !v.empty() && v != "0" ? "" : "permission_denied = '" + v + "'";
      },
      10s));
  std::string error;
  auto node3 = mesh_->getNode("node3", &error);
  ASSERT_FALSE(node3.is_null()) << error;
  EXPECT_EQ(node3["node"].value("nodeIp", ""), Cluster::nodeIp(3)) << node3.dump(2);
  EXPECT_TRUE(healthyMismatch(true).empty());
}

// Without a client certificate (or with one from another CA) nothing is served: the
// handshake fails before any service, Query, Collector or reflection, is reached.
TEST_F(TlsMeshTest, ClientsWithoutCertificateAreRefused) {
  ASSERT_TRUE(waitHealthy());
  CmdOptions o;
  o.netns = mesh_->control().name();
  o.timeout = 15s;
  const std::vector<std::string> base = {kReflectionClientBin, "--timeout", "3s"};
  auto run = [&](std::vector<std::string> tls, const std::string& method) {
    std::vector<std::string> argv = base;
    argv.insert(argv.end(), tls.begin(), tls.end());
    argv.insert(argv.end(), {Mesh::grpcAddr(), method});
    return runCommand(argv, o);
  };
  const std::vector<std::string> no_cert = {"-cacert", mtlsFile("ca.pem"), "-servername", "meshprobe-aggregator"};
  for (const char* method : {"list", "meshprobe.v1.Query/ListNodes", "meshprobe.v1.Collector/Connect"}) {
    auto r = run(no_cert, method);
    EXPECT_NE(r.exit_code, 0) << method << ": " << r.describe();
  }
  auto plaintext = run({"-plaintext"}, "meshprobe.v1.Query/ListNodes");
  EXPECT_NE(plaintext.exit_code, 0) << plaintext.describe();
  auto other_ca = run({"-cacert", mtlsFile("ca.pem"), "-cert", mtlsFile("untrusted-node2.pem"), "-key",
                       mtlsFile("untrusted-node2.key"), "-servername", "meshprobe-aggregator"},
                      "meshprobe.v1.Query/ListNodes");
  EXPECT_NE(other_ca.exit_code, 0) << other_ca.describe();
  // The CLI without its TLS flags: plaintext against the TLS port fails with exit 1.
  auto cli = runCommand({kCliBin, "--aggregator", Mesh::grpcAddr(), "--timeout", "3s", "nodes"}, o);
  EXPECT_EQ(cli.exit_code, 1) << cli.describe();
  // The same reflection client with the reader certificate works (the refusals above were
  // the certificate, not the client).
  auto ok = run({"-cacert", mtlsFile("ca.pem"), "-cert", mtlsFile("meshprobe-reader.pem"), "-key",
                 mtlsFile("meshprobe-reader.key"), "-servername", "meshprobe-aggregator"},
                "meshprobe.v1.Query/ListNodes");
  EXPECT_EQ(ok.exit_code, 0) << ok.describe();
}

// The serving certificate rotated on disk: new handshakes get it within a few refresh
// periods, no daemon restarts, and no agent's stream drops.
TEST_F(TlsMeshTest, RotatedCertificatePickedUpWithoutRestart) {
  ASSERT_TRUE(waitHealthy());
  const std::string before = servedCertificate();
  ASSERT_EQ(before, readFile(mtlsFile("aggregator.pem")));
  const pid_t aggregator_pid = mesh_->aggregator().pid();
  // One full peer list goes to each new stream: unchanged means no agent reconnected.
  const std::string full_lists_series = "meshprobe_aggregator_membership_messages_total{kind=\"full\"}";
  const std::string full_lists = metricValue(aggregatorMetrics(), full_lists_series);
  ASSERT_FALSE(full_lists.empty());
  // Key first, then the certificate, each by rename (as a Secret volume swaps its files);
  // in between the pair does not match and the old one stays in use.
  auto replace = [](const std::string& from, const std::string& to, mode_t mode) {
    writeFile(to + ".new", readFile(from), mode);
    fs::rename(to + ".new", to);
  };
  const auto t0 = SteadyClock::now();
  replace(mtlsFile("aggregator-rotated.key"), serving_dir_.sub("tls.key"), 0600);
  replace(mtlsFile("aggregator-rotated.pem"), serving_dir_.sub("tls.crt"), 0644);
  const std::string rotated = readFile(mtlsFile("aggregator-rotated.pem"));
  double took = 0;
  EXPECT_TRUE(eventually(
      "the rotated certificate served", [&] { return servedCertificate() == rotated ? "" : "old certificate"; }, 20s,
      &took, t0));
  std::cout << "rotated certificate served after " << seconds(took) << " (--tls-refresh 1s)" << std::endl;
  EXPECT_EQ(mesh_->aggregator().pid(), aggregator_pid);
  EXPECT_TRUE(mesh_->aggregator().alive());
  // Streams opened before the rotation are still the ones in use: no agent reconnected.
  auto m = aggregatorMetrics();
  EXPECT_EQ(metricValue(m, full_lists_series), full_lists);
  EXPECT_EQ(metricValue(m, "meshprobe_aggregator_connected_agents"), std::to_string(mesh_->nodes()));
  EXPECT_TRUE(healthyMismatch(true).empty());
}

// The daemons refuse to start without TLS flags or --insecure, with one line naming them.
TEST(TlsFlags, DaemonsRefuseToStartWithoutTlsOrInsecure) {
  std::string why;
  if (!havePrivileges(&why)) GTEST_SKIP() << why;
  CmdOptions o;
  o.timeout = 10s;
  o.drop_meshprobe_env = true;
  auto agg = runCommand({kAggregatorBin, "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"}, o);
  EXPECT_EQ(agg.exit_code, 2) << agg.describe();
  for (const char* flag : {"--tls-cert", "--tls-key", "--tls-client-ca", "--insecure"})
    EXPECT_TRUE(has(agg.err, flag)) << agg.describe();
  auto agent = runCommand({kAgentBin, "--aggregator", "127.0.0.1:9", "--probe-key-file", mtlsFile("ca.pem")}, o);
  EXPECT_EQ(agent.exit_code, 2) << agent.describe();
  for (const char* flag : {"--aggregator-ca", "--tls-cert", "--tls-key", "--insecure"})
    EXPECT_TRUE(has(agent.err, flag)) << agent.describe();
  auto no_key = runCommand({kAgentBin, "--aggregator", "127.0.0.1:9", "--aggregator-ca", mtlsFile("ca.pem"),
                            "--tls-cert", mtlsFile("node1.pem"), "--tls-key", mtlsFile("node1.key")},
                           o);
  EXPECT_EQ(no_key.exit_code, 2) << no_key.describe();
  EXPECT_TRUE(has(no_key.err, "--probe-key-file")) << no_key.describe();
}

}  // namespace
}  // namespace meshprobe::e2e
