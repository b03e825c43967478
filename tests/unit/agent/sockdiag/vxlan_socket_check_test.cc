// vxlan_socket check logic with a fake NetlinkReader and SockDiag.

#include "agent/checks/vxlan_socket_check.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <fstream>
#include <iterator>

#include "agent/kernel/sock_diag_parse.h"
#include "tests/support/fakes/netlink.h"
#include "tests/support/fakes/sock_diag.h"

using namespace meshprobe;
using namespace meshprobe::agent;
using meshprobe::test::FakeNetlinkReader;
using meshprobe::test::FakeSockDiag;

namespace {

LinkInfo vxlanLink(const std::string& name, uint16_t port, int ifindex = 5) {
  LinkInfo l;
  l.ifindex = ifindex;
  l.name = name;
  l.kind = "vxlan";
  l.admin_up = l.lower_up = true;
  l.operstate = "unknown";
  l.mtu = 1450;
  l.vxlan = VxlanInfo{.vni = 1, .port = port, .local = "198.51.100.1", .underlay_ifindex = 2, .learning = false};
  return l;
}

InetSocket udp(int family, const std::string& addr, uint16_t port, uint64_t inode = 0) {
  InetSocket s;
  s.family = family;
  s.protocol = IPPROTO_UDP;
  s.state = TCP_CLOSE;
  s.local_address = addr;
  s.local_port = port;
  s.remote_address = family == AF_INET ? "0.0.0.0" : "::";
  s.inode = inode;
  return s;
}

struct VxlanSocketCheckTest : ::testing::Test {
  AgentConfig config;
  FakeNetlinkReader netlink;
  FakeSockDiag diag;
  CheckResult run() { return VxlanSocketCheck(config, netlink, diag).run(); }
  void device(uint16_t port) { netlink.snap->links = {vxlanLink("flannel.1", port)}; }
};

const Finding* findingWith(const CheckResult& r, std::string_view code) {
  for (const auto& f : r.findings)
    if (f.code == code) return &f;
  return nullptr;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

TEST_F(VxlanSocketCheckTest, OkWhenTheDevicePortIsBoundListingV4AndV6Separately) {
  device(4789);
  diag.udp = std::vector<InetSocket>{udp(AF_INET, "0.0.0.0", 4789, 100), udp(AF_INET, "0.0.0.0", 53, 101),
                                     udp(AF_INET6, "::", 4789, 102)};
  auto r = run();
  EXPECT_EQ(r.status, CheckStatus::kOk) << r.summary;
  EXPECT_EQ(r.name, "vxlan_socket");
  EXPECT_TRUE(contains(r.summary, "4789")) << r.summary;
  EXPECT_TRUE(contains(r.summary, "flannel.1")) << r.summary;
  EXPECT_TRUE(r.findings.empty());
  EXPECT_EQ(r.details["port"], 4789);
  EXPECT_EQ(r.details["device"], "flannel.1");
  ASSERT_EQ(r.details["ipv4"].size(), 1u);
  EXPECT_EQ(r.details["ipv4"][0]["local"], "0.0.0.0:4789");
  EXPECT_EQ(r.details["ipv4"][0]["inode"], 100);
  ASSERT_EQ(r.details["ipv6"].size(), 1u);
  EXPECT_EQ(r.details["ipv6"][0]["local"], "[::]:4789");
}

TEST_F(VxlanSocketCheckTest, UsesTheDevicesOwnPortNotAnAssumedOne) {
  device(8472);  // flannel's Linux default
  diag.udp = std::vector<InetSocket>{udp(AF_INET, "0.0.0.0", 4789)};
  auto r = run();
  EXPECT_EQ(r.status, CheckStatus::kFail) << r.summary;
  ASSERT_NE(findingWith(r, codes::kVxlanSocketMissing), nullptr);
  EXPECT_TRUE(contains(r.summary, "8472")) << r.summary;

  diag.udp = std::vector<InetSocket>{udp(AF_INET, "0.0.0.0", 8472)};
  r = run();
  EXPECT_EQ(r.status, CheckStatus::kOk) << r.summary;
  EXPECT_EQ(r.details["ipv6"].size(), 0u);
}

TEST_F(VxlanSocketCheckTest, MissingSocketFailsWithFindingInTheRunbooksWords) {
  device(4789);
  diag.udp = std::vector<InetSocket>{udp(AF_INET, "0.0.0.0", 53)};
  auto r = run();
  EXPECT_EQ(r.status, CheckStatus::kFail);
  EXPECT_TRUE(contains(r.summary, "4789") && contains(r.summary, "flannel.1")) << r.summary;
  const Finding* f = findingWith(r, codes::kVxlanSocketMissing);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->severity, Severity::kCritical);
  EXPECT_EQ(f->layer, Layer::kOverlay);
  EXPECT_TRUE(contains(f->summary, "4789") && contains(f->summary, "flannel.1")) << f->summary;
  EXPECT_TRUE(contains(f->remedy, "Restart the flannel pod on this node")) << f->remedy;
  EXPECT_TRUE(contains(f->remedy, "verify UDP 4789 is listening")) << f->remedy;
  EXPECT_TRUE(f->nodes.empty());
  EXPECT_FALSE(f->evidence.empty());
  EXPECT_EQ(r.details["ipv4"].size(), 0u);
}

TEST_F(VxlanSocketCheckTest, ConfiguredPortDifferentFromTheDeviceIsAConfigMismatch) {
  device(8472);
  config.vxlan_port = 4789;
  diag.udp = std::vector<InetSocket>{udp(AF_INET, "0.0.0.0", 8472)};
  auto r = run();
  EXPECT_EQ(r.status, CheckStatus::kFail);
  EXPECT_EQ(findingWith(r, codes::kVxlanSocketMissing), nullptr);  // the device's port is bound
  const Finding* f = findingWith(r, codes::kVxlanConfigMismatch);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->layer, Layer::kOverlay);
  EXPECT_TRUE(contains(f->summary, "8472") && contains(f->summary, "4789")) << f->summary;
  bool mentions_defaults = false;
  for (const auto& e : f->evidence) mentions_defaults |= contains(e, "Linux default is 8472") && contains(e, "4789");
  EXPECT_TRUE(mentions_defaults);
  EXPECT_TRUE(contains(r.summary, "8472") && contains(r.summary, "4789")) << r.summary;
  EXPECT_EQ(r.details["expected_port"], 4789);
}

