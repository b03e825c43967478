// Wire compatibility with the previous release of meshprobe.v1, both ways. The previous
// protos are frozen in tests/data/proto_v0/ and loaded here as a descriptor pool of their
// own; messages cross between the two only as bytes, as they do between processes.
//   - old agent -> new aggregator: a Hello/Report written with the old schema is ingested
//     with the same result as the same facts written by a new agent;
//   - new agent/aggregator -> old reader: what the new code writes, read with the old
//     schema, carries the same meaning (flat identity fields, error text, state string).
#include <gmock/gmock.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <fstream>
#include <memory>
#include <optional>

#include "aggregator/cluster_state.h"
#include "aggregator/diagnosis/lifecycle.h"
#include "aggregator/diagnosis/rules.h"
#include "aggregator/matrix_query.h"
#include "aggregator/membership.h"
#include "aggregator/membership_fanout.h"
#include "common/clock.h"
#include "tests/unit/aggregator/test_util.h"

namespace meshprobe::aggregator {
namespace {

namespace pb = google::protobuf;
using pb::util::MessageDifferencer;
using std::chrono::seconds;
using testing::makeHello;
using testing::makeProbe;
using ::testing::ElementsAre;

class OldSchema {
 public:
  OldSchema() {
    std::ifstream in(MESHPROBE_PROTO_V0_DESC, std::ios::binary);
    pb::FileDescriptorSet set;
    ok_ = in.good() && set.ParseFromIstream(&in);
    for (const auto& f : set.file()) ok_ = ok_ && pool_.BuildFile(f) != nullptr;
  }
  bool ok() const { return ok_; }

  // An empty old-schema message of `type` ("meshprobe.v1.Hello").
  std::unique_ptr<pb::Message> make(const std::string& type) {
    const pb::Descriptor* d = pool_.FindMessageTypeByName(type);
    EXPECT_NE(d, nullptr) << type;
    return std::unique_ptr<pb::Message>(factory_.GetPrototype(d)->New());
  }
  // `m` (new schema) as the old schema reads it.
  std::unique_ptr<pb::Message> read(const pb::Message& m) {
    auto old = make(m.GetDescriptor()->full_name());
    EXPECT_TRUE(old->ParseFromString(m.SerializeAsString()));
    return old;
  }

 private:
  pb::DescriptorPool pool_;
  pb::DynamicMessageFactory factory_{&pool_};
  bool ok_ = false;
};

// Old-schema message -> new-schema message, through bytes.
template <typename T>
T fromOld(const pb::Message& old) {
  T m;
  EXPECT_TRUE(m.ParseFromString(old.SerializeAsString()));
  return m;
}

std::string str(const pb::Message& m, const std::string& field) {
  const auto* f = m.GetDescriptor()->FindFieldByName(field);
  EXPECT_NE(f, nullptr) << field;
  return m.GetReflection()->GetString(m, f);
}
uint32_t u32(const pb::Message& m, const std::string& field) {
  const auto* f = m.GetDescriptor()->FindFieldByName(field);
  EXPECT_NE(f, nullptr) << field;
  return m.GetReflection()->GetUInt32(m, f);
}
void setStr(pb::Message& m, const std::string& field, const std::string& v) {
  m.GetReflection()->SetString(&m, m.GetDescriptor()->FindFieldByName(field), v);
}
void setU32(pb::Message& m, const std::string& field, uint32_t v) {
  m.GetReflection()->SetUInt32(&m, m.GetDescriptor()->FindFieldByName(field), v);
}

// What an old agent sends: the flat fields only (the old schema has nothing else).
std::unique_ptr<pb::Message> oldHello(OldSchema& old, const v1::Hello& facts) {
  auto h = old.make("meshprobe.v1.Hello");
  setStr(*h, "node_name", facts.node_name());
  setStr(*h, "node_ip", facts.node_ip());
  setStr(*h, "overlay_ip", facts.overlay_ip());
  setStr(*h, "vtep_mac", facts.vtep_mac());
  setU32(*h, "vxlan_vni", facts.vxlan_vni());
  setU32(*h, "vxlan_port", facts.vxlan_port());
  setStr(*h, "pod_cidr", facts.pod_cidr());
  setStr(*h, "agent_version", facts.agent_version());
  setU32(*h, "vxlan_mtu", facts.vxlan_mtu());
  return h;
}

// What a new agent sends: the identity message and the flat fields.
v1::Hello newHello(const std::string& name, int n, uint32_t vni = 1) {
  v1::Hello h = makeHello(name, n, vni);
  *h.mutable_identity() = identityOf(h);
  return h;
}

class WireCompat : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(old_.ok()) << "cannot load " << MESHPROBE_PROTO_V0_DESC; }

