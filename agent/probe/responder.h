#pragma once
// The probe responder on UDP and TCP, default port 9473.
//
// UDP: answers only valid requests, with a reply exactly as large as the request (never
// larger), signed when a key is configured; unsigned or wrongly signed requests are then
// dropped, and so are replayed ones: an authenticated request whose sequence its sender
// (source IP + sender node name) already used, or that is below that sender's anti-replay
// window (agent/probe/replay_window.h). Without a key (dev mode) there is no replay check.
// Replies are sent with DF (IP_PMTUDISC_PROBE): a padded path-MTU probe's reply
// crosses the return path at full size or fails (EMSGSIZE counts as a send error), so a
// path MTU below the overlay MTU is caught in both directions. Each source IP has a token bucket (bounded table, least recently seen source
// evicted). Every drop is counted by reason.
// TCP: accepts and closes at once, so a prober can tell "UDP filtered" from "host down".
//
// One io_context thread; start()/stop(). Counters are readable from any thread.

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "agent/probe/packet.h"
#include "common/clock.h"
#include "common/result.h"

namespace meshprobe::agent {

struct ResponderOptions {
  std::string node_name;        // carried in replies when it fits
  std::optional<ProbeKey> key;  // --probe-key-file; none = dev mode (no MAC check)
  std::string bind_address = "0.0.0.0";
  uint16_t port = kDefaultProbePort;  // 0 = ephemeral (tests); see udpPort()/tcpPort()
  bool tcp = true;                    // also listen on TCP `port`
  double rate_per_source = 50;        // replies per second per source IP
  double burst_per_source = 100;      // token bucket depth
  size_t max_sources = 4096;          // rate-limit table bound, and the replay windows' too
  int receive_buffer = 1 << 20;       // SO_RCVBUF (capped by net.core.rmem_max)
};

struct ResponderCounters {
  uint64_t received = 0;
  uint64_t answered = 0;
  uint64_t dropped_invalid = 0;          // malformed, or not a request
  uint64_t dropped_unauthenticated = 0;  // missing or bad MAC with a key configured
  uint64_t dropped_replayed = 0;         // authenticated, but a sequence already used or too old
  uint64_t dropped_rate_limited = 0;
  uint64_t send_errors = 0;
  uint64_t tcp_accepted = 0;
  uint64_t sources_evicted = 0;         // rate-limit table entries evicted (table full)
  uint64_t replay_windows_evicted = 0;  // anti-replay windows evicted (table full)
};

class Responder {
 public:
  Responder(ResponderOptions options, const Clock& clock);
  ~Responder();  // stops
  Responder(const Responder&) = delete;
  Responder& operator=(const Responder&) = delete;

  // Binds UDP (and TCP) and starts the I/O thread. Errors name the address and port.
  Status start();
  // Closes the sockets and joins the thread. Idempotent.
  void stop();

  uint16_t udpPort() const;  // bound ports, valid after start()
  uint16_t tcpPort() const;
  ResponderCounters counters() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace meshprobe::agent
