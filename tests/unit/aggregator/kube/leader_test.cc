// LeaderElector against the fake kube-apiserver's Leases on loopback HTTPS, on a FakeClock:
// the jitter is 0 here, so every retry is exactly RetryPeriod (2 s) of fake time. Before
// each advance the test polls (with a deadline) until the electors' threads are parked in
// the clock's wait, so a step of time never races a request in flight.
#include "aggregator/kube/leader.h"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include "tests/support/eventually.h"
#include "tests/support/fake_kube_apiserver.h"
#include "tests/support/mtls_pki.h"

namespace meshprobe::aggregator::kube {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using test::eventually;
using test::FakeKubeApiServer;

constexpr const char* kNs = "meshprobe";
constexpr const char* kName = "meshprobe-aggregator";

class LeaderElectorTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.start()); }
  void TearDown() override {
    electors_.clear();
    server_.stop();
  }

  LeaderElector& start(const std::string& identity) {
    KubeConfig c;
    c.server = server_.url();
    c.ca_file = test::mtlsFile("ca.pem");
    c.token = "good-token";
    auto client = KubeClient::create(c);
    EXPECT_TRUE(client) << client.error().message;
    LeaderElectionConfig cfg;
    cfg.identity = identity;
    cfg.random = [] { return 0.0; };
    EXPECT_EQ(validateLeaderElection(cfg), "");
    electors_.push_back(std::make_unique<LeaderElector>(*client, clock_, cfg));
    electors_.back()->start();
    return *electors_.back();
  }
  // Every running elector's thread is waiting on the clock.
  ::testing::AssertionResult parked(size_t n) {
    return eventually([&] { return clock_.waiters() == n; },
                      [&] { return "waiters=" + std::to_string(clock_.waiters()); });
  }
  // Advances by `d` once `n` threads are parked, then waits until they are parked again.
  void step(std::chrono::nanoseconds d, size_t n = 1) {
    ASSERT_TRUE(parked(n));
    clock_.advance(d);
    ASSERT_TRUE(parked(n));
  }
  json spec() const { return server_.lease(kNs, kName).value("spec", json::object()); }
  json otherHolds(const std::string& renew_time) const {
    return json{{"metadata", {{"namespace", kNs}, {"name", kName}}},
                {"spec",
                 {{"holderIdentity", "other"},
                  {"leaseDurationSeconds", 15},
                  {"acquireTime", "2001-01-01T00:00:00.000000Z"},
                  {"renewTime", renew_time},
                  {"leaseTransitions", 4}}}};
  }

  FakeClock clock_;
  FakeKubeApiServer server_;
  std::vector<std::unique_ptr<LeaderElector>> electors_;
};

TEST(MicroTime, ParsesRfc3339WithAFractionAndAnOffset) {
  const auto t = parseMicroTime("2027-01-15T08:00:02.123456Z");
  ASSERT_TRUE(t);
  EXPECT_EQ(formatMicroTime(*t), "2027-01-15T08:00:02.123456Z");
  EXPECT_EQ(parseMicroTime("2027-01-15T08:00:02Z"), parseMicroTime("2027-01-15T08:00:02.000Z"));
  EXPECT_EQ(parseMicroTime("2027-01-15T09:30:02.5+01:30"), parseMicroTime("2027-01-15T08:00:02.500000Z"));
  EXPECT_EQ(parseMicroTime("2027-01-15T06:00:02-02:00"), parseMicroTime("2027-01-15T08:00:02Z"));
  for (const char* bad : {"", "2027-01-15", "2027-01-15T08:00:02", "2027-13-15T08:00:02Z", "2027-02-30T08:00:02Z",
                          "2027-01-15T08:00:02.Z", "2027-01-15T08:00:02Zx", "2027-01-15 08:00:02Z"}) {
    EXPECT_FALSE(parseMicroTime(bad)) << bad;
  }
}

