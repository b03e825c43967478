// fuzz_make_seeds DIR: writes the generated seed inputs of the fuzz targets whose input is
// binary and built by our own code, under DIR/<target>/:
//   probe_packet:  requests and replies, unsigned and signed with the fuzz target's key,
//                  minimal and padded (as DF path-MTU probes are);
//   agent_message: Collector streams in agent_message_fuzz.cc's framing — Hellos of three
//                  nodes and Reports with checks, findings and probes on every layer,
//                  healthy and failing, including a repeated Hello and an old sequence.
// The committed corpus under tests/fuzz/corpus/ was made with it; re-run after a format
// change.

#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "agent/probe/packet.h"
#include "meshprobe/v1/collector.pb.h"

namespace fs = std::filesystem;
namespace v1 = meshprobe::v1;
using namespace meshprobe::agent;

namespace {

void write(const fs::path& dir, const std::string& name, const std::string& bytes) {
  fs::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary) << bytes;
  std::cout << (dir / name).string() << " (" << bytes.size() << " bytes)\n";
}

std::string frame(const v1::AgentMessage& msg, uint8_t advance_100ms) {
  const std::string body = msg.SerializeAsString();
  std::string out;
  out.push_back(static_cast<char>(advance_100ms));
  out.push_back(static_cast<char>(body.size() & 0xff));
  out.push_back(static_cast<char>((body.size() >> 8) & 0xff));
  return out + body;
}

v1::AgentMessage hello(int n) {
  v1::AgentMessage m;
  auto* h = m.mutable_hello();
  h->set_node_name("node" + std::to_string(n));
  h->set_node_ip("192.0.2." + std::to_string(10 + n));
  h->set_overlay_ip("10.244." + std::to_string(n) + ".0");
  h->set_vtep_mac("0e:00:00:00:00:0" + std::to_string(n));
  h->set_vxlan_vni(1);
  h->set_vxlan_port(n == 3 ? 4789 : 8472);
  h->set_pod_cidr("10.244." + std::to_string(n) + ".0/24");
  h->set_agent_version("0.1.0");
  h->set_vxlan_mtu(1450);
  h->set_accepts_peer_deltas(true);
  return m;
}

v1::AgentMessage report(int n, uint64_t seq, bool failing) {
  v1::AgentMessage m;
  auto* r = m.mutable_report();
  r->set_sequence(seq);
  r->mutable_time()->set_seconds(1'780'000'000 + static_cast<int64_t>(seq));
  auto* c = r->add_checks();
  c->set_name("istiod");
  c->set_status(failing ? v1::CheckResult::FAIL : v1::CheckResult::OK);
  c->set_summary(failing ? "istiod:15012 unreachable" : "istiod:15012 TLS handshake ok");
  auto* c2 = r->add_checks();
  c2->set_name("vxlan_device");
  c2->set_status(v1::CheckResult::OK);
  if (failing) {
    auto* f = r->add_findings();
    f->set_code("VXLAN_PORT_FILTERED");
    f->set_id("VXLAN_PORT_FILTERED/node" + std::to_string(n));
    f->add_nodes("node" + std::to_string(n));
    f->set_summary("iptables drops udp/4789");
  }
  for (int peer = 1; peer <= 3; ++peer) {
    if (peer == n) continue;
    for (v1::Layer layer : {v1::UNDERLAY, v1::OVERLAY}) {
      auto* p = r->add_probes();
      p->set_dst("node" + std::to_string(peer));
      p->set_layer(layer);
      p->set_sent(10);
      const bool bad = failing && layer == v1::OVERLAY;
      p->set_received(bad ? 0 : 10);
      p->set_loss(bad ? 1.0 : 0.0);
      p->set_recent_loss(bad ? 1.0 : 0.0);
      p->mutable_rtt_p50()->set_nanos(300'000);
      p->mutable_rtt_p99()->set_nanos(900'000);
      p->set_consecutive_failures(bad ? 4 : 0);
      if (bad) {
        p->set_error("timeout after 800ms");
        p->set_failure(v1::PROBE_FAILURE_TIMEOUT);
      }
      if (layer == v1::OVERLAY) {
        p->mutable_path_mtu()->set_size(1450);
        p->mutable_path_mtu()->set_sent(3);
        p->mutable_path_mtu()->set_received(bad ? 0 : 3);
      }
      p->mutable_last_probe()->set_seconds(1'780'000'000 + static_cast<int64_t>(seq));
    }
  }
  auto* ist = r->add_probes();
  ist->set_dst("istiod");
  ist->set_layer(v1::ISTIOD);
  ist->set_sent(2);
  ist->set_received(failing ? 0 : 2);
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: fuzz_make_seeds DIR\n";
    return 2;
  }
  const fs::path root = argv[1];

  const ProbeKey key = ProbeKey::fromBytes("meshprobe-fuzz-probe-key").value();  // as probe_packet_fuzz.cc
  ProbePacket req{ProbeType::kRequest, 42, 1'780'000'000'000'000'000ull, "node1"};
  ProbePacket rep{ProbeType::kReply, 42, 1'780'000'000'000'000'000ull, "node2"};
  const fs::path pp = root / "probe_packet";
  write(pp, "request_unsigned", encodeProbe(req, nullptr).value());
  write(pp, "request_signed", encodeProbe(req, &key).value());
  write(pp, "request_signed_padded_1422", encodeProbe(req, &key, probePayloadForIpSize(1450, false)).value());
  write(pp, "reply_unsigned", encodeProbe(rep, nullptr).value());
  write(pp, "reply_signed_padded", encodeProbe(rep, &key, 256).value());

  const fs::path am = root / "agent_message";
  std::string healthy, faulty, rehello;
  for (int n = 1; n <= 3; ++n) healthy += frame(hello(n), 0);
  for (int n = 1; n <= 3; ++n) healthy += frame(report(n, 1, false), 1);
  write(am, "three_nodes_healthy", healthy);
  for (int n = 1; n <= 3; ++n) faulty += frame(hello(n), 0) + frame(report(n, 1, n == 3), 2);
  faulty += frame(report(3, 2, true), 5);
  write(am, "node3_overlay_failing", faulty);
  rehello = frame(hello(1), 0) + frame(report(1, 5, false), 1) + frame(report(1, 4, false), 1) +
            frame(hello(1), 0) + frame(report(1, 1, true), 120);
  write(am, "repeated_hello_old_sequence_stale", rehello);
  return 0;
}
