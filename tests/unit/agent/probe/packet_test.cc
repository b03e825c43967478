#include "agent/probe/packet.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <string>

namespace meshprobe::agent {
namespace {

std::span<const uint8_t> bytesOf(const std::string& s) {
  return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

ProbeKey key(std::string_view k) {
  auto r = ProbeKey::fromBytes(k);
  EXPECT_TRUE(r.ok());
  return *r;
}

ProbePacket request(uint64_t seq = 42) {
  ProbePacket p;
  p.type = ProbeType::kRequest;
  p.sequence = seq;
  p.send_time_ns = 1234567890123ull;
  p.sender = "node-1";
  return p;
}

DecodeStatus decode(const std::string& bytes, const ProbeKey* k, ProbePacket* out = nullptr) {
  ProbePacket tmp;
  return decodeProbe(bytesOf(bytes), k, out ? *out : tmp);
}

TEST(ProbePacket, RoundTripWithoutKey) {
  auto enc = encodeProbe(request(), nullptr);
  ASSERT_TRUE(enc.ok()) << enc.error().message;
  EXPECT_EQ(enc->size(), kProbeHeaderSize + 6);
  ProbePacket out;
  ASSERT_EQ(decode(*enc, nullptr, &out), DecodeStatus::kOk);
  EXPECT_EQ(out.type, ProbeType::kRequest);
  EXPECT_EQ(out.sequence, 42u);
  EXPECT_EQ(out.send_time_ns, 1234567890123ull);
  EXPECT_EQ(out.sender, "node-1");
}

TEST(ProbePacket, RoundTripWithKeyAndLayout) {
  ProbeKey k = key("cluster-secret");
  auto enc = encodeProbe(request(0x0102030405060708ull), &k);
  ASSERT_TRUE(enc.ok());
  ASSERT_EQ(enc->size(), kProbeHeaderSize + 6 + kProbeMacSize);
  // Big-endian magic "MPRB", version 1, request, MAC flag, name length.
  EXPECT_EQ(enc->substr(0, 4), "MPRB");
  EXPECT_EQ((*enc)[4], 1);
  EXPECT_EQ((*enc)[5], 1);
  EXPECT_EQ((*enc)[6], 1);
  EXPECT_EQ((*enc)[7], 6);
  EXPECT_EQ((*enc)[8], 0x01);
  EXPECT_EQ((*enc)[15], 0x08);
  ProbePacket out;
  ASSERT_EQ(decode(*enc, &k, &out), DecodeStatus::kOk);
  EXPECT_EQ(out.sequence, 0x0102030405060708ull);
  // A keyless decoder (dev mode) accepts the signed packet without checking.
  EXPECT_EQ(decode(*enc, nullptr), DecodeStatus::kOk);
}

TEST(ProbePacket, Truncated) {
  ProbeKey k = key("s");
  auto enc = encodeProbe(request(), &k);
  ASSERT_TRUE(enc.ok());
  EXPECT_EQ(decode("", &k), DecodeStatus::kTruncated);
  EXPECT_EQ(decode(enc->substr(0, kProbeHeaderSize - 1), &k), DecodeStatus::kTruncated);
  EXPECT_EQ(decode(enc->substr(0, kProbeHeaderSize + 3), &k), DecodeStatus::kTruncated);  // inside the name
  // Name complete but the MAC trailer cut short.
  EXPECT_EQ(decode(enc->substr(0, enc->size() - 1), &k), DecodeStatus::kTruncated);
  EXPECT_EQ(decode(enc->substr(0, enc->size() - 1), nullptr), DecodeStatus::kTruncated);
}

TEST(ProbePacket, Oversized) {
  auto enc = encodeProbe(request(), nullptr, kMaxProbeSize);
  ASSERT_TRUE(enc.ok());
  EXPECT_EQ(decode(*enc, nullptr), DecodeStatus::kOk);
  std::string big = *enc + std::string(1, '\0');
  EXPECT_EQ(decode(big, nullptr), DecodeStatus::kOversized);
  EXPECT_FALSE(encodeProbe(request(), nullptr, kMaxProbeSize + 1).ok());
}

TEST(ProbePacket, BadHeaderFields) {
  auto enc = encodeProbe(request(), nullptr);
  ASSERT_TRUE(enc.ok());
  std::string b = *enc;
  b[0] = 'X';
  EXPECT_EQ(decode(b, nullptr), DecodeStatus::kBadMagic);
  b = *enc;
  b[4] = 2;
  EXPECT_EQ(decode(b, nullptr), DecodeStatus::kBadVersion);
  b = *enc;
  b[5] = 3;
  EXPECT_EQ(decode(b, nullptr), DecodeStatus::kBadType);
  b = *enc;
  b[6] = 0x80;  // unknown flag
  EXPECT_EQ(decode(b, nullptr), DecodeStatus::kBadVersion);
  b = *enc;
  b[7] = static_cast<char>(254);  // above the bound
  EXPECT_EQ(decode(b + std::string(300, 'a'), nullptr), DecodeStatus::kBadName);
  b = *enc;
  b[7] = 0;  // a request must name its sender
  EXPECT_EQ(decode(b, nullptr), DecodeStatus::kBadName);
  b = *enc;
  b[kProbeHeaderSize] = '\n';
  EXPECT_EQ(decode(b, nullptr), DecodeStatus::kBadName);
}

TEST(ProbePacket, NameBoundOnEncode) {
  ProbePacket p = request();
  p.sender = std::string(kMaxNodeNameLength, 'n');
  EXPECT_TRUE(encodeProbe(p, nullptr).ok());
  p.sender += "n";
  EXPECT_FALSE(encodeProbe(p, nullptr).ok());
  p.sender = "";
  EXPECT_FALSE(encodeProbe(p, nullptr).ok());
  p.sender = "bad name";
  EXPECT_FALSE(encodeProbe(p, nullptr).ok());
}

TEST(ProbePacket, WrongKeyMissingMacAndTamperedByte) {
  ProbeKey k = key("right");
  ProbeKey other = key("wrong");
  auto signed_pkt = encodeProbe(request(), &k);
  auto unsigned_pkt = encodeProbe(request(), nullptr);
  ASSERT_TRUE(signed_pkt.ok());
  ASSERT_TRUE(unsigned_pkt.ok());
  EXPECT_EQ(decode(*signed_pkt, &other), DecodeStatus::kBadMac);
  EXPECT_EQ(decode(*unsigned_pkt, &k), DecodeStatus::kMissingMac);
  // Flip every byte of the body (not the header fields that fail earlier) and the MAC.
  for (size_t i = 8; i < signed_pkt->size(); ++i) {
    std::string t = *signed_pkt;
    t[i] = static_cast<char>(t[i] ^ 0x01);
    DecodeStatus st = decode(t, &k);
    EXPECT_TRUE(st == DecodeStatus::kBadMac || st == DecodeStatus::kBadName)
        << "byte " << i << ": " << decodeStatusName(st);
  }
  // Stripping the MAC flag and trailer from a signed packet is "missing", not accepted.
  std::string stripped = signed_pkt->substr(0, signed_pkt->size() - kProbeMacSize);
  stripped[6] = 0;
  EXPECT_EQ(decode(stripped, &k), DecodeStatus::kMissingMac);
}

TEST(ProbePacket, PaddingIsCoveredAndChecked) {
  ProbeKey k = key("pad");
  auto enc = encodeProbe(request(), &k, 1400);
  ASSERT_TRUE(enc.ok());
  EXPECT_EQ(enc->size(), 1400u);
  ProbePacket out;
  ASSERT_EQ(decode(*enc, &k, &out), DecodeStatus::kOk);
  EXPECT_EQ(out.sender, "node-1");
  // A padding byte changed: the MAC catches it with a key, the zero check without one.
  std::string t = *enc;
  t[700] = 1;
  EXPECT_EQ(decode(t, &k), DecodeStatus::kBadMac);
  auto plain = encodeProbe(request(), nullptr, 1400);
  ASSERT_TRUE(plain.ok());
  std::string u = *plain;
  u[700] = 1;
  EXPECT_EQ(decode(u, nullptr), DecodeStatus::kBadPadding);
  // Too small a total size for header + name + MAC.
  EXPECT_FALSE(encodeProbe(request(), &k, kProbeHeaderSize + 6 + kProbeMacSize - 1).ok());
}

TEST(ProbePacket, PathMtuPayloadMakesTheIpPacketExactlyTheMtu) {
  EXPECT_EQ(probePayloadForIpSize(1450, false), 1422u);  // flannel over a 1500 underlay
  EXPECT_EQ(probePayloadForIpSize(1450, true), 1402u);
  EXPECT_EQ(probePayloadForIpSize(8950, false), 8922u);  // jumbo frames
  EXPECT_EQ(probePayloadForIpSize(28, false), 0u);       // no room for a payload
  EXPECT_EQ(probePayloadForIpSize(0, false), 0u);
  EXPECT_EQ(probePayloadForIpSize(40, true), 0u);
}

TEST(ProbePacket, MtuSizedProbesAndRepliesAuthenticateAndKeepTheirSize) {
  ProbeKey k = key("mtu");
  for (size_t mtu : {size_t{1450}, size_t{1400}, size_t{8950}}) {
    size_t payload = probePayloadForIpSize(mtu, false);
    auto req = encodeProbe(request(9), &k, payload);
    ASSERT_TRUE(req.ok()) << mtu;
    ASSERT_EQ(req->size(), payload);
    ProbePacket in;
    ASSERT_EQ(decode(*req, &k, &in), DecodeStatus::kOk) << mtu;
    std::array<uint8_t, kMaxProbeSize> buf{};
    auto n = encodeReply(in, req->size(), "node-2", &k, buf);
    ASSERT_TRUE(n.ok());
    EXPECT_EQ(*n, payload);
    ProbePacket rep;
    ASSERT_EQ(decode(std::string(reinterpret_cast<const char*>(buf.data()), *n), &k, &rep), DecodeStatus::kOk);
    EXPECT_EQ(rep.type, ProbeType::kReply);
    EXPECT_EQ(rep.sequence, 9u);
    EXPECT_EQ(rep.sender, "node-2");
    // The padding is authenticated: flipping its last byte (just before the MAC) fails.
    std::string t = *req;
    t[payload - kProbeMacSize - 1] = 1;
    EXPECT_EQ(decode(t, &k), DecodeStatus::kBadMac);
  }
  // The same key still accepts an unpadded (old-size) probe: one format, any size.
  auto small = encodeProbe(request(10), &k, 0);
  ASSERT_TRUE(small.ok());
  EXPECT_EQ(small->size(), minimumProbeSize(6, true));
  EXPECT_EQ(decode(*small, &k), DecodeStatus::kOk);
}

TEST(ProbePacket, ReplyIsSameSizeAndFallsBackToEmptyName) {
  ProbeKey k = key("r");
  auto req = encodeProbe(request(7), &k, 128);
  ASSERT_TRUE(req.ok());
  ProbePacket in;
  ASSERT_EQ(decode(*req, &k, &in), DecodeStatus::kOk);
  std::array<uint8_t, kMaxProbeSize> buf{};
  auto n = encodeReply(in, req->size(), "node-2", &k, buf);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, req->size());
  ProbePacket rep;
  ASSERT_EQ(decodeProbe(std::span<const uint8_t>(buf.data(), *n), &k, rep), DecodeStatus::kOk);
  EXPECT_EQ(rep.type, ProbeType::kReply);
  EXPECT_EQ(rep.sequence, 7u);
  EXPECT_EQ(rep.send_time_ns, in.send_time_ns);
  EXPECT_EQ(rep.sender, "node-2");

  // A minimal request leaves no room for a longer responder name: empty name, same size.
  auto small = encodeProbe(request(8), &k);
  ASSERT_TRUE(small.ok());
  ASSERT_EQ(decode(*small, &k, &in), DecodeStatus::kOk);
  n = encodeReply(in, small->size(), "a-much-longer-node-name", &k, buf);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, small->size());
  ASSERT_EQ(decodeProbe(std::span<const uint8_t>(buf.data(), *n), &k, rep), DecodeStatus::kOk);
  EXPECT_EQ(rep.sender, "");
}

class KeyFile : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mp-probe-key-XXXXXX";
    int fd = mkstemp(tmpl);
    ASSERT_GE(fd, 0);
    close(fd);
    path_ = tmpl;
  }
  void TearDown() override { std::remove(path_.c_str()); }
  void write(const std::string& s) { std::ofstream(path_, std::ios::binary) << s; }
  std::string path_;
};

