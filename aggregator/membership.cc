#include "aggregator/membership.h"

#include <arpa/inet.h>
#include <google/protobuf/util/message_differencer.h>

#include <algorithm>
#include <map>
#include <set>
#include <string_view>

namespace meshprobe::aggregator {

namespace v1 = meshprobe::v1;

namespace {

std::map<std::string, const v1::Peer*> byName(const v1::PeerList& list) {
  std::map<std::string, const v1::Peer*> out;
  for (const auto& p : list.peers()) out[p.node_name()] = &p;
  return out;
}

void appendJoined(std::string& out, std::string_view label, const std::vector<std::string>& names) {
  if (names.empty()) return;
  if (!out.empty()) out += "; ";
  out += label;
  out += ' ';
  for (size_t i = 0; i < names.size(); ++i) {
    if (i) out += ',';
    out += names[i];
  }
}

bool validIp(const std::string& text) {
  unsigned char buf[16];
  return inet_pton(AF_INET, text.c_str(), buf) == 1 || inet_pton(AF_INET6, text.c_str(), buf) == 1;
}

// The most frequent non-zero value; ties go to the lower value. 0 when there is none.
uint32_t majority(const std::vector<uint32_t>& values) {
  std::map<uint32_t, size_t> counts;
  for (uint32_t v : values) {
    if (v != 0) ++counts[v];
  }
  uint32_t best = 0;
  size_t best_count = 0;
  for (const auto& [value, count] : counts) {  // ascending: the first of equal counts wins
    if (count > best_count) {
      best = value;
      best_count = count;
    }
  }
  return best;
}

}  // namespace

std::string MembershipDiff::describe() const {
  std::string out;
  appendJoined(out, "added", added);
  appendJoined(out, "removed", removed);
  appendJoined(out, "changed", changed);
  return out.empty() ? "no change" : out;
}

MembershipDiff diffPeers(const v1::PeerList& before, const v1::PeerList& after) {
  MembershipDiff diff;
  auto old_peers = byName(before);
  auto new_peers = byName(after);
  for (const auto& [name, peer] : new_peers) {
    auto it = old_peers.find(name);
    if (it == old_peers.end()) {
      diff.added.push_back(name);
    } else if (!google::protobuf::util::MessageDifferencer::Equals(*it->second, *peer)) {
      diff.changed.push_back(name);
    }
  }
  for (const auto& [name, peer] : old_peers) {
    if (!new_peers.count(name)) diff.removed.push_back(name);
  }
  return diff;
}

void applyPeerDelta(v1::PeerList& list, const v1::PeerDelta& delta) {
  std::map<std::string, v1::Peer> peers;
  for (auto& p : *list.mutable_peers()) peers[p.node_name()] = std::move(p);
  for (const auto& name : delta.left()) peers.erase(name);
  for (const auto& p : delta.peers()) peers[p.node_name()] = p;
  list.clear_peers();
  for (auto& [name, p] : peers) *list.add_peers() = std::move(p);
}

void mergePeerDeltas(v1::PeerDelta& first, const v1::PeerDelta& then) {
  std::map<std::string, v1::Peer> peers;
  std::set<std::string> left(first.left().begin(), first.left().end());
  for (auto& p : *first.mutable_peers()) peers[p.node_name()] = std::move(p);
  for (const auto& name : then.left()) {
    peers.erase(name);
    left.insert(name);
  }
  for (const auto& p : then.peers()) {
    left.erase(p.node_name());
    peers[p.node_name()] = p;
  }
  first.Clear();
  for (auto& [name, p] : peers) *first.add_peers() = std::move(p);
  for (const auto& name : left) first.add_left(name);
}

v1::NodeIdentity identityOf(const v1::Hello& hello) {
  v1::NodeIdentity id;
  id.set_name(hello.node_name());
  id.set_node_ip(hello.node_ip());
  id.set_overlay_ip(hello.overlay_ip());
  id.set_vtep_mac(hello.vtep_mac());
  id.set_vxlan_vni(hello.vxlan_vni());
  id.set_vxlan_port(hello.vxlan_port());
  id.set_pod_cidr(hello.pod_cidr());
  id.set_vxlan_mtu(hello.vxlan_mtu());
  return id;
}

v1::Hello normalizedHello(const v1::Hello& hello) {
  v1::Hello h = hello;
  if (hello.has_identity()) {
    const v1::NodeIdentity& id = hello.identity();
    if (!id.name().empty()) h.set_node_name(id.name());
    if (!id.node_ip().empty()) h.set_node_ip(id.node_ip());
    if (!id.overlay_ip().empty()) h.set_overlay_ip(id.overlay_ip());
    if (!id.vtep_mac().empty()) h.set_vtep_mac(id.vtep_mac());
    if (id.vxlan_vni() != 0) h.set_vxlan_vni(id.vxlan_vni());
    if (id.vxlan_port() != 0) h.set_vxlan_port(id.vxlan_port());
    if (!id.pod_cidr().empty()) h.set_pod_cidr(id.pod_cidr());
    if (id.vxlan_mtu() != 0) h.set_vxlan_mtu(id.vxlan_mtu());
  }
  *h.mutable_identity() = identityOf(h);
  return h;
}

v1::Peer peerFromHello(const v1::Hello& hello) {
  v1::Peer peer;
  *peer.mutable_identity() = identityOf(hello);
  peer.set_node_name(hello.node_name());
  peer.set_node_ip(hello.node_ip());
  peer.set_overlay_ip(hello.overlay_ip());
  peer.set_vtep_mac(hello.vtep_mac());
  peer.set_vxlan_vni(hello.vxlan_vni());
  peer.set_vxlan_port(hello.vxlan_port());
  peer.set_pod_cidr(hello.pod_cidr());
  peer.set_vxlan_mtu(hello.vxlan_mtu());
  return peer;
}

Status validateHello(const v1::Hello& hello) {
  const std::string& name = hello.node_name();
  if (name.empty()) return Error{"Hello.node_name is empty: the node name is the agent's identity"};
  if (name.size() > 253) return Error{"Hello.node_name is longer than 253 bytes"};
  for (unsigned char c : name) {
    if (c <= ' ' || c == 0x7f) return Error{"Hello.node_name '" + name + "' contains whitespace or control characters"};
  }
  if (!hello.node_ip().empty() && !validIp(hello.node_ip())) {
    return Error{"Hello.node_ip '" + hello.node_ip() + "' of node '" + name + "' is not an IP address"};
  }
  if (!hello.overlay_ip().empty() && !validIp(hello.overlay_ip())) {
    return Error{"Hello.overlay_ip '" + hello.overlay_ip() + "' of node '" + name + "' is not an IP address"};
  }
  return okStatus();
}

std::vector<VxlanMismatch> findVxlanMismatches(const v1::PeerList& members) {
  std::vector<uint32_t> vnis, ports;
  for (const auto& p : members.peers()) {
    vnis.push_back(p.vxlan_vni());
    ports.push_back(p.vxlan_port());
  }
  const uint32_t major_vni = majority(vnis);
  const uint32_t major_port = majority(ports);
  std::vector<VxlanMismatch> out;
  for (const auto& p : members.peers()) {
    VxlanMismatch m;
    m.node = p.node_name();
    m.vni = p.vxlan_vni();
    m.port = p.vxlan_port();
    m.majority_vni = major_vni;
    m.majority_port = major_port;
    m.vni_differs = p.vxlan_vni() != 0 && p.vxlan_vni() != major_vni;
    m.port_differs = p.vxlan_port() != 0 && p.vxlan_port() != major_port;
    if (m.vni_differs || m.port_differs) out.push_back(std::move(m));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.node < b.node; });
  return out;
}

}  // namespace meshprobe::aggregator