TEST(MicroTime, SixFractionalDigitsUtc) {
  const auto t = std::chrono::system_clock::time_point(std::chrono::seconds(1'800'000'000)) + 1234us;
  EXPECT_EQ(formatMicroTime(t), "2027-01-15T08:00:00.001234Z");
}

TEST(LeaderElectionConfigTest, RenewShorterThanLeaseRetryShorterThanRenew) {
  LeaderElectionConfig c;
  c.identity = "a";
  EXPECT_EQ(validateLeaderElection(c), "");
  c.renew_deadline = 15s;
  EXPECT_NE(validateLeaderElection(c).find("renew deadline must be shorter"), std::string::npos);
  c.renew_deadline = 10s;
  c.retry_period = 10s;
  EXPECT_NE(validateLeaderElection(c).find("retry period must be shorter"), std::string::npos);
}

TEST_F(LeaderElectorTest, AcquiresWhenThereIsNoLease) {
  LeaderElector& a = start("a");
  ASSERT_TRUE(eventually([&] { return a.isLeader(); }));
  EXPECT_EQ(a.leader(), "a");
  const json s = spec();
  EXPECT_EQ(s["holderIdentity"], "a");
  EXPECT_EQ(s["leaseDurationSeconds"], 15);
  EXPECT_EQ(s["leaseTransitions"], 0);
  EXPECT_EQ(s["acquireTime"], "2027-01-15T08:00:00.000000Z");  // the FakeClock's wall time
  EXPECT_EQ(s["renewTime"], s["acquireTime"]);
}

TEST_F(LeaderElectorTest, RenewsEveryRetryPeriodKeepingAcquireTime) {
  LeaderElector& a = start("a");
  ASSERT_TRUE(eventually([&] { return a.isLeader(); }));
  const std::string rv = server_.lease(kNs, kName)["metadata"]["resourceVersion"];
  step(2s);
  ASSERT_TRUE(
      eventually([&] { return spec()["renewTime"] == "2027-01-15T08:00:02.000000Z"; }, [&] { return spec().dump(); }));
  EXPECT_EQ(spec()["acquireTime"], "2027-01-15T08:00:00.000000Z");
  EXPECT_EQ(spec()["leaseTransitions"], 0);
  EXPECT_NE(server_.lease(kNs, kName)["metadata"]["resourceVersion"], rv);
  EXPECT_TRUE(a.isLeader());
}

TEST_F(LeaderElectorTest, FollowerWaitsLeaseDurationOnItsOwnClockNotTheLeaseTimestamps) {
  // renewTime is years old: an elector that trusted the leader's clock would take over at once.
  server_.putLease(otherHolds("2001-01-01T00:00:00.000000Z"));
  LeaderElector& b = start("b");
  ASSERT_TRUE(parked(1));
  EXPECT_FALSE(b.isLeader());
  EXPECT_EQ(b.leader(), "other");
  for (int i = 0; i < 4; ++i) step(2s);  // t = 8 s
  // The holder renews now (its clock: 8 s after its first renewTime). B reads it at t = 10 s
  // and dates it by the difference of the two renewTimes: t = 0 + 8 s, which lies between
  // its previous read (t = 8 s) and this one. The offset of the holder's clock (years)
  // cancels out. So the lease runs out at t = 23 s on B's clock, not at 25 s.
  server_.putLease(otherHolds("2001-01-01T00:00:08.000000Z"));
  for (int i = 0; i < 7; ++i) {  // t = 22 s
    step(2s);
    EXPECT_FALSE(b.isLeader()) << "at step " << i;
  }
  step(1s);  // t = 23 s: exactly the lease duration since the renewal
  EXPECT_FALSE(b.isLeader());
  EXPECT_EQ(spec()["holderIdentity"], "other");
  step(2ms);  // B woke at the expiry (+1 ms)
  ASSERT_TRUE(eventually([&] { return b.isLeader(); }));
  EXPECT_EQ(spec()["holderIdentity"], "b");
  EXPECT_EQ(spec()["leaseTransitions"], 5);  // a takeover counts one more
  EXPECT_EQ(spec()["acquireTime"], spec()["renewTime"]);
}

// client-go would try again only at its next retry (t = 28 s here); this elector also
// wakes when the Lease it last saw renewed turns LeaseDuration old on its clock (t = 27 s).
//
// The renewal is written at t = 10 s but says 8 s after the first: dated by the holder's
// clock it would be t = 8 s, before B's previous read (t = 10 s) still showed the old
// record — impossible, so B dates it as client-go does, when it saw it (t = 12 s).
TEST_F(LeaderElectorTest, FollowerTriesAgainWhenTheLeaseExpiresNotOnlyAtItsNextRetry) {
  server_.putLease(otherHolds("2001-01-01T00:00:00.000000Z"));
  LeaderElector& b = start("b");
  for (int i = 0; i < 5; ++i) step(2s);  // t = 10 s
  server_.putLease(otherHolds("2001-01-01T00:00:08.000000Z"));
  for (int i = 0; i < 7; ++i) step(2s);  // t = 24 s: B saw the renewal at t = 12 s
  EXPECT_FALSE(b.isLeader());
  step(1s);  // t = 25 s: 13 s since B saw the renewal
  EXPECT_FALSE(b.isLeader());
  step(1s);  // t = 26 s: no renewal for 14 s
  EXPECT_FALSE(b.isLeader());
  step(999ms);  // t = 26.999 s: still 1 ms short of the lease
  EXPECT_FALSE(b.isLeader());
  EXPECT_EQ(spec()["holderIdentity"], "other");
  step(2ms);  // 15 s + 1 ms: B tries at once, not at its retry at t = 28 s
  ASSERT_TRUE(eventually([&] { return b.isLeader(); }));
  EXPECT_EQ(spec()["holderIdentity"], "b");
}

TEST_F(LeaderElectorTest, StepsDownWhenNoRenewalSucceedsWithinRenewDeadline) {
  LeaderElector& a = start("a");
  ASSERT_TRUE(eventually([&] { return a.isLeader(); }));
  server_.forbid("update", "leases");
  // Renewal attempts at t = 2, 4, 6, 8, 10 s all get 403; the deadline (10 s from t = 2 s)
  // passes at t = 12 s.
  for (int i = 0; i < 5; ++i) {
    step(2s);
    EXPECT_TRUE(a.isLeader()) << "t=" << 2 * (i + 1) << "s";
  }
  step(2s);
  EXPECT_FALSE(a.isLeader());
  EXPECT_GT(server_.stats().forbidden, 4u);
  // Once it can write again it acquires again (the Lease still names it).
  server_.allowAll();
  step(2s);
  EXPECT_TRUE(eventually([&] { return a.isLeader(); }));
}

TEST_F(LeaderElectorTest, ConflictingUpdateIsRefusedAndRetriedLater) {
  LeaderElector& a = start("a");
  ASSERT_TRUE(eventually([&] { return a.isLeader(); }));
  const uint64_t conflicts_before = server_.stats().forbidden;  // unchanged: a conflict is not a denial
  // Another replica writes the Lease between A's GET and PUT: A's PUT carries a stale
  // resourceVersion and gets 409 Conflict; the other's record stays.
  server_.beforeNextLeaseUpdate([&] { server_.putLease(otherHolds("2027-01-15T08:00:02.000000Z")); });
  step(2s);
  EXPECT_EQ(spec()["holderIdentity"], "other");
  EXPECT_EQ(server_.stats().forbidden, conflicts_before);
  // Within RenewDeadline A is still the leader; its next GET shows "other" holding a
  // Lease that has not expired on A's clock, so it does not overwrite it and steps down
  // when the deadline passes.
  EXPECT_TRUE(a.isLeader());
  for (int i = 0; i < 5; ++i) step(2s);
  EXPECT_FALSE(a.isLeader());
  EXPECT_EQ(spec()["holderIdentity"], "other");
  EXPECT_EQ(a.leader(), "other");
}

TEST_F(LeaderElectorTest, ReleaseOnStopLetsTheFollowerTakeOverAtItsNextRetry) {
  LeaderElector& a = start("a");
  ASSERT_TRUE(eventually([&] { return a.isLeader(); }));
  LeaderElector& b = start("b");
  ASSERT_TRUE(parked(2));
  EXPECT_FALSE(b.isLeader());
  EXPECT_EQ(b.leader(), "a");
  a.stop();
  EXPECT_FALSE(a.isLeader());
  EXPECT_EQ(spec()["holderIdentity"], "");
  EXPECT_EQ(spec()["leaseDurationSeconds"], 1);
  EXPECT_EQ(spec()["leaseTransitions"], 0);
  step(2s);  // one retry, far less than the 15 s lease duration
  ASSERT_TRUE(eventually([&] { return b.isLeader(); }));
  EXPECT_EQ(spec()["holderIdentity"], "b");
  EXPECT_EQ(spec()["leaseTransitions"], 1);

  // And back: each change of holder counts.
  b.stop();
  LeaderElector& a2 = start("a");
  ASSERT_TRUE(eventually([&] { return a2.isLeader(); }));
  EXPECT_EQ(spec()["leaseTransitions"], 2);
}

TEST_F(LeaderElectorTest, TwoCandidatesOneLeader) {
  LeaderElector& a = start("a");
  LeaderElector& b = start("b");
  ASSERT_TRUE(eventually([&] { return a.isLeader() || b.isLeader(); }));
  ASSERT_TRUE(parked(2));
  for (int i = 0; i < 10; ++i) {
    step(2s, 2);
    EXPECT_NE(a.isLeader(), b.isLeader()) << "t=" << 2 * (i + 1) << "s";
  }
  EXPECT_EQ(spec()["leaseTransitions"], 0);
}

TEST_F(LeaderElectorTest, FakeApiServerLeaseErrorsAsTheApiserverWordsThem) {
  KubeConfig c;
  c.server = server_.url();
  c.ca_file = test::mtlsFile("ca.pem");
  c.token = "good-token";
  auto client = KubeClient::create(c);
  ASSERT_TRUE(client);
  const std::string path = "/apis/coordination.k8s.io/v1/namespaces/meshprobe/leases";
  auto run = [&](std::string method, std::string target, std::string body) {
    boost::asio::io_context ioc;
    std::optional<Result<HttpResult>> out;
    boost::asio::co_spawn(
        ioc, [&]() -> boost::asio::awaitable<void> { out = co_await (*client)->send(method, target, body); },
        boost::asio::detached);
    ioc.run();
    return out->value();
  };
  auto r = run("GET", path + "/x", "");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(json::parse(r.body)["message"], "leases.coordination.k8s.io \"x\" not found");
  const json lease = {{"metadata", {{"name", "x"}}}, {"spec", {{"holderIdentity", "h"}}}};
  EXPECT_EQ(run("POST", path, lease.dump()).status, 201);
  r = run("POST", path, lease.dump());
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(json::parse(r.body)["reason"], "AlreadyExists");
  json stale = lease;
  stale["metadata"]["resourceVersion"] = "1";
  r = run("PUT", path + "/x", stale.dump());
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(json::parse(r.body)["message"],
            "Operation cannot be fulfilled on leases.coordination.k8s.io \"x\": the object has been modified; please "
            "apply your changes to the latest version and try again");
  server_.forbid("update", "leases");
  r = run("PUT", path + "/x", lease.dump());
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(json::parse(r.body)["message"],
            "leases.coordination.k8s.io \"x\" is forbidden: User \"system:serviceaccount:meshprobe:aggregator\" "
            "cannot update resource \"leases\" in API group \"coordination.k8s.io\" in the namespace \"meshprobe\"");
}

}  // namespace
}  // namespace meshprobe::aggregator::kube
