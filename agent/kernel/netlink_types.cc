#include "agent/kernel/netlink_types.h"

#include <linux/neighbour.h>

namespace meshprobe::agent {

bool NeighbourEntry::permanent() const { return (state & NUD_PERMANENT) != 0; }
bool FdbEntry::permanent() const { return (state & NUD_PERMANENT) != 0; }

std::string nudStateName(uint16_t state) {
  static constexpr struct {
    uint16_t bit;
    const char* name;
  } kStates[] = {{NUD_INCOMPLETE, "INCOMPLETE"}, {NUD_REACHABLE, "REACHABLE"}, {NUD_STALE, "STALE"},
                 {NUD_DELAY, "DELAY"},           {NUD_PROBE, "PROBE"},         {NUD_FAILED, "FAILED"},
                 {NUD_NOARP, "NOARP"},           {NUD_PERMANENT, "PERMANENT"}};
  std::string out;
  for (const auto& s : kStates) {
    if ((state & s.bit) == 0) continue;
    if (!out.empty()) out += '|';
    out += s.name;
  }
  return out.empty() ? "NONE" : out;
}

bool isUnspecifiedIp(const std::string& ip) { return ip.empty() || ip == "0.0.0.0" || ip == "::"; }

const LinkInfo* NetlinkSnapshot::linkByName(const std::string& name) const {
  for (const auto& l : links)
    if (l.name == name) return &l;
  return nullptr;
}

const LinkInfo* NetlinkSnapshot::linkByIndex(int ifindex) const {
  for (const auto& l : links)
    if (l.ifindex == ifindex) return &l;
  return nullptr;
}

}  // namespace meshprobe::agent