  static ClusterOptions options() {
    ClusterOptions o;
    o.stale_after = seconds(10);
    return o;
  }

  OldSchema old_;
  FakeClock clock_;
};

TEST_F(WireCompat, OldHelloIsIngestedLikeANewOne) {
  ClusterState from_old(clock_, options()), from_new(clock_, options());
  for (int n = 1; n <= 3; ++n) {
    const std::string name = "node" + std::to_string(n);
    const uint32_t vni = n == 3 ? 7 : 1;  // node3 disagrees: the VNI is read the same way
    from_old.applyHello(fromOld<v1::Hello>(*oldHello(old_, makeHello(name, n, vni))), true);
    from_new.applyHello(newHello(name, n, vni), true);
  }
  EXPECT_TRUE(MessageDifferencer::Equals(from_old.peerList(), from_new.peerList()));
  const auto a = from_old.listNodes(), b = from_new.listNodes();
  ASSERT_EQ(a.size(), 3u);
  ASSERT_EQ(b.size(), 3u);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(MessageDifferencer::Equals(a[i], b[i])) << a[i].DebugString();
  // The old agent's facts reach the new readers' identity message too.
  EXPECT_EQ(a[0].identity().name(), "node1");
  EXPECT_EQ(a[0].identity().overlay_ip(), "10.244.1.0");
  EXPECT_EQ(a[0].identity().vxlan_mtu(), 1450u);
  ASSERT_EQ(from_old.vxlanMismatches().size(), 1u);
  EXPECT_EQ(from_old.vxlanMismatches()[0].node, "node3");
  EXPECT_EQ(from_new.vxlanMismatches()[0].node, "node3");
}

TEST_F(WireCompat, IdentityWinsOverFlatFieldsAndAnIdentityOnlyHelloWorks) {
  v1::Hello only_identity;
  *only_identity.mutable_identity() = identityOf(makeHello("node4", 4));
  const v1::Hello n = normalizedHello(only_identity);
  EXPECT_EQ(n.node_name(), "node4");
  EXPECT_EQ(n.node_ip(), "198.51.100.4");
  EXPECT_EQ(n.vxlan_port(), 4789u);
  EXPECT_TRUE(validateHello(n).ok());

  v1::Hello both = makeHello("node4", 4);
  both.mutable_identity()->set_overlay_ip("10.244.40.0");  // the message is the newer truth
  EXPECT_EQ(normalizedHello(both).overlay_ip(), "10.244.40.0");
  EXPECT_EQ(normalizedHello(both).identity().node_ip(), "198.51.100.4");  // filled from flat
}

TEST_F(WireCompat, NewMessagesReadByTheOldSchemaMeanTheSame) {
  // Hello from a new agent, read by an old aggregator: the flat fields.
  const v1::Hello hello = newHello("node2", 2);
  auto old_hello = old_.read(hello);
  EXPECT_EQ(str(*old_hello, "node_name"), "node2");
  EXPECT_EQ(str(*old_hello, "overlay_ip"), "10.244.2.0");
  EXPECT_EQ(u32(*old_hello, "vxlan_port"), 4789u);
  EXPECT_EQ(u32(*old_hello, "vxlan_mtu"), 1450u);
  // ... and an old aggregator passing it on (unknown fields kept) loses nothing.
  EXPECT_TRUE(MessageDifferencer::Equals(fromOld<v1::Hello>(*old_hello), hello));

  // Peer list and node summary from a new aggregator, read by old agents / CLIs.
  ClusterState state(clock_, options());
  state.applyHello(hello, true);
  const v1::PeerList peers = state.peerList();
  ASSERT_EQ(peers.peers_size(), 1);
  EXPECT_TRUE(peers.peers(0).has_identity());
  auto old_peer = old_.read(peers.peers(0));
  EXPECT_EQ(str(*old_peer, "node_name"), "node2");
  EXPECT_EQ(str(*old_peer, "node_ip"), "198.51.100.2");
  EXPECT_EQ(str(*old_peer, "vtep_mac"), "02:00:00:00:00:02");
  EXPECT_EQ(u32(*old_peer, "vxlan_mtu"), 1450u);
  auto old_summary = old_.read(state.listNodes().at(0));
  EXPECT_EQ(str(*old_summary, "name"), "node2");
  EXPECT_EQ(str(*old_summary, "pod_cidr"), "10.244.2.0/24");
}

