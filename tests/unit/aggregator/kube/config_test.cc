#include "aggregator/kube/config.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace meshprobe::aggregator::kube {
namespace {

namespace fs = std::filesystem;

class KubeConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("kubeconfig_test_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& rel, const std::string& text) {
    const fs::path p = dir_ / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
    return p.string();
  }
  fs::path dir_;
};

constexpr const char* kKubeconfig = R"(apiVersion: v1
kind: Config
current-context: kind-dev
clusters:
- name: kind-dev
  cluster:
    server: https://127.0.0.1:36443
    certificate-authority: pki/ca.crt
- name: prod
  cluster:
    server: https://[2001:db8::1]:6443
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==
    tls-server-name: kubernetes.default
contexts:
- name: kind-dev
  context: {cluster: kind-dev, user: dev}
- name: prod
  context: {cluster: prod, user: robot}
users:
- name: dev
  user:
    client-certificate: pki/dev.crt
    client-key: /abs/never-read.key
- name: robot
  user:
    token: abc.def
)";

TEST_F(KubeConfigTest, CurrentContextResolvesRelativePathsAgainstTheFile) {
  write("kube/pki/ca.crt", "x");
  write("kube/pki/dev.crt", "x");
  std::string text = kKubeconfig;
  const std::string key = write("pki/dev.key", "x");
  text.replace(text.find("/abs/never-read.key"), std::string("/abs/never-read.key").size(), key);
  const std::string path = write("kube/config", text);
  auto c = loadKubeconfig(path);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->server, "https://127.0.0.1:36443");
  EXPECT_EQ(c->ca_file, (dir_ / "kube/pki/ca.crt").string());
  EXPECT_EQ(c->client_cert_file, (dir_ / "kube/pki/dev.crt").string());
  EXPECT_EQ(c->client_key_file, key);
  EXPECT_EQ(c->source, "kubeconfig " + path + " context kind-dev");
  EXPECT_FALSE(c->insecure_skip_tls_verify);
}

TEST_F(KubeConfigTest, NamedContextWithInlineCaAndToken) {
  const std::string path = write("config", kKubeconfig);
  auto c = loadKubeconfig(path, "prod");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->server, "https://[2001:db8::1]:6443");
  EXPECT_EQ(c->ca_pem, "-----BEGIN CERTIFICATE-----\n");
  EXPECT_EQ(c->tls_server_name, "kubernetes.default");
  EXPECT_EQ(c->token, "abc.def");
  EXPECT_TRUE(c->ca_file.empty());
}

TEST_F(KubeConfigTest, ErrorsNameTheFileAndTheField) {
  const std::string missing_ca = write("config", kKubeconfig);
  auto c = loadKubeconfig(missing_ca);  // pki/ca.crt does not exist
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().message, "kubeconfig " + missing_ca +
                                   ": clusters[kind-dev].cluster.certificate-authority: cannot read " +
                                   (dir_ / "pki/ca.crt").string());

  auto no_ctx = loadKubeconfig(missing_ca, "nope");
  ASSERT_FALSE(no_ctx);
  EXPECT_EQ(no_ctx.error().message, "kubeconfig " + missing_ca + ": contexts: no context named \"nope\"");

  const std::string exec = write("exec", R"(current-context: c
clusters: [{name: k, cluster: {server: "https://k:6443", insecure-skip-tls-verify: true}}]
contexts: [{name: c, context: {cluster: k, user: u}}]
users: [{name: u, user: {exec: {command: aws, args: [eks, get-token]}}}]
)");
  auto e = loadKubeconfig(exec);
  ASSERT_FALSE(e);
  EXPECT_EQ(
      e.error().message,
      "kubeconfig " + exec + ": users[u].user.exec: not supported (use a token, tokenFile or client certificate)");

  const std::string bad64 = write("bad64", R"(current-context: c
clusters: [{name: k, cluster: {server: "https://k:6443", certificate-authority-data: "%%%"}}]
contexts: [{name: c, context: {cluster: k}}]
)");
  auto b = loadKubeconfig(bad64);
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().message, "kubeconfig " + bad64 + ": clusters[k].cluster.certificate-authority-data: not base64");

  auto none = loadKubeconfig((dir_ / "absent").string());
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message.find((dir_ / "absent").string()), std::string::npos);

  const std::string notyaml = write("notyaml", "clusters: [unclosed\n");
  auto n = loadKubeconfig(notyaml);
  ASSERT_FALSE(n);
  EXPECT_TRUE(n.error().message.starts_with("kubeconfig " + notyaml + ": not YAML")) << n.error().message;
}

