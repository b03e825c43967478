#include "aggregator/kube/config.h"

#include <openssl/evp.h>
#include <sys/stat.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace meshprobe::aggregator::kube {
namespace {

namespace fs = std::filesystem;

bool fileExists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string trim(std::string s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

// Standard base64 (kubeconfig *-data fields); whitespace is ignored.
std::optional<std::string> base64Decode(const std::string& in) {
  std::string clean;
  for (char c : in)
    if (c != '\n' && c != '\r' && c != ' ' && c != '\t') clean += c;
  if (clean.size() % 4 != 0) return std::nullopt;
  if (clean.empty()) return std::string();
  std::string out(clean.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(clean.data()), static_cast<int>(clean.size()));
  if (n < 0) return std::nullopt;
  size_t len = static_cast<size_t>(n);
  if (clean.ends_with("=="))
    len -= 2;
  else if (clean.ends_with("="))
    len -= 1;
  out.resize(len);
  return out;
}

// A string field of a YAML map ("" when absent); a non-scalar value is an error.
Result<std::string> str(const YAML::Node& map, const std::string& key, const std::string& where) {
  const YAML::Node v = map[key];
  if (!v || v.IsNull()) return std::string();
  if (!v.IsScalar()) return Error{where + "." + key + ": not a string"};
  return v.as<std::string>();
}

// Finds the entry `name` in a list of {name: ..., <field>: {...}} (clusters, users, contexts).
YAML::Node namedEntry(const YAML::Node& list, const std::string& name, const std::string& field) {
  if (!list || !list.IsSequence()) return YAML::Node();
  for (const auto& e : list) {
    if (e.IsMap() && e["name"] && e["name"].IsScalar() && e["name"].as<std::string>() == name) return e[field];
  }
  return YAML::Node();
}

}  // namespace

Result<std::string> readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error::fromErrno("cannot read " + path, errno);
  std::ostringstream s;
  s << in.rdbuf();
  if (in.bad()) return Error::fromErrno("cannot read " + path, errno);
  return s.str();
}

Env processEnv() {
  Env env;
  for (const char* name : {"KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"}) {
    if (const char* v = std::getenv(name)) env[name] = v;
  }
  return env;
}

Result<KubeConfig> inClusterConfig(const std::string& root, const Env& env) {
  const auto host = env.find("KUBERNETES_SERVICE_HOST");
  const auto port = env.find("KUBERNETES_SERVICE_PORT");
  if (host == env.end() || host->second.empty() || port == env.end() || port->second.empty()) {
    return Error{"not in a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set"};
  }
  KubeConfig c;
  // client-go: net.JoinHostPort, so an IPv6 address gets brackets.
  const bool v6 = host->second.find(':') != std::string::npos && host->second.front() != '[';
  c.server = "https://" + (v6 ? "[" + host->second + "]" : host->second) + ":" + port->second;
  const std::string dir = (fs::path(root.empty() ? "/" : root) / std::string(kServiceAccountDir).substr(1)).string();
  c.token_file = dir + "/token";
  c.ca_file = dir + "/ca.crt";
  if (!fileExists(c.token_file)) return Error{"in-cluster: no service-account token at " + c.token_file};
  if (auto t = readFile(c.token_file); !t) return t.error();
  if (!fileExists(c.ca_file)) return Error{"in-cluster: no service-account CA at " + c.ca_file};
  if (auto ns = readFile(dir + "/namespace")) c.pod_namespace = trim(*ns);
  c.source = "in-cluster";
  return c;
}

