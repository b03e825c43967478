#include "agent/probe/packet.h"

#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>

namespace meshprobe::agent {

struct ProbeKey::Impl {
  EVP_MAC* mac = nullptr;
  // Initialised with the key once; each use re-inits it without a key (HMAC_Init_ex
  // reuse: one digest-state copy, no allocation), under the mutex.
  mutable std::mutex mu;
  EVP_MAC_CTX* ctx = nullptr;

  ~Impl() {
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
  }
};

Result<ProbeKey> ProbeKey::fromBytes(std::string_view key) {
  if (key.empty()) return Error{"probe key is empty"};
  if (key.size() > kMaxProbeKeySize) {
    return Error{"probe key is " + std::to_string(key.size()) + " bytes, more than " +
                 std::to_string(kMaxProbeKeySize)};
  }
  auto impl = std::make_shared<Impl>();
  impl->mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  if (impl->mac == nullptr) return Error{"OpenSSL: HMAC is not available"};
  impl->ctx = EVP_MAC_CTX_new(impl->mac);
  if (impl->ctx == nullptr) return Error{"OpenSSL: cannot allocate an HMAC context"};
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_end()};
  if (EVP_MAC_init(impl->ctx, reinterpret_cast<const unsigned char*>(key.data()), key.size(), params) != 1) {
    return Error{"OpenSSL: cannot initialise HMAC-SHA256 with the probe key"};
  }
  return ProbeKey(std::move(impl));
}

bool ProbeKey::sign(std::span<const uint8_t> data, std::span<uint8_t, kProbeMacSize> out) const {
  std::lock_guard lock(impl_->mu);
  EVP_MAC_CTX* ctx = impl_->ctx;
  size_t len = 0;
  return EVP_MAC_init(ctx, nullptr, 0, nullptr) == 1 && EVP_MAC_update(ctx, data.data(), data.size()) == 1 &&
         EVP_MAC_final(ctx, out.data(), &len, out.size()) == 1 && len == kProbeMacSize;
}

bool ProbeKey::verify(std::span<const uint8_t> data, std::span<const uint8_t, kProbeMacSize> mac) const {
  std::array<uint8_t, kProbeMacSize> expected{};
  if (!sign(data, expected)) return false;
  return CRYPTO_memcmp(expected.data(), mac.data(), kProbeMacSize) == 0;
}

Result<ProbeKey> loadProbeKeyFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return Error::fromErrno("cannot read probe key file " + path, errno);
  std::string data;
  char buf[1024];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return Error::fromErrno("cannot read probe key file " + path, err);
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
    if (data.size() > kMaxProbeKeySize + 2) break;
  }
  ::close(fd);
  if (!data.empty() && data.back() == '\n') data.pop_back();
  if (!data.empty() && data.back() == '\r') data.pop_back();
  if (data.empty()) return Error{"probe key file " + path + " is empty"};
  if (data.size() > kMaxProbeKeySize) {
    return Error{"probe key file " + path + " is larger than " + std::to_string(kMaxProbeKeySize) + " bytes"};
  }
  auto key = ProbeKey::fromBytes(data);
  if (!key) return Error{"probe key file " + path + ": " + key.error().message};
  return key;
}

std::string_view decodeStatusName(DecodeStatus status) {
  switch (status) {
    case DecodeStatus::kOk:
      return "ok";
    case DecodeStatus::kTruncated:
      return "truncated";
    case DecodeStatus::kOversized:
      return "oversized";
    case DecodeStatus::kBadMagic:
      return "bad_magic";
    case DecodeStatus::kBadVersion:
      return "bad_version";
    case DecodeStatus::kBadType:
      return "bad_type";
    case DecodeStatus::kBadName:
      return "bad_name";
    case DecodeStatus::kBadPadding:
      return "bad_padding";
    case DecodeStatus::kMissingMac:
      return "missing_mac";
    case DecodeStatus::kBadMac:
      return "bad_mac";
  }
  return "unknown";
}

namespace {

constexpr uint8_t kFlagMac = 0x01;

void putU32(uint8_t* p, uint32_t v) {
  for (int i = 3; i >= 0; --i) {
    p[i] = static_cast<uint8_t>(v & 0xff);
    v >>= 8;
  }
}
void putU64(uint8_t* p, uint64_t v) {
  for (int i = 7; i >= 0; --i) {
    p[i] = static_cast<uint8_t>(v & 0xff);
    v >>= 8;
  }
}
uint32_t getU32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | p[i];
  return v;
}
uint64_t getU64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

bool printable(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

bool validName(std::string_view name, ProbeType type) {
  if (name.size() > kMaxNodeNameLength) return false;
  if (name.empty() && type == ProbeType::kRequest) return false;
  return printable(name);
}

}  // namespace

size_t minimumProbeSize(size_t sender_length, bool with_mac) {
  return kProbeHeaderSize + sender_length + (with_mac ? kProbeMacSize : 0);
}

size_t probePayloadForIpSize(size_t ip_packet_size, bool ipv6) {
  size_t overhead = ipv6 ? kIpv6UdpOverhead : kIpv4UdpOverhead;
  return ip_packet_size > overhead ? ip_packet_size - overhead : 0;
}