// Report.coverage_period / probe_interval (fields 6, 7): a new agent's report means the
// same to an old aggregator (it has no such fields and keeps them as unknown bytes), and an
// old agent's report (without them) is ingested by the new aggregator with no age rule.
TEST_F(WireCompat, ReportCoverageFieldsBothWays) {
  using google::protobuf::util::TimeUtil;
  const int64_t now_s = std::chrono::duration_cast<seconds>(clock_.wallNow().time_since_epoch()).count();
  v1::Report report;
  report.set_sequence(7);
  auto probe = makeProbe("node2", v1::OVERLAY, 10, 10);
  *probe.mutable_last_probe() = TimeUtil::SecondsToTimestamp(now_s - 30);  // older than the window below
  *report.add_probes() = probe;
  *report.mutable_coverage_period() = TimeUtil::SecondsToDuration(8);
  *report.mutable_probe_interval() = TimeUtil::SecondsToDuration(1);

  // New agent -> old aggregator: the old schema has no fields 6 and 7; the rest reads the same.
  auto old_report = old_.read(report);
  EXPECT_EQ(old_report->GetDescriptor()->FindFieldByName("coverage_period"), nullptr);
  EXPECT_EQ(old_report->GetDescriptor()->FindFieldByName("probe_interval"), nullptr);
  const auto* seq = old_report->GetDescriptor()->FindFieldByName("sequence");
  EXPECT_EQ(old_report->GetReflection()->GetUInt64(*old_report, seq), 7u);
  const auto* probes = old_report->GetDescriptor()->FindFieldByName("probes");
  EXPECT_EQ(old_report->GetReflection()->FieldSize(*old_report, probes), 1);
  EXPECT_TRUE(MessageDifferencer::Equals(fromOld<v1::Report>(*old_report), report));

  // Old agent -> new aggregator: the same report without the two fields, as the old
  // schema writes it. No coverage window: the 30 s old result stays OK (the old ageing);
  // with the window the new agent's report makes that cell UNKNOWN.
  v1::Report stripped = report;
  stripped.clear_coverage_period();
  stripped.clear_probe_interval();
  auto written_by_old = old_.make("meshprobe.v1.Report");
  ASSERT_TRUE(written_by_old->ParseFromString(stripped.SerializeAsString()));
  auto cellOf = [&](const v1::Report& r) {
    ClusterState state(clock_, options());
    state.applyHello(newHello("node1", 1), true);
    state.applyHello(newHello("node2", 2), true);
    EXPECT_EQ(state.applyReport("node1", r), ReportOutcome::kAccepted);
    auto m = state.matrix(v1::OVERLAY);
    const v1::Cell* c = testing::findCell(*m, "node1", "node2");
    return c ? c->state() : v1::Cell::STATE_UNSPECIFIED;
  };
  EXPECT_EQ(cellOf(fromOld<v1::Report>(*written_by_old)), v1::Cell::OK);
  EXPECT_EQ(cellOf(report), v1::Cell::UNKNOWN);
}

