#pragma once
// Pure parsers over rtnetlink dump replies (parse functions are pure functions
// over bytes). Input is the concatenation of the netlink messages of one dump, exactly
// as the kernel sent them (netlink_dump.h produces it; tests load captured files).
// A truncated or garbled buffer is an Error, never a crash or a partial read.
//
// Attributes are read with libmnl's validated accessors rather than libnl-route
// objects: a 5,000-peer snapshot is ~15,000 messages, and building/freeing libnl objects
// for each (several allocations per message) does not fit the 5 ms snapshot budget.

#include <cstdint>
#include <span>
#include <vector>

#include "agent/kernel/netlink_types.h"
#include "common/result.h"

namespace meshprobe::agent {

// RTM_NEWLINK messages (one per link).
Result<std::vector<LinkInfo>> parseLinkDump(std::span<const uint8_t> bytes);
// RTM_NEWADDR messages, AF_INET and AF_INET6.
Result<std::vector<AddressInfo>> parseAddrDump(std::span<const uint8_t> bytes);
// RTM_NEWNEIGH messages of AF_INET/AF_INET6 (`ip neigh`); other families are skipped.
Result<std::vector<NeighbourEntry>> parseNeighDump(std::span<const uint8_t> bytes);
// RTM_NEWNEIGH messages of AF_BRIDGE (`bridge fdb`); other families are skipped.
Result<std::vector<FdbEntry>> parseFdbDump(std::span<const uint8_t> bytes);
// RTM_NEWROUTE messages of AF_INET/AF_INET6, every table; other families are skipped.
Result<std::vector<RouteEntry>> parseRouteDump(std::span<const uint8_t> bytes);

// The raw bytes of the five dumps a snapshot is made of.
struct RawNetlinkDumps {
  std::vector<uint8_t> links;
  std::vector<uint8_t> addresses;
  std::vector<uint8_t> neighbours;  // AF_UNSPEC neighbour dump (IPv4 ARP + IPv6 NDP)
  std::vector<uint8_t> fdb;         // AF_BRIDGE neighbour dump
  std::vector<uint8_t> routes;      // AF_UNSPEC route dump
};

Result<NetlinkSnapshot> parseSnapshot(const RawNetlinkDumps& raw);

// Formatting helpers shared with the checks and tests.
std::string formatMac(std::span<const uint8_t> bytes);  // "aa:bb:cc:dd:ee:ff"
std::string operstateName(uint8_t operstate);           // IF_OPER_* -> "up", "down", ...

}  // namespace meshprobe::agent