TEST_F(KeyFile, TrailingNewlineIsStripped) {
  write("secret\n");
  auto a = loadProbeKeyFile(path_);
  ASSERT_TRUE(a.ok()) << a.error().message;
  auto b = ProbeKey::fromBytes("secret");
  ASSERT_TRUE(b.ok());
  auto enc = encodeProbe(request(), &*b);
  ASSERT_TRUE(enc.ok());
  EXPECT_EQ(decode(*enc, &*a), DecodeStatus::kOk);
  write("secret\r\n");
  auto c = loadProbeKeyFile(path_);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(decode(*enc, &*c), DecodeStatus::kOk);
}

TEST_F(KeyFile, EmptyAndUnreadableNameTheFile) {
  write("\n");
  auto a = loadProbeKeyFile(path_);
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.error().message.find(path_), std::string::npos) << a.error().message;
  EXPECT_NE(a.error().message.find("empty"), std::string::npos);
  auto b = loadProbeKeyFile(path_ + ".does-not-exist");
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.error().message.find(path_ + ".does-not-exist"), std::string::npos);
  write(std::string(kMaxProbeKeySize + 1, 'k'));
  EXPECT_FALSE(loadProbeKeyFile(path_).ok());
}

}  // namespace
}  // namespace meshprobe::agent
