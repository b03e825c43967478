#include "agent/checks/vxlan_device_check.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tests/unit/agent/netlink/netlink_test_util.h"

using namespace meshprobe;
using namespace meshprobe::agent;
using namespace meshprobe::agent::nltest;

namespace {

// A fake host root per test, so subnet.env can be present, absent or wrong.
class VxlanDeviceCheckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = std::filesystem::path(::testing::TempDir()) /
            ("mp-vxlan-device-" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    std::filesystem::remove_all(root_);
    std::filesystem::create_directories(root_);
    config_.host_root = root_.string();
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  void writeSubnetEnv(const std::string& text) {
    std::filesystem::create_directories(root_ / "run/flannel");
    std::ofstream(root_ / "run/flannel/subnet.env") << text;
  }

  CheckResult run(Result<NetlinkSnapshot> snap) {
    FakeNetlinkReader reader(std::move(snap));
    VxlanDeviceCheck check(config_, reader);
    EXPECT_EQ(check.name(), "vxlan_device");
    return check.run();
  }

  static LinkInfo& flannel(NetlinkSnapshot& s) { return *const_cast<LinkInfo*>(s.linkByName("flannel.1")); }

  std::filesystem::path root_;
  AgentConfig config_;
};

const Finding* findingWithCode(const CheckResult& r, std::string_view code) {
  for (const auto& f : r.findings) {
    if (f.code == code) return &f;
  }
  return nullptr;
}

}  // namespace

TEST_F(VxlanDeviceCheckTest, HealthyDeviceReportsItsFacts) {
  auto r = run(nodeSnapshot());
  EXPECT_EQ(r.status, CheckStatus::kOk) << r.summary;
  EXPECT_TRUE(r.findings.empty());
  EXPECT_NE(r.summary.find("flannel.1"), std::string::npos);
  EXPECT_NE(r.summary.find("4789"), std::string::npos);
  EXPECT_EQ(r.details["device"], "flannel.1");
  EXPECT_EQ(r.details["vni"], 1);
  EXPECT_EQ(r.details["port"], 4789);
  EXPECT_EQ(r.details["local"], "198.51.100.11");
  EXPECT_EQ(r.details["underlay"]["name"], "eth0");
  EXPECT_EQ(r.details["underlay"]["mtu"], 1500);
  EXPECT_EQ(r.details["mtu"], 1450);
  EXPECT_EQ(r.details["expected_mtu"], 1450);
  EXPECT_EQ(r.details["address"], "10.244.1.0");
  EXPECT_EQ(r.details["mac"], "6e:1f:00:00:01:00");
  EXPECT_EQ(r.details["flannel_subnet_file"]["present"], false);
  EXPECT_NE(r.details["flannel_subnet_file"]["note"].get<std::string>().find("not present"), std::string::npos);
}

TEST_F(VxlanDeviceCheckTest, CapturedNamespaceIsHealthy) {
  auto r = run(capturedSnapshot());
  EXPECT_EQ(r.status, CheckStatus::kOk) << r.summary;
  EXPECT_EQ(r.details["ifindex"], 4);
  EXPECT_EQ(r.details["underlay"]["name"], "eth0");
  EXPECT_EQ(r.details["address"], "10.244.1.0");
  EXPECT_EQ(r.details["learning"], false);
}

TEST_F(VxlanDeviceCheckTest, MissingDeviceFailsWithFinding) {
  auto snap = nodeSnapshot();
  snap.links.pop_back();  // no flannel.1, no VXLAN device at all
  auto r = run(snap);
  EXPECT_EQ(r.status, CheckStatus::kFail);
  EXPECT_NE(r.summary.find("flannel.1"), std::string::npos) << r.summary;
  const Finding* f = findingWithCode(r, codes::kVxlanDeviceMissing);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->layer, Layer::kOverlay);
  EXPECT_EQ(f->severity, Severity::kCritical);
  EXPECT_TRUE(f->nodes.empty());
  EXPECT_NE(f->remedy.find("flannel pod"), std::string::npos);
  EXPECT_FALSE(f->evidence.empty());
}

TEST_F(VxlanDeviceCheckTest, ConfiguredDeviceThatDoesNotExistFails) {
  config_.vxlan_device = "vxlan.calico";
  auto r = run(nodeSnapshot());
  EXPECT_EQ(r.status, CheckStatus::kFail);
  EXPECT_NE(r.summary.find("vxlan.calico"), std::string::npos);
  EXPECT_NE(findingWithCode(r, codes::kVxlanDeviceMissing), nullptr);
}

TEST_F(VxlanDeviceCheckTest, AdminDownFails) {
  config_.vxlan_device = "vxlan42";  // down in the captured namespace
  auto r = run(capturedSnapshot());
  EXPECT_EQ(r.status, CheckStatus::kFail);
  EXPECT_NE(r.summary.find("vxlan42 is down"), std::string::npos) << r.summary;
  EXPECT_NE(findingWithCode(r, codes::kVxlanDeviceMissing), nullptr);
  EXPECT_EQ(r.details["port"], 8472);  // facts are still reported
}

TEST_F(VxlanDeviceCheckTest, NoCarrierFails) {
  auto snap = nodeSnapshot();
  flannel(snap).lower_up = false;
  flannel(snap).operstate = "down";
  auto r = run(snap);
  EXPECT_EQ(r.status, CheckStatus::kFail);
  EXPECT_NE(r.summary.find("not operational"), std::string::npos) << r.summary;
  EXPECT_NE(findingWithCode(r, codes::kVxlanDeviceMissing), nullptr);
}