TEST_F(KubeConfigTest, InsecureSkipAndTokenFile) {
  write("tok", "t1\n");
  const std::string path = write("config", R"(current-context: c
clusters: [{name: k, cluster: {server: "https://k:6443/", insecure-skip-tls-verify: true}}]
contexts: [{name: c, context: {cluster: k, user: u}}]
users: [{name: u, user: {tokenFile: tok}}]
)");
  auto c = loadKubeconfig(path);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_TRUE(c->insecure_skip_tls_verify);
  EXPECT_EQ(c->server, "https://k:6443");
  EXPECT_EQ(c->token_file, (dir_ / "tok").string());
}

TEST_F(KubeConfigTest, InClusterReadsTheServiceAccountUnderRoot) {
  write("var/run/secrets/kubernetes.io/serviceaccount/token", "tok");
  write("var/run/secrets/kubernetes.io/serviceaccount/ca.crt", "ca");
  write("var/run/secrets/kubernetes.io/serviceaccount/namespace", "meshprobe\n");
  auto c =
      inClusterConfig(dir_.string(), {{"KUBERNETES_SERVICE_HOST", "10.96.0.1"}, {"KUBERNETES_SERVICE_PORT", "443"}});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->server, "https://10.96.0.1:443");
  EXPECT_EQ(c->token_file, (dir_ / "var/run/secrets/kubernetes.io/serviceaccount/token").string());
  EXPECT_EQ(c->ca_file, (dir_ / "var/run/secrets/kubernetes.io/serviceaccount/ca.crt").string());
  EXPECT_EQ(c->pod_namespace, "meshprobe");
  EXPECT_EQ(c->source, "in-cluster");

  auto v6 = inClusterConfig(dir_.string(),
                            {{"KUBERNETES_SERVICE_HOST", "fd00:10:96::1"}, {"KUBERNETES_SERVICE_PORT", "443"}});
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->server, "https://[fd00:10:96::1]:443");

  auto no_env = inClusterConfig(dir_.string(), {});
  ASSERT_FALSE(no_env);
  EXPECT_NE(no_env.error().message.find("KUBERNETES_SERVICE_HOST"), std::string::npos);
}

TEST_F(KubeConfigTest, ResolveModes) {
  const Env cluster_env{{"KUBERNETES_SERVICE_HOST", "10.96.0.1"}, {"KUBERNETES_SERVICE_PORT", "443"}};
  // auto outside a cluster: not used, and says why.
  auto off = resolve(KubeMode::kAuto, "", {}, dir_.string());
  ASSERT_TRUE(off);
  EXPECT_FALSE(off->config);
  EXPECT_NE(off->why.find("not in a cluster"), std::string::npos);
  // auto with the env but no token file: not used.
  auto no_token = resolve(KubeMode::kAuto, "", cluster_env, dir_.string());
  ASSERT_TRUE(no_token);
  EXPECT_FALSE(no_token->config);
  EXPECT_NE(no_token->why.find("no service-account token"), std::string::npos);
  // on without a cluster: an error.
  EXPECT_FALSE(resolve(KubeMode::kOn, "", {}, dir_.string()));
  // off: never, even in a cluster.
  auto forced_off = resolve(KubeMode::kOff, "", cluster_env, dir_.string());
  ASSERT_TRUE(forced_off);
  EXPECT_FALSE(forced_off->config);

  write("var/run/secrets/kubernetes.io/serviceaccount/token", "tok");
  write("var/run/secrets/kubernetes.io/serviceaccount/ca.crt", "ca");
  auto in = resolve(KubeMode::kAuto, "", cluster_env, dir_.string());
  ASSERT_TRUE(in) << in.error().message;
  ASSERT_TRUE(in->config);
  EXPECT_EQ(in->config->source, "in-cluster");
  EXPECT_EQ(in->why, "Kubernetes API at https://10.96.0.1:443 from the service account (in-cluster)");

  const std::string kc = write("config", R"(current-context: c
clusters: [{name: k, cluster: {server: "https://k:6443"}}]
contexts: [{name: c, context: {cluster: k}}]
)");
  auto from_file = resolve(KubeMode::kAuto, kc, cluster_env, dir_.string());  // the kubeconfig wins
  ASSERT_TRUE(from_file);
  ASSERT_TRUE(from_file->config);
  EXPECT_EQ(from_file->config->source, "kubeconfig " + kc + " context c");
  EXPECT_FALSE(resolve(KubeMode::kAuto, (dir_ / "absent").string(), {}, dir_.string()));

  EXPECT_EQ(*parseKubeMode("on"), KubeMode::kOn);
  EXPECT_FALSE(parseKubeMode("yes"));
}

}  // namespace
}  // namespace meshprobe::aggregator::kube
