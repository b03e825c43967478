#pragma once
// AgentConfig: every agent setting with its default in one place.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/duration.h"
#include "common/result.h"
#include "common/tls/tls.h"

namespace meshprobe::agent {

struct AgentConfig {
  std::string node_name;                    // --node-name; default $NODE_NAME, then hostname
  std::string node_ip;                      // --node-ip; default $NODE_IP, then default-route interface address
  std::string aggregator;                   // --aggregator HOST:PORT; empty = standalone
  Duration interval = std::chrono::seconds(1);
  std::string vxlan_device;                 // --vxlan-device; empty = flannel.1, or the only VXLAN device
  std::optional<uint16_t> vxlan_port;       // --vxlan-port: an expectation to compare, not an assumption
  std::string istiod = "istiod.istio-system.svc:15012";
  std::string istiod_ca;                    // PEM file; empty = do not verify the chain
  std::string istiod_sni;                   // empty = host of --istiod when a name, else istiod.istio-system.svc
  std::string ztunnel_socket = "/var/run/ztunnel/ztunnel.sock";
  std::string netns_dir = "/var/run/netns";
  std::string host_root = "/";              // prefixes /proc and the flannel subnet file
  std::string flannel_subnet_file = "/run/flannel/subnet.env";  // under --host-root
  std::string probe_key_file;
  // --aggregator-ca, --tls-cert, --tls-key, --tls-server-name, --tls-refresh, --insecure.
  // The daemon needs TLS for --aggregator and --probe-key-file, unless tls.insecure.
  tls::ClientConfig tls;
  std::string http_listen = "0.0.0.0:9472";
  uint16_t probe_port = 9473;
  // --probe-budget: regular probes per second per layer (retries and DF path-MTU probes
  // not counted). Up to budget × interval peers, every peer every interval; beyond it each
  // agent probes that many peers per round in a rotation (agent/probe/rotation.h).
  double probe_budget = 200;
  std::vector<std::string> peers;           // static peers for standalone mode
  bool once = false;
  std::string output = "text";              // text | json
  Duration check_timeout = std::chrono::seconds(5);  // per check
  std::string log_level = "info";
  std::string log_format = "text";

  // host_root joined with an absolute host path ("/proc" -> "/host/proc").
  std::string hostPath(const std::string& path) const;
};

enum class ConfigOutcome { kRun, kExitOk };

// Parses argv + MESHPROBE_* environment. On --help/--version prints to stdout and returns
// kExitOk. Errors (exit 2) name the offending flag.
Result<ConfigOutcome> parseAgentConfig(int argc, const char* const argv[], AgentConfig& config);

}  // namespace meshprobe::agent
