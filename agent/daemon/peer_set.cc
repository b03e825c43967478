#include "agent/daemon/peer_set.h"

#include <google/protobuf/util/message_differencer.h>

#include <set>

#include "agent/daemon/report_builder.h"

namespace meshprobe::agent {

bool PeerSet::apply(const meshprobe::v1::PeerList& list, const std::string& self) {
  const auto now = clock_.monotonicNow();
  bool changed = false;
  std::set<std::string> listed;
  for (const auto& p : list.peers()) {
    if (p.node_name() == self || p.node_name().empty()) continue;
    listed.insert(p.node_name());
    changed = upsert(p) || changed;
  }
  for (auto& [name, e] : peers_) {
    if (!listed.count(name) && !e.missing_since) e.missing_since = now;
  }
  return expire() || changed;
}

bool PeerSet::applyDelta(const meshprobe::v1::PeerDelta& delta, const std::string& self) {
  const auto now = clock_.monotonicNow();
  bool changed = false;
  for (const auto& name : delta.left()) {
    auto it = peers_.find(name);
    if (it != peers_.end() && !it->second.missing_since) it->second.missing_since = now;
  }
  for (const auto& p : delta.peers()) {
    if (p.node_name() == self || p.node_name().empty()) continue;
    changed = upsert(p) || changed;
  }
  return expire() || changed;
}

bool PeerSet::upsert(const meshprobe::v1::Peer& p) {
  auto identity = identityOf(p);
  auto it = peers_.find(p.node_name());
  if (it == peers_.end()) {
    peers_.emplace(p.node_name(), Entry{std::move(identity), std::nullopt});
    return true;
  }
  it->second.missing_since.reset();
  if (google::protobuf::util::MessageDifferencer::Equals(it->second.identity, identity)) return false;
  it->second.identity = std::move(identity);
  return true;
}

bool PeerSet::expire() {
  const auto now = clock_.monotonicNow();
  return std::erase_if(peers_, [&](const auto& kv) {
           return kv.second.missing_since && now - *kv.second.missing_since > grace_;
         }) > 0;
}

meshprobe::v1::PeerList PeerSet::current() const {
  meshprobe::v1::PeerList out;
  for (const auto& [name, e] : peers_) {
    auto* p = out.add_peers();
    p->set_node_name(name);
    *p->mutable_identity() = e.identity;
  }
  return out;
}

std::vector<const meshprobe::v1::NodeIdentity*> PeerSet::view() const {
  std::vector<const meshprobe::v1::NodeIdentity*> out;
  out.reserve(peers_.size());
  for (const auto& [name, e] : peers_) out.push_back(&e.identity);
  return out;
}

}  // namespace meshprobe::agent
