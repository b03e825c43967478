// The pod's addresses as the ambient_redirection check reads them in its netns (through
// the AddressSource seam), and what the check hands to the report (PodCaptures).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include "agent/ambient/inspector.h"
#include "agent/checks/ambient_redirection_check.h"
#include "tests/support/fakes/command_runner.h"
#include "tests/support/fakes/sock_diag.h"

using namespace meshprobe;
using namespace meshprobe::agent;
using meshprobe::test::FakeCommandRunner;
using meshprobe::test::FakeSockDiag;
using namespace std::chrono_literals;

namespace {

AddressInfo addr(int ifindex, int family, std::string ip, int scope = RT_SCOPE_UNIVERSE) {
  AddressInfo a;
  a.ifindex = ifindex;
  a.family = family;
  a.address = std::move(ip);
  a.prefixlen = family == AF_INET ? 24 : 64;
  a.scope = scope;
  return a;
}

// What `ip addr` shows in a flannel pod's netns: lo (ifindex 1) and eth0 with an IPv4, a
// global IPv6 and its link-local IPv6.
std::vector<AddressInfo> podNetnsAddresses() {
  return {addr(1, AF_INET, "127.0.0.1", RT_SCOPE_HOST), addr(1, AF_INET6, "::1", RT_SCOPE_HOST),
          addr(3, AF_INET, "10.244.1.7"), addr(3, AF_INET6, "fd00:10:244:1::7"),
          addr(3, AF_INET6, "fe80::a8f1:2ff:fe3c:1", RT_SCOPE_LINK)};
}

std::vector<InetSocket> ztunnelListening() {
  std::vector<InetSocket> out;
  for (uint16_t p : kZtunnelInpodPorts) {
    InetSocket s;
    s.state = 10;  // TCP_LISTEN
    s.local_port = p;
    out.push_back(s);
  }
  return out;
}

CommandOutput ran(std::string out) {
  CommandOutput o;
  o.exit_code = 0;
  o.out = std::move(out);
  return o;
}

// Istio 1.24's in-pod nat chains, as iptables-nft-save prints them (enough for a verdict).
const char* kInpodNat =
    "*nat\n"
    ":PREROUTING ACCEPT [0:0]\n"
    ":OUTPUT ACCEPT [0:0]\n"
    ":ISTIO_OUTPUT - [0:0]\n"
    ":ISTIO_PRERT - [0:0]\n"
    "-A PREROUTING -j ISTIO_PRERT\n"
    "-A OUTPUT -j ISTIO_OUTPUT\n"
    "-A ISTIO_OUTPUT -p tcp -j REDIRECT --to-ports 15001\n"
    "-A ISTIO_PRERT -p tcp -j REDIRECT --to-ports 15006\n"
    "COMMIT\n";

PodReport podReport(const std::string& name, PodInspection in) {
  PodReport r;
  r.pod = PodNetns{name, "/var/run/netns/" + name, {}};
  r.inspection = std::move(in);
  r.verdict = classifyPod(r.inspection);
  return r;
}

PodInspection capturedWith(std::vector<std::string> ips) {
  PodInspection in;
  in.rules = IstioRules{};
  in.rules->present = true;
  in.rules->mode = RedirectMode::kRedirect;
  in.rules->ports = {15001, 15006};
  in.listeners = std::vector<uint16_t>{15001, 15006, 15008};
  in.addresses = std::move(ips);
  return in;
}

const NetnsSources kSources{"/var/run/netns", "/proc", "/proc/self/ns/net", "/proc/1/ns/net"};

}  // namespace

TEST(PodAddresses, GlobalAddressesOfNonLoopbackInterfacesOnly) {
  EXPECT_EQ(podAddresses(podNetnsAddresses()), (std::vector<std::string>{"10.244.1.7", "fd00:10:244:1::7"}));
}

TEST(PodAddresses, LinkLocalByPrefixGlobalOnLoopbackAndNarrowerScopesAreLeftOut) {
  // A 169.254 address given global scope (ip addr add's default) is still link-local, a
  // global address on lo is not the pod's interface address, and host/site scope is not global.
  std::vector<AddressInfo> in = {addr(2, AF_INET, "169.254.7.127"),
                                 addr(1, AF_INET, "10.96.0.10"),
                                 addr(2, AF_INET6, "fe80::1"),
                                 addr(2, AF_INET, "10.244.2.9"),
                                 addr(4, AF_INET, "10.244.2.9"),  // the same IP twice: listed once
                                 addr(2, AF_INET, "10.9.9.9", RT_SCOPE_HOST),
                                 addr(2, AF_INET6, "fd00::9", RT_SCOPE_SITE)};
  EXPECT_EQ(podAddresses(in), std::vector<std::string>{"10.244.2.9"});
  EXPECT_TRUE(podAddresses({}).empty());
}