TEST_F(VxlanDeviceCheckTest, NotAVxlanDeviceFails) {
  config_.vxlan_device = "cni0";
  auto r = run(capturedSnapshot());
  EXPECT_EQ(r.status, CheckStatus::kFail);
  EXPECT_NE(r.summary.find("not a VXLAN device"), std::string::npos) << r.summary;
  EXPECT_NE(findingWithCode(r, codes::kVxlanDeviceMissing), nullptr);
}

TEST_F(VxlanDeviceCheckTest, OnlyVxlanDeviceIsChosenWhenNoFlannel) {
  auto snap = nodeSnapshot();
  flannel(snap).name = "vxlan.tigera";
  auto r = run(snap);
  EXPECT_EQ(r.status, CheckStatus::kOk) << r.summary;
  EXPECT_EQ(r.details["device"], "vxlan.tigera");
}

TEST_F(VxlanDeviceCheckTest, MtuAboveUnderlayFails) {
  auto snap = nodeSnapshot();
  flannel(snap).mtu = 1500;
  auto r = run(snap);
  EXPECT_EQ(r.status, CheckStatus::kFail);
  EXPECT_NE(r.summary.find("1500"), std::string::npos);
  EXPECT_NE(r.summary.find("1450"), std::string::npos);
  const Finding* f = findingWithCode(r, codes::kMtuMismatch);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->layer, Layer::kOverlay);
  // The same severity the aggregator gives the code (the finding catalogue's).
  EXPECT_EQ(f->severity, Severity::kWarning);
  EXPECT_EQ(findingWithCode(r, codes::kVxlanDeviceMissing), nullptr);
}

TEST_F(VxlanDeviceCheckTest, MtuBelowUnderlayWarns) {
  auto snap = nodeSnapshot();
  flannel(snap).mtu = 1400;
  auto r = run(snap);
  EXPECT_EQ(r.status, CheckStatus::kWarn);
  EXPECT_NE(r.summary.find("below"), std::string::npos) << r.summary;
  EXPECT_TRUE(r.findings.empty());
}

TEST_F(VxlanDeviceCheckTest, Ipv6UnderlayUses70BytesOverhead) {
  auto snap = nodeSnapshot();
  flannel(snap).vxlan->local = "2001:db8::11";
  flannel(snap).mtu = 1430;
  auto r = run(snap);
  EXPECT_EQ(r.status, CheckStatus::kOk) << r.summary;
  EXPECT_EQ(r.details["expected_mtu"], 1430);
}

TEST_F(VxlanDeviceCheckTest, UnderlayFoundByLocalAddressWhenNoLink) {
  auto snap = nodeSnapshot();
  flannel(snap).vxlan->underlay_ifindex = 0;
  auto r = run(snap);
  EXPECT_EQ(r.status, CheckStatus::kOk) << r.summary;
  EXPECT_EQ(r.details["underlay"]["name"], "eth0");
}

TEST_F(VxlanDeviceCheckTest, UnknownUnderlayWarns) {
  auto snap = nodeSnapshot();
  flannel(snap).vxlan->underlay_ifindex = 0;
  flannel(snap).vxlan->local = "";
  auto r = run(snap);
  EXPECT_EQ(r.status, CheckStatus::kWarn);
  EXPECT_NE(r.summary.find("MTU not compared"), std::string::npos) << r.summary;
}

TEST_F(VxlanDeviceCheckTest, SubnetEnvMatching) {
  writeSubnetEnv(
      "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n");
  auto r = run(nodeSnapshot());
  EXPECT_EQ(r.status, CheckStatus::kOk) << r.summary;
  EXPECT_EQ(r.details["flannel_subnet_file"]["present"], true);
  EXPECT_EQ(r.details["flannel_subnet_file"]["expected_address"], "10.244.1.0");
  EXPECT_EQ(r.details["flannel_subnet_file"]["mtu"], 1450);
}

TEST_F(VxlanDeviceCheckTest, SubnetEnvAddressMismatchWarns) {
  writeSubnetEnv("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.7.1/24\nFLANNEL_MTU=1450\n");
  auto r = run(nodeSnapshot());
  EXPECT_EQ(r.status, CheckStatus::kWarn);
  EXPECT_NE(r.summary.find("10.244.7.0"), std::string::npos) << r.summary;
  EXPECT_NE(r.summary.find("10.244.1.0"), std::string::npos) << r.summary;
}

TEST_F(VxlanDeviceCheckTest, SubnetEnvMtuMismatchWarns) {
  writeSubnetEnv("FLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1400\n");
  auto r = run(nodeSnapshot());
  EXPECT_EQ(r.status, CheckStatus::kWarn);
  EXPECT_NE(r.summary.find("FLANNEL_MTU 1400"), std::string::npos) << r.summary;
}

TEST_F(VxlanDeviceCheckTest, UnparsableSubnetEnvWarns) {
  writeSubnetEnv("this is not a subnet file\n");
  auto r = run(nodeSnapshot());
  EXPECT_EQ(r.status, CheckStatus::kWarn);
  EXPECT_NE(r.summary.find("subnet"), std::string::npos) << r.summary;
  EXPECT_TRUE(r.details["flannel_subnet_file"].contains("error"));
}

TEST_F(VxlanDeviceCheckTest, ReaderErrorFails) {
  auto r = run(Error{"links dump: timed out waiting for the kernel", ETIMEDOUT});
  EXPECT_EQ(r.status, CheckStatus::kFail);
  EXPECT_NE(r.summary.find("timed out"), std::string::npos);
  EXPECT_TRUE(r.findings.empty());  // cannot tell whether the device exists
}
