#pragma once
// Shared by the firewall unit tests: a node's firewall tools and VXLAN device as the fakes
// replay them.

#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "tests/support/fakes/command_runner.h"
#include "tests/support/fakes/netlink.h"
#include "tests/unit/agent/firewall/testdata.h"

namespace meshprobe::agent::testing {

using meshprobe::test::FakeCommandRunner;
using meshprobe::test::FakeNetlinkReader;

inline const char* const kEmptyNft = R"({"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}]})";

// Answers `nft -j list chains` and `nft -j list table F T` from a full ruleset capture,
// the way nft would. Text that is not JSON is returned as the chains listing.
inline void scriptNft(FakeCommandRunner& r, const std::string& ruleset) {
  auto doc = nlohmann::json::parse(ruleset, nullptr, false);
  if (doc.is_discarded() || !doc.contains("nftables")) {
    r.ok("nft -j list chains", ruleset);
    return;
  }
  nlohmann::json meta = {{"metainfo", {{"version", "1.0.6"}, {"json_schema_version", 1}}}};
  nlohmann::json chains = {{"nftables", nlohmann::json::array({meta})}};
  std::map<std::string, nlohmann::json> tables;
  for (const auto& item : doc["nftables"]) {
    const std::string kind = item.begin().key();
    const auto& obj = item.begin().value();
    if (kind == "metainfo") continue;
    std::string key =
        obj["family"].get<std::string>() + " " + (kind == "table" ? obj["name"] : obj["table"]).get<std::string>();
    auto& t = tables[key];
    if (t.is_null()) t = {{"nftables", nlohmann::json::array({meta})}};
    t["nftables"].push_back(item);
    if (kind == "chain") chains["nftables"].push_back(item);
  }
  r.ok("nft -j list chains", chains.dump());
  for (const auto& [key, t] : tables) r.ok("nft -j list table " + key, t.dump());
}

// The VXLAN device whose port the check reads, in the fake reader's snapshot.
inline void addVxlanDevice(FakeNetlinkReader& netlink, const std::string& name, uint16_t port) {
  LinkInfo l;
  l.ifindex = 7;
  l.name = name;
  l.kind = "vxlan";
  l.vxlan = VxlanInfo{};
  l.vxlan->vni = 1;
  l.vxlan->port = port;
  netlink.snap->links.push_back(l);
}

// An nft-mode node (kubelet's hint in iptables-nft) whose iptables-nft filter table is
// `filter_file`; legacy empty; native nft `nft_json`.
inline void nftModeNode(FakeCommandRunner& r, const std::string& filter_file, const std::string& nft_json = kEmptyNft) {
  r.ok("iptables-nft-save -t mangle", firewallData("mangle_hint_nft.txt"));
  r.ok("iptables-nft-save", firewallData(filter_file));
  r.ok("ip6tables-nft-save", "");
  r.ok("iptables-legacy-save", "");
  r.ok("ip6tables-legacy-save", "");
  scriptNft(r, nft_json);
}

}  // namespace meshprobe::agent::testing
