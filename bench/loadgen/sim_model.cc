#include "bench/loadgen/sim_model.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <set>

#include "agent/config.h"
#include "agent/daemon/report_builder.h"
#include "agent/kernel/netlink_types.h"

namespace meshprobe::loadgen {

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

Result<Layer> parseLayer(const std::string& text) {
  const std::string l = lower(text);
  if (l == "underlay") return Layer::kUnderlay;
  if (l == "overlay") return Layer::kOverlay;
  return Error{"layer '" + text + "' is not underlay or overlay"};
}

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t pos = text.find(sep, start);
    out.push_back(text.substr(start, pos == std::string::npos ? std::string::npos : pos - start));
    if (pos == std::string::npos) return out;
    start = pos + 1;
  }
}

std::string ipv4(uint32_t host_order) {
  in_addr a{};
  a.s_addr = htonl(host_order);
  char buf[INET_ADDRSTRLEN];
  ::inet_ntop(AF_INET, &a, buf, sizeof buf);
  return buf;
}

size_t digits(size_t n) {
  size_t d = 1;
  while (n >= 10) {
    n /= 10;
    ++d;
  }
  return d;
}

}  // namespace

Result<FaultSpec> parseNodeFault(const std::string& text) {
  auto parts = split(text, ':');
  if (parts.size() != 2 || parts[0].empty()) return Error{"--fault-node '" + text + "' is not NAME:LAYER"};
  auto layer = parseLayer(parts[1]);
  if (!layer.ok()) return Error{"--fault-node '" + text + "': " + layer.error().message};
  return FaultSpec{parts[0], "", *layer};
}

Result<FaultSpec> parsePairFault(const std::string& text) {
  auto parts = split(text, ':');
  if (parts.size() != 3 || parts[0].empty() || parts[1].empty() || parts[0] == parts[1]) {
    return Error{"--fault-pair '" + text + "' is not A:B:LAYER with two different nodes"};
  }
  auto layer = parseLayer(parts[2]);
  if (!layer.ok()) return Error{"--fault-pair '" + text + "': " + layer.error().message};
  return FaultSpec{parts[0], parts[1], *layer};
}

std::string nodeName(const std::string& prefix, size_t index, size_t nodes) {
  const size_t width = std::max<size_t>(4, digits(nodes));
  std::string n = std::to_string(index + 1);
  return prefix + std::string(width > n.size() ? width - n.size() : 0, '0') + n;
}

std::optional<size_t> indexOfName(const std::string& prefix, const std::string& name, size_t nodes) {
  // Called for every member of every PeerList: no allocation.
  const size_t width = std::max<size_t>(4, digits(nodes));
  if (name.size() != prefix.size() + width || name.compare(0, prefix.size(), prefix) != 0) return std::nullopt;
  size_t value = 0;
  for (size_t i = prefix.size(); i < name.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(name[i]))) return std::nullopt;
    value = value * 10 + static_cast<size_t>(name[i] - '0');
  }
  if (value == 0 || value > nodes) return std::nullopt;
  return value - 1;
}

NodeIdentitySpec identityOf(const std::string& prefix, size_t index, size_t nodes) {
  NodeIdentitySpec id;
  id.name = nodeName(prefix, index, nodes);
  id.node_ip = ipv4(((198u << 24) | (18u << 16)) + static_cast<uint32_t>(index) + 1);
  const uint32_t subnet = (10u << 24) | ((128u + static_cast<uint32_t>(index / 256)) << 16) |
                          (static_cast<uint32_t>(index % 256) << 8);
  id.overlay_ip = ipv4(subnet);
  id.pod_cidr = id.overlay_ip + "/24";
  const uint32_t m = static_cast<uint32_t>(index) + 1;
  char mac[18];
  std::snprintf(mac, sizeof mac, "0e:5e:00:%02x:%02x:%02x", (m >> 16) & 0xff, (m >> 8) & 0xff, m & 0xff);
  id.vtep_mac = mac;
  return id;
}

meshprobe::v1::Hello helloFor(const NodeIdentitySpec& id) {
  agent::AgentConfig config;
  config.node_name = id.name;
  config.node_ip = id.node_ip;
  agent::NetlinkSnapshot snap;
  agent::LinkInfo eth0;
  eth0.ifindex = 2;
  eth0.name = "eth0";
  eth0.admin_up = eth0.lower_up = true;
  eth0.operstate = "up";
  eth0.mtu = 1500;
  snap.links.push_back(eth0);
  agent::LinkInfo vx;
  vx.ifindex = 3;
  vx.name = "flannel.1";
  vx.kind = "vxlan";
  vx.admin_up = vx.lower_up = true;
  vx.operstate = "unknown";
  vx.mtu = kSimVxlanMtu;
  vx.mac = id.vtep_mac;
  agent::VxlanInfo info;
  info.vni = 1;
  info.port = 8472;
  info.local = id.node_ip;
  info.underlay_ifindex = 2;
  vx.vxlan = info;
  snap.links.push_back(vx);
  snap.addresses.push_back({2, AF_INET, id.node_ip, 24});
  snap.addresses.push_back({3, AF_INET, id.overlay_ip, 32});
  return agent::buildHello(config, &snap, id.pod_cidr);
}

