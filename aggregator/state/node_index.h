#pragma once
// Node name <-> dense slot (uint32), the cluster state's row and column numbering.
//
// A slot is stable for as long as its node is a member: rows and cells are indexed by slot,
// so a join or leave never moves anyone else's cells. A forgotten node's slot goes on a free
// list and is handed to the next newcomer; whoever keeps cells by slot must tell an old
// occupant's cells from the new one's (ClusterState stamps slots and rows with an ingest
// counter for that).
//
// The matrix's node order (sorted by name, a contract of GetMatrix, ListNodes and PeerList)
// is kept as a vector of slots, updated in place on a join or leave (a binary search and a
// move of 4-byte slots; re-sorting on every join made 5,000 joins cost O(N² log N) string
// compares). Lookups by name take a string_view without making a string.
// Not thread-safe: the cluster state guards it with its lock.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace meshprobe::aggregator {

class NodeIndex {
 public:
  static constexpr uint32_t kNoSlot = UINT32_MAX;

  // The node's slot, assigning one (a free one first) when it is new. `added` tells which.
  uint32_t add(const std::string& name, bool* added = nullptr);
  // Frees the node's slot; false when there is no such node.
  bool remove(std::string_view name);
  std::optional<uint32_t> find(std::string_view name) const;

  // Number of members.
  size_t size() const { return map_.size(); }
  // Slots ever assigned (occupied or free): the width of a row.
  uint32_t capacity() const { return static_cast<uint32_t>(names_.size()); }
  bool occupied(uint32_t slot) const { return slot < names_.size() && !names_[slot].empty(); }
  // The member in `slot` ("" for a free slot).
  const std::string& name(uint32_t slot) const { return names_[slot]; }
  // Member slots sorted by name.
  const std::vector<uint32_t>& sorted() const { return sorted_; }

 private:
  struct NameHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  // The slots' position in sorted_ of `name` (where it is, or would go).
  std::vector<uint32_t>::iterator sortedPosition(std::string_view name);

  std::unordered_map<std::string, uint32_t, NameHash, std::equal_to<>> map_;
  std::vector<std::string> names_;  // by slot; "" = free (node names are never empty)
  std::vector<uint32_t> free_;
  std::vector<uint32_t> sorted_;  // member slots by name
};

}  // namespace meshprobe::aggregator
