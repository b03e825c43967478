#pragma once
// Builders for Hello / Report / ProbeResult messages shared by the aggregator tests.

#include <google/protobuf/util/time_util.h>

#include <chrono>
#include <string>

#include "meshprobe/v1/collector.pb.h"
#include "meshprobe/v1/query.pb.h"

namespace meshprobe::aggregator::testing {

namespace v1 = meshprobe::v1;

// Node "nodeN" style facts: node IP 198.51.100.N, overlay 10.244.N.0, VNI 1, port 4789.
inline v1::Hello makeHello(const std::string& name, int n, uint32_t vni = 1, uint32_t port = 4789) {
  v1::Hello h;
  h.set_node_name(name);
  h.set_node_ip("198.51.100." + std::to_string(n));
  h.set_overlay_ip("10.244." + std::to_string(n) + ".0");
  h.set_vtep_mac("02:00:00:00:00:0" + std::to_string(n % 10));
  h.set_vxlan_vni(vni);
  h.set_vxlan_port(port);
  h.set_pod_cidr("10.244." + std::to_string(n) + ".0/24");
  h.set_agent_version("0.1.0");
  h.set_vxlan_mtu(1450);
  return h;
}

inline v1::ProbeResult makeProbe(const std::string& dst, v1::Layer layer, uint32_t sent, uint32_t received,
                                 std::chrono::microseconds p50 = std::chrono::microseconds(200),
                                 std::chrono::microseconds p99 = std::chrono::microseconds(400)) {
  using google::protobuf::util::TimeUtil;
  v1::ProbeResult p;
  p.set_dst(dst);
  p.set_layer(layer);
  p.set_sent(sent);
  p.set_received(received);
  p.set_loss(sent == 0 ? 0.0 : 1.0 - static_cast<double>(received) / sent);
  *p.mutable_rtt_p50() = TimeUtil::MicrosecondsToDuration(p50.count());
  *p.mutable_rtt_p99() = TimeUtil::MicrosecondsToDuration(p99.count());
  return p;
}

inline v1::CheckResult makeCheck(const std::string& name, v1::CheckResult::Status status) {
  v1::CheckResult c;
  c.set_name(name);
  c.set_status(status);
  c.set_summary(name + " summary");
  return c;
}

inline const v1::Cell* findCell(const v1::GetMatrixResponse& m, const std::string& src, const std::string& dst) {
  for (const auto& c : m.cells()) {
    if (c.src() == src && c.dst() == dst) return &c;
  }
  return nullptr;
}

}  // namespace meshprobe::aggregator::testing
