#pragma once
// A flannel-VXLAN "cluster" out of network namespaces: one underlay netns with
// a bridge, and per node a netns with eth0 (veth into the bridge) on 198.51.100.(10+N)/24,
// flannel.1 (VXLAN, VNI 1, local = node IP, dev eth0, nolearning, MTU = eth0 − 50) holding
// 10.244.N.0/32, a cni0 bridge with 10.244.N.1/24, and for every peer what flannel
// programs: FDB (peer VTEP MAC → peer IP), permanent neighbour (peer .0 → MAC) and the
// route (peer /24 via peer .0 onlink). Pods are netns behind a node's cni0.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tests/e2e/harness.h"

namespace meshprobe::e2e {

struct ClusterOptions {
  int nodes = 2;
  uint16_t vxlan_port = 4789;  // every node's flannel.1 dstport
  int underlay_mtu = 1500;
};

class Cluster {
 public:
  explicit Cluster(const ClusterOptions& options = {});
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  int size() const { return static_cast<int>(nodes_.size()); }
  const TestNetns& node(int n) const { return *nodes_.at(n - 1); }  // 1-based
  const std::string& nodeNs(int n) const { return node(n).name(); }
  // The underlay netns holding the bridge br0 (every node's eth0 and the control netns hang off it).
  const TestNetns& underlay() const { return *underlay_; }

  static std::string nodeIp(int n);           // 198.51.100.(10+n)
  static std::string vtepMac(int n);          // 0a:58:0a:f4:NN:00
  static std::string podSubnet(int n);        // 10.244.n.0/24
  static std::string vtepAddr(int n);         // 10.244.n.0
  static std::string podIp(int n, int host);  // 10.244.n.host

  // Pod netns "pod-<name>" behind node n's cni0: eth0 = 10.244.n.host/24, default via 10.244.n.1.
  const TestNetns& addPod(int n, const std::string& name, int host);
  // A bare netns (no interfaces but lo), e.g. an ambient pod that needs no traffic.
  const TestNetns& addNetns(const std::string& name);

  // What flannel programs on node `on` for `peer`.
  void programPeer(int on, int peer) const;
  // ... as a shell script (run in the node's netns).
  static std::string peerScript(int peer);

  // The control plane's netns "control" on the underlay bridge (eth0 = controlIp()/24), for
  // the aggregator: the diagnostic path must not depend on the overlay (design rule 1, docs/architecture.md).
  // Created once; later calls return the same netns.
  const TestNetns& addControl();
  static std::string controlIp();  // 198.51.100.2

 private:
  ClusterOptions options_;
  std::unique_ptr<TestNetns> underlay_;
  std::vector<std::unique_ptr<TestNetns>> nodes_;
  std::unique_ptr<TestNetns> control_;
  std::vector<std::unique_ptr<TestNetns>> pods_;  // destroyed first (declared last)
};

}  // namespace meshprobe::e2e