// Report.pod_netns (field 8): an old aggregator keeps a new agent's list as unknown bytes
// and reads the rest the same; an old agent's report (the ambient_redirection check, no
// list) leaves the new aggregator's list for that node unknown, never an empty "no pods".
TEST_F(WireCompat, ReportPodNetnsBothWays) {
  v1::Report report;
  report.set_sequence(9);
  *report.add_checks() = testing::makeCheck("ambient_redirection", v1::CheckResult::OK);
  auto* pod = report.mutable_pod_netns()->add_entries();
  pod->set_netns("cni-1234");
  pod->add_ips("10.244.1.7");
  pod->set_state(v1::PodNetnsCapture::LISTENERS_WITHOUT_RULES);
  pod->set_reason("ztunnel listening on 15001,15006,15008 but no ISTIO rules");
  report.mutable_pod_netns()->set_total(1);

  // New agent -> old aggregator: no field 8 in its schema; the rest reads the same, and an
  // old relay passing the bytes on loses nothing.
  auto old_report = old_.read(report);
  EXPECT_EQ(old_report->GetDescriptor()->FindFieldByName("pod_netns"), nullptr);
  const auto* seq = old_report->GetDescriptor()->FindFieldByName("sequence");
  EXPECT_EQ(old_report->GetReflection()->GetUInt64(*old_report, seq), 9u);
  const auto* checks = old_report->GetDescriptor()->FindFieldByName("checks");
  EXPECT_EQ(old_report->GetReflection()->FieldSize(*old_report, checks), 1);
  EXPECT_TRUE(MessageDifferencer::Equals(fromOld<v1::Report>(*old_report), report));

  // Old agent -> new aggregator: the same report as the old schema writes it (no list).
  auto listOf = [&](const std::vector<v1::Report>& reports) -> std::optional<v1::PodNetnsCaptures> {
    ClusterState state(clock_, options());
    state.applyHello(newHello("node1", 1), true);
    for (const auto& r : reports) EXPECT_EQ(state.applyReport("node1", r), ReportOutcome::kAccepted);
    auto snap = state.snapshot();
    const auto* list = snap->podNetns(*snap->indexOf("node1"));
    if (!list) return std::nullopt;
    return *list;
  };
  v1::Report stripped = report;
  stripped.clear_pod_netns();
  auto written_by_old = old_.make("meshprobe.v1.Report");
  ASSERT_TRUE(written_by_old->ParseFromString(stripped.SerializeAsString()));
  const auto from_old = fromOld<v1::Report>(*written_by_old);
  EXPECT_FALSE(from_old.has_pod_netns());
  EXPECT_EQ(listOf({from_old}), std::nullopt) << "an old agent's report: unknown";
  const auto from_new = listOf({report});
  ASSERT_TRUE(from_new.has_value());
  ASSERT_EQ(from_new->entries_size(), 1);
  EXPECT_EQ(from_new->entries(0).ips(0), "10.244.1.7");
  EXPECT_EQ(from_new->entries(0).state(), v1::PodNetnsCapture::LISTENERS_WITHOUT_RULES);
  // A node downgraded to an old agent: its next report makes the list unknown again.
  v1::Report later = from_old;
  later.set_sequence(10);
  EXPECT_EQ(listOf({report, later}), std::nullopt);
}

// Membership as an old agent's schema reads it: does `wire` carry a PeerList, and of how many.
std::optional<int> oldPeerListSize(OldSchema& old, const std::string& wire) {
  auto m = old.make("meshprobe.v1.AggregatorMessage");
  EXPECT_TRUE(m->ParseFromString(wire));
  const auto* field = m->GetDescriptor()->FindFieldByName("peer_list");
  if (!m->GetReflection()->HasField(*m, field)) return std::nullopt;
  const pb::Message& list = m->GetReflection()->GetMessage(*m, field);
  return list.GetReflection()->FieldSize(list, list.GetDescriptor()->FindFieldByName("peers"));
}

struct WireSink : MembershipSink {
  // What the stream would write: the message's shared encoding.
  void sendMembership(MembershipMessage m) override {
    std::vector<grpc::Slice> slices;
    EXPECT_TRUE(m->wire().Dump(&slices).ok());
    std::string bytes;
    for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
    wire.push_back(std::move(bytes));
  }
  std::vector<std::string> wire;
};

