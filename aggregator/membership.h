#pragma once
// Membership facts and their comparison. The aggregator pushes PeerList only when the
// list changed (a member added or removed, or a member's facts changed), so membership
// is diffed here as a pure function over two peer lists.

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"
#include "meshprobe/v1/collector.pb.h"

namespace meshprobe::aggregator {

// Node names that appear, disappear or change facts between two peer lists.
struct MembershipDiff {
  std::vector<std::string> added;
  std::vector<std::string> removed;
  std::vector<std::string> changed;

  bool empty() const { return added.empty() && removed.empty() && changed.empty(); }
  std::string describe() const;  // "added a,b; removed c; changed d" (for logs)
};

// Compares by node name; list order does not matter.
MembershipDiff diffPeers(const meshprobe::v1::PeerList& before, const meshprobe::v1::PeerList& after);

// `delta` applied on top of `list`: its peers replace or join (the list stays sorted by
// name), its `left` names go. A stream's queue folds a delta into a PeerList not yet sent.
void applyPeerDelta(meshprobe::v1::PeerList& list, const meshprobe::v1::PeerDelta& delta);
// `then` folded into `first`, so that applying the result equals applying both in turn.
void mergePeerDeltas(meshprobe::v1::PeerDelta& first, const meshprobe::v1::PeerDelta& then);

// The facts of a Hello that other agents need (what PeerList carries): the identity
// message and, for agents that predate it, the same facts in the flat fields.
meshprobe::v1::Peer peerFromHello(const meshprobe::v1::Hello& hello);

// A Hello with its identity in both forms: from `identity` where it sets a field, from
// the flat fields otherwise (an agent that predates NodeIdentity sends only those).
// Everything past the Collector reads a normalized Hello.
meshprobe::v1::Hello normalizedHello(const meshprobe::v1::Hello& hello);

// The NodeIdentity of a normalized Hello.
meshprobe::v1::NodeIdentity identityOf(const meshprobe::v1::Hello& hello);

// A Hello the aggregator accepts: a node name (1..253 bytes, no whitespace or control
// characters) and, where given, parseable IPv4/IPv6 node and overlay addresses. The
// error message names the offending field.
Status validateHello(const meshprobe::v1::Hello& hello);

// A member whose VXLAN VNI or UDP port differs from the majority of members. Members
// reporting 0 (no VXLAN device read) take no part: that is VXLAN_DEVICE_MISSING, not a
// mismatch. A tie for the majority goes to the lower value, so the answer is stable.
struct VxlanMismatch {
  std::string node;
  uint32_t vni = 0;
  uint32_t port = 0;
  uint32_t majority_vni = 0;
  uint32_t majority_port = 0;
  bool vni_differs = false;
  bool port_differs = false;
};

std::vector<VxlanMismatch> findVxlanMismatches(const meshprobe::v1::PeerList& members);

}  // namespace meshprobe::aggregator
