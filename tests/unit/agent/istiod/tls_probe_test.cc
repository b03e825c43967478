#include "agent/istiod/tls_probe.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/unit/agent/istiod/tls_test_server.h"

using namespace meshprobe;
using namespace meshprobe::agent;
using namespace meshprobe::agent::testing;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::StartsWith;

namespace {

// Maps every name to 127.0.0.1 and counts lookups: the probe never asks a real DNS server.
struct LoopbackResolver {
  std::shared_ptr<int> calls = std::make_shared<int>(0);
  Resolver get() const {
    auto c = calls;
    return [c](const std::string&, Duration) -> Result<std::vector<std::string>> {
      ++*c;
      return std::vector<std::string>{"127.0.0.1"};
    };
  }
};

Resolver failingResolver(std::string message) {
  return [message](const std::string&, Duration) -> Result<std::vector<std::string>> { return Error{message}; };
}

TlsProbeOptions optionsFor(const std::string& endpoint, Duration timeout = 3s) {
  TlsProbeOptions o;
  o.endpoint = endpoint;
  o.timeout = timeout;
  o.resolver = failingResolver("unexpected DNS lookup");
  return o;
}

const StageLatency* stage(const TlsProbeResult& r, ProbeStage s) {
  for (const auto& st : r.stages) {
    if (st.stage == s) return &st;
  }
  return nullptr;
}

TEST(ParseHostPort, AcceptsNamesIpv4AndBracketedIpv6) {
  auto a = parseHostPort("istiod.istio-system.svc:15012");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "istiod.istio-system.svc");
  EXPECT_EQ(a->port, 15012);
  auto b = parseHostPort("10.96.0.10:15012");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->host, "10.96.0.10");
  auto c = parseHostPort("[fd00::10]:15012");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->host, "fd00::10");
  EXPECT_EQ(c->port, 15012);
}

TEST(ParseHostPort, RejectsBadInputWithTheReason) {
  EXPECT_THAT(parseHostPort("istiod").error().message, HasSubstr("HOST:PORT"));
  EXPECT_THAT(parseHostPort("istiod:0").error().message, HasSubstr("1..65535"));
  EXPECT_THAT(parseHostPort("istiod:70000").error().message, HasSubstr("1..65535"));
  EXPECT_THAT(parseHostPort("istiod:15x").error().message, HasSubstr("1..65535"));
  EXPECT_THAT(parseHostPort(":15012").error().message, HasSubstr("empty host"));
  EXPECT_THAT(parseHostPort("fd00::10:15012").error().message, HasSubstr("[ADDR]:PORT"));
  EXPECT_FALSE(parseHostPort("[fd00::10]15012").ok());
}

TEST(FormatHostPort, BracketsIpv6) {
  EXPECT_EQ(formatHostPort("10.0.0.1", 15012), "10.0.0.1:15012");
  EXPECT_EQ(formatHostPort("fd00::1", 15012), "[fd00::1]:15012");
}

TEST(ChooseSni, ExplicitThenNameThenIstiodDefault) {
  EXPECT_EQ(chooseSni("custom.example", "10.0.0.1"), "custom.example");
  EXPECT_EQ(chooseSni("", "istiod.istio-system.svc.cluster.local"), "istiod.istio-system.svc.cluster.local");
  EXPECT_EQ(chooseSni("", "10.96.0.10"), "istiod.istio-system.svc");
  EXPECT_EQ(chooseSni("", "fd00::10"), "istiod.istio-system.svc");
}

TEST(SystemResolver, IpLiteralNeedsNoServer) {
  // getaddrinfo answers numeric hosts itself; no DNS query leaves the process.
  auto r = systemResolver()("127.0.0.1", 2s);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_THAT(*r, ::testing::Contains("127.0.0.1"));
}

TEST(TlsProbe, TlsWithH2WithoutCaIsOkButUnverified) {
  TestIstiodServer server(ServerMode::kTlsH2);
  auto r = probeIstiod(optionsFor(server.endpoint()));
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.alpn, "h2");
  EXPECT_THAT(r.tls_version, StartsWith("TLSv1."));
  EXPECT_EQ(r.sni, "istiod.istio-system.svc");  // IP endpoint: the istiod default name
  EXPECT_EQ(r.peer_subject, "CN=istiod,O=cluster.local");
  EXPECT_THAT(r.peer_sans, ::testing::Contains("DNS:istiod.istio-system.svc"));
  EXPECT_THAT(r.peer_sans, ::testing::Contains("URI:spiffe://cluster.local/ns/istio-system/sa/istiod"));
  EXPECT_FALSE(r.chain_verified);
  EXPECT_EQ(r.peer_address, server.endpoint());
  EXPECT_EQ(stage(r, ProbeStage::kDns), nullptr) << "an IP literal skips DNS";
  ASSERT_NE(stage(r, ProbeStage::kConnect), nullptr);
  ASSERT_NE(stage(r, ProbeStage::kTls), nullptr);
  EXPECT_TRUE(stage(r, ProbeStage::kTls)->ok);
  EXPECT_GT(stage(r, ProbeStage::kTls)->latency, Duration::zero());
  EXPECT_TRUE(server.waitForHandshakes(1)) << "the server saw a completed handshake";
}