TEST(InspectCurrentNetns, ReadsAddressesThroughTheSeamBesideRulesAndListeners) {
  FakeCommandRunner cmd(FakeCommandRunner::kTimeoutRequired);
  cmd.by_program["iptables-nft-save"] = ran(kInpodNat);
  FakeSockDiag diag;
  diag.tcp_listeners = ztunnelListening();
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  std::vector<std::chrono::steady_clock::time_point> asked;
  AddressSource source = [&](std::chrono::steady_clock::time_point d) -> Result<std::vector<AddressInfo>> {
    asked.push_back(d);
    return podNetnsAddresses();
  };
  PodInspection in = inspectCurrentNetns(cmd, diag, source, deadline);
  ASSERT_EQ(asked.size(), 1u);
  EXPECT_EQ(asked[0], deadline) << "the address dump is bounded by the inspection's deadline";
  ASSERT_TRUE(in.addresses);
  EXPECT_EQ(*in.addresses, (std::vector<std::string>{"10.244.1.7", "fd00:10:244:1::7"}));
  EXPECT_TRUE(in.addresses_error.empty());
  EXPECT_EQ(classifyPod(in).state, PodState::kCaptured) << classifyPod(in).reason;
}

TEST(InspectCurrentNetns, AnAddressDumpErrorLeavesTheVerdictAlone) {
  FakeCommandRunner cmd;
  cmd.by_program["iptables-nft-save"] = ran(kInpodNat);
  FakeSockDiag diag;
  diag.tcp_listeners = ztunnelListening();
  AddressSource failing = [](std::chrono::steady_clock::time_point) -> Result<std::vector<AddressInfo>> {
    return Error{"address dump: timed out", ETIMEDOUT};
  };
  PodInspection in = inspectCurrentNetns(cmd, diag, failing, std::chrono::steady_clock::now() + 5s);
  EXPECT_FALSE(in.addresses);
  EXPECT_EQ(in.addresses_error, "address dump: timed out");
  EXPECT_EQ(classifyPod(in).state, PodState::kCaptured);
}

TEST(PodCapturesOfACheckRun, NameIpsStateAndReasonPerPodInOrder) {
  PodInspection no_entry;
  no_entry.error = "open /var/run/netns/cni-c: No such file or directory";
  PodInspection no_addresses = capturedWith({});
  no_addresses.addresses.reset();
  no_addresses.addresses_error = "address dump: timed out";
  std::vector<PodReport> pods = {podReport("cni-a", capturedWith({"10.244.1.7"})), podReport("cni-b", no_addresses),
                                 podReport("cni-c", no_entry)};
  PodCaptures c = podCaptures(pods);
  EXPECT_EQ(c.total, 3u);
  ASSERT_EQ(c.entries.size(), 3u);
  EXPECT_EQ(c.entries[0].netns, "cni-a");
  EXPECT_EQ(c.entries[0].ips, std::vector<std::string>{"10.244.1.7"});
  EXPECT_EQ(c.entries[0].state, PodState::kCaptured);
  EXPECT_EQ(c.entries[0].reason, pods[0].verdict.reason);
  EXPECT_TRUE(c.entries[0].ips_error.empty());
  EXPECT_EQ(c.entries[1].ips_error, "address dump: timed out");
  EXPECT_EQ(c.entries[2].state, PodState::kUnknown);
  EXPECT_EQ(c.entries[2].ips_error, no_entry.error) << "a netns not entered: why its addresses are unknown";
}

TEST(PodCapturesOfACheckRun, TheCheckResultCarriesThemAndTheDetailsShowTheIps) {
  auto r = evaluateAmbientRedirection(kSources, {}, {podReport("cni-a", capturedWith({"10.244.1.7", "fd00::7"}))});
  ASSERT_TRUE(r.pod_captures);
  ASSERT_EQ(r.pod_captures->entries.size(), 1u);
  EXPECT_EQ(r.pod_captures->entries[0].ips, (std::vector<std::string>{"10.244.1.7", "fd00::7"}));
  EXPECT_EQ(r.details["pods"][0]["ips"], nlohmann::json::array({"10.244.1.7", "fd00::7"}));
  EXPECT_FALSE(r.details.contains("pod_netns_truncated"));

  // No pod netns at all: an empty list, still set (the report then says "none found").
  auto none = evaluateAmbientRedirection(kSources, {}, {});
  ASSERT_TRUE(none.pod_captures);
  EXPECT_TRUE(none.pod_captures->entries.empty());
  EXPECT_EQ(none.pod_captures->total, 0u);
}

TEST(PodCapturesOfACheckRun, MoreThanTheLimitAreTruncatedAndTheDetailsSaySo) {
  std::vector<PodReport> pods;
  for (size_t i = 0; i < kMaxPodCaptures + 5; ++i) {
    pods.push_back(podReport("cni-" + std::to_string(i), capturedWith({"10.244.9." + std::to_string(i % 250)})));
  }
  auto r = evaluateAmbientRedirection(kSources, {}, pods);
  ASSERT_TRUE(r.pod_captures);
  EXPECT_EQ(r.pod_captures->entries.size(), kMaxPodCaptures);
  EXPECT_EQ(r.pod_captures->total, kMaxPodCaptures + 5);
  EXPECT_EQ(r.pod_captures->entries.back().netns, "cni-" + std::to_string(kMaxPodCaptures - 1));
  ASSERT_TRUE(r.details.contains("pod_netns_truncated"));
  EXPECT_EQ(r.details["pod_netns_truncated"], "Report.pod_netns lists only the first 1024 of 1029 pod netns");
}
