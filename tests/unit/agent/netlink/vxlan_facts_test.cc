#include "agent/checks/vxlan_facts.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tests/unit/agent/netlink/netlink_test_util.h"

using namespace meshprobe;
using namespace meshprobe::agent;
using namespace meshprobe::agent::nltest;

TEST(FlannelSubnetEnv, ParsesFlannelsFile) {
  auto env = parseFlannelSubnetEnv(
      "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n");
  ASSERT_TRUE(env.ok()) << env.error().message;
  EXPECT_EQ(env->network, "10.244.0.0/16");
  EXPECT_EQ(env->subnet, "10.244.1.1/24");
  ASSERT_TRUE(env->mtu.has_value());
  EXPECT_EQ(*env->mtu, 1450u);
  ASSERT_TRUE(env->ipmasq.has_value());
  EXPECT_TRUE(*env->ipmasq);
}

TEST(FlannelSubnetEnv, ToleratesCommentsBlanksQuotesAndCrlf) {
  auto env = parseFlannelSubnetEnv("# written by flannel\r\n\r\nFLANNEL_SUBNET=\"10.244.3.1/24\"\r\nOTHER=x\r\n");
  ASSERT_TRUE(env.ok()) << env.error().message;
  EXPECT_EQ(env->subnet, "10.244.3.1/24");
  EXPECT_FALSE(env->mtu.has_value());
}

TEST(FlannelSubnetEnv, RejectsBadInput) {
  EXPECT_FALSE(parseFlannelSubnetEnv("").ok());
  EXPECT_FALSE(parseFlannelSubnetEnv("FLANNEL_NETWORK=10.244.0.0/16\n").ok());
  EXPECT_FALSE(parseFlannelSubnetEnv("FLANNEL_SUBNET=10.244.1.1\n").ok());
  EXPECT_FALSE(parseFlannelSubnetEnv("FLANNEL_SUBNET=10.244.1.1/33\n").ok());
  EXPECT_FALSE(parseFlannelSubnetEnv("FLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=big\n").ok());
  auto r = parseFlannelSubnetEnv("garbage line\n");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("line 1"), std::string::npos);
}

TEST(FlannelSubnetEnv, ReadMissingFileIsEnoent) {
  auto r = readFlannelSubnet("/nonexistent/meshprobe/subnet.env");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().sys_errno, ENOENT);
}

TEST(FlannelSubnetEnv, ReadFile) {
  const auto path = std::filesystem::path(::testing::TempDir()) / "mp-netlink-subnet.env";
  std::ofstream(path) << "FLANNEL_SUBNET=10.244.5.1/24\nFLANNEL_MTU=8950\n";
  auto r = readFlannelSubnet(path.string());
  std::filesystem::remove(path);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->subnet, "10.244.5.1/24");
  EXPECT_EQ(*r->mtu, 8950u);
}

TEST(VxlanFacts, Ipv4NetworkAddress) {
  EXPECT_EQ(ipv4NetworkAddress("10.244.1.1/24"), "10.244.1.0");
  EXPECT_EQ(ipv4NetworkAddress("10.244.1.129/25"), "10.244.1.128");
  EXPECT_EQ(ipv4NetworkAddress("10.244.1.1/32"), "10.244.1.1");
  EXPECT_EQ(ipv4NetworkAddress("10.244.1.1/0"), "0.0.0.0");
  EXPECT_EQ(ipv4NetworkAddress("10.244.1.1"), "");
  EXPECT_EQ(ipv4NetworkAddress("10.244.1.1/x"), "");
  EXPECT_EQ(ipv4NetworkAddress("2001:db8::/64"), "");
}

TEST(VxlanFacts, ChooseDeviceAndAddressOnCapture) {
  const auto snap = capturedSnapshot();
  AgentConfig config;
  auto choice = chooseVxlanDevice(snap, config);
  ASSERT_NE(choice.link, nullptr);
  EXPECT_EQ(choice.link->name, "flannel.1");
  EXPECT_EQ(deviceIPv4(snap, choice.link->ifindex), "10.244.1.0");
  const LinkInfo* underlay = vxlanUnderlay(snap, *choice.link);
  ASSERT_NE(underlay, nullptr);
  EXPECT_EQ(underlay->name, "eth0");
  EXPECT_EQ(vxlanOverhead(*choice.link->vxlan), 50u);
}

TEST(VxlanFacts, TwoVxlanDevicesWithoutFlannelNeedAFlag) {
  auto snap = capturedSnapshot();
  for (auto& l : snap.links) {
    if (l.name == "flannel.1") l.name = "vxlan1";
  }
  AgentConfig config;
  auto choice = chooseVxlanDevice(snap, config);
  EXPECT_EQ(choice.link, nullptr);
  EXPECT_NE(choice.reason.find("--vxlan-device"), std::string::npos);
}
