#include "agent/kernel/netlink_types.h"

#include <linux/neighbour.h>

namespace meshprobe::agent {

bool NeighbourEntry::permanent() const { return (state & NUD_PERMANENT) != 0; }
bool FdbEntry::permanent() const { return (state & NUD_PERMANENT) != 0; }

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
