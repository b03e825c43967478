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
  sorted_valid_ = false;
  if (added) *added = true;
  return slot;
}

bool NodeIndex::remove(std::string_view name) {
  auto it = map_.find(std::string(name));
  if (it == map_.end()) return false;
  const uint32_t slot = it->second;
  map_.erase(it);
  names_[slot].clear();
  free_.push_back(slot);
  std::push_heap(free_.begin(), free_.end(), std::greater<>());
  sorted_valid_ = false;
  return true;
}

std::optional<uint32_t> NodeIndex::find(std::string_view name) const {
  auto it = map_.find(std::string(name));
  if (it == map_.end()) return std::nullopt;
  return it->second;
}

const std::vector<uint32_t>& NodeIndex::sorted() const {
  if (!sorted_valid_) {
    sorted_.clear();
    sorted_.reserve(map_.size());
    for (const auto& [name, slot] : map_) sorted_.push_back(slot);
    std::sort(sorted_.begin(), sorted_.end(), [&](uint32_t a, uint32_t b) { return names_[a] < names_[b]; });
    sorted_valid_ = true;
  }
  return sorted_;
}

}  // namespace meshprobe::aggregator
