#pragma once
// Anti-replay windows for the probe responder, pure logic (no I/O, no clock), in the
// style of IPsec's (RFC 4303 §3.4.3, RFC 6479): per key (the request's source address and
// sender node name) the highest sequence seen and a bitmap of the kWindowSize sequences
// ending at it. A sequence above the highest is fresh and slides the window; one inside
// the window is fresh once; one already seen, or below the window, is a replay.
//
// Probers seed their sequence from the wall clock in nanoseconds, so a restarted prober
// continues above its previous run. A sender whose sequences fall below its window anyway
// (an older prober that started from a random lower value, or a wall clock stepped back)
// is taken back by the restart rule: kRestartRun consecutive below-window sequences from
// the key, each strictly above the previous one and at most kRestartMaxStep above it, reset
// the window to them (the first kRestartRun - 1 are still dropped, the last one is fresh). A
// replayed captured run could do the same, but a replay can only make the responder send
// the original prober a reply the size of the request, so this trades nothing.
//
// The table is bounded: when full, the least recently seen key is evicted (counted); if it
// comes back it starts a new window, so a replay of an evicted sender's probes is answered
// once more.
//
// The responder consults it only for requests that authenticated (a key is configured and
// the MAC verified): without a key anyone can forge fresh sequences, so there is nothing
// to protect and no check is made.

#include <array>
#include <bitset>
#include <cstddef>
#include <cstdint>
#include <list>
#include <string>
#include <unordered_map>

namespace meshprobe::agent {

class ReplayWindow {
 public:
  static constexpr uint64_t kWindowSize = 1024;
  static constexpr int kRestartRun = 3;
  // A prober numbers all its probes with one counter, so its consecutive probes to one
  // responder are about (peers x layers, plus retries) apart, and in sparse rotation a
  // whole coverage period of probes apart: 2^20 covers thousands of peers over many rounds.
  static constexpr uint64_t kRestartMaxStep = uint64_t{1} << 20;

  enum class Verdict { kFresh, kReplayed };

  // At most `max_entries` keys (at least 1).
  explicit ReplayWindow(size_t max_entries = 4096);

  // Records `sequence` from `key` (any byte string) and says whether it is new.
  Verdict check(const std::string& key, uint64_t sequence);

  size_t size() const { return index_.size(); }
  uint64_t evictions() const { return evictions_; }

 private:
  struct Entry {
    std::string key;
    uint64_t top = 0;               // highest sequence accepted
    std::bitset<kWindowSize> seen;  // bit i: sequence top - i was accepted
    // Restart rule: the current run of increasing below-window sequences, oldest first.
    std::array<uint64_t, kRestartRun> run{};
    int run_length = 0;
  };
  static Verdict below(Entry& e, uint64_t sequence);

  size_t max_;
  uint64_t evictions_ = 0;
  std::list<Entry> lru_;  // most recently seen first
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
};

}  // namespace meshprobe::agent
