#include "agent/checks/istiod_check.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/unit/agent/istiod/tls_test_server.h"

using namespace meshprobe;
using namespace meshprobe::agent;
using namespace meshprobe::agent::testing;
using namespace std::chrono_literals;
using ::testing::Contains;
using ::testing::HasSubstr;

namespace {

IstiodCheckOptions testOptions(Duration timeout = 3s) {
  IstiodCheckOptions o;
  o.probe_timeout = timeout;
  o.resolver = [](const std::string& host, Duration) -> Result<std::vector<std::string>> {
    if (host == "istiod.istio-system.svc") return std::vector<std::string>{"127.0.0.1"};
    return Error{"no such host"};
  };
  return o;
}

TEST(IstiodProbeTimeout, ThreeSecondsOrTheCheckTimeoutMinusAMargin) {
  EXPECT_EQ(istiodProbeTimeout(5s), 3s);
  EXPECT_EQ(istiodProbeTimeout(1s), 800ms);
  EXPECT_EQ(istiodProbeTimeout(300ms), 150ms);
}

TEST(IstiodCheck, HealthyIstiodIsOkWithStagesAlpnVersionAndSubject) {
  TestIstiodServer server(ServerMode::kTlsH2);
  AgentConfig config;
  config.istiod = "istiod.istio-system.svc:" + std::to_string(server.port());
  config.istiod_ca = istiodTestData("ca.pem");
  IstiodCheck check(config, testOptions());
  auto r = check.run();
  ASSERT_EQ(r.status, CheckStatus::kOk) << r.summary;
  EXPECT_EQ(r.name, "istiod");
  EXPECT_THAT(r.summary, HasSubstr(config.istiod));
  EXPECT_THAT(r.summary, HasSubstr("ALPN h2"));
  EXPECT_THAT(r.summary, HasSubstr("chain verified"));
  EXPECT_TRUE(r.findings.empty());
  const auto& d = r.details;
  EXPECT_EQ(d["alpn"], "h2");
  EXPECT_THAT(d["tls_version"].get<std::string>(), ::testing::StartsWith("TLSv1."));
  EXPECT_EQ(d["peer_subject"], "CN=istiod,O=cluster.local");
  EXPECT_THAT(d["peer_sans"].get<std::vector<std::string>>(), Contains("DNS:istiod.istio-system.svc"));
  EXPECT_EQ(d["chain"], "chain verified");
  EXPECT_EQ(d["chain_verified"], true);
  for (const char* s : {"dns", "connect", "tls"}) {
    ASSERT_TRUE(d["stages"].contains(s)) << s;
    EXPECT_EQ(d["stages"][s]["ok"], true);
    EXPECT_GE(d["stages"][s]["latency_ms"].get<double>(), 0.0);
  }
  EXPECT_EQ(d["timeout_ms"], 3000.0);
  EXPECT_FALSE(d.contains("failed_stage"));
}

TEST(IstiodCheck, WithoutCaSaysTheChainIsNotVerified) {
  TestIstiodServer server(ServerMode::kTlsH2);
  AgentConfig config;
  config.istiod = server.endpoint();
  IstiodCheck check(config, testOptions());
  auto r = check.run();
  ASSERT_EQ(r.status, CheckStatus::kOk) << r.summary;
  EXPECT_EQ(r.details["chain"], "chain not verified: no --istiod-ca");
  EXPECT_THAT(r.summary, HasSubstr("chain not verified: no --istiod-ca"));
}

TEST(IstiodCheck, RefusedConnectIsIstiodUnreachableAtStageConnect) {
  ClosedPort port;
  AgentConfig config;
  config.istiod = port.endpoint();
  IstiodCheck check(config, testOptions());
  auto r = check.run();
  ASSERT_EQ(r.status, CheckStatus::kFail);
  EXPECT_EQ(r.summary, "connect to " + port.endpoint() + ": connection refused");
  EXPECT_EQ(r.details["failed_stage"], "connect");
  ASSERT_EQ(r.findings.size(), 1u);
  const auto& f = r.findings[0];
  EXPECT_EQ(f.code, "ISTIOD_UNREACHABLE");
  EXPECT_EQ(f.layer, Layer::kIstiod);
  EXPECT_EQ(f.severity, Severity::kCritical);
  EXPECT_TRUE(f.nodes.empty());
  EXPECT_THAT(f.evidence, Contains("stage=connect"));
  EXPECT_THAT(f.evidence, Contains("error=connection refused"));
  EXPECT_THAT(f.remedy, HasSubstr("listening on port 15012"));
  EXPECT_THAT(f.remedy, HasSubstr("Service"));
  EXPECT_THAT(f.remedy, HasSubstr("network connectivity from this node"));
  EXPECT_THAT(f.remedy, HasSubstr("ztunnel stays 0/1 READY"));
}

TEST(IstiodCheck, ConnectTimeoutIsNotCalledRefused) {
  FullBacklogListener listener;
  AgentConfig config;
  config.istiod = listener.endpoint();
  IstiodCheck check(config, testOptions(200ms));
  auto r = check.run();
  ASSERT_EQ(r.status, CheckStatus::kFail);
  EXPECT_THAT(r.summary, ::testing::StartsWith("connect to " + listener.endpoint() + ": timed out after"));
  ASSERT_EQ(r.findings.size(), 1u);
  EXPECT_THAT(r.findings[0].remedy, HasSubstr("firewall drop"));
}

TEST(IstiodCheck, DnsFailureNamesTheEndpointAndStage) {
  AgentConfig config;
  config.istiod = "istiod.nowhere.svc:15012";
  IstiodCheck check(config, testOptions());
  auto r = check.run();
  ASSERT_EQ(r.status, CheckStatus::kFail);
  EXPECT_EQ(r.summary, "resolve istiod.nowhere.svc:15012: no such host");
  ASSERT_EQ(r.findings.size(), 1u);
  EXPECT_THAT(r.findings[0].evidence, Contains("stage=dns"));
  EXPECT_THAT(r.findings[0].remedy, HasSubstr("DNS"));
}

TEST(IstiodCheck, NoAlpnH2IsIstiodUnreachableAtStageTls) {
  TestIstiodServer server(ServerMode::kTlsNoAlpn);
  AgentConfig config;
  config.istiod = server.endpoint();
  IstiodCheck check(config, testOptions());
  auto r = check.run();
  ASSERT_EQ(r.status, CheckStatus::kFail);
  EXPECT_THAT(r.summary, HasSubstr("TLS handshake with " + server.endpoint()));
  EXPECT_THAT(r.summary, HasSubstr("server did not negotiate ALPN h2"));
  ASSERT_EQ(r.findings.size(), 1u);
  EXPECT_THAT(r.findings[0].evidence, Contains("stage=tls"));
  EXPECT_THAT(r.findings[0].evidence, Contains("sni=istiod.istio-system.svc"));
  EXPECT_THAT(r.findings[0].remedy, HasSubstr("Istio 1.24"));
}

TEST(IstiodCheck, SilentListenerTimesOutAtStageTls) {
  TestIstiodServer server(ServerMode::kSilent);
  AgentConfig config;
  config.istiod = server.endpoint();
  IstiodCheck check(config, testOptions(200ms));
  auto r = check.run();
  ASSERT_EQ(r.status, CheckStatus::kFail);
  EXPECT_THAT(r.summary, HasSubstr("timed out"));
  EXPECT_EQ(r.details["failed_stage"], "tls");
  ASSERT_EQ(r.findings.size(), 1u);
  EXPECT_THAT(r.findings[0].evidence, Contains("stage=tls"));
  EXPECT_THAT(r.findings[0].remedy, HasSubstr("never completed TLS"));
}

TEST(IstiodCheck, UnreadableCaFailsNamingTheFileWithoutBlamingIstiod) {
  AgentConfig config;
  config.istiod = "127.0.0.1:15012";
  config.istiod_ca = "/nonexistent/meshprobe/root-cert.pem";
  IstiodCheck check(config, testOptions());
  auto r = check.run();
  ASSERT_EQ(r.status, CheckStatus::kFail);
  EXPECT_THAT(r.summary, HasSubstr("/nonexistent/meshprobe/root-cert.pem"));
  EXPECT_THAT(r.summary, HasSubstr("--istiod-ca"));
  EXPECT_TRUE(r.findings.empty()) << "nothing was sent, so reachability is unknown";
}

}  // namespace
