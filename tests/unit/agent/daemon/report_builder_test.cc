#include "agent/daemon/report_builder.h"

#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <cerrno>

using namespace meshprobe;
using namespace meshprobe::agent;

namespace {
meshprobe::v1::PeerList threePeers() {
  meshprobe::v1::PeerList pl;
  for (int i = 1; i <= 3; ++i) {
    auto* p = pl.add_peers();
    p->set_node_name("n" + std::to_string(i));
    p->set_node_ip("198.51.100." + std::to_string(10 + i));
    p->set_overlay_ip("10.244." + std::to_string(i) + ".0");
    p->set_vtep_mac("0a:58:0a:f4:0" + std::to_string(i) + ":00");
    p->set_pod_cidr("10.244." + std::to_string(i) + ".0/24");
  }
  pl.mutable_peers(2)->clear_overlay_ip();  // n3 has no VXLAN device
  return pl;
}
}  // namespace

TEST(ReportBuilder, TargetsCoverBothLayersOfEveryOtherMember) {
  auto targets = targetsFromPeers(threePeers(), "n1");
  ASSERT_EQ(targets.size(), 3u);  // n2 underlay + overlay, n3 underlay only
  EXPECT_EQ(targets[0].peer, "n2");
  EXPECT_EQ(targets[0].layer, Layer::kUnderlay);
  EXPECT_EQ(targets[0].address, "198.51.100.12");
  EXPECT_EQ(targets[1].layer, Layer::kOverlay);
  EXPECT_EQ(targets[1].address, "10.244.2.0");
  EXPECT_EQ(targets[2].peer, "n3");
  EXPECT_EQ(targets[2].layer, Layer::kUnderlay);
}

TEST(ReportBuilder, ExpectationsSkipSelfAndMembersWithoutOverlay) {
  auto e = expectationsFromPeers(threePeers(), "n1");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].node, "n2");
  EXPECT_EQ(e[0].vtep_mac, "0a:58:0a:f4:02:00");
  EXPECT_EQ(e[0].pod_cidr, "10.244.2.0/24");
}

TEST(ReportBuilder, HelloCarriesTheDeviceFactsAndThePodCidr) {
  NetlinkSnapshot snap;
  LinkInfo dev;
  dev.ifindex = 3;
  dev.name = "flannel.1";
  dev.kind = "vxlan";
  dev.mtu = 1450;
  dev.mac = "0a:58:0a:f4:05:00";
  dev.vxlan = VxlanInfo{1, 4789, "198.51.100.15", 2, false};
  snap.links.push_back(dev);
  snap.addresses.push_back({3, AF_INET, "10.244.5.0", 32});
  AgentConfig config;
  config.node_name = "n5";
  config.node_ip = "198.51.100.15";
  auto h = buildHello(config, &snap, "10.244.5.1/24");
  EXPECT_EQ(h.node_name(), "n5");
  EXPECT_EQ(h.overlay_ip(), "10.244.5.0");
  EXPECT_EQ(h.vtep_mac(), "0a:58:0a:f4:05:00");
  EXPECT_EQ(h.vxlan_vni(), 1u);
  EXPECT_EQ(h.vxlan_port(), 4789u);
  EXPECT_EQ(h.vxlan_mtu(), 1450u);
  EXPECT_EQ(h.pod_cidr(), "10.244.5.0/24");
  auto bare = buildHello(config, nullptr, "");
  EXPECT_TRUE(bare.overlay_ip().empty());
  EXPECT_TRUE(bare.pod_cidr().empty());
}

TEST(ReportBuilder, CheckDetailsBecomeAStruct) {
  CheckResult c;
  c.name = "vxlan_device";
  c.status = CheckStatus::kFail;
  c.details = {{"mtu", 1450}, {"device", "flannel.1"}};
  auto p = toProto(c);
  EXPECT_EQ(p.status(), meshprobe::v1::CheckResult::FAIL);
  EXPECT_EQ(p.details().fields().at("device").string_value(), "flannel.1");
  EXPECT_EQ(p.details().fields().at("mtu").number_value(), 1450);
}