TEST(TlsProbe, NameEndpointResolvesThroughSeamAndVerifiesChainAndName) {
  TestIstiodServer server(ServerMode::kTlsH2);
  LoopbackResolver resolver;
  auto o = optionsFor("istiod.istio-system.svc:" + std::to_string(server.port()));
  o.resolver = resolver.get();
  o.ca_file = istiodTestData("ca.pem");
  auto r = probeIstiod(o);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(*resolver.calls, 1);
  EXPECT_EQ(r.sni, "istiod.istio-system.svc");
  EXPECT_TRUE(r.chain_verified);
  EXPECT_EQ(r.addresses, std::vector<std::string>{"127.0.0.1"});
  ASSERT_NE(stage(r, ProbeStage::kDns), nullptr);
  EXPECT_TRUE(stage(r, ProbeStage::kDns)->ok);
  EXPECT_EQ(r.stages.size(), 3u);
}

TEST(TlsProbe, IpEndpointVerifiesAgainstIstiodDefaultName) {
  TestIstiodServer server(ServerMode::kTlsH2);
  auto o = optionsFor(server.endpoint());
  o.ca_file = istiodTestData("ca.pem");
  auto r = probeIstiod(o);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_TRUE(r.chain_verified);
}

TEST(TlsProbe, ServerWithoutAlpnFailsTlsNamingH2) {
  TestIstiodServer server(ServerMode::kTlsNoAlpn);
  auto r = probeIstiod(optionsFor(server.endpoint()));
  ASSERT_FALSE(r.ok);
  ASSERT_EQ(r.failed_stage, ProbeStage::kTls);
  EXPECT_THAT(r.error, HasSubstr("server did not negotiate ALPN h2"));
  EXPECT_EQ(r.alpn, "");
  EXPECT_THAT(r.tls_version, StartsWith("TLSv1."));  // the handshake itself completed
  EXPECT_FALSE(r.local_error);
  EXPECT_FALSE(stage(r, ProbeStage::kTls)->ok);
}

TEST(TlsProbe, PlainTcpServerAnsweringGarbageFailsTls) {
  TestIstiodServer server(ServerMode::kGarbage);
  auto r = probeIstiod(optionsFor(server.endpoint()));
  ASSERT_FALSE(r.ok);
  ASSERT_EQ(r.failed_stage, ProbeStage::kTls);
  EXPECT_THAT(r.error, StartsWith("handshake failed"));
  EXPECT_TRUE(stage(r, ProbeStage::kConnect)->ok);
  EXPECT_TRUE(server.waitForAccepted(1));
}

TEST(TlsProbe, ServerClosingAtOnceFailsTls) {
  TestIstiodServer server(ServerMode::kClose);
  auto r = probeIstiod(optionsFor(server.endpoint()));
  ASSERT_FALSE(r.ok);
  ASSERT_EQ(r.failed_stage, ProbeStage::kTls);
  EXPECT_THAT(r.error, ::testing::AnyOf(HasSubstr("closed the connection"), HasSubstr("reset")));
}

TEST(TlsProbe, SilentServerFailsTlsByTimeoutWithinTheDeadline) {
  TestIstiodServer server(ServerMode::kSilent);
  auto r = probeIstiod(optionsFor(server.endpoint(), 300ms));
  ASSERT_FALSE(r.ok);
  ASSERT_EQ(r.failed_stage, ProbeStage::kTls);
  EXPECT_THAT(r.error, StartsWith("timed out"));
  EXPECT_THAT(r.error, HasSubstr("never answered"));
  EXPECT_TRUE(server.waitForAccepted(1));
  // r.total is the probe's own measurement of a real TLS handshake against a silent
  // server: it must run to the 300 ms deadline and stop there (2 s is generous).
  EXPECT_GE(r.total, 250ms);
  EXPECT_LT(r.total, 2s) << "the probe deadline bounds the handshake";
}