FaultSet::FaultSet(const std::vector<FaultSpec>& specs, const std::string& prefix, size_t nodes, std::string* error) {
  for (const auto& s : specs) {
    auto a = indexOfName(prefix, s.a, nodes);
    if (!a) {
      *error = "fault names '" + s.a + "', which is not one of the " + std::to_string(nodes) + " simulated nodes (" +
               nodeName(prefix, 0, nodes) + " .. " + nodeName(prefix, nodes - 1, nodes) + ")";
      return;
    }
    if (s.b.empty()) {
      node_.emplace_back(*a, s.layer);
      continue;
    }
    auto b = indexOfName(prefix, s.b, nodes);
    if (!b) {
      *error = "fault names '" + s.b + "', which is not one of the " + std::to_string(nodes) + " simulated nodes";
      return;
    }
    pairs_.emplace_back(*a, *b, s.layer);
  }
}

bool FaultSet::fails(size_t src, size_t dst, Layer layer) const {
  for (const auto& [n, l] : node_) {
    if (l == layer && (n == src || n == dst)) return true;
  }
  for (const auto& [a, b, l] : pairs_) {
    if (l == layer && ((a == src && b == dst) || (a == dst && b == src))) return true;
  }
  return false;
}

bool FaultSet::faultedNode(size_t i) const {
  return std::any_of(node_.begin(), node_.end(), [i](const auto& f) { return f.first == i; });
}

