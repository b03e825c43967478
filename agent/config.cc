#include "agent/config.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include "common/flags.h"
#include "common/version.h"

namespace po = boost::program_options;

namespace meshprobe::agent {
namespace {

std::string envOr(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return (v && *v) ? std::string(v) : fallback;
}

std::string hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "";
  return buf;
}

// Address of the interface that holds the IPv4 default route (from /proc/net/route,
// the kernel's own table; no `ip` parsing).
std::string defaultRouteAddress() {
  std::ifstream routes("/proc/net/route");
  std::string line, iface;
  std::getline(routes, line);  // header
  while (std::getline(routes, line)) {
    std::istringstream fields(line);
    std::string name, dest;
    fields >> name >> dest;
    if (dest == "00000000") {
      iface = name;
      break;
    }
  }
  if (iface.empty()) return "";
  ifaddrs* addrs = nullptr;
  if (getifaddrs(&addrs) != 0) return "";
  std::string result;
  for (ifaddrs* a = addrs; a; a = a->ifa_next) {
    if (a->ifa_addr && a->ifa_addr->sa_family == AF_INET && iface == a->ifa_name) {
      char buf[INET_ADDRSTRLEN];
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr, buf, sizeof buf);
      result = buf;
      break;
    }
  }
  freeifaddrs(addrs);
  return result;
}

Result<Duration> durationFlag(const po::variables_map& vm, const char* name) {
  auto text = vm[name].as<std::string>();
  auto d = parseDuration(text);
  if (!d) return Error{"--" + std::string(name) + ": invalid duration '" + text + "' (write e.g. 500ms, 1s, 2m)"};
  return *d;
}

}  // namespace

std::string AgentConfig::hostPath(const std::string& path) const {
  if (host_root.empty() || host_root == "/") return path;
  std::string root = host_root;
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  return root + (path.empty() || path.front() == '/' ? path : "/" + path);
}

