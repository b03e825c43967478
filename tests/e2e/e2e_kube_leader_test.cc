// Two aggregators with --leader-elect behind a Service, end to end: both run in the control
// netns against the in-process fake kube-apiserver (its coordination.k8s.io Leases; started
// inside the control netns as in e2e_kube_test.cc), and real agents on three nodes reach
// them through a "Service".
//
// The Service is emulated as kube-proxy (iptables mode) does it for host-network clients
// such as the agents: a nat OUTPUT rule in every node's netns DNATs the virtual address
// CONTROL_IP:9480 to the one endpoint. The endpoints controller lists only Ready pods, so
// the endpoint is the aggregator whose /readyz answers 200, and the test (standing in for
// the kubelet's readiness probe + the endpoints controller + kube-proxy) rewrites the rule
// from /readyz each time it polls. Without a Ready endpoint there is no DNAT and a connect
// to the virtual port is refused, much as kube-proxy's REJECT for a Service without
// endpoints.
//
// The test: exactly one aggregator is Ready (the other answers 503 "follower: the leader is
// ..."); SIGKILL the leader by PID (no release: the follower must wait for the Lease to
// expire on its own clock); the other becomes Ready, the Service follows it, and every
// UNDERLAY and OVERLAY cell of its matrix is OK again. The times from the kill to Ready and
// to the complete matrix are printed (docs/operations.md, "High availability").

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>

#include "tests/e2e/kube_e2e.h"
#include "tests/e2e/mesh.h"
#include "tests/support/fake_kube_apiserver.h"

namespace meshprobe::e2e {
namespace {

constexpr int kMeshNodes = 3;
constexpr const char* kToken = "e2e-leader-token";
constexpr uint16_t kServicePort = 9480;  // the virtual Service port
// Replica A is the Mesh's own aggregator (grpcAddr(), HTTP 9471); B listens next to it.
constexpr uint16_t kGrpcB = 9472;
constexpr uint16_t kHttpB = 9473;
// Short durations so the test runs in seconds (production: 15s / 10s / 2s).
const std::vector<std::string> kElection = {"--leader-elect",
                                            "--leader-elect-lease-duration",
                                            "4s",
                                            "--leader-elect-renew-deadline",
                                            "3s",
                                            "--leader-elect-retry-period",
                                            "500ms"};

std::string serviceAddr() { return Cluster::controlIp() + ":" + std::to_string(kServicePort); }

class KubeLeaderTest : public MeshTest {
 protected:
  MeshOptions meshOptions() const override {
    MeshOptions o;
    o.nodes = kMeshNodes;
    o.aggregator_args = {"--kubeconfig", kubeconfig_, "--leader-elect-identity", "aggregator-a"};
    o.aggregator_args.insert(o.aggregator_args.end(), kElection.begin(), kElection.end());
    o.agent_aggregator = serviceAddr();
    o.before_aggregator = [this](const TestNetns& control) { startFakeIn(control); };
    return o;
  }

  void SetUp() override {
    std::string why;
    if (!havePrivileges(&why)) GTEST_SKIP() << why;
    tmp_ = std::make_unique<TempDir>("kube-leader");
    kubeconfig_ = tmp_->sub("kubeconfig");
    test::FakeKubeApiServer::Options fo;
    fo.token = kToken;
    fake_ = std::make_unique<test::FakeKubeApiServer>(fo);
    MeshTest::SetUp();
    if (!mesh_) return;
    control_ = mesh_->control().name();
    // The Service's chain in every node's netns (kube-proxy's KUBE-SERVICES from OUTPUT).
    for (int n = 1; n <= kMeshNodes; ++n) {
      sh(mesh_->cluster().nodeNs(n), "iptables -t nat -N MPE2E-SVC\niptables -t nat -A OUTPUT -j MPE2E-SVC");
    }
    std::vector<std::string> argv = {kAggregatorBin,
                                     "--grpc-listen",
                                     Cluster::controlIp() + ":" + std::to_string(kGrpcB),
                                     "--http-listen",
                                     Cluster::controlIp() + ":" + std::to_string(kHttpB),
                                     "--stale-after",
                                     kStaleAfter,
                                     "--insecure",
                                     "--log-level",
                                     "debug",
                                     "--kubeconfig",
                                     kubeconfig_,
                                     "--leader-elect-identity",
                                     "aggregator-b"};
    argv.insert(argv.end(), kElection.begin(), kElection.end());
    b_ = std::make_unique<Process>(control_, argv, mesh_->logsDir() + "/aggregator-b.log");
    const pid_t pid = b_->pid();
    waitFor([pid] { return tcpListening(pid, kGrpcB); }, 20s, "aggregator B gRPC listener", b_.get());
  }