Result<size_t> encodeProbe(const ProbePacket& p, const ProbeKey* key, size_t total_size, std::span<uint8_t> out) {
  if (p.type != ProbeType::kRequest && p.type != ProbeType::kReply) return Error{"invalid probe type"};
  if (!validName(p.sender, p.type)) {
    return Error{"invalid sender node name (1.." + std::to_string(kMaxNodeNameLength) + " printable characters): \"" +
                 p.sender + "\""};
  }
  size_t min_size = minimumProbeSize(p.sender.size(), key != nullptr);
  size_t size = total_size == 0 ? min_size : total_size;
  if (size < min_size) {
    return Error{"probe size " + std::to_string(size) + " is smaller than the minimum " + std::to_string(min_size)};
  }
  if (size > kMaxProbeSize) {
    return Error{"probe size " + std::to_string(size) + " exceeds the maximum " + std::to_string(kMaxProbeSize)};
  }
  if (out.size() < size) return Error{"output buffer too small for a " + std::to_string(size) + "-byte probe"};
  uint8_t* b = out.data();
  putU32(b, kProbeMagic);
  b[4] = kProbeVersion;
  b[5] = static_cast<uint8_t>(p.type);
  b[6] = key != nullptr ? kFlagMac : 0;
  b[7] = static_cast<uint8_t>(p.sender.size());
  putU64(b + 8, p.sequence);
  putU64(b + 16, p.send_time_ns);
  std::memcpy(b + kProbeHeaderSize, p.sender.data(), p.sender.size());
  size_t body = key != nullptr ? size - kProbeMacSize : size;
  size_t pad_start = kProbeHeaderSize + p.sender.size();
  std::memset(b + pad_start, 0, body - pad_start);
  if (key != nullptr) {
    if (!key->sign(std::span<const uint8_t>(b, body), std::span<uint8_t, kProbeMacSize>(b + body, kProbeMacSize))) {
      return Error{"OpenSSL: HMAC-SHA256 signing failed"};
    }
  }
  return size;
}

Result<std::string> encodeProbe(const ProbePacket& p, const ProbeKey* key, size_t total_size) {
  std::string out(std::max(total_size, minimumProbeSize(p.sender.size(), key != nullptr)), '\0');
  auto n = encodeProbe(p, key, total_size, std::span<uint8_t>(reinterpret_cast<uint8_t*>(out.data()), out.size()));
  if (!n) return n.error();
  out.resize(*n);
  return out;
}

DecodeStatus decodeProbe(std::span<const uint8_t> bytes, const ProbeKey* key, ProbePacket& out) {
  if (bytes.size() > kMaxProbeSize) return DecodeStatus::kOversized;
  if (bytes.size() < kProbeHeaderSize) return DecodeStatus::kTruncated;
  const uint8_t* b = bytes.data();
  if (getU32(b) != kProbeMagic) return DecodeStatus::kBadMagic;
  if (b[4] != kProbeVersion) return DecodeStatus::kBadVersion;
  if (b[5] != static_cast<uint8_t>(ProbeType::kRequest) && b[5] != static_cast<uint8_t>(ProbeType::kReply)) {
    return DecodeStatus::kBadType;
  }
  auto type = static_cast<ProbeType>(b[5]);
  uint8_t flags = b[6];
  if ((flags & ~kFlagMac) != 0) return DecodeStatus::kBadVersion;  // unknown flag bits: a newer format
  bool has_mac = (flags & kFlagMac) != 0;
  size_t name_len = b[7];
  if (name_len > kMaxNodeNameLength) return DecodeStatus::kBadName;
  if (bytes.size() < minimumProbeSize(name_len, has_mac)) return DecodeStatus::kTruncated;
  std::string_view name(reinterpret_cast<const char*>(b + kProbeHeaderSize), name_len);
  if (!validName(name, type)) return DecodeStatus::kBadName;
  size_t body = has_mac ? bytes.size() - kProbeMacSize : bytes.size();
  if (key != nullptr) {
    // Authenticate before trusting anything beyond the fixed header.
    if (!has_mac) return DecodeStatus::kMissingMac;
    if (!key->verify(bytes.first(body), std::span<const uint8_t, kProbeMacSize>(b + body, kProbeMacSize))) {
      return DecodeStatus::kBadMac;
    }
  }
  for (size_t i = kProbeHeaderSize + name_len; i < body; ++i) {
    if (b[i] != 0) return DecodeStatus::kBadPadding;
  }
  out.type = type;
  out.sequence = getU64(b + 8);
  out.send_time_ns = getU64(b + 16);
  out.sender.assign(name);
  return DecodeStatus::kOk;
}

Result<size_t> encodeReply(const ProbePacket& request, size_t request_size, std::string_view responder_name,
                           const ProbeKey* key, std::span<uint8_t> out) {
  ProbePacket reply;
  reply.type = ProbeType::kReply;
  reply.sequence = request.sequence;
  reply.send_time_ns = request.send_time_ns;
  if (minimumProbeSize(responder_name.size(), key != nullptr) <= request_size) reply.sender.assign(responder_name);
  if (minimumProbeSize(reply.sender.size(), key != nullptr) > request_size) {
    return Error{"a " + std::to_string(request_size) + "-byte request is too small for a reply"};
  }
  return encodeProbe(reply, key, request_size, out);
}

}  // namespace meshprobe::agent
