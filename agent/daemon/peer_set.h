#pragma once
// Membership as the agent keeps it. A PeerList adds and updates peers at once, but a peer
// missing from a list is kept for `grace` before it is dropped (a PeerDelta's `left` name
// likewise): a restarted aggregator
// rebuilds membership one reconnecting agent at a time, and its first, partial lists must
// not throw away the probe history of peers that are still there.

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "meshprobe/v1/collector.pb.h"

namespace meshprobe::agent {

class PeerSet {
 public:
  PeerSet(const Clock& clock, std::chrono::nanoseconds grace) : clock_(clock), grace_(grace) {}

  // Applies a PeerList (the receiver's own entry is skipped). Returns true when the
  // effective set changed.
  bool apply(const meshprobe::v1::PeerList& list, const std::string& self);
  // Applies a PeerDelta on top of the lists and deltas before it: its peers as a list's,
  // its `left` names as missing from a list. The same state as the full list it stands
  // for would give. Returns true when the effective set changed.
  bool applyDelta(const meshprobe::v1::PeerDelta& delta, const std::string& self);
  // Drops peers that every list for longer than the grace has left out (the aggregator
  // sends lists only on change, so a quiet cluster expires nothing). True when it did.
  bool expire();
  // The current peers, sorted by name, as a PeerList: each Peer's name and identity (the
  // flat fields, which only repeat the identity, left empty).
  meshprobe::v1::PeerList current() const;
  // Each current peer's facts (identityOf its Peer), sorted by name, without copying them:
  // valid until the set next changes.
  std::vector<const meshprobe::v1::NodeIdentity*> view() const;

 private:
  struct Entry {
    // Only the identity is kept: a Peer carries the same facts twice (its flat fields for
    // agents that predate NodeIdentity), about 500 bytes a peer where this is half.
    meshprobe::v1::NodeIdentity identity;
    std::optional<std::chrono::steady_clock::time_point> missing_since;  // first list without it
  };
  // Adds or updates `p` (listed again: no longer missing). True when the set changed.
  bool upsert(const meshprobe::v1::Peer& p);
  const Clock& clock_;
  std::chrono::nanoseconds grace_;
  std::map<std::string, Entry> peers_;
};

}  // namespace meshprobe::agent
