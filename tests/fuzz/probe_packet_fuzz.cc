// The probe packet codec on the responder's and the prober's receive path: any datagram
// that reaches UDP 9473. Decoded without a key and with one; a request that decodes is
// answered exactly as the responder does (encodeReply), and the reply must decode to the
// same sequence and timestamp, be exactly as long as the request (never amplify), and
// fail verification under another key. Seeds: tests/fuzz/corpus/probe_packet (made by
// fuzz_make_seeds).

#include <array>

#include "agent/probe/packet.h"
#include "tests/fuzz/fuzz_target.h"

using namespace meshprobe::agent;

namespace {

const ProbeKey& key() {
  static const ProbeKey k = ProbeKey::fromBytes("meshprobe-fuzz-probe-key").value();
  return k;
}
const ProbeKey& otherKey() {
  static const ProbeKey k = ProbeKey::fromBytes("another-key").value();
  return k;
}

void answer(std::span<const uint8_t> data, const ProbePacket& request, const ProbeKey* k) {
  if (request.type != ProbeType::kRequest) return;
  std::array<uint8_t, kMaxProbeSize> out{};
  auto n = encodeReply(request, data.size(), "responder-node", k, out);
  FUZZ_CHECK(n.ok());  // a request that decoded with this key setting always fits a reply
  FUZZ_CHECK(n.value() == data.size());
  ProbePacket reply;
  FUZZ_CHECK(decodeProbe(std::span<const uint8_t>(out.data(), n.value()), k, reply) == DecodeStatus::kOk);
  FUZZ_CHECK(reply.type == ProbeType::kReply);
  FUZZ_CHECK(reply.sequence == request.sequence && reply.send_time_ns == request.send_time_ns);
  if (k != nullptr) {
    ProbePacket other;
    FUZZ_CHECK(decodeProbe(std::span<const uint8_t>(out.data(), n.value()), &otherKey(), other) ==
               DecodeStatus::kBadMac);
  }
}

}  // namespace

MESHPROBE_FUZZ_TARGET(probe_packet) {
  ProbePacket p;
  const DecodeStatus plain = decodeProbe(data, nullptr, p);
  FUZZ_CHECK(!decodeStatusName(plain).empty());
  if (plain == DecodeStatus::kOk) {
    FUZZ_CHECK(p.sender.size() <= kMaxNodeNameLength);
    answer(data, p, nullptr);
  }
  ProbePacket signed_p;
  const DecodeStatus keyed = decodeProbe(data, &key(), signed_p);
  if (keyed == DecodeStatus::kOk) {
    FUZZ_CHECK(plain == DecodeStatus::kOk);  // what passes with a key passes without one
    answer(data, signed_p, &key());
  }
}