TEST_F(WireCompat, AnOldAgentGetsWholePeerListsOnlyWhileANewOneGetsDeltas) {
  ClusterState state(clock_, options());
  MembershipFanout fanout(clock_, std::chrono::milliseconds(250));
  WireSink old_agent, new_agent;
  // As CollectorService does: the change, then the joiner added; its list goes out with the
  // window's flush.
  const v1::Hello from_old = normalizedHello(fromOld<v1::Hello>(*oldHello(old_, makeHello("node1", 1))));
  EXPECT_FALSE(from_old.accepts_peer_deltas());  // the old schema has no such field
  fanout.changed(state.applyHello(from_old, true));
  fanout.add(&old_agent, from_old.accepts_peer_deltas());
  clock_.advance(std::chrono::milliseconds(250));
  ASSERT_TRUE(fanout.due());
  fanout.flush(peerListMessage(state.peerList()));
  v1::Hello from_new = newHello("node2", 2);
  from_new.set_accepts_peer_deltas(true);
  fanout.changed(state.applyHello(from_new, true));
  fanout.add(&new_agent, from_new.accepts_peer_deltas());
  clock_.advance(std::chrono::milliseconds(250));
  fanout.flush(peerListMessage(state.peerList()));
  for (int n = 3; n <= 5; ++n) fanout.changed(state.applyHello(newHello("node" + std::to_string(n), n), true));
  clock_.advance(std::chrono::milliseconds(250));
  ASSERT_TRUE(fanout.due());
  fanout.flush(peerListMessage(state.peerList()));

  // Every message to the old agent is, in its own schema, a PeerList of every member.
  ASSERT_EQ(old_agent.wire.size(), 3u);
  EXPECT_EQ(oldPeerListSize(old_, old_agent.wire[0]), 1);
  EXPECT_EQ(oldPeerListSize(old_, old_agent.wire[1]), 2);
  EXPECT_EQ(oldPeerListSize(old_, old_agent.wire[2]), 5);
  // The new agent's second message is a delta, which the old schema would not read as
  // membership at all: why the aggregator never sends one to an agent that did not ask.
  ASSERT_EQ(new_agent.wire.size(), 2u);
  EXPECT_EQ(oldPeerListSize(old_, new_agent.wire[0]), 2);
  EXPECT_EQ(oldPeerListSize(old_, new_agent.wire[1]), std::nullopt);
  v1::AggregatorMessage delta;
  ASSERT_TRUE(delta.ParseFromString(new_agent.wire[1]));
  EXPECT_EQ(delta.peer_delta().peers_size(), 3);

  // A new agent's Hello read by an old aggregator: the flag is an unknown field, kept.
  EXPECT_TRUE(fromOld<v1::Hello>(*old_.read(from_new)).accepts_peer_deltas());
}

TEST_F(WireCompat, AnOldAggregatorsPeerListReachesANewAgentAsTheWholeList) {
  auto old_msg = old_.make("meshprobe.v1.AggregatorMessage");
  const auto* list_field = old_msg->GetDescriptor()->FindFieldByName("peer_list");
  pb::Message* list = old_msg->GetReflection()->MutableMessage(old_msg.get(), list_field);
  for (int n = 1; n <= 2; ++n) {
    pb::Message* peer = list->GetReflection()->AddMessage(list, list->GetDescriptor()->FindFieldByName("peers"));
    setStr(*peer, "node_name", "node" + std::to_string(n));
    setStr(*peer, "node_ip", "198.51.100." + std::to_string(n));
  }
  const auto m = fromOld<v1::AggregatorMessage>(*old_msg);
  ASSERT_TRUE(m.has_peer_list());  // the agent's whole-list path (a new agent asks, gets none)
  EXPECT_FALSE(m.has_peer_delta());
  ASSERT_EQ(m.peer_list().peers_size(), 2);
  EXPECT_EQ(m.peer_list().peers(1).node_ip(), "198.51.100.2");
}

