#include "agent/kernel/netlink_dump.h"

#include <libmnl/libmnl.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <string>

namespace meshprobe::agent {
namespace {

using SteadyClock = std::chrono::steady_clock;

struct Request {
  uint16_t type;
  uint8_t family;
};

Request requestFor(DumpKind kind) {
  switch (kind) {
    case DumpKind::kLinks:
      return {RTM_GETLINK, AF_UNSPEC};
    case DumpKind::kAddresses:
      return {RTM_GETADDR, AF_UNSPEC};
    case DumpKind::kNeighbours:
      return {RTM_GETNEIGH, AF_UNSPEC};  // ARP (AF_INET) + NDP (AF_INET6)
    case DumpKind::kFdb:
      return {RTM_GETNEIGH, AF_BRIDGE};
    case DumpKind::kRoutes:
      return {RTM_GETROUTE, AF_UNSPEC};  // IPv4 + IPv6, every table
  }
  return {RTM_GETLINK, AF_UNSPEC};
}

}  // namespace

std::vector<uint8_t> buildDumpRequest(DumpKind kind, uint32_t seq, int ifindex) {
  alignas(nlmsghdr) char buf[256] = {};
  const Request req = requestFor(kind);
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = req.type;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  nlh->nlmsg_seq = seq;
  // Under NETLINK_GET_STRICT_CHK every header field the kernel does not use as a filter
  // must be zero, and only filter attributes are accepted.
  switch (kind) {
    case DumpKind::kLinks: {
      auto* ifi = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
      ifi->ifi_family = req.family;
      // Statistics and VF info are not needed: keep link messages small.
      uint32_t mask = 0;
#ifdef RTEXT_FILTER_SKIP_STATS
      mask |= RTEXT_FILTER_SKIP_STATS;
#endif
      if (mask != 0) mnl_attr_put_u32(nlh, IFLA_EXT_MASK, mask);
      break;
    }
    case DumpKind::kAddresses: {
      auto* ifa = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifaddrmsg)));
      ifa->ifa_family = req.family;
      ifa->ifa_index = static_cast<uint32_t>(ifindex);
      break;
    }
    case DumpKind::kNeighbours: {
      auto* nd = static_cast<ndmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ndmsg)));
      nd->ndm_family = req.family;
      if (ifindex != 0) mnl_attr_put_u32(nlh, NDA_IFINDEX, static_cast<uint32_t>(ifindex));
      break;
    }
    case DumpKind::kFdb: {
      auto* nd = static_cast<ndmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ndmsg)));
      nd->ndm_family = req.family;
      nd->ndm_ifindex = ifindex;  // the bridge port (or VXLAN device) to dump
      break;
    }
    case DumpKind::kRoutes: {
      auto* rtm = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(rtmsg)));
      rtm->rtm_family = req.family;
      break;
    }
  }
  const auto* begin = reinterpret_cast<const uint8_t*>(buf);
  return std::vector<uint8_t>(begin, begin + nlh->nlmsg_len);
}

std::string_view dumpKindName(DumpKind kind) {
  switch (kind) {
    case DumpKind::kLinks:
      return "links";
    case DumpKind::kAddresses:
      return "addresses";
    case DumpKind::kNeighbours:
      return "neighbours";
    case DumpKind::kFdb:
      return "fdb";
    case DumpKind::kRoutes:
      return "routes";
  }
  return "?";
}

Result<RtnetlinkDumper> RtnetlinkDumper::open() {
  auto sock = NetlinkSocket::open(NETLINK_ROUTE);
  if (!sock) return sock.error();
  return RtnetlinkDumper(std::move(sock).value());
}

Result<std::vector<uint8_t>> RtnetlinkDumper::dump(DumpKind kind, SteadyClock::time_point deadline, int ifindex) {
  return sock_.dump(buildDumpRequest(kind, 0, ifindex), deadline, std::string(dumpKindName(kind)) + " dump");
}

Result<RawNetlinkDumps> dumpAll(std::chrono::milliseconds timeout) {
  const auto deadline = SteadyClock::now() + timeout;
  auto dumper = RtnetlinkDumper::open();
  if (!dumper) return dumper.error();
  RawNetlinkDumps raw;
  struct Slot {
    DumpKind kind;
    std::vector<uint8_t>* bytes;
  };
  const Slot slots[] = {{DumpKind::kLinks, &raw.links},
                        {DumpKind::kAddresses, &raw.addresses},
                        {DumpKind::kNeighbours, &raw.neighbours},
                        {DumpKind::kFdb, &raw.fdb},
                        {DumpKind::kRoutes, &raw.routes}};
  for (const Slot& s : slots) {
    auto bytes = dumper->dump(s.kind, deadline);
    if (!bytes) return bytes.error();
    *s.bytes = std::move(bytes).value();
  }
  return raw;
}

namespace {

// Dumps one kind and parses it into its field of `snap`.
Status dumpAndParse(RtnetlinkDumper& dumper, DumpKind kind, SteadyClock::time_point deadline, NetlinkSnapshot& snap) {
  auto bytes = dumper.dump(kind, deadline);
  if (!bytes) return bytes.error();
  auto assign = [](auto parsed, auto& field) -> Status {
    if (!parsed) return parsed.error();
    field = std::move(parsed).value();
    return okStatus();
  };
  switch (kind) {
    case DumpKind::kLinks:
      return assign(parseLinkDump(*bytes), snap.links);
    case DumpKind::kAddresses:
      return assign(parseAddrDump(*bytes), snap.addresses);
    case DumpKind::kNeighbours:
      return assign(parseNeighDump(*bytes), snap.neighbours);
    case DumpKind::kFdb:
      return assign(parseFdbDump(*bytes), snap.fdb);
    case DumpKind::kRoutes:
      return assign(parseRouteDump(*bytes), snap.routes);
  }
  return Error{"unknown dump kind"};
}

}  // namespace

Result<NetlinkSnapshot> readSnapshot(RtnetlinkDumper& dumper, SteadyClock::time_point deadline) {
  NetlinkSnapshot snap;
  for (DumpKind kind :
       {DumpKind::kLinks, DumpKind::kAddresses, DumpKind::kNeighbours, DumpKind::kFdb, DumpKind::kRoutes}) {
    if (Status st = dumpAndParse(dumper, kind, deadline, snap); !st) return st.error();
  }
  return snap;
}

Result<NetlinkSnapshot> readSnapshot(std::chrono::milliseconds timeout) {
  const auto deadline = SteadyClock::now() + timeout;
  auto dumper = RtnetlinkDumper::open();
  if (!dumper) return dumper.error();
  return readSnapshot(*dumper, deadline);
}

}  // namespace meshprobe::agent
