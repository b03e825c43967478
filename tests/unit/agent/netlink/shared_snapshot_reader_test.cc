// One snapshot per check round: SharedSnapshotReader over a counting source, and the
// vxlan checks sharing one read when they run concurrently in a round.

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "agent/checks/vxlan_device_check.h"
#include "agent/checks/vxlan_fdb_check.h"
#include "tests/unit/agent/netlink/netlink_test_util.h"

using namespace meshprobe;
using namespace meshprobe::agent;
using namespace meshprobe::agent::nltest;

namespace {

struct CountingSource {
  std::atomic<int> reads{0};
  bool fail = false;
  SharedSnapshotReader::Source source() {
    return [this]() -> Result<SnapshotPtr> {
      const int n = ++reads;
      if (fail) return Error{"dump " + std::to_string(n) + " failed", EIO};
      auto snap = std::make_shared<NetlinkSnapshot>(capturedSnapshot());
      snap->links.front().mtu = static_cast<uint32_t>(n);  // tells reads apart
      return SnapshotPtr(std::move(snap));
    };
  }
};

}  // namespace

TEST(SharedSnapshotReader, WithoutRoundsEverySequentialReadReachesTheSource) {
  CountingSource src;
  SharedSnapshotReader reader(src.source());
  ASSERT_TRUE(reader.view().ok());
  ASSERT_TRUE(reader.snapshot().ok());
  EXPECT_EQ(src.reads, 2);
}

TEST(SharedSnapshotReader, OneReadPerRoundSharedByEveryReader) {
  CountingSource src;
  SharedSnapshotReader reader(src.source());
  reader.beginRound();
  std::vector<SnapshotPtr> seen(8);
  {
    std::vector<std::jthread> threads;
    for (size_t i = 0; i < seen.size(); ++i) {
      threads.emplace_back([&, i] {
        auto v = reader.view();
        ASSERT_TRUE(v.ok());
        seen[i] = *v;
      });
    }
  }
  EXPECT_EQ(src.reads, 1);
  for (const auto& p : seen) EXPECT_EQ(p.get(), seen.front().get());
  auto copy = reader.snapshot();  // a copy of the same round's snapshot
  ASSERT_TRUE(copy.ok());
  EXPECT_EQ(copy->links.front().mtu, 1u);
  EXPECT_EQ(src.reads, 1);

  reader.beginRound();
  auto next = reader.view();
  ASSERT_TRUE(next.ok());
  EXPECT_NE(next->get(), seen.front().get());
  EXPECT_EQ((*next)->links.front().mtu, 2u);
  EXPECT_EQ(src.reads, 2);
  EXPECT_EQ(reader.rounds(), 2u);
  EXPECT_EQ(reader.sourceReads(), 2u);
}

TEST(SharedSnapshotReader, AFailedReadIsTheRoundsAnswerAndTheNextRoundRetries) {
  CountingSource src;
  src.fail = true;
  SharedSnapshotReader reader(src.source());
  reader.beginRound();
  auto a = reader.view();
  auto b = reader.view();
  ASSERT_FALSE(a.ok());
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(a.error().message, b.error().message);
  EXPECT_EQ(src.reads, 1);
  src.fail = false;
  reader.beginRound();
  EXPECT_TRUE(reader.view().ok());
  EXPECT_EQ(src.reads, 2);
}

TEST(SharedSnapshotReader, ChecksOfOneRoundShareOneRead) {
  CountingSource src;
  SharedSnapshotReader reader(src.source());
  AgentConfig config;
  config.host_root = ::testing::TempDir();
  VxlanDeviceCheck device(config, reader);
  VxlanFdbCheck fdb(config, reader);
  for (int round = 1; round <= 3; ++round) {
    reader.beginRound();
    std::jthread a([&] { device.run(); });
    std::jthread b([&] { fdb.run(); });
    a.join();
    b.join();
    EXPECT_EQ(src.reads, round);
  }
}