TEST(ReportBuilder, OverlayTargetsProbeThePathMtuAtTheSmallerDeviceMtu) {
  auto peers = threePeers();
  auto* n4 = peers.add_peers();
  n4->set_node_name("n4");
  n4->set_node_ip("198.51.100.14");
  n4->set_overlay_ip("10.244.4.0");
  peers.mutable_peers(1)->set_vxlan_mtu(1450);  // n2
  n4->set_vxlan_mtu(1400);                      // smaller than this node's device
  auto targets = targetsFromPeers(peers, "n1", 1450);
  ASSERT_EQ(targets.size(), 5u);            // n2 u+o, n3 u, n4 u+o
  EXPECT_EQ(targets[0].path_mtu_size, 0u);  // underlay: never
  EXPECT_EQ(targets[1].layer, Layer::kOverlay);
  EXPECT_EQ(targets[1].path_mtu_size, 1450u);
  EXPECT_EQ(targets[2].path_mtu_size, 0u);
  EXPECT_EQ(targets[4].peer, "n4");
  EXPECT_EQ(targets[4].path_mtu_size, 1400u);  // min(1450, 1400)
  // This node's MTU not known yet (before its first device read): the peer's alone.
  EXPECT_EQ(targetsFromPeers(peers, "n1", 0)[4].path_mtu_size, 1400u);
  // A peer that did not report its MTU: this node's alone; neither known: no DF probes.
  peers.mutable_peers(1)->set_vxlan_mtu(0);
  EXPECT_EQ(targetsFromPeers(peers, "n1", 1380)[1].path_mtu_size, 1380u);
  EXPECT_EQ(targetsFromPeers(peers, "n1", 0)[1].path_mtu_size, 0u);
  EXPECT_EQ(overlayPathMtu(1450, 9000), 1450u);
  EXPECT_EQ(overlayPathMtu(0, 0), 0u);
}

TEST(ReportBuilder, PathMtuStatsMapToTheProbeResult) {
  TargetStats s;
  s.target = {"n2", Layer::kOverlay, "10.244.2.0", 1450};
  s.window_probes = 10;
  s.path_mtu.size = 1450;
  s.path_mtu.sent = 7;
  s.path_mtu.received = 4;
  s.path_mtu.consecutive_failures = 3;
  s.path_mtu.last_success = std::chrono::system_clock::time_point(std::chrono::seconds(1700000000));
  s.path_mtu.last_error = "send 1450 bytes with DF: EMSGSIZE (path MTU 1400)";
  auto p = toProto(s);
  ASSERT_TRUE(p.has_path_mtu());
  EXPECT_EQ(p.path_mtu().size(), 1450u);
  EXPECT_EQ(p.path_mtu().sent(), 7u);
  EXPECT_EQ(p.path_mtu().received(), 4u);
  EXPECT_EQ(p.path_mtu().consecutive_failures(), 3u);
  EXPECT_EQ(p.path_mtu().last_success().seconds(), 1700000000);
  EXPECT_EQ(p.path_mtu().error(), "send 1450 bytes with DF: EMSGSIZE (path MTU 1400)");
  // The regular probe result is not affected by the DF probes' failures.
  EXPECT_EQ(p.consecutive_failures(), 0u);
  EXPECT_TRUE(p.error().empty());
  EXPECT_EQ(p.loss(), 0.0);

  s.path_mtu.consecutive_failures = 0;  // passing again: the old error is history
  auto ok = toProto(s);
  EXPECT_TRUE(ok.path_mtu().error().empty());
  EXPECT_EQ(ok.path_mtu().consecutive_failures(), 0u);

  TargetStats underlay;
  underlay.target = {"n2", Layer::kUnderlay, "198.51.100.12"};
  EXPECT_FALSE(toProto(underlay).has_path_mtu());
}

TEST(ReportBuilder, LastProbeTimeGoesOnTheProbeResult) {
  TargetStats s;
  s.target = {"n2", Layer::kUnderlay, "198.51.100.12"};
  EXPECT_FALSE(toProto(s).has_last_probe());  // never probed yet
  s.last_probe = std::chrono::system_clock::time_point(std::chrono::milliseconds(1700000000250));
  s.last_success = std::chrono::system_clock::time_point(std::chrono::seconds(1699999990));
  auto p = toProto(s);
  ASSERT_TRUE(p.has_last_probe());
  EXPECT_EQ(p.last_probe().seconds(), 1700000000);
  EXPECT_EQ(p.last_probe().nanos(), 250000000);
  EXPECT_EQ(p.last_success().seconds(), 1699999990);
}

