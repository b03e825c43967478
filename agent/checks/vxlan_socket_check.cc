#include "agent/checks/vxlan_socket_check.h"

#include <netinet/tcp.h>
#include <sys/socket.h>

#include <string>
#include <vector>

#include "agent/checks/vxlan_facts.h"
#include "common/finding_catalogue.h"

namespace meshprobe::agent {
namespace {

constexpr uint16_t kFlannelLinuxDefaultPort = 8472;
constexpr uint16_t kRunbookPort = 4789;

std::string endpoint(const std::string& address, uint16_t port, int family) {
  return family == AF_INET6 ? "[" + address + "]:" + std::to_string(port) : address + ":" + std::to_string(port);
}

nlohmann::json socketJson(const InetSocket& s) {
  nlohmann::json j = {{"local", endpoint(s.local_address, s.local_port, s.family)},
                      {"state", s.state == TCP_ESTABLISHED ? "ESTAB" : "UNCONN"},
                      {"inode", s.inode},
                      {"uid", s.uid}};
  if (s.state == TCP_ESTABLISHED) j["remote"] = endpoint(s.remote_address, s.remote_port, s.family);
  if (s.bound_ifindex != 0) j["bound_ifindex"] = s.bound_ifindex;
  return j;
}

std::string listEndpoints(const std::vector<const InetSocket*>& sockets) {
  if (sockets.empty()) return "none";
  std::string out;
  for (const auto* s : sockets) {
    if (!out.empty()) out += ", ";
    out += endpoint(s->local_address, s->local_port, s->family);
  }
  return out;
}

}  // namespace

VxlanSocketCheck::VxlanSocketCheck(const AgentConfig& config, NetlinkReader& netlink, SockDiag& sock_diag)
    : config_(config), netlink_(netlink), sock_diag_(sock_diag) {}

CheckResult VxlanSocketCheck::run() {
  auto snap = netlink_.view();  // shared with the round's other readers, not copied
  if (!snap) {
    auto r = result(CheckStatus::kFail, "cannot read the VXLAN device over netlink: " + snap.error().message);
    r.details["error"] = snap.error().message;
    return r;
  }
  const VxlanDeviceChoice choice = chooseVxlanDevice(**snap, config_);
  if (!choice.link) {
    auto r = result(CheckStatus::kSkip, "no VXLAN device to check (" + choice.reason + "; vxlan_device reports that)");
    r.details["device"] = choice.wanted;
    r.details["reason"] = choice.reason;
    return r;
  }
  const LinkInfo& dev = *choice.link;
  if (!dev.vxlan) {
    auto r = result(CheckStatus::kSkip, "device " + dev.name + " is not a VXLAN device (kind \"" + dev.kind +
                                            "\"; vxlan_device reports that)");
    r.details["device"] = dev.name;
    r.details["kind"] = dev.kind;
    return r;
  }
  const uint16_t port = dev.vxlan->port;
  const std::string port_text = std::to_string(port);
  if (port == 0) {
    auto r = result(CheckStatus::kFail, "device " + dev.name + " reports no UDP dstport (IFLA_VXLAN_PORT 0)");
    r.details["device"] = dev.name;
    return r;
  }

  nlohmann::json details = {{"device", dev.name},
                            {"device_reason", choice.reason},
                            {"vni", dev.vxlan->vni},
                            {"port", port},
                            {"port_source", "device dstport (IFLA_VXLAN_PORT)"}};
  details["expected_port"] = config_.vxlan_port ? nlohmann::json(*config_.vxlan_port) : nlohmann::json(nullptr);

  auto sockets = sock_diag_.udpSockets();
  if (!sockets) {
    auto r = result(CheckStatus::kFail, "cannot list UDP sockets over sock_diag: " + sockets.error().message);
    details["error"] = sockets.error().message;
    r.details = std::move(details);
    return r;
  }

  std::vector<const InetSocket*> v4;
  std::vector<const InetSocket*> v6;
  for (const auto& s : *sockets) {
    if (s.local_port != port) continue;
    (s.family == AF_INET6 ? v6 : v4).push_back(&s);
  }
  details["ipv4"] = nlohmann::json::array();
  details["ipv6"] = nlohmann::json::array();
  for (const auto* s : v4) details["ipv4"].push_back(socketJson(*s));
  for (const auto* s : v6) details["ipv6"].push_back(socketJson(*s));
  details["udp_sockets_seen"] = sockets->size();

  std::vector<Finding> findings;
  std::vector<std::string> problems;
  const std::string dev_fact = dev.name + ": VXLAN id " + std::to_string(dev.vxlan->vni) + " dstport " + port_text;

  if (v4.empty() && v6.empty()) {
    Finding f = findingOf(codes::kVxlanSocketMissing);
    f.summary = "no UDP socket bound on port " + port_text + ", the VXLAN port of " + dev.name +
                ": VXLAN packets from other nodes are dropped";
    f.evidence = {dev_fact, "sock_diag: " + std::to_string(sockets->size()) +
                                " UDP sockets (IPv4 and IPv6), none on port " + port_text};
    f.remedy =
        "Restart the flannel pod on this node (kubectl delete pod <flannel-pod-name> -n kube-system --force "
        "--grace-period=0), then verify UDP " +
        port_text + " is listening (ss -lun | grep " + port_text + ")";
    findings.push_back(std::move(f));
    problems.push_back("no UDP socket on port " + port_text + " (" + dev.name + "'s dstport)");
  }

  if (config_.vxlan_port && *config_.vxlan_port != port) {
    const std::string expected = std::to_string(*config_.vxlan_port);
    Finding f = findingOf(codes::kVxlanConfigMismatch);
    f.summary = dev.name + " uses UDP port " + port_text + " but --vxlan-port expects " + expected +
                ": nodes that disagree on the VXLAN port cannot reach each other over the overlay";
    f.evidence = {dev_fact, "--vxlan-port " + expected,
                  "flannel's Linux default is " + std::to_string(kFlannelLinuxDefaultPort) +
                      " (kernel default when unset); the runbook's cluster uses " + std::to_string(kRunbookPort)};
    f.remedy =
        "Make flannel's VXLAN Port (net-conf.json Backend.Port) and --vxlan-port agree on every node, restart "
        "the flannel pod on this node, then verify UDP " +
        expected + " is listening (ss -lun | grep " + expected + ")";
    findings.push_back(std::move(f));
    problems.push_back(dev.name + " dstport " + port_text + " differs from --vxlan-port " + expected +
                       " (flannel's Linux default is " + std::to_string(kFlannelLinuxDefaultPort) +
                       "; the runbook's cluster uses " + std::to_string(kRunbookPort) + ")");
  }

  CheckResult r;
  if (problems.empty()) {
    r = result(CheckStatus::kOk, "UDP " + port_text + " bound for " + dev.name + " (IPv4: " + listEndpoints(v4) +
                                     "; IPv6: " + listEndpoints(v6) + ")");
  } else {
    std::string summary;
    for (const auto& p : problems) summary += (summary.empty() ? "" : "; ") + p;
    r = result(CheckStatus::kFail, summary);
  }
  r.details = std::move(details);
  r.findings = std::move(findings);
  return r;
}

}  // namespace meshprobe::agent