// Delta reports: a new aggregator's PeerList (accepts_report_deltas, field 2) is the same
// whole list to an old agent, which never writes Report.delta; an old aggregator's PeerList
// says nothing of deltas, so a new agent keeps writing whole reports (stream_client_test);
// and every report of an old agent replaces the source's row, as it always did.
TEST_F(WireCompat, ReportDeltasOnlyBetweenANewAgentAndANewAggregator) {
  ClusterState state(clock_, options());
  for (int n = 1; n <= 3; ++n) state.applyHello(newHello("node" + std::to_string(n), n), true);
  const v1::PeerList list = state.peerList();
  ASSERT_TRUE(list.accepts_report_deltas());
  auto old_list = old_.read(list);
  EXPECT_EQ(old_list->GetDescriptor()->FindFieldByName("accepts_report_deltas"), nullptr);
  const auto* peers = old_list->GetDescriptor()->FindFieldByName("peers");
  EXPECT_EQ(old_list->GetReflection()->FieldSize(*old_list, peers), 3);

  auto old_agg_list = old_.make("meshprobe.v1.PeerList");
  EXPECT_FALSE(fromOld<v1::PeerList>(*old_agg_list).accepts_report_deltas());

  // An old agent: two reports as the old schema writes them; the second has only node2's
  // cell, and node3's is gone from the row (a whole report replaces it).
  auto oldReport = [&](uint64_t seq, const std::vector<std::string>& dsts) {
    v1::Report r;
    r.set_sequence(seq);
    for (const auto& d : dsts) *r.add_probes() = makeProbe(d, v1::UNDERLAY, 10, 10);
    auto written = old_.make("meshprobe.v1.Report");
    EXPECT_TRUE(written->ParseFromString(r.SerializeAsString()));
    EXPECT_EQ(written->GetDescriptor()->FindFieldByName("delta"), nullptr);
    return fromOld<v1::Report>(*written);
  };
  ASSERT_EQ(state.applyReport("node1", oldReport(1, {"node2", "node3"})), ReportOutcome::kAccepted);
  const v1::Report second = oldReport(2, {"node2"});
  EXPECT_FALSE(second.delta());
  ASSERT_EQ(state.applyReport("node1", second), ReportOutcome::kAccepted);
  auto m = state.matrix(v1::UNDERLAY);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(testing::findCell(*m, "node1", "node2")->state(), v1::Cell::OK);
  EXPECT_EQ(testing::findCell(*m, "node1", "node3")->state(), v1::Cell::UNKNOWN);
  EXPECT_EQ(state.deltasApplied(), 0u);
}

// Quiet reports: a new aggregator's PeerList says how long its agents may leave out a report
// with no news (a quarter of stale_after). The old schema reads the same list without it,
// and an old aggregator's list leaves it unset, so a new agent reports every interval
// (report_delta_test, stream_client_test).
TEST_F(WireCompat, TheQuietReportIntervalIsANewFieldOnlyNewAgentsRead) {
  ClusterState state(clock_, options());
  for (int n = 1; n <= 2; ++n) state.applyHello(newHello("node" + std::to_string(n), n), true);
  const v1::PeerList list = state.peerList();
  ASSERT_TRUE(list.has_quiet_report_interval());
  EXPECT_EQ(google::protobuf::util::TimeUtil::DurationToNanoseconds(list.quiet_report_interval()),
            std::chrono::nanoseconds(options().stale_after).count() / 4);
  auto old_list = old_.read(list);
  EXPECT_EQ(old_list->GetDescriptor()->FindFieldByName("quiet_report_interval"), nullptr);
  const auto* peers = old_list->GetDescriptor()->FindFieldByName("peers");
  EXPECT_EQ(old_list->GetReflection()->FieldSize(*old_list, peers), 2);

  auto old_agg_list = old_.make("meshprobe.v1.PeerList");
  EXPECT_FALSE(fromOld<v1::PeerList>(*old_agg_list).has_quiet_report_interval());
}

// Results that follow: a new aggregator's PeerList says it applies Report.results_follow;
// the old schema has neither field, and an old aggregator's list leaves it unset, so a new
// agent puts every result in its whole reports for it (report_delta_test, stream_client_test).
TEST_F(WireCompat, ResultsThatFollowAreOfferedInANewFieldOnlyNewAgentsRead) {
  ClusterState state(clock_, options());
  for (int n = 1; n <= 2; ++n) state.applyHello(newHello("node" + std::to_string(n), n), true);
  const v1::PeerList list = state.peerList();
  EXPECT_TRUE(list.accepts_results_follow());
  auto old_list = old_.read(list);
  EXPECT_EQ(old_list->GetDescriptor()->FindFieldByName("accepts_results_follow"), nullptr);
  auto old_agg_list = old_.make("meshprobe.v1.PeerList");
  EXPECT_FALSE(fromOld<v1::PeerList>(*old_agg_list).accepts_results_follow());

  auto old_report = old_.make("meshprobe.v1.Report");
  EXPECT_EQ(old_report->GetDescriptor()->FindFieldByName("results_follow"), nullptr);
  EXPECT_FALSE(fromOld<v1::Report>(*old_report).results_follow());
}

