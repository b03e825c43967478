#pragma once
// Probe packet codec: pure functions over bytes, no I/O.
//
// Wire format (all integers big-endian):
//   offset  size  field
//        0     4  magic "MPRB" (0x4D505242)
//        4     1  version (1)
//        5     1  type: 1 = request, 2 = reply
//        6     1  flags: bit 0 = an HMAC-SHA256 trailer is present
//        7     1  sender name length N (1..253 in a request, 0..253 in a reply)
//        8     8  sequence
//       16     8  send timestamp, ns (the prober's monotonic clock; echoed in the reply)
//       24     N  sender node name (printable ASCII)
//     24+N     P  padding (zeros) up to the requested total size (DF path-MTU probes)
//      end-32 32  HMAC-SHA256 over every preceding byte, when flag bit 0 is set
//
// A reply is always the same size as the request it answers (never larger: no
// amplification). It carries the responder's name when it fits in that size, else an
// empty name.
//
// Padding is how path-MTU probes reach their size: it must be zero and, with a key, it
// is covered by the HMAC like every other byte, so a padded probe is as authenticated as
// a small one and a responder cannot be made to echo attacker-chosen bytes. Small probes
// are the same format with less (or no) padding, so old and new sizes interoperate.

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "common/result.h"

namespace meshprobe::agent {

inline constexpr uint32_t kProbeMagic = 0x4D505242;  // "MPRB"
inline constexpr uint8_t kProbeVersion = 1;
inline constexpr uint16_t kDefaultProbePort = 9473;
inline constexpr size_t kProbeHeaderSize = 24;
inline constexpr size_t kProbeMacSize = 32;
inline constexpr size_t kMaxNodeNameLength = 253;  // a Kubernetes node name (DNS subdomain)
inline constexpr size_t kMaxProbeSize = 9216;      // jumbo frames; larger datagrams are rejected
inline constexpr size_t kMaxProbeKeySize = 4096;

enum class ProbeType : uint8_t { kRequest = 1, kReply = 2 };

// The cluster probe key: HMAC-SHA256 over the packet. Copies share one keyed OpenSSL
// context behind a mutex; sign/verify are safe to call from several threads at once.
class ProbeKey {
 public:
  // Errors: empty key, key longer than kMaxProbeKeySize, OpenSSL failure.
  static Result<ProbeKey> fromBytes(std::string_view key);

  // HMAC-SHA256 of `data` into `out`. False only on an OpenSSL failure.
  bool sign(std::span<const uint8_t> data, std::span<uint8_t, kProbeMacSize> out) const;
  // Constant-time comparison of the HMAC of `data` against `mac`.
  bool verify(std::span<const uint8_t> data, std::span<const uint8_t, kProbeMacSize> mac) const;

 private:
  struct Impl;
  explicit ProbeKey(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

// --probe-key-file: the whole file is the key, minus one trailing newline ("\n" or
// "\r\n"). An unreadable, empty or oversized file is an error naming the file.
Result<ProbeKey> loadProbeKeyFile(const std::string& path);

struct ProbePacket {
  ProbeType type = ProbeType::kRequest;
  uint64_t sequence = 0;
  uint64_t send_time_ns = 0;
  std::string sender;  // node name
};

enum class DecodeStatus {
  kOk,
  kTruncated,  // shorter than the header, the name or the MAC trailer
  kOversized,  // larger than kMaxProbeSize
  kBadMagic,
  kBadVersion,
  kBadType,
  kBadName,     // name length out of range (0 in a request, > 253) or non-printable bytes
  kBadPadding,  // non-zero padding byte
  kMissingMac,  // a key is configured and the packet is unsigned
  kBadMac,      // a key is configured and the HMAC does not match
};
// "ok" | "truncated" | "oversized" | "bad_magic" | "bad_version" | "bad_type" | "bad_name" |
// "bad_padding" | "missing_mac" | "bad_mac"
std::string_view decodeStatusName(DecodeStatus status);

// Smallest encoding of `p` (no padding), with or without a MAC trailer.
size_t minimumProbeSize(size_t sender_length, bool with_mac);

// IP + UDP header bytes in front of a probe: IPv4 20 + 8, IPv6 40 + 8 (no options or
// extension headers: the prober sets none).
inline constexpr size_t kIpv4UdpOverhead = 28;
inline constexpr size_t kIpv6UdpOverhead = 48;

// The probe (UDP payload) size that makes the IP packet exactly `ip_packet_size` bytes:
// a DF path-MTU probe at MTU M carries probePayloadForIpSize(M) bytes. 0 when the packet
// cannot hold the UDP/IP headers.
size_t probePayloadForIpSize(size_t ip_packet_size, bool ipv6);

// Encodes `p` into `out`, padded to `total_size` bytes (0 = no padding), signed when `key`
// is non-null. Returns the number of bytes written. Errors: invalid name, total_size
// smaller than the minimum or above kMaxProbeSize, `out` too small, signing failure.
Result<size_t> encodeProbe(const ProbePacket& p, const ProbeKey* key, size_t total_size, std::span<uint8_t> out);

// Convenience form returning the bytes.
Result<std::string> encodeProbe(const ProbePacket& p, const ProbeKey* key, size_t total_size = 0);

// Validates everything and fills `out` on kOk. With a key, unsigned and wrongly signed
// packets are rejected; without one, a MAC trailer is accepted unchecked (a dev-mode
// responder still answers a keyed prober, which then rejects the unsigned reply).
DecodeStatus decodeProbe(std::span<const uint8_t> bytes, const ProbeKey* key, ProbePacket& out);

// Builds the reply to a decoded request in `out`: same sequence and timestamp, type reply,
// `responder_name` when it fits, exactly `request_size` bytes, signed when `key` is set.
// Returns the reply size (== request_size) or an error when even an empty-named reply
// cannot fit (cannot happen for a request that decoded with the same key setting).
Result<size_t> encodeReply(const ProbePacket& request, size_t request_size, std::string_view responder_name,
                           const ProbeKey* key, std::span<uint8_t> out);

}  // namespace meshprobe::agent