Result<ConfigOutcome> parseAgentConfig(int argc, const char* const argv[], AgentConfig& c) {
  po::options_description desc(
      "meshprobe-agent: node doctor and prober for Istio ambient on flannel VXLAN.\n"
      "Every flag also reads MESHPROBE_<FLAG> (e.g. MESHPROBE_NODE_NAME); flags win.\n\n"
      "Usage: meshprobe-agent --once [--output text|json]   run every node check once\n"
      "       meshprobe-agent --aggregator HOST:PORT        run as the node daemon\n\nFlags");
  std::string vxlan_port, probe_port, probe_budget;
  desc.add_options()
      ("help,h", "print this help and exit")
      ("version", "print the version and exit")
      ("node-name", po::value(&c.node_name), "this node's name (default $NODE_NAME, then the hostname)")
      ("node-ip", po::value(&c.node_ip), "this node's underlay IP (default $NODE_IP, then the default-route interface's address)")
      ("aggregator", po::value(&c.aggregator), "aggregator gRPC HOST:PORT; empty = standalone")
      ("interval", po::value<std::string>()->default_value("1s"), "check and probe interval")
      ("vxlan-device", po::value(&c.vxlan_device), "VXLAN device (default flannel.1, or the only VXLAN device)")
      ("vxlan-port", po::value(&vxlan_port), "expected VXLAN UDP port, compared with the device's own (flannel's Linux default 8472; often 4789)")
      ("istiod", po::value(&c.istiod)->default_value(c.istiod), "istiod xDS endpoint HOST:PORT")
      ("istiod-ca", po::value(&c.istiod_ca), "PEM root certificate (istio-ca-root-cert root-cert.pem) to verify istiod's chain")
      ("istiod-sni", po::value(&c.istiod_sni), "TLS server name for istiod (default: the --istiod host, or istiod.istio-system.svc for an IP)")
      ("ztunnel-socket", po::value(&c.ztunnel_socket)->default_value(c.ztunnel_socket), "istio-cni <-> ztunnel SOCK_SEQPACKET socket path")
      ("netns-dir", po::value(&c.netns_dir)->default_value(c.netns_dir), "directory of named pod network namespaces")
      ("host-root", po::value(&c.host_root)->default_value(c.host_root), "where the host's / is mounted; prefixes /proc and the flannel subnet file")
      ("flannel-subnet-file", po::value(&c.flannel_subnet_file)->default_value(c.flannel_subnet_file), "flannel's subnet.env, under --host-root")
      ("probe-key-file", po::value(&c.probe_key_file), "file with the cluster probe HMAC key")
      ("http-listen", po::value(&c.http_listen)->default_value(c.http_listen), "ADDR:PORT for /metrics, /healthz, /checks")
      ("probe-port", po::value(&probe_port)->default_value("9473"), "UDP+TCP probe responder port")
      ("probe-budget", po::value(&probe_budget)->default_value("200"),
       "regular probes per second per layer (retries, path-MTU probes not counted); up to budget x interval peers "
       "each is probed every interval, beyond that a rotation probes that many per interval so every pair is covered "
       "within ceil(peers / (budget x interval)) intervals. 200: full mesh up to 200 peers at --interval 1s, about "
       "0.9% of a core for both layers")
      ("peers", po::value<std::string>(), "standalone mode: comma-separated static peer IPs")
      ("once", po::bool_switch(&c.once), "run every node-local check once, print the verdict, exit 0 (all passed) or 1 (a check failed)")
      ("output", po::value(&c.output)->default_value(c.output), "--once output: text | json")
      ("check-timeout", po::value<std::string>()->default_value("5s"), "deadline for each check")
      ("log-level", po::value(&c.log_level)->default_value(c.log_level), "debug | info | warn | error")
      ("log-format", po::value(&c.log_format)->default_value(c.log_format), "text | json");
  tls::addClientFlags(desc, c.tls,
                      "plaintext stream to the aggregator and probes without --probe-key-file (tests and demos only)");

  po::variables_map vm;
  auto outcome = parseFlags(argc, argv, desc, vm);
  if (!outcome.ok()) return outcome.error();
  if (*outcome == ParseOutcome::kHelp) {
    std::cout << desc << "\n";
    return ConfigOutcome::kExitOk;
  }
  if (*outcome == ParseOutcome::kVersion) {
    std::cout << "meshprobe-agent " << kVersion << "\n";
    return ConfigOutcome::kExitOk;
  }

  auto interval = durationFlag(vm, "interval");
  if (!interval.ok()) return interval.error();
  c.interval = *interval;
  if (c.interval <= Duration::zero()) return Error{"--interval must be positive"};
  auto check_timeout = durationFlag(vm, "check-timeout");
  if (!check_timeout.ok()) return check_timeout.error();
  c.check_timeout = *check_timeout;
  if (c.check_timeout <= Duration::zero()) return Error{"--check-timeout must be positive"};

  auto parsePort = [](const std::string& text, const char* flag) -> Result<uint16_t> {
    char* end = nullptr;
    long v = std::strtol(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || v < 1 || v > 65535)
      return Error{std::string("--") + flag + ": invalid port '" + text + "' (1-65535)"};
    return static_cast<uint16_t>(v);
  };
  if (!vxlan_port.empty()) {
    auto p = parsePort(vxlan_port, "vxlan-port");
    if (!p.ok()) return p.error();
    c.vxlan_port = *p;
  }
  auto pp = parsePort(probe_port, "probe-port");
  if (!pp.ok()) return pp.error();
  c.probe_port = *pp;

  {
    char* end = nullptr;
    errno = 0;
    double budget = std::strtod(probe_budget.c_str(), &end);
    if (probe_budget.empty() || *end != '\0' || errno != 0 || !std::isfinite(budget) || budget <= 0)
      return Error{"--probe-budget: invalid rate '" + probe_budget +
                   "' (a positive number of probes per second per layer, e.g. 200)"};
    c.probe_budget = budget;
  }

  if (vm.count("peers")) {
    std::stringstream ss(vm["peers"].as<std::string>());
    std::string item;
    while (std::getline(ss, item, ',')) {
      if (!item.empty()) c.peers.push_back(item);
    }
  }
  if (c.output != "text" && c.output != "json") return Error{"--output must be text or json, got '" + c.output + "'"};
  if (c.istiod.rfind(':') == std::string::npos) return Error{"--istiod must be HOST:PORT, got '" + c.istiod + "'"};

  // The daemon refuses to run unauthenticated unless told to; --once only reads the node.
  if (!c.once) {
    if (auto st = tls::finishClientConfig(c.tls, /*require_choice=*/!c.aggregator.empty()); !st.ok())
      return st.error();
    if (c.probe_key_file.empty() && !c.tls.insecure)
      return Error{"no --probe-key-file: probes would be unauthenticated; pass the cluster probe key file, or "
                   "--insecure to allow unsigned probes"};
  }

  if (c.node_name.empty()) c.node_name = envOr("NODE_NAME", hostname());
  if (c.node_ip.empty()) c.node_ip = envOr("NODE_IP", defaultRouteAddress());
  return ConfigOutcome::kRun;
}

}  // namespace meshprobe::agent
