#include "aggregator/kube/client.h"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <filesystem>
#include <fstream>
#include <optional>

#include "aggregator/kube/parse.h"
#include "tests/support/fake_kube_apiserver.h"
#include "tests/support/mtls_pki.h"

namespace meshprobe::aggregator::kube {
namespace {

using nlohmann::json;
using test::FakeKubeApiServer;
using test::mtlsFile;

// Runs one client coroutine to completion on a private io_context.
template <class F>
auto run(F f) {
  using R = typename decltype(f())::value_type;
  std::optional<R> out;
  boost::asio::io_context ioc;
  boost::asio::co_spawn(
      ioc, [&]() -> boost::asio::awaitable<void> { out.emplace(co_await f()); }, boost::asio::detached);
  ioc.run();
  return std::move(*out);
}

KubeConfig configFor(const FakeKubeApiServer& server) {
  KubeConfig c;
  c.server = server.url();
  c.ca_file = mtlsFile("ca.pem");
  c.token = "good-token";
  return c;
}

TEST(KubeClient, ListsOverVerifiedTlsWithABearerToken) {
  FakeKubeApiServer server;
  ASSERT_TRUE(server.start());
  server.upsert("nodes", json{{"metadata", {{"name", "n1"}}}});
  auto client = KubeClient::create(configFor(server));
  ASSERT_TRUE(client) << client.error().message;
  auto r = run([c = *client]() { return c->get("/api/v1/nodes?limit=500"); });
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->status, 200);
  auto page = parseList(r->body);
  ASSERT_TRUE(page);
  ASSERT_EQ(page->items.size(), 1u);
  EXPECT_EQ(page->resource_version, std::to_string(server.resourceVersion()));
  EXPECT_EQ(server.stats().tokens, std::vector<std::string>{"good-token"});
}

TEST(KubeClient, RefusesAServerFromAnotherCaAndAWrongName) {
  FakeKubeApiServer::Options o;
  o.cert_file = mtlsFile("aggregator-other-ca.pem");
  o.key_file = mtlsFile("aggregator-other-ca.key");
  FakeKubeApiServer server(o);
  ASSERT_TRUE(server.start());
  auto client = KubeClient::create(configFor(server));
  ASSERT_TRUE(client);
  auto r = run([c = *client]() { return c->get("/api/v1/nodes"); });
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("TLS handshake with " + server.url()), std::string::npos) << r.error().message;

  FakeKubeApiServer good;
  ASSERT_TRUE(good.start());
  KubeConfig wrong_name = configFor(good);
  wrong_name.tls_server_name = "kubernetes.default.svc";  // not in the certificate
  auto c2 = KubeClient::create(wrong_name);
  ASSERT_TRUE(c2);
  EXPECT_FALSE(run([c = *c2]() { return c->get("/api/v1/nodes"); }));
  wrong_name.tls_server_name = "meshprobe-aggregator";  // in the certificate
  auto c3 = KubeClient::create(wrong_name);
  ASSERT_TRUE(c3);
  auto ok = run([c = *c3]() { return c->get("/api/v1/nodes"); });
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ok->status, 200);
}

TEST(KubeClient, UnauthorizedIsAResultWithTheStatus) {
  FakeKubeApiServer server;
  ASSERT_TRUE(server.start());
  KubeConfig c = configFor(server);
  c.token = "stale";
  auto client = KubeClient::create(c);
  ASSERT_TRUE(client);
  auto r = run([cl = *client]() { return cl->get("/api/v1/pods"); });
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(parseStatus(r->body, r->status).reason, "Unauthorized");
}

