#include "agent/checks/vxlan_device_check.h"

#include <cerrno>

#include "agent/checks/vxlan_facts.h"
#include "common/finding_catalogue.h"

namespace meshprobe::agent {
namespace {

constexpr const char* kRestartFlannel =
    "Restart the flannel pod on this node so it recreates the VXLAN device: "
    "kubectl delete pod <flannel-pod-name> -n kube-system --force --grace-period=0; "
    "then verify it is back with `ip link | grep flannel`.";

constexpr const char* kFixMtu =
    "Make the VXLAN device MTU the underlay MTU minus the VXLAN overhead (50 bytes over IPv4): correct the MTU in "
    "flannel's configuration or on the underlay interface, then restart the flannel pod on this node "
    "(kubectl delete pod <flannel-pod-name> -n kube-system) so it recreates flannel.1.";

Finding makeFinding(std::string_view code, std::string summary, std::vector<std::string> evidence, std::string remedy) {
  // Severity and layer are the catalogue's, so the node doctor and the aggregator agree.
  Finding f = findingOf(code);
  f.summary = std::move(summary);
  f.evidence = std::move(evidence);
  f.remedy = std::move(remedy);
  return f;
}

}  // namespace

VxlanDeviceCheck::VxlanDeviceCheck(const AgentConfig& config, NetlinkReader& netlink)
    : config_(config), netlink_(netlink) {}

CheckResult VxlanDeviceCheck::run() {
  auto snap = netlink_.view();  // shared with the round's other readers, not copied
  if (!snap) {
    auto r = result(CheckStatus::kFail, "cannot read the node's links over rtnetlink: " + snap.error().message);
    r.details["error"] = snap.error().message;
    return r;
  }
  const VxlanDeviceChoice choice = chooseVxlanDevice(**snap, config_);
  nlohmann::json details = {{"device", choice.wanted}, {"choice", choice.reason}};

  auto missing = [&](const std::string& summary, std::vector<std::string> evidence) {
    auto r = result(CheckStatus::kFail, summary);
    r.details = details;
    evidence.insert(evidence.begin(), "vxlan_device: " + summary);
    r.findings.push_back(makeFinding(codes::kVxlanDeviceMissing, summary, std::move(evidence), kRestartFlannel));
    return r;
  };

  if (choice.link == nullptr) {
    return missing("VXLAN device " + choice.wanted + " is missing: " + choice.reason, {choice.reason});
  }
  const LinkInfo& dev = *choice.link;
  const std::string address = deviceIPv4(**snap, dev.ifindex);
  details["ifindex"] = dev.ifindex;
  details["kind"] = dev.kind;
  details["mac"] = dev.mac;
  details["mtu"] = dev.mtu;
  details["admin_up"] = dev.admin_up;
  details["lower_up"] = dev.lower_up;
  details["operstate"] = dev.operstate;
  details["address"] = address;

  if (dev.kind != "vxlan" || !dev.vxlan) {
    return missing(dev.name + " is not a VXLAN device (kind \"" + dev.kind + "\")",
                   {"link " + dev.name + " kind " + (dev.kind.empty() ? "none" : dev.kind)});
  }
  const VxlanInfo& vx = *dev.vxlan;
  details["vni"] = vx.vni;
  details["port"] = vx.port;
  details["local"] = vx.local;
  details["learning"] = vx.learning;
  const LinkInfo* underlay = vxlanUnderlay(**snap, dev);
  if (underlay != nullptr) {
    details["underlay"] = {{"name", underlay->name}, {"ifindex", underlay->ifindex}, {"mtu", underlay->mtu}};
  } else {
    details["underlay"] = nullptr;
  }

  if (!dev.admin_up) {
    return missing(dev.name + " is down (admin down)",
                   {"link " + dev.name + " flags without UP, operstate " + dev.operstate});
  }
  if (!dev.lower_up || dev.operstate == "down" || dev.operstate == "lowerlayerdown") {
    return missing(dev.name + " is admin up but not operational (operstate " + dev.operstate + ", no carrier)",
                   {"link " + dev.name + " operstate " + dev.operstate});
  }

  std::vector<std::string> fails;
  std::vector<std::string> warns;
  std::vector<Finding> findings;

  // MTU: flannel sets device MTU = underlay MTU - overhead.
  if (underlay != nullptr) {
    const uint32_t overhead = vxlanOverhead(vx);
    const uint32_t expected = underlay->mtu > overhead ? underlay->mtu - overhead : 0;
    details["expected_mtu"] = expected;
    const std::string rule = "underlay " + underlay->name + " MTU " + std::to_string(underlay->mtu) + " - " +
                             std::to_string(overhead) + " = " + std::to_string(expected);
    if (dev.mtu > expected) {
      const std::string s = dev.name + " MTU " + std::to_string(dev.mtu) + " is above " + rule +
                            ": packets larger than " + std::to_string(expected) + " bytes are dropped on the underlay";
      fails.push_back(s);
      findings.push_back(makeFinding(codes::kMtuMismatch, s,
                                     {"vxlan_device: " + dev.name + " mtu " + std::to_string(dev.mtu),
                                      underlay->name + " mtu " + std::to_string(underlay->mtu)},
                                     kFixMtu));
    } else if (dev.mtu < expected) {
      warns.push_back(dev.name + " MTU " + std::to_string(dev.mtu) + " is below " + rule +
                      " (works, but wastes capacity and differs from flannel's default)");
    }
  } else {
    warns.push_back("underlay device of " + dev.name + " unknown (no IFLA_VXLAN_LINK, no link holds local " +
                    (vx.local.empty() ? std::string("address") : vx.local) + "): MTU not compared");
  }
  if (address.empty()) warns.push_back(dev.name + " has no IPv4 address (flannel assigns its subnet's .0/32)");

  // flannel's subnet.env: address = FLANNEL_SUBNET's .0, FLANNEL_MTU = device MTU.
  const std::string path = config_.hostPath(config_.flannel_subnet_file);
  auto env = readFlannelSubnet(path);
  nlohmann::json envj = {{"path", path}};
  if (!env) {
    envj["present"] = env.error().sys_errno != ENOENT;
    if (env.error().sys_errno == ENOENT) {
      envj["note"] = "not present: address and MTU not compared with flannel's subnet.env";
    } else {
      envj["error"] = env.error().message;
      warns.push_back("cannot use flannel subnet file: " + env.error().message);
    }
  } else {
    envj["present"] = true;
    envj["network"] = env->network;
    envj["subnet"] = env->subnet;
    if (env->mtu) envj["mtu"] = *env->mtu;
    const std::string want = ipv4NetworkAddress(env->subnet);
    envj["expected_address"] = want;
    if (!address.empty() && address != want) {
      warns.push_back(dev.name + " address " + address + " is not FLANNEL_SUBNET " + env->subnet + "'s .0 address " +
                      want + " (" + path + ")");
    }
    if (env->mtu && *env->mtu != dev.mtu) {
      warns.push_back("FLANNEL_MTU " + std::to_string(*env->mtu) + " differs from " + dev.name + " MTU " +
                      std::to_string(dev.mtu) + " (" + path + ")");
    }
  }
  details["flannel_subnet_file"] = envj;
  details["problems"] = fails;
  for (const auto& w : warns) details["problems"].push_back(w);

  CheckResult r;
  if (!fails.empty()) {
    r = result(CheckStatus::kFail, fails.front());
  } else if (!warns.empty()) {
    std::string s;
    for (const auto& w : warns) s += (s.empty() ? "" : "; ") + w;
    r = result(CheckStatus::kWarn, s);
  } else {
    r = result(CheckStatus::kOk, dev.name + " up: VNI " + std::to_string(vx.vni) + ", dstport " +
                                     std::to_string(vx.port) + ", local " + (vx.local.empty() ? "-" : vx.local) +
                                     " on " + (underlay ? underlay->name : "?") + ", MTU " + std::to_string(dev.mtu) +
                                     ", address " + address);
  }
  r.details = std::move(details);
  r.findings = std::move(findings);
  return r;
}

}  // namespace meshprobe::agent