std::vector<size_t> FaultSet::destinationsFrom(size_t src, size_t nodes) const {
  std::vector<size_t> out;
  for (const auto& [n, l] : node_) {
    if (n == src) {
      out.resize(nodes);
      for (size_t j = 0; j < nodes; ++j) out[j] = j;
      return out;
    }
    if (n < nodes) out.push_back(n);
  }
  for (const auto& [a, b, l] : pairs_) {
    if (a == src && b < nodes) out.push_back(b);
    if (b == src && a < nodes) out.push_back(a);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

agent::TargetStats targetStats(const agent::ProbeTarget& target, size_t dst_index, bool failing,
                               const RoundFacts& facts) {
  using std::chrono::microseconds;
  agent::TargetStats s;
  s.target = target;
  constexpr uint64_t kWindow = 30;  // ProberOptions::window
  const uint64_t completed = std::max<uint64_t>(1, facts.round);
  s.sent = completed + (failing ? 2 * facts.failed_rounds : 0);
  s.window_probes = static_cast<size_t>(std::min(kWindow, s.sent));
  if (target.path_mtu_size > 0) {
    s.path_mtu.size = target.path_mtu_size;
    s.path_mtu.sent = completed / 10 + 1;  // ProberOptions::path_mtu_every
  }
  if (!failing) {
    s.received = s.sent;
    // Loopback-like LAN figures, a little different per destination.
    const auto p50 = microseconds(180 + static_cast<int64_t>(dst_index * 37 % 160));
    s.rtt_p50 = p50;
    s.rtt_p99 = p50 + microseconds(420);
    s.jitter = microseconds(35);
    s.last_rtt = p50;
    s.last_success = facts.now;
    if (s.path_mtu.size > 0) {
      s.path_mtu.received = s.path_mtu.sent;
      s.path_mtu.last_success = facts.now;
    }
    return s;
  }
  // A host that stopped answering: a probe and its two retries miss each round, the TCP
  // connect to the probe port (after two misses) times out.
  s.received = completed > facts.failed_rounds ? completed - facts.failed_rounds : 0;
  s.loss = 1.0;
  s.recent_loss = 1.0;
  s.consecutive_failures = static_cast<uint32_t>(3 * facts.failed_rounds);
  s.last_error = "no reply within " + formatDuration(facts.probe_timeout);
  s.last_failure = agent::ProbeFailure::kTimeout;
  s.tcp_reachable = false;
  s.tcp_error = "timed out";
  s.tcp_failure = agent::ProbeFailure::kTimeout;
  s.last_success = facts.injected_at;
  if (s.path_mtu.size > 0) {
    s.path_mtu.received = s.path_mtu.sent > facts.failed_rounds ? s.path_mtu.sent - facts.failed_rounds : 0;
    s.path_mtu.consecutive_failures = static_cast<uint32_t>(facts.failed_rounds);
    s.path_mtu.last_error = s.last_error;
    s.path_mtu.last_failure = agent::ProbeFailure::kTimeout;
    s.path_mtu.last_success = facts.injected_at;
  }
  return s;
}

std::vector<meshprobe::v1::CheckResult> healthyChecks() {
  struct Row {
    const char* name;
    const char* summary;
    int ms;
  };
  // The registry's order (agent/checks/registry.cc); summaries in the checks' own words.
  static const Row kRows[] = {
      {"vxlan_device", "flannel.1: VNI 1, port 8472, MTU 1450 (underlay eth0 MTU 1500), up", 1},
      {"vxlan_socket", "UDP socket bound on port 8472", 1},
      {"vxlan_fdb", "every peer has its neighbour, FDB entry and route", 2},
      {"firewall", "nothing drops VXLAN, probe or istiod traffic", 12},
      {"istiod", "istiod.istio-system.svc:15012 reachable (TLS, ALPN h2)", 9},
      {"ztunnel", "istio-cni listens on /var/run/ztunnel/ztunnel.sock and ztunnel is connected", 1},
      {"ambient_redirection", "no captured pods on this node", 3},
  };
  std::vector<meshprobe::v1::CheckResult> out;
  for (const auto& r : kRows) {
    agent::CheckResult c;
    c.name = r.name;
    c.status = agent::CheckStatus::kOk;
    c.summary = r.summary;
    c.duration = std::chrono::milliseconds(r.ms);
    out.push_back(agent::toProto(c));
  }
  return out;
}

SimPeers::SimPeers(const Clock& clock, std::string prefix, size_t nodes, size_t self)
    : clock_(clock), prefix_(std::move(prefix)), self_(nodeName(prefix_, self, nodes)), state_(nodes, kAbsent) {}

int64_t SimPeers::nowStamp() const {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(clock_.monotonicNow().time_since_epoch()).count() + 1;
}

// A listed member: current again (PeerSet::upsert).
void SimPeers::upsert(const std::string& name) {
  int64_t* st = nullptr;
  if (auto idx = indexOfName(prefix_, name, state_.size())) {
    st = &state_[*idx];
  } else {
    st = &foreign_.try_emplace(name, kMember).first->second;
  }
  if (*st > kMember) --missing_;
  *st = kMember;
}

// A member said to have left (or missing from a list): its grace starts, once.
void SimPeers::leave(const std::string& name, int64_t now) {
  int64_t* st = nullptr;
  if (auto idx = indexOfName(prefix_, name, state_.size())) {
    st = &state_[*idx];
  } else if (auto it = foreign_.find(name); it != foreign_.end()) {
    st = &it->second;
  }
  if (st == nullptr || *st != kMember) return;
  *st = now;
  ++missing_;
}

void SimPeers::expire(int64_t now) {
  if (missing_ == 0) return;
  const int64_t grace = std::chrono::duration_cast<std::chrono::nanoseconds>(kGrace).count();
  auto expired = [&](int64_t st) { return st > kMember && now - st > grace; };
  for (auto& st : state_) {
    if (expired(st)) {
      st = kAbsent;
      --missing_;
    }
  }
  missing_ -= std::erase_if(foreign_, [&](const auto& kv) { return expired(kv.second); });
}

void SimPeers::onPeerList(const meshprobe::v1::PeerList& list) {
  have_list_ = true;
  const int64_t now = nowStamp();
  std::vector<bool> listed(state_.size(), false);
  std::set<std::string> listed_foreign;
  for (const auto& p : list.peers()) {
    if (p.node_name() == self_ || p.node_name().empty()) continue;
    upsert(p.node_name());
    if (auto idx = indexOfName(prefix_, p.node_name(), state_.size())) {
      listed[*idx] = true;
    } else {
      listed_foreign.insert(p.node_name());
    }
  }
  for (size_t j = 0; j < state_.size(); ++j) {
    if (!listed[j] && state_[j] == kMember) {
      state_[j] = now;
      ++missing_;
    }
  }
  for (auto& [name, st] : foreign_) {
    if (!listed_foreign.count(name) && st == kMember) {
      st = now;
      ++missing_;
    }
  }
  expire(now);
}

bool SimPeers::onPeerDelta(const meshprobe::v1::PeerDelta& delta) {
  if (!have_list_) {
    ++deltas_ignored_;
    return false;
  }
  const int64_t now = nowStamp();
  for (const auto& name : delta.left()) leave(name, now);
  for (const auto& peer : delta.peers()) {
    if (peer.node_name() == self_ || peer.node_name().empty()) continue;
    upsert(peer.node_name());
    if (auto idx = indexOfName(prefix_, peer.node_name(), state_.size())) joined_.push_back(*idx);
  }
  expire(now);
  return true;
}

size_t SimPeers::knownCount() const {
  return static_cast<size_t>(std::count_if(state_.begin(), state_.end(), [](int64_t st) { return st != kAbsent; }));
}

}  // namespace meshprobe::loadgen
