#pragma once
// Where the Kubernetes API server is and how to authenticate to it: from the pod's
// service account (in-cluster) or from a kubeconfig file, as client-go's rest.InClusterConfig
// and clientcmd do for the subset the aggregator needs.
//
// The bearer token is never cached here: a token_file is read again for every request
// (the projected service-account token is rotated by the kubelet; client-go re-reads it
// about every minute, and a request or two a minute makes reading it each time cheap).

#include <map>
#include <optional>
#include <string>

#include "common/result.h"

namespace meshprobe::aggregator::kube {

struct KubeConfig {
  std::string server;            // "https://host:port" (IPv6 host in brackets); http:// only for tests
  std::string tls_server_name;   // verify the server under this name instead of the URL's host
  std::string ca_file;           // PEM file of the CA(s) the server's certificate chains to
  std::string ca_pem;            // or inline PEM (kubeconfig certificate-authority-data, decoded)
  std::string token;             // a static bearer token (kubeconfig users[].user.token)
  std::string token_file;        // or a file re-read for every request (in-cluster, tokenFile)
  std::string client_cert_file;  // client certificate (kubeconfig client-certificate)
  std::string client_cert_pem;   // or inline PEM (client-certificate-data, decoded)
  std::string client_key_file;
  std::string client_key_pem;
  bool insecure_skip_tls_verify = false;  // kubeconfig insecure-skip-tls-verify: no server verification
  std::string pod_namespace;              // the pod's own namespace in-cluster ("" otherwise)
  std::string source;                     // "in-cluster" or "kubeconfig FILE context NAME"
};

// Environment variables by name (tests pass their own; processEnv() reads the process's).
using Env = std::map<std::string, std::string>;
Env processEnv();  // KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT when set

inline constexpr const char* kServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount";

// In-cluster: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT with
// <root>/var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt,namespace}. `root` is
// "/" in production. Errors name the missing variable or file.
Result<KubeConfig> inClusterConfig(const std::string& root, const Env& env);

// A kubeconfig file: `context` or else current-context; its cluster (server,
// certificate-authority[-data], insecure-skip-tls-verify, tls-server-name) and user (token,
// tokenFile, client-certificate[-data], client-key[-data]). Relative paths resolve against
// the file's directory, as kubectl does. exec and auth-provider users are refused by name.
// Errors name the file and the field.
Result<KubeConfig> loadKubeconfig(const std::string& path, const std::string& context = "");

// --kube auto|on|off.
enum class KubeMode { kAuto, kOn, kOff };
Result<KubeMode> parseKubeMode(const std::string& text);

struct KubeResolution {
  std::optional<KubeConfig> config;  // empty: Kubernetes is not used
  std::string why;                   // one line for the log
};

// off: not used. on: the kubeconfig if given, else in-cluster; failing either is an error.
// auto: the kubeconfig if given (a bad one is an error), else in-cluster when running in a
// cluster (KUBERNETES_SERVICE_HOST set and the token file exists), else not used.
Result<KubeResolution> resolve(KubeMode mode, const std::string& kubeconfig_path, const Env& env,
                               const std::string& root = "/");

// Reads a whole file; the error names it.
Result<std::string> readFile(const std::string& path);

}  // namespace meshprobe::aggregator::kube