TEST(ReportBuilder, FailureReasonsGoBesideTheErrorText) {
  TargetStats s;
  s.target = {"n3", Layer::kUnderlay, "198.51.100.13"};
  s.window_probes = 5;
  s.loss = 1.0;
  s.consecutive_failures = 4;
  s.last_error = "no reply within 800ms";
  s.last_failure = ProbeFailure::kTimeout;
  s.tcp_reachable = false;
  s.tcp_error = "connection refused";
  s.tcp_failure = ProbeFailure::kRefused;
  auto p = toProto(s);
  EXPECT_EQ(p.error(), "no reply within 800ms (TCP connect failed: connection refused)");  // as older aggregators read it
  EXPECT_EQ(p.failure(), meshprobe::v1::PROBE_FAILURE_TIMEOUT);
  EXPECT_EQ(p.tcp_failure(), meshprobe::v1::PROBE_FAILURE_REFUSED);

  s.tcp_reachable = true;  // TCP works: UDP filtered, no TCP failure
  s.tcp_failure = ProbeFailure::kNone;
  EXPECT_EQ(toProto(s).tcp_failure(), meshprobe::v1::PROBE_FAILURE_UNSPECIFIED);
  EXPECT_EQ(toProto(s).failure(), meshprobe::v1::PROBE_FAILURE_TIMEOUT);

  s.consecutive_failures = 0;  // answering again: no reason, no text
  EXPECT_EQ(toProto(s).failure(), meshprobe::v1::PROBE_FAILURE_UNSPECIFIED);
  EXPECT_TRUE(toProto(s).error().empty());

  TargetStats df;
  df.target = {"n2", Layer::kOverlay, "10.244.2.0", 1450};
  df.path_mtu.size = 1450;
  df.path_mtu.consecutive_failures = 3;
  df.path_mtu.last_error = "send 1450 bytes with DF: EMSGSIZE (path MTU 1400)";
  df.path_mtu.last_failure = ProbeFailure::kMessageTooLong;
  EXPECT_EQ(toProto(df).path_mtu().failure(), meshprobe::v1::PROBE_FAILURE_MESSAGE_TOO_LONG);
}

TEST(ReportBuilder, ProbeFailureOfErrno) {
  EXPECT_EQ(probeFailureOf(ECONNREFUSED), ProbeFailure::kRefused);
  EXPECT_EQ(probeFailureOf(ENETUNREACH), ProbeFailure::kUnreachable);
  EXPECT_EQ(probeFailureOf(EHOSTUNREACH), ProbeFailure::kUnreachable);
  EXPECT_EQ(probeFailureOf(EMSGSIZE), ProbeFailure::kMessageTooLong);
  EXPECT_EQ(probeFailureOf(ETIMEDOUT), ProbeFailure::kTimeout);
  EXPECT_EQ(probeFailureOf(EPERM), ProbeFailure::kOther);
}

TEST(ReportBuilder, HelloCarriesTheIdentityBothWays) {
  AgentConfig config;
  config.node_name = "n5";
  config.node_ip = "198.51.100.15";
  auto h = buildHello(config, nullptr, "10.244.5.1/24");
  ASSERT_TRUE(h.has_identity());
  EXPECT_EQ(h.identity().name(), "n5");
  EXPECT_EQ(h.identity().node_ip(), "198.51.100.15");
  EXPECT_EQ(h.identity().pod_cidr(), "10.244.5.0/24");
  EXPECT_EQ(h.node_name(), "n5");  // the flat fields stay filled for older aggregators
  EXPECT_EQ(h.pod_cidr(), "10.244.5.0/24");
}

TEST(ReportBuilder, PeersAreReadFromTheIdentityOrFromAnOlderAggregatorsFlatFields) {
  const auto flat = threePeers();  // an older aggregator: flat fields only
  auto with_identity = flat;
  for (auto& p : *with_identity.mutable_peers()) {
    *p.mutable_identity() = identityOf(p);
    p.clear_node_ip();  // a newer aggregator may stop filling the flat fields
    p.clear_overlay_ip();
  }
  const auto a = targetsFromPeers(flat, "n1"), b = targetsFromPeers(with_identity, "n1");
  ASSERT_EQ(a.size(), 3u);
  ASSERT_EQ(b.size(), a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].peer, b[i].peer);
    EXPECT_EQ(a[i].layer, b[i].layer);
    EXPECT_EQ(a[i].address, b[i].address);
  }
  const auto ea = expectationsFromPeers(flat, "n1"), eb = expectationsFromPeers(with_identity, "n1");
  ASSERT_EQ(eb.size(), ea.size());
  EXPECT_EQ(eb[0].node_ip, ea[0].node_ip);
  EXPECT_EQ(eb[0].overlay_ip, ea[0].overlay_ip);
}