  void TearDown() override {
    b_.reset();
    MeshTest::TearDown();  // agents and aggregator A end first; the namespaces (and rules) go with it
    if (fake_) fake_->stop();
  }

  void startFakeIn(const TestNetns& control) const {
    startFakeKubeApiServerIn(control, *fake_, kubeconfig_, kToken);
  }

  struct Readyz {
    int status = 0;  // 0: no answer
    std::string body;
  };
  // GET /readyz of replica 0 (A) or 1 (B), from the control netns.
  Readyz readyz(int replica) const {
    const uint16_t port = replica == 0 ? 9471 : kHttpB;
    CmdOptions o;
    o.netns = control_;
    o.timeout = 5s;
    auto r = runCommand({"curl", "-s", "--max-time", "2", "-w", "\n%{http_code}",
                         "http://" + Cluster::controlIp() + ":" + std::to_string(port) + "/readyz"},
                        o);
    Readyz out;
    const auto nl = r.out.rfind('\n');
    if (nl == std::string::npos) return out;
    out.status = std::atoi(r.out.substr(nl + 1).c_str());
    out.body = r.out.substr(0, nl);
    return out;
  }
  uint16_t grpcPort(int replica) const { return replica == 0 ? kGrpcPort : kGrpcB; }

  // The endpoints controller + kube-proxy: the Service's only endpoint is the Ready replica
  // (none when zero or, never expected, two are Ready). Returns the Ready replicas.
  std::vector<int> syncService() {
    std::vector<int> ready;
    for (int r = 0; r < 2; ++r) {
      if ((r == 0 ? mesh_->aggregator().alive() : b_->alive()) && readyz(r).status == 200) ready.push_back(r);
    }
    const int endpoint = ready.size() == 1 ? ready[0] : -1;
    if (endpoint != endpoint_) {
      std::string script = "iptables -t nat -F MPE2E-SVC\n";
      if (endpoint >= 0) {
        script += "iptables -t nat -A MPE2E-SVC -d " + Cluster::controlIp() + " -p tcp --dport " +
                  std::to_string(kServicePort) + " -j DNAT --to-destination " + Cluster::controlIp() + ":" +
                  std::to_string(grpcPort(endpoint)) + "\n";
      }
      for (int n = 1; n <= kMeshNodes; ++n) sh(mesh_->cluster().nodeNs(n), script);
      endpoint_ = endpoint;
    }
    return ready;
  }

  // Every UNDERLAY and OVERLAY cell OK in replica `r`'s matrix (the CLI against its own port).
  std::string matrixMismatchOf(int r) const {
    std::string out;
    for (const std::string layer : {"UNDERLAY", "OVERLAY"}) {
      std::vector<std::string> argv = {
          kCliBin,    "--aggregator", Cluster::controlIp() + ":" + std::to_string(grpcPort(r)),
          "--output", "json",         "--timeout",
          "3s",       "--insecure",   "matrix",
          "--layer",  layer};
      CmdOptions o;
      o.netns = control_;
      o.timeout = 10s;
      o.drop_meshprobe_env = true;
      std::string error;
      auto j = Mesh::parse(runCommand(argv, o), &error);
      Matrix m;
      if (j.is_null()) {
        m.error = error;
      } else {
        m = parseMatrix(j);
      }
      out += matrixMismatch(layer, m, kAllOk, kMeshNodes);
    }
    return out;
  }