TEST_F(WireCompat, AnOldGetMatrixRequestGetsTheOldAnswer) {
  // An old CLI's request (layer only) over a cluster that fits one default page: the
  // answer is the whole matrix, byte for byte, with no field the old schema lacks.
  ClusterState state(clock_, options());
  for (int n = 1; n <= 4; ++n) state.applyHello(newHello("node" + std::to_string(n), n), true);
  v1::Report r;
  r.set_sequence(1);
  *r.add_probes() = makeProbe("node2", v1::OVERLAY, 10, 0);
  ASSERT_EQ(state.applyReport("node1", r), ReportOutcome::kAccepted);
  for (const char* layer : {"UNDERLAY", "OVERLAY", "ISTIOD"}) {
    auto old_req = old_.make("meshprobe.v1.GetMatrixRequest");
    const auto* field = old_req->GetDescriptor()->FindFieldByName("layer");
    old_req->GetReflection()->SetEnum(old_req.get(), field, field->enum_type()->FindValueByName(layer));
    const auto req = fromOld<v1::GetMatrixRequest>(*old_req);
    auto full = state.matrix(req.layer());
    ASSERT_TRUE(full.ok()) << layer;
    v1::GetMatrixResponse answer;
    ASSERT_TRUE(queryMatrix(*full, req, &answer).ok()) << layer;
    EXPECT_EQ(answer.SerializeAsString(), full->SerializeAsString()) << layer;
    auto old_answer = old_.read(answer);
    EXPECT_EQ(old_answer->GetReflection()->GetUnknownFields(*old_answer).field_count(), 0) << layer;
  }
}

TEST_F(WireCompat, FindingHistoryStateReadsTheSameBothWays) {
  FindingTracker tracker;
  Candidate c;
  c.finding.set_code("AGENT_STALE");
  c.finding.set_id("AGENT_STALE/n1");
  const auto t0 = std::chrono::steady_clock::time_point{} + seconds(100);
  tracker.update({c}, t0, std::chrono::system_clock::time_point{} + seconds(1000));
  const auto active = tracker.active();
  ASSERT_EQ(active.size(), 1u);
  ASSERT_EQ(active[0].history_size(), 1);
  EXPECT_EQ(active[0].history(0).new_state(), v1::FindingTransition::ACTIVE);
  auto old_finding = old_.read(active[0]);
  const auto* history = old_finding->GetDescriptor()->FindFieldByName("history");
  ASSERT_EQ(old_finding->GetReflection()->FieldSize(*old_finding, history), 1);
  EXPECT_EQ(str(old_finding->GetReflection()->GetRepeatedMessage(*old_finding, history, 0), "state"), "ACTIVE");

  // An old aggregator's transition (text only) reads as UNSPECIFIED + the text.
  auto old_t = old_.make("meshprobe.v1.FindingTransition");
  setStr(*old_t, "state", "CLEARED");
  const auto t = fromOld<v1::FindingTransition>(*old_t);
  EXPECT_EQ(t.new_state(), v1::FindingTransition::STATE_UNSPECIFIED);
  EXPECT_EQ(t.state(), "CLEARED");
}

// node3's agent is gone, its host up: peers' TCP connects to the probe port are refused.
class AgentGone : public WireCompat {
 protected:
  // Runs the rules over 4 nodes whose probes to node3 fail as `probe` describes.
  std::vector<std::string> codesFor(const std::function<v1::ProbeResult(const std::string& dst, v1::Layer)>& failing) {
    ClusterState state(clock_, options());
    for (int n = 1; n <= 4; ++n) state.applyHello(newHello("node" + std::to_string(n), n), true);
    for (int n = 1; n <= 4; ++n) {
      if (n == 3) continue;  // node3 still counts as up (not yet stale) but sends nothing new
      v1::Report r;
      r.set_sequence(1);
      for (int d = 1; d <= 4; ++d) {
        if (d == n) continue;
        const std::string dst = "node" + std::to_string(d);
        for (v1::Layer l : {v1::UNDERLAY, v1::OVERLAY}) {
          *r.add_probes() = d == 3 ? failing(dst, l) : makeProbe(dst, l, 10, 10);
        }
      }
      EXPECT_EQ(state.applyReport("node" + std::to_string(n), r), ReportOutcome::kAccepted);
    }
    std::vector<std::string> out;
    for (const auto& c : diagnose(state.diagnosisSnapshot())) out.push_back(c.finding.id());
    return out;
  }