TEST(ReportBuilder, CoverageIsTheRotationsRoundsTimesTheInterval) {
  using google::protobuf::util::TimeUtil;
  meshprobe::v1::Report r;
  ProbeRotationStatus sparse;
  sparse.sparse = true;
  sparse.coverage_rounds = 7;
  setCoverage(r, sparse, std::chrono::milliseconds(1500));
  EXPECT_EQ(TimeUtil::DurationToMilliseconds(r.coverage_period()), 10'500);
  EXPECT_EQ(TimeUtil::DurationToMilliseconds(r.probe_interval()), 1'500);
  setCoverage(r, ProbeRotationStatus{}, std::chrono::seconds(1));  // full mesh: one interval
  EXPECT_EQ(TimeUtil::DurationToMilliseconds(r.coverage_period()), 1'000);
  ProbeRotationStatus zero;
  zero.coverage_rounds = 0;  // never below one round
  setCoverage(r, zero, std::chrono::seconds(2));
  EXPECT_EQ(TimeUtil::DurationToMilliseconds(r.coverage_period()), 2'000);
}

TEST(ReportBuilder, PodStatesMapOneToOne) {
  using P = meshprobe::v1::PodNetnsCapture;
  EXPECT_EQ(toProto(PodState::kCaptured), P::CAPTURED);
  EXPECT_EQ(toProto(PodState::kUncaptured), P::UNCAPTURED);
  EXPECT_EQ(toProto(PodState::kSidecar), P::SIDECAR);
  EXPECT_EQ(toProto(PodState::kRulesWithoutListeners), P::RULES_WITHOUT_LISTENERS);
  EXPECT_EQ(toProto(PodState::kListenersWithoutRules), P::LISTENERS_WITHOUT_RULES);
  EXPECT_EQ(toProto(PodState::kUnknown), P::UNKNOWN);
}

TEST(ReportBuilder, PodNetnsComeFromTheCheckThatCarriesThem) {
  CheckResult vxlan;
  vxlan.name = "vxlan_device";
  CheckResult ambient;
  ambient.name = "ambient_redirection";
  ambient.pod_captures = PodCaptures{};
  ambient.pod_captures->total = 3;  // 3 inspected, 2 listed (truncated)
  ambient.pod_captures->entries.push_back(
      PodCapture{"cni-a", {"10.244.1.7", "fd00::7"}, "", PodState::kCaptured, "rules and listeners"});
  ambient.pod_captures->entries.push_back(
      PodCapture{"pid:42", {}, "setns: EPERM", PodState::kUnknown, "cannot enter"});

  meshprobe::v1::Report report;
  setPodNetns(report, {vxlan, ambient});
  ASSERT_TRUE(report.has_pod_netns());
  const auto& pn = report.pod_netns();
  EXPECT_EQ(pn.total(), 3u);
  ASSERT_EQ(pn.entries_size(), 2);
  EXPECT_EQ(pn.entries(0).netns(), "cni-a");
  ASSERT_EQ(pn.entries(0).ips_size(), 2);
  EXPECT_EQ(pn.entries(0).ips(1), "fd00::7");
  EXPECT_EQ(pn.entries(0).state(), meshprobe::v1::PodNetnsCapture::CAPTURED);
  EXPECT_EQ(pn.entries(0).reason(), "rules and listeners");
  EXPECT_TRUE(pn.entries(0).ips_error().empty());
  EXPECT_EQ(pn.entries(1).netns(), "pid:42");
  EXPECT_EQ(pn.entries(1).state(), meshprobe::v1::PodNetnsCapture::UNKNOWN);
  EXPECT_EQ(pn.entries(1).ips_error(), "setns: EPERM");

  // No check with pod netns (ambient_redirection not run yet, or timed out): unset, so the
  // aggregator reads "unknown" rather than "no pods".
  meshprobe::v1::Report without;
  setPodNetns(without, {vxlan});
  EXPECT_FALSE(without.has_pod_netns());
  // An empty list is still a list: the check ran and found no pod netns.
  ambient.pod_captures = PodCaptures{};
  meshprobe::v1::Report empty;
  setPodNetns(empty, {ambient});
  EXPECT_TRUE(empty.has_pod_netns());
  EXPECT_EQ(empty.pod_netns().entries_size(), 0);
}
