// The TLS flags' validation and the client-certificate identity rule, without a network.
#include "common/tls/tls.h"

#include <gtest/gtest.h>

#include <boost/program_options.hpp>

#include "tests/support/mtls_pki.h"

namespace meshprobe::tls {
namespace {

using meshprobe::test::mtlsClient;
using meshprobe::test::mtlsFile;
using meshprobe::test::mtlsServer;
using Kind = PeerIdentity::Kind;

bool contains(const std::string& s, const std::string& what) { return s.find(what) != std::string::npos; }

TEST(TlsIdentity, NamesAreDnsSansThenCnDeduplicated) {
  auto id = identityFromNames({"node2", "node2.example.com", "", "node2"});
  EXPECT_EQ(id.kind, Kind::kNode);
  EXPECT_EQ(id.names, (std::vector<std::string>{"node2", "node2.example.com"}));
}

TEST(TlsIdentity, ReaderAndSharedAgentNamesAreRoles) {
  EXPECT_EQ(identityFromNames({"meshprobe-reader"}).kind, Kind::kReader);
  EXPECT_EQ(identityFromNames({"meshprobe-agent"}).kind, Kind::kSharedAgent);
  // A reader name wins over anything else the certificate names.
  EXPECT_EQ(identityFromNames({"node1", "meshprobe-reader", "meshprobe-agent"}).kind, Kind::kReader);
  EXPECT_EQ(identityFromNames({"meshprobe-agents"}).kind, Kind::kNode);  // exact names only
}

TEST(TlsIdentity, NodeCertificateReportsOnlyAsItsNodes) {
  auto id = identityFromNames({"node2", "node2.example.com"});
  EXPECT_TRUE(mayReportAs(id, "node2").ok());
  EXPECT_TRUE(mayReportAs(id, "node2.example.com").ok());
  auto denied = mayReportAs(identityFromNames({"node2"}), "node3");
  ASSERT_FALSE(denied.ok());
  EXPECT_TRUE(contains(denied.error().message, "'node2'")) << denied.error().message;
  EXPECT_TRUE(contains(denied.error().message, "'node3'")) << denied.error().message;
}

TEST(TlsIdentity, SharedAgentAnyNodeReaderNoneUnauthenticatedAny) {
  EXPECT_TRUE(mayReportAs(identityFromNames({"meshprobe-agent"}), "node7").ok());
  auto reader = mayReportAs(identityFromNames({"meshprobe-reader"}), "node1");
  ASSERT_FALSE(reader.ok());
  EXPECT_TRUE(contains(reader.error().message, "reader certificate")) << reader.error().message;
  EXPECT_TRUE(mayReportAs(PeerIdentity{}, "anything").ok());
  EXPECT_EQ(identityOf(nullptr).kind, Kind::kUnauthenticated);
}

TEST(TlsServerConfig, RefusesNeitherTlsNorInsecureNamingTheFlags) {
  ServerConfig c;
  auto st = finishServerConfig(c);
  ASSERT_FALSE(st.ok());
  for (const char* flag : {"--tls-cert", "--tls-key", "--tls-client-ca", "--insecure"})
    EXPECT_TRUE(contains(st.error().message, flag)) << st.error().message;
  c.insecure = true;
  EXPECT_TRUE(finishServerConfig(c).ok());
}

TEST(TlsServerConfig, PartialFlagsNameWhatIsMissing) {
  ServerConfig c;
  c.cert_file = mtlsFile("aggregator.pem");
  auto st = finishServerConfig(c);
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(contains(st.error().message, "missing --tls-key and --tls-client-ca")) << st.error().message;
}

TEST(TlsServerConfig, InsecureWithTlsFlagsIsAnError) {
  ServerConfig c = mtlsServer();
  c.insecure = true;
  auto st = finishServerConfig(c);
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(contains(st.error().message, "--insecure cannot be combined")) << st.error().message;
}

TEST(TlsServerConfig, GoodFilesPassAndRefreshIsParsed) {
  ServerConfig c = mtlsServer();
  c.refresh_text = "5s";
  auto st = finishServerConfig(c);
  ASSERT_TRUE(st.ok()) << st.error().message;
  EXPECT_EQ(c.refresh, std::chrono::seconds(5));
  c.refresh_text = "100ms";
  EXPECT_FALSE(finishServerConfig(c).ok());  // below a second: the watcher cannot do it
}

TEST(TlsServerConfig, UnreadableFileNamesFlagAndPath) {
  ServerConfig c = mtlsServer();
  c.client_ca_file = "/nonexistent/ca.pem";
  auto st = finishServerConfig(c);
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(contains(st.error().message, "--tls-client-ca /nonexistent/ca.pem: cannot read")) << st.error().message;
}

TEST(TlsServerConfig, KeyOfAnotherCertificateIsRefused) {
  ServerConfig c = mtlsServer();
  c.key_file = mtlsFile("node1.key");
  auto st = finishServerConfig(c);
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(contains(st.error().message, "is not the private key of --tls-cert")) << st.error().message;
}

TEST(TlsServerConfig, KeyWhereCertificateBelongsIsNotAPemCertificate) {
  ServerConfig c = mtlsServer();
  c.cert_file = mtlsFile("aggregator.key");
  auto st = finishServerConfig(c);
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(contains(st.error().message, "--tls-cert")) << st.error().message;
  EXPECT_TRUE(contains(st.error().message, "not a PEM certificate")) << st.error().message;
}

TEST(TlsClientConfig, DaemonNeedsTlsOrInsecureToolDoesNot) {
  ClientConfig c;
  auto st = finishClientConfig(c, /*require_choice=*/true);
  ASSERT_FALSE(st.ok());
  for (const char* flag : {"--aggregator-ca", "--tls-cert", "--tls-key", "--insecure"})
    EXPECT_TRUE(contains(st.error().message, flag)) << st.error().message;
  EXPECT_TRUE(finishClientConfig(c, /*require_choice=*/false).ok());
  EXPECT_TRUE(plaintextUnacknowledged(c));
  c.insecure = true;
  EXPECT_TRUE(finishClientConfig(c, true).ok());
  EXPECT_FALSE(plaintextUnacknowledged(c));
}

TEST(TlsClientConfig, PartialAndConflictingFlags) {
  ClientConfig c;
  c.ca_file = mtlsFile("ca.pem");
  auto st = finishClientConfig(c, true);
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(contains(st.error().message, "missing --tls-cert and --tls-key")) << st.error().message;
  ClientConfig both = mtlsClient("node1");
  both.insecure = true;
  EXPECT_FALSE(finishClientConfig(both, true).ok());
  ClientConfig name_only;
  name_only.server_name = "x";
  EXPECT_FALSE(finishClientConfig(name_only, false).ok());
  ClientConfig good = mtlsClient("node1");
  auto ok = finishClientConfig(good, true);
  EXPECT_TRUE(ok.ok()) << ok.error().message;
}

TEST(TlsFlags, RegisteredOnceWithTheContractNames) {
  namespace po = boost::program_options;
  ClientConfig client;
  po::options_description cd;
  addClientFlags(cd, client, "plaintext");
  for (const char* f : {"aggregator-ca", "tls-cert", "tls-key", "tls-server-name", "tls-refresh", "insecure"})
    EXPECT_NE(cd.find_nothrow(f, false), nullptr) << f;
  ServerConfig server;
  po::options_description sd;
  addServerFlags(sd, server);
  for (const char* f : {"tls-cert", "tls-key", "tls-client-ca", "tls-refresh", "insecure"})
    EXPECT_NE(sd.find_nothrow(f, false), nullptr) << f;
}

}  // namespace
}  // namespace meshprobe::tls