TEST_F(VxlanSocketCheckTest, MismatchAndMissingSocketBothReported) {
  device(8472);
  config.vxlan_port = 4789;
  diag.udp = std::vector<InetSocket>{udp(AF_INET, "0.0.0.0", 4789)};
  auto r = run();
  EXPECT_EQ(r.status, CheckStatus::kFail);
  EXPECT_NE(findingWith(r, codes::kVxlanSocketMissing), nullptr);
  EXPECT_NE(findingWith(r, codes::kVxlanConfigMismatch), nullptr);
}

TEST_F(VxlanSocketCheckTest, MatchingConfiguredPortIsOk) {
  device(4789);
  config.vxlan_port = 4789;
  diag.udp = std::vector<InetSocket>{udp(AF_INET, "0.0.0.0", 4789)};
  auto r = run();
  EXPECT_EQ(r.status, CheckStatus::kOk) << r.summary;
  EXPECT_TRUE(r.findings.empty());
}

TEST_F(VxlanSocketCheckTest, NoVxlanDeviceSkipsAndLeavesItToVxlanDevice) {
  LinkInfo lo;
  lo.ifindex = 1;
  lo.name = "lo";
  netlink.snap->links = {lo};
  auto r = run();
  EXPECT_EQ(r.status, CheckStatus::kSkip);
  EXPECT_TRUE(contains(r.summary, "vxlan_device")) << r.summary;
  EXPECT_TRUE(r.findings.empty());
  EXPECT_EQ(diag.udp_calls, 0);
}

TEST_F(VxlanSocketCheckTest, ConfiguredDeviceThatIsNotVxlanSkips) {
  LinkInfo eth;
  eth.ifindex = 2;
  eth.name = "eth0";
  eth.kind = "veth";
  netlink.snap->links = {eth};
  config.vxlan_device = "eth0";
  auto r = run();
  EXPECT_EQ(r.status, CheckStatus::kSkip);
  EXPECT_TRUE(contains(r.summary, "eth0")) << r.summary;
}

TEST_F(VxlanSocketCheckTest, PicksTheOnlyVxlanDeviceWhenFlannelOneIsAbsent) {
  netlink.snap->links = {vxlanLink("vxlan0", 4790)};
  diag.udp = std::vector<InetSocket>{udp(AF_INET, "0.0.0.0", 4790)};
  auto r = run();
  EXPECT_EQ(r.status, CheckStatus::kOk) << r.summary;
  EXPECT_EQ(r.details["device"], "vxlan0");
}

TEST_F(VxlanSocketCheckTest, SnapshotFailureFailsWithTheError) {
  netlink.snap = Error{"netlink dump timed out after 500ms"};
  auto r = run();
  EXPECT_EQ(r.status, CheckStatus::kFail);
  EXPECT_TRUE(contains(r.summary, "netlink dump timed out after 500ms")) << r.summary;
  EXPECT_EQ(diag.udp_calls, 0);
}

TEST_F(VxlanSocketCheckTest, SockDiagFailureFailsWithTheError) {
  device(4789);
  diag.udp = Error{"socket(NETLINK_SOCK_DIAG): Operation not permitted", EPERM};
  auto r = run();
  EXPECT_EQ(r.status, CheckStatus::kFail);
  EXPECT_TRUE(contains(r.summary, "Operation not permitted")) << r.summary;
  EXPECT_TRUE(r.findings.empty());  // not evidence of a missing socket
}

// The captured UDP dump of a namespace with flannel.1 on 4789 (tests/data/sockdiag).
TEST_F(VxlanSocketCheckTest, CapturedDumpWithTheKernelVxlanSocketIsOk) {
  std::ifstream in(std::string(MESHPROBE_TEST_DATA) + "/sockdiag/udp4.bin", std::ios::binary);
  std::vector<uint8_t> bytes(std::istreambuf_iterator<char>(in), {});
  auto parsed = parseInetDiagDump(bytes, IPPROTO_UDP);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  diag.udp = *parsed;
  device(4789);
  auto r = run();
  EXPECT_EQ(r.status, CheckStatus::kOk) << r.summary;
  ASSERT_EQ(r.details["ipv4"].size(), 1u);
  EXPECT_EQ(r.details["ipv4"][0]["local"], "0.0.0.0:4789");
  device(8472);
  EXPECT_EQ(run().status, CheckStatus::kFail);
}

}  // namespace
