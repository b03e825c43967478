#include "tests/e2e/cluster.h"

#include <cstdio>

namespace meshprobe::e2e {

std::string Cluster::nodeIp(int n) { return "198.51.100." + std::to_string(10 + n); }

std::string Cluster::vtepMac(int n) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0a:58:0a:f4:%02x:00", n);
  return buf;
}

std::string Cluster::podSubnet(int n) { return "10.244." + std::to_string(n) + ".0/24"; }
std::string Cluster::vtepAddr(int n) { return "10.244." + std::to_string(n) + ".0"; }
std::string Cluster::podIp(int n, int host) { return "10.244." + std::to_string(n) + "." + std::to_string(host); }

Cluster::Cluster(const ClusterOptions& options) : options_(options) {
  underlay_ = std::make_unique<TestNetns>("underlay");
  underlay_->sh("ip link add br0 type bridge; ip link set br0 up");
  const std::string port = std::to_string(options_.vxlan_port);
  const std::string mtu = std::to_string(options_.underlay_mtu);
  const std::string vxlan_mtu = std::to_string(options_.underlay_mtu - 50);
  for (int n = 1; n <= options_.nodes; ++n) {
    nodes_.push_back(std::make_unique<TestNetns>("node" + std::to_string(n)));
    const auto& ns = *nodes_.back();
    const std::string veth = "v" + std::to_string(n);
    mustRun({"ip", "-n", underlay_->name(), "link", "add", veth, "mtu", mtu, "type", "veth", "peer", "name", "eth0",
             "mtu", mtu, "netns", ns.name()});
    underlay_->sh("ip link set " + veth + " master br0 up");
    ns.sh("ip addr add " + nodeIp(n) +
          "/24 dev eth0\n"
          "ip link set eth0 up\n"
          "ip link add flannel.1 type vxlan id 1 dstport " +
          port + " local " + nodeIp(n) +
          " dev eth0 nolearning\n"
          "ip link set flannel.1 address " +
          vtepMac(n) + " mtu " + vxlan_mtu +
          " up\n"
          "ip addr add " +
          vtepAddr(n) +
          "/32 dev flannel.1\n"
          "ip link add cni0 type bridge\n"
          "ip addr add 10.244." +
          std::to_string(n) +
          ".1/24 dev cni0\n"
          "ip link set cni0 up\n"
          "sysctl -qw net.ipv4.ip_forward=1\n");
  }
  // One shell per node for all its peers: with many nodes, a shell per (node, peer) pair
  // dominates the setup time.
  for (int on = 1; on <= options_.nodes; ++on) {
    std::string script;
    for (int peer = 1; peer <= options_.nodes; ++peer) {
      if (on != peer) script += peerScript(peer);
    }
    if (!script.empty()) node(on).sh(script);
  }
}

std::string Cluster::peerScript(int peer) {
  return "bridge fdb append " + vtepMac(peer) + " dev flannel.1 dst " + nodeIp(peer) +
         " self permanent\n"
         "ip neigh replace " +
         vtepAddr(peer) + " lladdr " + vtepMac(peer) +
         " dev flannel.1 nud permanent\n"
         "ip route replace " +
         podSubnet(peer) + " via " + vtepAddr(peer) + " dev flannel.1 onlink\n";
}

void Cluster::programPeer(int on, int peer) const { node(on).sh(peerScript(peer)); }

const TestNetns& Cluster::addPod(int n, const std::string& name, int host) {
  pods_.push_back(std::make_unique<TestNetns>("pod-" + name));
  const auto& pod = *pods_.back();
  const std::string veth = "vp" + std::to_string(pods_.size());
  mustRun({"ip", "-n", nodeNs(n), "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", pod.name()});
  node(n).sh("ip link set " + veth + " master cni0 up");
  pod.sh("ip addr add " + podIp(n, host) +
         "/24 dev eth0\n"
         "ip link set eth0 up\n"
         "ip route add default via 10.244." +
         std::to_string(n) + ".1\n");
  return pod;
}

const TestNetns& Cluster::addNetns(const std::string& name) {
  pods_.push_back(std::make_unique<TestNetns>("pod-" + name));
  return *pods_.back();
}

std::string Cluster::controlIp() { return "198.51.100.2"; }

const TestNetns& Cluster::addControl() {
  if (control_) return *control_;
  control_ = std::make_unique<TestNetns>("control");
  const std::string mtu = std::to_string(options_.underlay_mtu);
  mustRun({"ip", "-n", underlay_->name(), "link", "add", "vc", "mtu", mtu, "type", "veth", "peer", "name", "eth0",
           "mtu", mtu, "netns", control_->name()});
  underlay_->sh("ip link set vc master br0 up");
  control_->sh("ip addr add " + controlIp() + "/24 dev eth0\nip link set eth0 up\n");
  return *control_;
}

}  // namespace meshprobe::e2e