TEST(TlsProbe, ClosedPortFailsConnectRefused) {
  ClosedPort port;
  auto r = probeIstiod(optionsFor(port.endpoint()));
  ASSERT_FALSE(r.ok);
  ASSERT_EQ(r.failed_stage, ProbeStage::kConnect);
  EXPECT_EQ(r.error, "connection refused");
  EXPECT_EQ(r.peer_address, port.endpoint());
  EXPECT_EQ(stage(r, ProbeStage::kTls), nullptr) << "tls never ran";
}

TEST(TlsProbe, DroppedSynFailsConnectByTimeout) {
  FullBacklogListener listener;
  auto r = probeIstiod(optionsFor(listener.endpoint(), 300ms));
  ASSERT_FALSE(r.ok);
  ASSERT_EQ(r.failed_stage, ProbeStage::kConnect);
  EXPECT_THAT(r.error, StartsWith("timed out after"));
  EXPECT_NE(r.error, "connection refused");
  EXPECT_LT(r.total, 2s);
}

TEST(TlsProbe, ResolverFailureFailsDnsWithoutConnecting) {
  auto o = optionsFor("istiod.istio-system.svc:15012");
  o.resolver = failingResolver("no such host");
  auto r = probeIstiod(o);
  ASSERT_FALSE(r.ok);
  ASSERT_EQ(r.failed_stage, ProbeStage::kDns);
  EXPECT_EQ(r.error, "no such host");
  EXPECT_EQ(stage(r, ProbeStage::kConnect), nullptr);
  EXPECT_FALSE(stage(r, ProbeStage::kDns)->ok);
}

TEST(TlsProbe, ResolverWithNoUsableAddressFailsDns) {
  auto o = optionsFor("istiod.istio-system.svc:15012");
  o.resolver = [](const std::string&, Duration) -> Result<std::vector<std::string>> {
    return std::vector<std::string>{"not-an-address"};
  };
  auto r = probeIstiod(o);
  ASSERT_EQ(r.failed_stage, ProbeStage::kDns);
  EXPECT_THAT(r.error, HasSubstr("no addresses"));
}

TEST(TlsProbe, WrongCaFailsTlsVerification) {
  TestIstiodServer server(ServerMode::kTlsH2);
  auto o = optionsFor(server.endpoint());
  o.ca_file = istiodTestData("other-ca.pem");
  auto r = probeIstiod(o);
  ASSERT_FALSE(r.ok);
  ASSERT_EQ(r.failed_stage, ProbeStage::kTls);
  EXPECT_THAT(r.error, StartsWith("certificate verification failed"));
  EXPECT_THAT(r.error, HasSubstr("issuer"));
  EXPECT_FALSE(r.chain_verified);
}

TEST(TlsProbe, ServerNameOutsideTheSanFailsTlsVerification) {
  TestIstiodServer server(ServerMode::kTlsH2);
  auto o = optionsFor(server.endpoint());
  o.ca_file = istiodTestData("ca.pem");
  o.sni = "istiod.other-namespace.svc";
  auto r = probeIstiod(o);
  ASSERT_FALSE(r.ok);
  ASSERT_EQ(r.failed_stage, ProbeStage::kTls);
  EXPECT_THAT(r.error, HasSubstr("hostname mismatch"));
  EXPECT_THAT(r.error, HasSubstr("istiod.other-namespace.svc"));
}

TEST(TlsProbe, MissingCaFileFailsNamingTheFileBeforeAnyTraffic) {
  TestIstiodServer server(ServerMode::kTlsH2);
  auto o = optionsFor(server.endpoint());
  o.ca_file = "/nonexistent/meshprobe/root-cert.pem";
  auto r = probeIstiod(o);
  ASSERT_FALSE(r.ok);
  EXPECT_TRUE(r.local_error);
  EXPECT_THAT(r.error, HasSubstr("/nonexistent/meshprobe/root-cert.pem"));
  EXPECT_THAT(r.error, HasSubstr("No such file or directory"));
  EXPECT_TRUE(r.stages.empty());
  EXPECT_EQ(server.accepted(), 0);
}

TEST(TlsProbe, CaFileWithoutCertificatesFailsNamingTheFile) {
  auto o = optionsFor("127.0.0.1:15012");
  o.ca_file = istiodTestData("README.md");
  auto r = probeIstiod(o);
  ASSERT_FALSE(r.ok);
  EXPECT_TRUE(r.local_error);
  EXPECT_THAT(r.error, HasSubstr("README.md holds no PEM certificate"));
}

TEST(TlsProbe, BadEndpointIsALocalError) {
  auto r = probeIstiod(optionsFor("no-port-here"));
  ASSERT_FALSE(r.ok);
  EXPECT_TRUE(r.local_error);
  EXPECT_THAT(r.error, HasSubstr("HOST:PORT"));
}

}  // namespace