  std::string kubeconfig_;
  std::string control_;
  std::unique_ptr<TempDir> tmp_;
  std::unique_ptr<test::FakeKubeApiServer> fake_;
  std::unique_ptr<Process> b_;
  int endpoint_ = -2;  // the replica the Service's rule points at (-1: none; -2: not set yet)
};

TEST_F(KubeLeaderTest, OneReadyReplicaAndTheFollowerTakesOverWhenTheLeaderIsKilled) {
  const char* names[] = {"aggregator-a", "aggregator-b"};
  // Exactly one Ready (polled with a deadline: the first Lease write takes a request or two).
  int leader = -1;
  ASSERT_TRUE(eventually(
      "exactly one aggregator Ready, the other a follower naming it",
      [&] {
        auto ready = syncService();
        if (ready.size() != 1) return "Ready replicas: " + std::to_string(ready.size()) + "\n";
        leader = ready[0];
        auto f = readyz(1 - leader);
        const std::string want = std::string("follower: the leader is ") + names[leader];
        if (f.status != 503 || f.body.find(want) == std::string::npos)
          return "follower /readyz " + std::to_string(f.status) + ": " + f.body + "\n";
        return std::string();
      },
      30s));
  const nlohmann::json lease = fake_->lease("meshprobe", "meshprobe-aggregator");
  EXPECT_EQ(lease["spec"]["holderIdentity"], names[leader]) << lease.dump();
  // The agents reach the leader through the Service and fill its matrix.
  ASSERT_TRUE(eventually(
      "the leader's matrix complete through the Service",
      [&] {
        syncService();
        return matrixMismatchOf(leader);
      },
      60s));
  // Stays so: the follower does not take over a renewed Lease (a few renewals' worth).
  for (int i = 0; i < 6; ++i) {
    auto ready = syncService();
    ASSERT_EQ(ready, std::vector<int>{leader});
    std::this_thread::sleep_for(500ms);  // pacing between observations, not synchronisation
  }

  // SIGKILL the leader by its PID: no release, the Lease must expire on the follower's clock.
  const int follower = 1 - leader;
  const auto t0 = SteadyClock::now();
  if (leader == 0) {
    mesh_->aggregator().kill9();
  } else {
    b_->kill9();
  }
  std::vector<Milestone> milestones;
  milestones.emplace_back("the follower Ready (the Service follows it)", [&] {
    auto ready = syncService();
    return ready == std::vector<int>{follower} ? "" : "Ready replicas: " + std::to_string(ready.size()) + "\n";
  });
  milestones.emplace_back("the new leader's matrix complete", [&] {
    syncService();
    return matrixMismatchOf(follower);
  });
  ASSERT_TRUE(eventuallyEach(milestones, 90s, t0));
  std::cout << "failover after SIGKILL of " << names[leader] << ": " << names[follower] << " Ready after "
            << seconds(milestones[0].elapsed) << ", its matrix complete after " << seconds(milestones[1].elapsed)
            << " (lease 4s, renew 3s, retry 500ms)\n";
  const nlohmann::json after = fake_->lease("meshprobe", "meshprobe-aggregator");
  EXPECT_EQ(after["spec"]["holderIdentity"], names[follower]) << after.dump();
  EXPECT_EQ(after["spec"]["leaseTransitions"].get<int>(), lease["spec"]["leaseTransitions"].get<int>() + 1);
  // Not before the Lease could expire: the follower waited a lease duration on its own clock
  // (from its last sight of a renewal, which was at most one retry period before the kill).
  EXPECT_GE(milestones[0].elapsed, 3.0);
  // The bound: one lease duration (the follower dates the leader's last renewal by its
  // renewTime and takes the Lease 4 s after it, i.e. less than 4 s after the kill) plus one
  // coverage period (the 1 s probe interval: the agents reconnect within about 0.5 s and
  // each sends a member's cells as it joins) = 5 s; measured 4.1-4.6 s from the logs. Plus
  // 2 s for this test's polling (two curls and two CLI calls per poll) on a loaded machine.
  // Before the agents watched their channel between attempts it took 10-11 s.
  EXPECT_LE(milestones[1].elapsed, 4.0 + 1.0 + 2.0);
}

}  // namespace
}  // namespace meshprobe::e2e