TEST(KubeClient, ClientCertificateAuthenticates) {
  FakeKubeApiServer::Options o;
  o.client_ca_file = mtlsFile("ca.pem");
  FakeKubeApiServer server(o);
  ASSERT_TRUE(server.start());
  server.forbid("list", "pods");
  KubeConfig c = configFor(server);
  c.token.clear();
  c.client_cert_file = mtlsFile("meshprobe-reader.pem");
  c.client_key_file = mtlsFile("meshprobe-reader.key");
  auto client = KubeClient::create(c);
  ASSERT_TRUE(client) << client.error().message;
  auto r = run([cl = *client]() { return cl->get("/api/v1/pods"); });
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->status, 403);  // authenticated as the certificate's CN, then denied by "RBAC"
  EXPECT_NE(parseStatus(r->body, 403).message.find("User \"meshprobe-reader\" cannot list resource \"pods\""),
            std::string::npos)
      << r->body;
}

TEST(KubeClient, InlinePemCaAndClientCertificate) {
  FakeKubeApiServer::Options o;
  o.client_ca_file = mtlsFile("ca.pem");
  FakeKubeApiServer server(o);
  ASSERT_TRUE(server.start());
  KubeConfig c;  // as loadKubeconfig leaves *-data fields: decoded PEM
  c.server = server.url();
  c.ca_pem = *readFile(mtlsFile("ca.pem"));
  c.client_cert_pem = *readFile(mtlsFile("node1.pem"));
  c.client_key_pem = *readFile(mtlsFile("node1.key"));
  auto client = KubeClient::create(c);
  ASSERT_TRUE(client) << client.error().message;
  auto r = run([cl = *client]() { return cl->get("/api/v1/namespaces"); });
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(server.stats().tokens, std::vector<std::string>{""});  // no bearer token sent

  c.client_key_pem = "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n";
  auto bad = KubeClient::create(c);
  ASSERT_FALSE(bad);
  EXPECT_TRUE(bad.error().message.starts_with("Kubernetes client key (client-key-data)")) << bad.error().message;
}

TEST(KubeClient, WatchStreamsLinesUntilTheServerEndsIt) {
  FakeKubeApiServer server;
  ASSERT_TRUE(server.start());
  server.upsert("namespaces", json{{"metadata", {{"name", "a"}}}});
  server.upsert("namespaces", json{{"metadata", {{"name", "b"}}}});
  auto client = KubeClient::create(configFor(server));
  ASSERT_TRUE(client);
  std::vector<std::string> lines;
  // resourceVersion 0: synthetic ADDED for both; timeoutSeconds=1 ends it cleanly.
  auto r = run([cl = *client, &lines]() {
    return cl->watch("/api/v1/namespaces?watch=1&resourceVersion=0&timeoutSeconds=1", std::chrono::seconds(10),
                     [&](const std::vector<std::string>& got) {
                       lines.insert(lines.end(), got.begin(), got.end());
                       return true;
                     });
  });
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->status, 200);
  EXPECT_FALSE(r->idle_timeout);
  ASSERT_EQ(lines.size(), 2u);
  auto ev = parseWatchEvent(lines[1]);
  ASSERT_TRUE(ev);
  EXPECT_EQ(parseNamespace(ev->object).name, "b");
}

TEST(KubeClient, ConnectFailureNamesTheServer) {
  FakeKubeApiServer server;
  ASSERT_TRUE(server.start());
  const std::string url = server.url();
  KubeConfig c = configFor(server);
  server.stop();
  auto client = KubeClient::create(c);
  ASSERT_TRUE(client);
  auto r = run([cl = *client]() { return cl->get("/api/v1/nodes"); });
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().message.starts_with("cannot connect to " + url + ": ")) << r.error().message;
}

TEST(KubeClient, ParsesServerUrls) {
  KubeConfig c;
  c.server = "ftp://x";
  EXPECT_FALSE(KubeClient::create(c));
  c.server = "https://[::1";
  EXPECT_FALSE(KubeClient::create(c));
  c.server = "https://[::1]:6443";
  c.ca_file = mtlsFile("absent.pem");
  auto bad_ca = KubeClient::create(c);
  ASSERT_FALSE(bad_ca);
  EXPECT_NE(bad_ca.error().message.find("absent.pem"), std::string::npos);
}

}  // namespace
}  // namespace meshprobe::aggregator::kube