  static v1::ProbeResult failed(const std::string& dst, v1::Layer l) {
    v1::ProbeResult p = makeProbe(dst, l, 10, 0);
    p.set_consecutive_failures(5);
    p.set_recent_loss(1.0);
    return p;
  }
};

TEST_F(AgentGone, OldAgentsRefusedTextAndNewAgentsReasonGiveTheSameFinding) {
  // The old agent: only the text says refused, written with the old schema.
  const auto old_agent = codesFor([&](const std::string& dst, v1::Layer l) {
    auto p = old_.make("meshprobe.v1.ProbeResult");
    EXPECT_TRUE(p->ParseFromString(failed(dst, l).SerializeAsString()));
    setStr(*p, "error", "no reply within 800ms (TCP connect failed: connection refused)");
    return fromOld<v1::ProbeResult>(*p);
  });
  // The new agent: the same text and the reasons.
  const auto new_agent = codesFor([&](const std::string& dst, v1::Layer l) {
    auto p = failed(dst, l);
    p.set_error("no reply within 800ms (TCP connect failed: connection refused)");
    p.set_failure(v1::PROBE_FAILURE_TIMEOUT);
    p.set_tcp_failure(v1::PROBE_FAILURE_REFUSED);
    return p;
  });
  EXPECT_THAT(old_agent, ElementsAre("AGENT_STALE/node3"));
  EXPECT_EQ(new_agent, old_agent);
}

TEST_F(AgentGone, TheReasonDecidesNotTheText) {
  // Typed REFUSED with a text that never says so: still the agent.
  EXPECT_THAT(codesFor([&](const std::string& dst, v1::Layer l) {
                auto p = failed(dst, l);
                p.set_error("no reply within 800ms (TCP connect failed: Connection reset)");
                p.set_failure(v1::PROBE_FAILURE_TIMEOUT);
                p.set_tcp_failure(v1::PROBE_FAILURE_REFUSED);
                return p;
              }),
              ElementsAre("AGENT_STALE/node3"));
  // A typed timeout whose text happens to contain "refused" is not a refusal: the node
  // is unreachable.
  EXPECT_THAT(codesFor([&](const std::string& dst, v1::Layer l) {
                auto p = failed(dst, l);
                p.set_error("no reply within 800ms (TCP connect failed: timed out; earlier refused)");
                p.set_failure(v1::PROBE_FAILURE_TIMEOUT);
                p.set_tcp_failure(v1::PROBE_FAILURE_TIMEOUT);
                return p;
              }),
              ElementsAre("UNDERLAY_UNREACHABLE/node3"));
}

TEST_F(AgentGone, NewProbeResultReadByTheOldSchemaKeepsTheText) {
  auto p = failed("node3", v1::UNDERLAY);
  p.set_error("no reply within 800ms (TCP connect failed: connection refused)");
  p.set_failure(v1::PROBE_FAILURE_TIMEOUT);
  p.set_tcp_failure(v1::PROBE_FAILURE_REFUSED);
  p.mutable_path_mtu()->set_failure(v1::PROBE_FAILURE_MESSAGE_TOO_LONG);
  auto old_p = old_.read(p);
  EXPECT_NE(str(*old_p, "error").find("refused"), std::string::npos);  // what the old rules search
  EXPECT_EQ(u32(*old_p, "consecutive_failures"), 5u);
  EXPECT_TRUE(MessageDifferencer::Equals(fromOld<v1::ProbeResult>(*old_p), p));  // passed on intact
}

}  // namespace
}  // namespace meshprobe::aggregator