Result<KubeConfig> loadKubeconfig(const std::string& path, const std::string& context) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    return Error::fromErrno("kubeconfig " + path + ": cannot read", errno);
  } catch (const YAML::Exception& e) {
    return Error{"kubeconfig " + path + ": not YAML: " + e.what()};
  }
  const std::string where = "kubeconfig " + path;
  if (!root.IsMap()) return Error{where + ": not a YAML map"};
  const fs::path dir = fs::absolute(fs::path(path)).parent_path();
  auto resolvePath = [&](const std::string& p) -> std::string {
    if (p.empty() || fs::path(p).is_absolute()) return p;
    return (dir / p).lexically_normal().string();
  };

  std::string ctx_name = context;
  if (ctx_name.empty()) {
    auto cur = str(root, "current-context", where);
    if (!cur) return cur.error();
    ctx_name = *cur;
    if (ctx_name.empty()) return Error{where + ": current-context is not set and no context was given"};
  }
  const YAML::Node ctx = namedEntry(root["contexts"], ctx_name, "context");
  if (!ctx || !ctx.IsMap()) return Error{where + ": contexts: no context named \"" + ctx_name + "\""};
  const std::string ctx_where = where + ": contexts[" + ctx_name + "].context";
  auto cluster_name = str(ctx, "cluster", ctx_where);
  if (!cluster_name) return cluster_name.error();
  auto user_name = str(ctx, "user", ctx_where);
  if (!user_name) return user_name.error();
  if (cluster_name->empty()) return Error{ctx_where + ".cluster: not set"};

  KubeConfig c;
  const YAML::Node cluster = namedEntry(root["clusters"], *cluster_name, "cluster");
  if (!cluster || !cluster.IsMap()) return Error{where + ": clusters: no cluster named \"" + *cluster_name + "\""};
  const std::string cw = where + ": clusters[" + *cluster_name + "].cluster";
  auto server = str(cluster, "server", cw);
  if (!server) return server.error();
  if (server->empty()) return Error{cw + ".server: not set"};
  if (!server->starts_with("https://") && !server->starts_with("http://")) {
    return Error{cw + ".server: \"" + *server + "\" is not an https:// URL"};
  }
  c.server = *server;
  while (c.server.ends_with("/")) c.server.pop_back();
  auto ca = str(cluster, "certificate-authority", cw);
  if (!ca) return ca.error();
  c.ca_file = resolvePath(*ca);
  auto ca_data = str(cluster, "certificate-authority-data", cw);
  if (!ca_data) return ca_data.error();
  if (!ca_data->empty()) {
    auto pem = base64Decode(*ca_data);
    if (!pem) return Error{cw + ".certificate-authority-data: not base64"};
    c.ca_pem = *pem;
  }
  if (const YAML::Node skip = cluster["insecure-skip-tls-verify"]; skip && !skip.IsNull()) {
    try {
      c.insecure_skip_tls_verify = skip.as<bool>();
    } catch (const YAML::Exception&) {
      return Error{cw + ".insecure-skip-tls-verify: not a boolean"};
    }
  }
  auto sni = str(cluster, "tls-server-name", cw);
  if (!sni) return sni.error();
  c.tls_server_name = *sni;
  if (!c.ca_file.empty() && !fileExists(c.ca_file)) {
    return Error{cw + ".certificate-authority: cannot read " + c.ca_file};
  }

  if (!user_name->empty()) {
    const YAML::Node user = namedEntry(root["users"], *user_name, "user");
    if (!user || !user.IsMap()) return Error{where + ": users: no user named \"" + *user_name + "\""};
    const std::string uw = where + ": users[" + *user_name + "].user";
    for (const char* unsupported : {"exec", "auth-provider", "username", "password"}) {
      if (user[unsupported]) {
        return Error{uw + "." + unsupported + ": not supported (use a token, tokenFile or client certificate)"};
      }
    }
    auto token = str(user, "token", uw);
    if (!token) return token.error();
    c.token = *token;
    auto token_file = str(user, "tokenFile", uw);
    if (!token_file) return token_file.error();
    c.token_file = resolvePath(*token_file);
    if (!c.token_file.empty() && !fileExists(c.token_file))
      return Error{uw + ".tokenFile: cannot read " + c.token_file};
    struct PemField {
      const char* file_key;
      const char* data_key;
      std::string* file;
      std::string* pem;
    };
    for (const PemField& f :
         {PemField{"client-certificate", "client-certificate-data", &c.client_cert_file, &c.client_cert_pem},
          PemField{"client-key", "client-key-data", &c.client_key_file, &c.client_key_pem}}) {
      auto file = str(user, f.file_key, uw);
      if (!file) return file.error();
      *f.file = resolvePath(*file);
      if (!f.file->empty() && !fileExists(*f.file)) {
        return Error{uw + "." + f.file_key + ": cannot read " + *f.file};
      }
      auto data = str(user, f.data_key, uw);
      if (!data) return data.error();
      if (!data->empty()) {
        auto pem = base64Decode(*data);
        if (!pem) return Error{uw + "." + f.data_key + ": not base64"};
        *f.pem = *pem;
      }
    }
    const bool has_cert = !c.client_cert_file.empty() || !c.client_cert_pem.empty();
    const bool has_key = !c.client_key_file.empty() || !c.client_key_pem.empty();
    if (has_cert != has_key) {
      return Error{uw + ": " +
                   (has_cert ? "client-certificate without client-key" : "client-key without client-certificate")};
    }
  }
  c.source = "kubeconfig " + path + " context " + ctx_name;
  return c;
}

Result<KubeMode> parseKubeMode(const std::string& text) {
  if (text == "auto") return KubeMode::kAuto;
  if (text == "on") return KubeMode::kOn;
  if (text == "off") return KubeMode::kOff;
  return Error{"--kube: \"" + text + "\" is not auto, on or off"};
}

Result<KubeResolution> resolve(KubeMode mode, const std::string& kubeconfig_path, const Env& env,
                               const std::string& root) {
  if (mode == KubeMode::kOff) return KubeResolution{std::nullopt, "Kubernetes API not used (--kube off)"};
  if (!kubeconfig_path.empty()) {
    auto c = loadKubeconfig(kubeconfig_path);
    if (!c) return c.error();
    const std::string why = "Kubernetes API at " + c->server + " from " + c->source;
    return KubeResolution{std::move(*c), why};
  }
  const bool has_env = env.contains("KUBERNETES_SERVICE_HOST");
  const std::string token =
      (fs::path(root.empty() ? "/" : root) / std::string(kServiceAccountDir).substr(1) / "token").string();
  if (mode == KubeMode::kAuto && !(has_env && fileExists(token))) {
    return KubeResolution{std::nullopt, has_env ? "Kubernetes API not used: no service-account token at " + token
                                                : "Kubernetes API not used: not in a cluster (KUBERNETES_SERVICE_HOST "
                                                  "unset) and no --kubeconfig"};
  }
  auto c = inClusterConfig(root, env);
  if (!c) return Error{"--kube on: " + c.error().message};
  const std::string why = "Kubernetes API at " + c->server + " from the service account (in-cluster)";
  return KubeResolution{std::move(*c), why};
}

}  // namespace meshprobe::aggregator::kube
