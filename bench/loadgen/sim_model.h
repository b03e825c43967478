#pragma once
// What meshprobe-loadgen's simulated agents say, without any I/O: their identities, the
// faults they simulate and their Hellos and Reports, built with the agent's own code
// (buildHello, toProto(TargetStats), toProto(CheckResult) from agent/daemon/report_builder.h),
// so the bytes on the wire are those a real agent would send for the same facts.
//
// Node i (0-based) of a run:
//   name      <prefix><i+1, zero-padded to at least 4 digits>     sim-0001
//   node IP   198.18.0.0 + i + 1 (RFC 2544 benchmark range; nothing is ever sent there)
//   flannel   flannel.1, VNI 1, port 8472, MTU 1450, address 10.(128 + i/256).(i%256).0,
//             pod CIDR 10.(128 + i/256).(i%256).0/24, VTEP MAC 0e:5e:00:XX:XX:XX (i + 1)
// so up to 32,768 nodes get unique, valid addresses.
//
// Outcomes: every probe passes (loss 0, sub-millisecond RTT) unless a fault covers it.
// A faulted target reports what the agent's prober reports for a host that stopped
// answering: each round a probe and its two quick retries miss (consecutive_failures grows
// by 3 per round), loss and recent loss 1, "no reply within <timeout>" (TIMEOUT), the TCP
// check to the probe port timed out; overlay targets' DF path-MTU probes miss too.

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "agent/probe/prober.h"
#include "common/clock.h"
#include "common/duration.h"
#include "common/result.h"
#include "meshprobe/v1/collector.pb.h"

namespace meshprobe::loadgen {

struct FaultSpec {
  std::string a;  // node-wide fault: the node; pair fault: one end
  std::string b;  // pair fault: the other end; empty for a node-wide fault
  Layer layer = Layer::kUnderlay;
};

// "NAME:LAYER" (node) or "A:B:LAYER" (pair); LAYER is underlay or overlay (any case).
Result<FaultSpec> parseNodeFault(const std::string& text);
Result<FaultSpec> parsePairFault(const std::string& text);

struct NodeIdentitySpec {
  std::string name;
  std::string node_ip;
  std::string overlay_ip;
  std::string pod_cidr;
  std::string vtep_mac;
};

inline constexpr size_t kMaxNodes = 32768;
inline constexpr uint32_t kSimVxlanMtu = 1450;

std::string nodeName(const std::string& prefix, size_t index, size_t nodes);
NodeIdentitySpec identityOf(const std::string& prefix, size_t index, size_t nodes);
// The index of a simulated node's name, or nullopt for any other name.
std::optional<size_t> indexOfName(const std::string& prefix, const std::string& name, size_t nodes);

// The node's Hello, through the agent's buildHello over a netlink snapshot holding the
// node's flannel.1 as rtnetlink would show it.
meshprobe::v1::Hello helloFor(const NodeIdentitySpec& id);

// Faults resolved to node indices.
class FaultSet {
 public:
  FaultSet() = default;
  FaultSet(const std::vector<FaultSpec>& specs, const std::string& prefix, size_t nodes, std::string* error);
  bool empty() const { return node_.empty() && pairs_.empty(); }
  // Whether probes from src to dst on `layer` fail once the faults are injected.
  bool fails(size_t src, size_t dst, Layer layer) const;
  // Whether a node-wide fault names node `i` (its own probes fail, not only its peers').
  bool faultedNode(size_t i) const;
  // The destinations whose probes from `src` may fail (every node when src is a faulted
  // node), sorted, of `nodes` in all: what a delta report from src has to look at.
  std::vector<size_t> destinationsFrom(size_t src, size_t nodes) const;

 private:
  std::vector<std::pair<size_t, Layer>> node_;
  std::vector<std::tuple<size_t, size_t, Layer>> pairs_;
};

// Probe outcomes for one round.
struct RoundFacts {
  uint64_t round = 0;  // rounds since the simulation started (1 = the first)
  std::chrono::system_clock::time_point now;
  Duration probe_timeout{};                  // the agent's default: 0.8 × min(interval, 1 s)
  uint64_t failed_rounds = 0;                // rounds since injection, 0 before
  std::chrono::system_clock::time_point injected_at;
};

// What one simulated node knows of the membership, with the semantics of the agent's
// PeerSet (agent/daemon/peer_set.h): a stream's PeerList makes its members current and
// starts the grace of every member it no longer lists; a PeerDelta adds or updates its peers
// and starts the grace of those it says left; a member whose grace (the agent's kPeerGrace)
// has passed is dropped. A delta that comes before the stream's first PeerList is ignored
// and counted, as the agent's StreamClient does. known(j) says whether node j is a member to
// probe; names that are not simulated nodes are counted as foreign.
//
// Unlike the PeerSet it keeps no copy of each member's Peer message, only its state, in
// 8 bytes per simulated node, and a delta costs what it carries rather than the whole
// membership: 5,000 simulated nodes of 5,000 members would otherwise hold 25 M Peer messages
// (tens of GB) and copy 5,000 of them per node per delta. A unit test feeds the same
// sequences to both and compares the members.
class SimPeers {
 public:
  static constexpr std::chrono::seconds kGrace{30};  // the agent's kPeerGrace

  SimPeers(const Clock& clock, std::string prefix, size_t nodes, size_t self);

  // A new stream: its deltas apply only once its first PeerList has come.
  void streamStarted() { have_list_ = false; }
  bool haveList() const { return have_list_; }
  void onPeerList(const meshprobe::v1::PeerList& list);
  // False when ignored (no PeerList on this stream yet).
  bool onPeerDelta(const meshprobe::v1::PeerDelta& delta);

  // Simulated members a PeerDelta added or changed since the last call: the agent's next
  // report carries all their results (ReportDeltaEncoder::resendTo).
  std::vector<size_t> takeJoined() { return std::exchange(joined_, {}); }
  bool anyJoined() const { return !joined_.empty(); }
  bool known(size_t j) const { return state_[j] != kAbsent; }
  size_t knownCount() const;
  uint64_t foreign() const { return foreign_.size(); }  // in the current set
  uint64_t deltasIgnored() const { return deltas_ignored_; }

 private:
  // Per simulated node: not a member, a member, or a member missing since this monotonic
  // time (nanoseconds + 1, so never 0).
  static constexpr int64_t kAbsent = -1;
  static constexpr int64_t kMember = 0;
  int64_t nowStamp() const;
  void upsert(const std::string& name);
  void leave(const std::string& name, int64_t now);
  void expire(int64_t now);

  const Clock& clock_;
  std::string prefix_;
  std::string self_;
  std::vector<int64_t> state_;
  std::map<std::string, int64_t> foreign_;  // name → kMember or missing since
  size_t missing_ = 0;                      // entries (simulated or foreign) in their grace
  uint64_t deltas_ignored_ = 0;
  bool have_list_ = false;
  std::vector<size_t> joined_;
};

// The agent's per-target statistics for a simulated healthy or failing target.
agent::TargetStats targetStats(const agent::ProbeTarget& target, size_t dst_index, bool failing,
                               const RoundFacts& facts);

// The seven checks of the agent's registry, all OK, as toProto(CheckResult) renders them.
std::vector<meshprobe::v1::CheckResult> healthyChecks();

}  // namespace meshprobe::loadgen
