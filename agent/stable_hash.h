#pragma once
// FNV-1a, 64 bit: a hash that is the same in every run, on every platform and in every
// agent version (std::hash is none of these). The probe rotation and schedule hash node
// names with it, which every agent must do alike, and the ruleset fingerprint hashes what
// the kernel returns so that two reads can be compared.

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace meshprobe::agent {

inline constexpr uint64_t kFnv1aOffsetBasis = 0xcbf29ce484222325ULL;
inline constexpr uint64_t kFnv1aPrime = 0x100000001b3ULL;
// The basis the probe rotation and schedule have always hashed names from. It is not FNV's
// (a digit short of 14695981039346656037), which costs nothing, and it must not change:
// agents of two versions side by side in a rolling upgrade must derive the same rotation.
inline constexpr uint64_t kProbeHashBasis = 1469598103934665603ULL;

inline uint64_t fnv1a(const void* data, size_t n, uint64_t h = kFnv1aOffsetBasis) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * kFnv1aPrime;
  return h;
}

inline uint64_t fnv1a(std::string_view s, uint64_t h = kFnv1aOffsetBasis) { return fnv1a(s.data(), s.size(), h); }

// splitmix64's finalizer: an avalanche after FNV, so near-identical names land far apart.
inline uint64_t splitmix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace meshprobe::agent
