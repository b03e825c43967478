#include "aggregator/state/node_index.h"

#include <algorithm>

namespace meshprobe::aggregator {

uint32_t NodeIndex::add(const std::string& name, bool* added) {
  if (auto it = map_.find(name); it != map_.end()) {
    if (added) *added = false;
    return it->second;
  }
  uint32_t slot;
  if (!free_.empty()) {
    // The lowest free slot first, so rows stay as narrow as the membership allows.
    std::pop_heap(free_.begin(), free_.end(), std::greater<>());
    slot = free_.back();
    free_.pop_back();
    names_[slot] = name;
  } else {
    slot = static_cast<uint32_t>(names_.size());
    names_.push_back(name);
  }
  map_.emplace(name, slot);
  sorted_.insert(sortedPosition(name), slot);
  if (added) *added = true;
  return slot;
}

bool NodeIndex::remove(std::string_view name) {
  auto it = map_.find(name);
  if (it == map_.end()) return false;
  const uint32_t slot = it->second;
  sorted_.erase(sortedPosition(name));  // before names_[slot] is cleared: the search reads it
  map_.erase(it);
  names_[slot].clear();
  free_.push_back(slot);
  std::push_heap(free_.begin(), free_.end(), std::greater<>());
  return true;
}

std::optional<uint32_t> NodeIndex::find(std::string_view name) const {
  auto it = map_.find(name);
  if (it == map_.end()) return std::nullopt;
  return it->second;
}

std::vector<uint32_t>::iterator NodeIndex::sortedPosition(std::string_view name) {
  return std::lower_bound(sorted_.begin(), sorted_.end(), name,
                          [&](uint32_t slot, std::string_view n) { return names_[slot] < n; });
}

}  // namespace meshprobe::aggregator
