// What an agent (or anything that reaches the gRPC port) can make the aggregator ingest:
// a stream of AgentMessages, each decoded from arbitrary bytes and handled as the
// Collector handles a stream — the Hello normalized and validated (an invalid one ends
// the stream), a Report before any Hello rejected, a Hello with another node name starting
// a new stream — then everything the state answers from it: ListNodes, GetNode, the three
// matrices, the /metrics summary and a diagnosis pass.
//
// Input framing: [1 byte: advance the fake clock by that many 100 ms][2 bytes little-endian
// length][message bytes], repeated. Seeds: tests/fuzz/corpus/agent_message (fuzz_make_seeds).

#include "aggregator/cluster_state.h"
#include "aggregator/diagnosis/rules.h"
#include "aggregator/membership.h"
#include "common/clock.h"
#include "meshprobe/v1/collector.pb.h"
#include "tests/fuzz/fuzz_target.h"

namespace v1 = meshprobe::v1;
using namespace meshprobe;
using namespace meshprobe::aggregator;

MESHPROBE_FUZZ_TARGET(agent_message) {
  FakeClock clock;
  ClusterState state(clock, ClusterOptions{});
  std::string stream_node;  // the node the current stream said Hello for ("" = none yet)
  size_t i = 0;
  for (int messages = 0; i + 3 <= data.size() && messages < 64; ++messages) {
    clock.advance(std::chrono::milliseconds(100) * data[i]);
    const size_t len = data[i + 1] | (static_cast<size_t>(data[i + 2]) << 8);
    i += 3;
    const size_t take = std::min(len, data.size() - i);
    v1::AgentMessage msg;
    const bool parsed = msg.ParseFromArray(data.data() + i, static_cast<int>(take));
    i += take;
    if (!parsed) {
      stream_node.clear();  // the stream breaks on a message it cannot decode
      continue;
    }
    if (msg.has_hello()) {
      const v1::Hello hello = normalizedHello(msg.hello());
      if (!validateHello(hello).ok()) {
        stream_node.clear();
        continue;
      }
      const bool first = hello.node_name() != stream_node;
      stream_node = hello.node_name();
      state.applyHello(hello, first);
      FUZZ_CHECK(state.isUp(stream_node));
    } else if (msg.has_report()) {
      if (stream_node.empty()) continue;  // Report before Hello ends the stream
      state.applyReport(stream_node, msg.report());
    }
  }
  clock.advance(std::chrono::milliseconds(100) * (data.empty() ? 0 : data.back()));
  state.sweep();

  const auto nodes = state.listNodes();
  FUZZ_CHECK(nodes.size() == state.memberCount());
  for (const auto& n : nodes) FUZZ_CHECK(state.getNode(n.name()).ok());
  const size_t members = nodes.size();
  for (v1::Layer layer : {v1::UNDERLAY, v1::OVERLAY, v1::ISTIOD}) {
    auto m = state.matrix(layer);
    FUZZ_CHECK(m.ok());
    const size_t expected = layer == v1::ISTIOD ? members : members * (members > 0 ? members - 1 : 0);
    FUZZ_CHECK(static_cast<size_t>(m.value().cells_size()) == expected);
    auto summary = state.matrixSummary(layer);
    FUZZ_CHECK(summary.ok() && summary.value().nodes.size() == members);
  }
  const auto candidates = diagnose(state.diagnosisSnapshot());
  for (const auto& c : candidates) FUZZ_CHECK(!c.finding.id().empty());
}
