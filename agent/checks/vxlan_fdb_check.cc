#include "agent/checks/vxlan_fdb_check.h"

#include "agent/checks/vxlan_facts.h"
#include "common/finding_catalogue.h"

namespace meshprobe::agent {
namespace {

constexpr size_t kMaxGroupsInDetails = 256;
constexpr size_t kMaxEvidence = 20;
constexpr size_t kMaxNamedInSummary = 3;

constexpr const char* kRemedy =
    "flannel reprograms the route, neighbour and FDB entry of every peer when it starts: restart the flannel pod on "
    "this node (kubectl delete pod <flannel-pod-name> -n kube-system --force --grace-period=0). If a peer's entries "
    "stay wrong, restart flannel on that peer too (its VTEP MAC changes whenever it recreates flannel.1).";

nlohmann::json groupJson(const OverlayPeerGroup& g) {
  nlohmann::json j = {{"key", g.key}, {"complete", g.complete()}, {"problems", g.problems}};
  if (g.route) {
    j["subnet"] = g.route->dst;
    j["gateway"] = g.route->gateway;
    j["onlink"] = g.route->onlink;
  }
  if (g.neighbour) j["neighbour_state"] = nudStateName(g.neighbour->state);
  j["vtep_mac"] = g.vtepMac();
  j["vtep_dst"] = g.vtepDst();
  if (!g.fdb.empty()) {
    bool permanent = true;
    for (const auto& f : g.fdb) permanent = permanent && f.permanent();
    j["fdb_permanent"] = permanent;
  }
  return j;
}

std::string firstProblems(const std::vector<const OverlayPeerGroup*>& groups) {
  std::string s;
  for (size_t i = 0; i < groups.size() && i < kMaxNamedInSummary; ++i) {
    s += (i == 0 ? "" : ", ") + groups[i]->key + " (" + groups[i]->problems.front() + ")";
  }
  if (groups.size() > kMaxNamedInSummary) s += ", +" + std::to_string(groups.size() - kMaxNamedInSummary) + " more";
  return s;
}

}  // namespace

VxlanFdbCheck::VxlanFdbCheck(const AgentConfig& config, NetlinkReader& netlink, const PeerDirectory* peers)
    : config_(config), netlink_(netlink), peers_(peers) {}

CheckResult VxlanFdbCheck::run() {
  auto snap = netlink_.view();  // shared with the round's other readers, not copied
  if (!snap) {
    auto r =
        result(CheckStatus::kFail, "cannot read FDB, neighbours and routes over rtnetlink: " + snap.error().message);
    r.details["error"] = snap.error().message;
    return r;
  }
  const VxlanDeviceChoice choice = chooseVxlanDevice(**snap, config_);
  if (choice.link == nullptr || choice.link->kind != "vxlan") {
    auto r =
        result(CheckStatus::kSkip, "no VXLAN device to inspect (vxlan_device reports it): " +
                                       (choice.link ? choice.link->name + " is not a VXLAN device" : choice.reason));
    r.details = {{"device", choice.wanted}};
    return r;
  }
  const LinkInfo& dev = *choice.link;
  const auto groups = groupOverlayPeers(**snap, dev.ifindex);

  std::vector<const OverlayPeerGroup*> incomplete;
  std::vector<const OverlayPeerGroup*> leftovers;
  size_t peers = 0;
  for (const auto& g : groups) {
    if (g.isPeer()) {
      ++peers;
      if (!g.complete()) incomplete.push_back(&g);
    } else if (g.neighbour && g.neighbour->permanent() && !g.vtepDst().empty()) {
      // A PERMANENT neighbour with its FDB entry but no route: a peer flannel programmed
      // whose route is gone (flannel removes routes last, so this is not its cleanup
      // order). Traffic to that peer's pods has no path: a fault, not a leftover.
      ++peers;
      incomplete.push_back(&g);
    } else {
      leftovers.push_back(&g);
    }
  }

  nlohmann::json details = {{"device", dev.name},
                            {"ifindex", dev.ifindex},
                            {"peers", peers},
                            {"complete", peers - incomplete.size()},
                            {"incomplete", incomplete.size()},
                            {"leftovers", leftovers.size()}};
  // Broken groups first, so a capped list still shows every problem it can.
  nlohmann::json list = nlohmann::json::array();
  for (const auto* g : incomplete) list.push_back(groupJson(*g));
  for (const auto* g : leftovers) list.push_back(groupJson(*g));
  for (const auto& g : groups) {
    if (g.isPeer() && g.complete()) list.push_back(groupJson(g));
  }
  details["groups_truncated"] = list.size() > kMaxGroupsInDetails;
  if (list.size() > kMaxGroupsInDetails) list.erase(list.begin() + kMaxGroupsInDetails, list.end());
  details["groups"] = std::move(list);

  // Against membership: each peer's entries must match the peer's own Hello.
  std::vector<PeerMismatch> mismatches;  // missing / stale entries: a fault
  std::vector<PeerMismatch> unexpected;  // routes to subnets no member owns: a leftover
  if (auto expected = peers_ ? peers_->get() : std::nullopt) {
    nlohmann::json list = nlohmann::json::array();
    for (auto& m : comparePeers(groups, *expected)) {
      list.push_back({{"kind", peerMismatchKindName(m.kind)},
                      {"node", m.node},
                      {"entry", m.entry},
                      {"expected", m.expected},
                      {"actual", m.actual}});
      (m.kind == PeerMismatchKind::kUnexpected ? unexpected : mismatches).push_back(std::move(m));
    }
    details["membership"] = {{"peers", expected->size()}, {"mismatches", std::move(list)}};
  }

  CheckResult r;
  if (!incomplete.empty() || !mismatches.empty()) {
    std::string summary;
    if (!mismatches.empty()) {
      summary = std::to_string(mismatches.size()) + " overlay entries on " + dev.name +
                " disagree with the peers' own facts: " + mismatches.front().describe();
    } else {
      summary = std::to_string(incomplete.size()) + " of " + std::to_string(peers) + " peers on " + dev.name +
                " have incomplete overlay entries: " + firstProblems(incomplete);
    }
    r = result(CheckStatus::kFail, summary);
    Finding f = findingOf(codes::kOverlayFdbStale);
    f.summary = summary;
    for (size_t i = 0; i < mismatches.size() && i < kMaxEvidence; ++i) {
      f.evidence.push_back("vxlan_fdb: " + mismatches[i].describe());
    }
    for (size_t i = 0; i < incomplete.size() && i < kMaxEvidence; ++i) {
      std::string e = "vxlan_fdb: " + incomplete[i]->key + ": ";
      for (size_t k = 0; k < incomplete[i]->problems.size(); ++k) e += (k ? "; " : "") + incomplete[i]->problems[k];
      f.evidence.push_back(std::move(e));
    }
    if (incomplete.size() > kMaxEvidence) {
      f.evidence.push_back("vxlan_fdb: " + std::to_string(incomplete.size() - kMaxEvidence) + " more incomplete peers");
    }
    f.remedy = kRemedy;
    r.findings.push_back(std::move(f));
  } else if (!unexpected.empty()) {
    r = result(CheckStatus::kWarn, std::to_string(unexpected.size()) + " routes on " + dev.name +
                                       " lead to subnets no member owns: " + unexpected.front().describe());
  } else if (!leftovers.empty()) {
    r = result(CheckStatus::kWarn, std::to_string(peers) + " peers complete on " + dev.name + "; " +
                                       std::to_string(leftovers.size()) +
                                       " leftover entries no route uses: " + firstProblems(leftovers));
  } else if (peers == 0) {
    r = result(CheckStatus::kOk, "0 peers programmed on " + dev.name + " (single-node cluster, or no peers yet)");
  } else {
    r = result(CheckStatus::kOk, std::to_string(peers) + " peers programmed on " + dev.name +
                                     ", all complete (route, PERMANENT neighbour, FDB entry with dst)");
  }
  r.details = std::move(details);
  return r;
}

}  // namespace meshprobe::agent
