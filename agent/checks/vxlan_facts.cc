#include "agent/checks/vxlan_facts.h"

#include <sys/socket.h>

namespace meshprobe::agent {

VxlanDeviceChoice chooseVxlanDevice(const NetlinkSnapshot& snap, const AgentConfig& config) {
  VxlanDeviceChoice choice;
  if (!config.vxlan_device.empty()) {
    choice.wanted = config.vxlan_device;
    choice.link = snap.linkByName(config.vxlan_device);
    choice.reason = choice.link ? "configured with --vxlan-device"
                                : "device " + config.vxlan_device + " (--vxlan-device) does not exist";
    return choice;
  }
  choice.wanted = kDefaultVxlanDevice;
  if (const LinkInfo* l = snap.linkByName(kDefaultVxlanDevice)) {
    choice.link = l;
    choice.reason = "flannel's default device";
    return choice;
  }
  const LinkInfo* only = nullptr;
  int count = 0;
  for (const auto& l : snap.links) {
    if (l.kind == "vxlan") {
      ++count;
      only = &l;
    }
  }
  if (count == 1) {
    choice.link = only;
    choice.wanted = only->name;
    choice.reason = "the only VXLAN device on this node";
  } else if (count == 0) {
    choice.reason = std::string("no ") + kDefaultVxlanDevice + " and no VXLAN device on this node";
  } else {
    choice.reason = std::string("no ") + kDefaultVxlanDevice + " and " + std::to_string(count) +
                    " VXLAN devices; choose one with --vxlan-device";
  }
  return choice;
}

std::string deviceIPv4(const NetlinkSnapshot& snap, int ifindex) {
  for (const auto& a : snap.addresses) {
    if (a.ifindex == ifindex && a.family == AF_INET) return a.address;
  }
  return "";
}

}  // namespace meshprobe::agent
