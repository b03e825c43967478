// The kernel reader against the test process's own network namespace: rtnetlink dumps
// need no privileges, and every namespace has a loopback device.

#include "agent/kernel/netlink_reader.h"

#include <gtest/gtest.h>

#include "agent/kernel/netlink_dump.h"
#include "agent/kernel/netlink_parse.h"

using namespace meshprobe;
using namespace meshprobe::agent;
using namespace std::chrono_literals;

TEST(KernelNetlinkReader, SnapshotHasLoopback) {
  auto reader = makeKernelNetlinkReader(2s);
  auto snap = reader->snapshot();
  ASSERT_TRUE(snap.ok()) << snap.error().message;
  const LinkInfo* lo = snap->linkByName("lo");
  ASSERT_NE(lo, nullptr);
  EXPECT_GT(lo->ifindex, 0);
  EXPECT_GT(lo->mtu, 0u);
  EXPECT_EQ(snap->linkByIndex(lo->ifindex), lo);
}

TEST(KernelNetlinkReader, ReadSnapshotAgreesWithRawDumps) {
  auto raw = dumpAll(2s);
  ASSERT_TRUE(raw.ok()) << raw.error().message;
  auto sequential = parseSnapshot(*raw);
  ASSERT_TRUE(sequential.ok()) << sequential.error().message;
  auto direct = readSnapshot(2s);
  ASSERT_TRUE(direct.ok()) << direct.error().message;
  ASSERT_EQ(direct->links.size(), sequential->links.size());
  for (size_t i = 0; i < direct->links.size(); ++i) EXPECT_EQ(direct->links[i].name, sequential->links[i].name);
  EXPECT_EQ(direct->addresses.size(), sequential->addresses.size());
}

TEST(KernelNetlinkReader, ExpiredDeadlineIsATimeoutError) {
  auto dumper = RtnetlinkDumper::open();
  ASSERT_TRUE(dumper.ok()) << dumper.error().message;
  auto r = dumper->dump(DumpKind::kLinks, std::chrono::steady_clock::now() - 1ms);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().sys_errno, ETIMEDOUT);
  EXPECT_NE(r.error().message.find("links dump"), std::string::npos);
  // The kernel may still be mid-dump on that socket (it would say EBUSY): the dumper
  // refuses with a clear error, and a new one works.
  auto again = dumper->dump(DumpKind::kLinks, std::chrono::steady_clock::now() + 2s);
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.error().message.find("unusable after an earlier failed dump"), std::string::npos);
  auto fresh = RtnetlinkDumper::open();
  ASSERT_TRUE(fresh.ok());
  auto bytes = fresh->dump(DumpKind::kLinks, std::chrono::steady_clock::now() + 2s);
  ASSERT_TRUE(bytes.ok()) << bytes.error().message;
  auto links = parseLinkDump(*bytes);
  ASSERT_TRUE(links.ok()) << links.error().message;
  EXPECT_FALSE(links->empty());
}

TEST(KernelNetlinkReader, ZeroTimeoutFailsInsteadOfHanging) {
  auto snap = makeKernelNetlinkReader(0ms)->snapshot();
  ASSERT_FALSE(snap.ok());
  EXPECT_NE(snap.error().message.find("timed out"), std::string::npos) << snap.error().message;
}

TEST(KernelNetlinkReader, EveryDumpKindHasAName) {
  EXPECT_EQ(dumpKindName(DumpKind::kLinks), "links");
  EXPECT_EQ(dumpKindName(DumpKind::kAddresses), "addresses");
  EXPECT_EQ(dumpKindName(DumpKind::kNeighbours), "neighbours");
  EXPECT_EQ(dumpKindName(DumpKind::kFdb), "fdb");
  EXPECT_EQ(dumpKindName(DumpKind::kRoutes), "routes");
}
