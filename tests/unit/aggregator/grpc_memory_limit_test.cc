// --grpc-memory-limit: the quantity parser, and an aggregator whose gRPC transport runs
// under a memory quota still taking in agents' whole reports.

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "aggregator/server.h"
#include "tests/unit/aggregator/server_fixture.h"
#include "tests/unit/aggregator/test_util.h"

namespace meshprobe::aggregator::testing {
namespace {

TEST(ParseByteQuantity, AcceptsBytesAndKubernetesSuffixes) {
  EXPECT_EQ(parseByteQuantity("0"), 0u);
  EXPECT_EQ(parseByteQuantity("1048576"), 1048576u);
  EXPECT_EQ(parseByteQuantity("512Ki"), 512u << 10);
  EXPECT_EQ(parseByteQuantity("128Mi"), 128u << 20);
  EXPECT_EQ(parseByteQuantity("2Gi"), 2ull << 30);
  EXPECT_EQ(parseByteQuantity("1Ti"), 1ull << 40);
  EXPECT_EQ(parseByteQuantity("500k"), 500'000u);
  EXPECT_EQ(parseByteQuantity("100M"), 100'000'000u);
  EXPECT_EQ(parseByteQuantity("3G"), 3'000'000'000u);
  EXPECT_EQ(parseByteQuantity("8388608Ti"), 1ull << 63);  // the largest accepted
}

TEST(ParseByteQuantity, RefusesAnythingElse) {
  for (const char* bad : {"", "Mi", "-1", "-64Mi", "1.5Gi", "64mi", "64MB", "64 Mi", " 64Mi", "64Mi ", "0x10",
                          "8388609Ti", "99999999999999999999", "1e9"}) {
    EXPECT_FALSE(parseByteQuantity(bad).has_value()) << "'" << bad << "'";
  }
}

// The quota is what gRPC charges its read buffers to: a 12,000-probe whole report from each
// of several agents, each on its own connection (about 0.34 MB each, so several of gRPC's
// 64 KiB read slices per connection), arrives and is applied under the smallest limit
// main() accepts.
TEST(GrpcMemoryLimit, AnAggregatorUnderTheSmallestLimitTakesInWholeReports) {
  FakeClock clock;
  ServerOptions options;
  options.grpc_listen = "127.0.0.1:0";
  options.cluster.stale_after = std::chrono::seconds(10);
  options.membership_window = std::chrono::milliseconds(0);
  options.grpc_memory_limit = kMinGrpcMemoryLimit;
  AggregatorServer server(clock, options);
  auto port = server.start();
  ASSERT_TRUE(port.ok()) << port.error().message;
  const std::string address = "127.0.0.1:" + std::to_string(*port);
  auto query = v1::Query::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));

  constexpr int kAgents = 6;
  constexpr int kPeers = 6000;
  std::vector<std::unique_ptr<v1::Collector::Stub>> stubs;
  std::vector<std::unique_ptr<FakeAgent>> agents;
  for (int a = 1; a <= kAgents; ++a) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // a connection of its own, as agents have
    stubs.push_back(v1::Collector::NewStub(grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args)));
    agents.push_back(std::make_unique<FakeAgent>(*stubs.back()));
    ASSERT_TRUE(agents.back()->hello(makeHello("node" + std::to_string(a), a)));
    ASSERT_TRUE(agents.back()->readPeers().has_value()) << "node" << a << " got no PeerList";
  }
  for (int a = 1; a <= kAgents; ++a) {
    v1::Report report;
    report.set_sequence(1);
    for (int p = 1; p <= kPeers; ++p) {
      const std::string dst = p <= kAgents ? "node" + std::to_string(p) : "far" + std::to_string(p);
      *report.add_probes() = makeProbe(dst, v1::UNDERLAY, 10, 10);
      *report.add_probes() = makeProbe(dst, v1::OVERLAY, 10, 10);
    }
    ASSERT_GT(report.ByteSizeLong(), 300'000u);
    ASSERT_TRUE(agents[a - 1]->report(report)) << "node" << a;
  }
  // Every agent's cell to every other agent is OK once its whole report has been applied.
  EXPECT_TRUE(eventually([&] {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kRpcDeadline);
    v1::GetMatrixRequest req;
    req.set_layer(v1::OVERLAY);
    v1::GetMatrixResponse resp;
    if (!query->GetMatrix(&ctx, req, &resp).ok()) return false;
    for (int s = 1; s <= kAgents; ++s) {
      for (int d = 1; d <= kAgents; ++d) {
        if (s == d) continue;
        const v1::Cell* c = findCell(resp, "node" + std::to_string(s), "node" + std::to_string(d));
        if (c == nullptr || c->state() != v1::Cell::OK) return false;
      }
    }
    return true;
  }));
  for (auto& agent : agents) EXPECT_TRUE(agent->finish().ok());
  server.shutdown();
}

}  // namespace
}  // namespace meshprobe::aggregator::testing
