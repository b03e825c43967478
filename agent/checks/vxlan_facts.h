#pragma once
// Which device is "the VXLAN device" and the facts the other checks key on (its own
// dstport, VNI, address). Pure function over a snapshot.

#include <optional>
#include <string>

#include "agent/config.h"
#include "agent/kernel/netlink_types.h"
#include "common/result.h"

namespace meshprobe::agent {

inline constexpr const char* kDefaultVxlanDevice = "flannel.1";

struct VxlanDeviceChoice {
  const LinkInfo* link = nullptr;  // nullptr: not found (reason says why)
  std::string wanted;              // the name we looked for
  std::string reason;              // why this device / why none
};

// --vxlan-device if set; else flannel.1 if present; else the only VXLAN device if
// exactly one exists; else none.
VxlanDeviceChoice chooseVxlanDevice(const NetlinkSnapshot& snap, const AgentConfig& config);

// The IPv4 address on the device (flannel: the pod subnet's .0/32), empty when none.
std::string deviceIPv4(const NetlinkSnapshot& snap, int ifindex);

}  // namespace meshprobe::agent
