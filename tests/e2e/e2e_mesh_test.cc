// E2E tests of the mesh: a 4-node flannel-VXLAN "cluster" made
// of network namespaces, the real meshprobe-aggregator in a control netns on the underlay
// (198.51.100.2, so the diagnostic path never depends on the overlay), and one real
// meshprobe-agent per node (--interval 1s) streaming to it. Every assertion goes through
// the Query API: the grpcurl-like reflection client (mp_reflection_client, which learns the
// API only from grpc.reflection.v1alpha and speaks JSON) in the healthy test, the meshprobe
// CLI with --output json everywhere else. Readiness and every state change are polled with
// deadlines; the measured times (fault injection → visible in the API) are printed.
//
// Layout: node N = 198.51.100.(10+N), flannel.1 10.244.N.0 (VNI 1, port 4789), pod subnet
// 10.244.N.0/24. istiod is a TLS listener (openssl s_server, ALPN h2) in a pod netns behind
// node1's cni0 at 10.244.1.10:15012, so nodes 2..4 reach it only through VXLAN. Agents get
// temp --host-root/--netns-dir/--ztunnel-socket paths: nothing leaves the test's namespaces.

#include "tests/e2e/mesh.h"

namespace meshprobe::e2e {
namespace {

// ======================= 1. healthy =======================

// The way grpcurl does it: list services over reflection, then call Query methods with
// JSON requests built from the fetched descriptors.
TEST_F(MeshTest, HealthyClusterEveryCellOkThroughReflection) {
  auto list = mesh_->reflect("list");
  ASSERT_EQ(list.exit_code, 0) << list.describe();
  for (const char* service : {"meshprobe.v1.Query", "meshprobe.v1.Collector", "grpc.health.v1.Health",
                              "grpc.reflection.v1alpha.ServerReflection"}) {
    EXPECT_NE(list.out.find(service), std::string::npos) << service << " not listed:\n" << list.out;
  }

  double healthy = 0;
  ASSERT_TRUE(waitHealthy(Via::kReflection, &healthy));
  std::cout << "healthy (all " << kNodes * (kNodes - 1) << " UNDERLAY + OVERLAY cells and " << kNodes
            << " ISTIOD cells OK) after start: " << seconds(healthy) << std::endl;

  auto overlay = mesh_->matrix("OVERLAY", Via::kReflection);
  ASSERT_TRUE(overlay.ok) << overlay.error;
  EXPECT_EQ(overlay.nodes, (std::vector<std::string>{"node1", "node2", "node3", "node4"}));

  std::string error;
  auto nodes = mesh_->listNodes(Via::kReflection, &error);
  ASSERT_FALSE(nodes.is_null()) << error;
  ASSERT_TRUE(nodes.contains("nodes")) << nodes.dump(2);
  EXPECT_EQ(nodes["nodes"].size(), static_cast<size_t>(kNodes)) << nodes.dump(2);
  for (int n = 1; n <= kNodes; ++n) {
    const auto* node = findNode(nodes, nodeName(n));
    ASSERT_NE(node, nullptr) << nodeName(n) << " missing:\n" << nodes.dump(2);
    SCOPED_TRACE(node->dump());
    EXPECT_TRUE(node->value("up", false));
    EXPECT_EQ(node->value("nodeIp", ""), Cluster::nodeIp(n));
    EXPECT_EQ(node->value("overlayIp", ""), Cluster::vtepAddr(n));
    EXPECT_EQ(node->value("vtepMac", ""), Cluster::vtepMac(n));
    EXPECT_EQ(node->value("vxlanVni", 0u), 1u);
    EXPECT_EQ(node->value("vxlanPort", 0u), 4789u);
    EXPECT_EQ(node->value("podCidr", ""), Cluster::podSubnet(n));
  }
}

// ======================= 2. VXLAN port dropped on node3 =======================

TEST_F(MeshTest, VxlanPortDroppedOnNode3FailsItsOverlayCellsOnly) {
  ASSERT_TRUE(waitHealthy());

  mesh_->cluster().node(3).sh("iptables -A INPUT -p udp --dport 4789 -j DROP");
  const auto injected = SteadyClock::now();
  // node3 drops every VXLAN packet it receives: its probes' replies and its peers' probes
  // (both travel inside VXLAN to node3), so its overlay row and column fail.
  const Expect node3Fails = [](int s, int d) { return std::string(s == 3 || d == 3 ? "FAIL" : "OK"); };
  const Expect node3FailsAnyOther = [](int s, int d) { return std::string(s == 3 || d == 3 ? "FAIL" : "*"); };
  double detection = 0;
  ASSERT_TRUE(eventually(
      "every OVERLAY cell to and from node3 FAIL", [&] { return layerMismatch("OVERLAY", node3FailsAnyOther); }, 30s,
      &detection, injected));
  std::cout << "detection: " << seconds(detection) << std::endl;

  // Nothing else: the other overlay pairs and the whole underlay stay OK.
  EXPECT_TRUE(eventually(
      "only node3's OVERLAY cells FAIL, every UNDERLAY cell OK",
      [&] { return layerMismatch("OVERLAY", node3Fails) + layerMismatch("UNDERLAY", kAllOk); }, 15s));

  mesh_->cluster().node(3).sh("iptables -D INPUT -p udp --dport 4789 -j DROP");
  const auto removed = SteadyClock::now();
  double recovery = 0;
  EXPECT_TRUE(eventually(
      "every OVERLAY and UNDERLAY cell OK again after the rule is removed",
      [&] { return layerMismatch("OVERLAY", kAllOk) + layerMismatch("UNDERLAY", kAllOk); }, 90s, &recovery, removed));
  std::cout << "recovery: " << seconds(recovery) << std::endl;
}

// ======================= 3. aggregator killed and restarted =======================

TEST_F(MeshTest, AggregatorKill9AndRestartEveryAgentReconnects) {
  ASSERT_TRUE(waitHealthy());

  mesh_->aggregator().kill9();
  ASSERT_FALSE(mesh_->aggregator().alive());
  auto down = mesh_->cli({"nodes"});
  EXPECT_NE(down.exit_code, 0) << "the Query API still answers after kill -9: " << down.describe();

  const auto restarted = SteadyClock::now();
  mesh_->startAggregator();  // same address; returns once it listens
  double reconnected = 0, complete = 0;
  ASSERT_TRUE(eventually(
      "every agent reconnected: ListNodes lists every node up",
      [&] {
        std::string error;
        auto nodes = mesh_->listNodes(Via::kCli, &error);
        if (nodes.is_null()) return error;
        for (int n = 1; n <= kNodes; ++n) {
          const auto* node = findNode(nodes, nodeName(n));
          if (node == nullptr || !node->value("up", false)) return nodeName(n) + " not up: " + nodes.dump();
        }
        return std::string();
      },
      30s, &reconnected, restarted));
  ASSERT_TRUE(eventually(
      "the matrix complete again: every UNDERLAY and OVERLAY cell OK",
      [&] { return healthyMismatch(/*istiod=*/false); }, 30s, &complete, restarted));
  std::cout << "aggregator restart -> every agent reconnected: " << seconds(reconnected) << std::endl;
  std::cout << "aggregator restart -> matrix complete: " << seconds(complete) << std::endl;
}

// ======================= 4. a stopped agent =======================

TEST_F(MeshTest, StoppedAgentIsStaleAndItsCellsUnknown) {
  ASSERT_TRUE(waitHealthy());

  Process& agent4 = mesh_->agent(4);
  const auto stopped = SteadyClock::now();
  ASSERT_TRUE(agent4.signal(SIGTERM));
  const bool exited = pollUntil([&] { return !agent4.alive(); }, 3s, 10ms);
  const double shutdown = secondsSince(stopped);
  ASSERT_TRUE(exited) << "node4's agent did not exit within 3 s of SIGTERM: " << agent4.describe();
  EXPECT_EQ(agent4.exitCode(), std::optional<int>(0)) << "not a clean shutdown: " << agent4.describe();
  std::cout << "agent SIGTERM -> exit " << agent4.exitCode().value_or(-1) << ": " << seconds(shutdown) << std::endl;

  // --stale-after 3s: node4 is down, and what it last said about others is no longer
  // believed — every cell from node4 is UNKNOWN, never a lingering OK.
  double stale = 0;
  ASSERT_TRUE(eventually(
      "node4 not up; every cell from node4 UNKNOWN (UNDERLAY, OVERLAY, ISTIOD)",
      [&] {
        std::string error;
        auto nodes = mesh_->listNodes(Via::kCli, &error);
        if (nodes.is_null()) return error;
        const auto* node4 = findNode(nodes, "node4");
        if (node4 == nullptr) return "node4 not listed: " + nodes.dump();
        if (node4->value("up", true)) return "node4 still up: " + node4->dump();
        const Expect fromNode4 = [](int s, int) { return std::string(s == 4 ? "UNKNOWN" : "*"); };
        return layerMismatch("UNDERLAY", fromNode4) + layerMismatch("OVERLAY", fromNode4) +
               istiodMismatch(mesh_->matrix("ISTIOD"), [](int n) { return std::string(n == 4 ? "UNKNOWN" : "*"); });
      },
      10s, &stale, stopped));
  std::cout << "agent stopped -> node4 stale, its cells UNKNOWN: " << seconds(stale) << " (--stale-after "
            << kStaleAfter << ")" << std::endl;

  // Its responder is gone too: the others' probes to node4 fail on both layers; the rest is fine.
  const Expect expect = [](int s, int d) { return std::string(s == 4 ? "UNKNOWN" : d == 4 ? "FAIL" : "OK"); };
  double unreachable = 0;
  EXPECT_TRUE(eventually(
      "cells to node4 FAIL on UNDERLAY and OVERLAY, cells from node4 UNKNOWN, the rest OK",
      [&] { return layerMismatch("UNDERLAY", expect) + layerMismatch("OVERLAY", expect); }, 30s, &unreachable,
      stopped));
  std::cout << "agent stopped -> cells to node4 FAIL: " << seconds(unreachable) << std::endl;
}

// ======================= 5. a stale FDB entry on node1 for node4 =======================

TEST_F(MeshTest, StaleFdbEntryOnNode1ForNode4) {
  ASSERT_TRUE(waitHealthy());

  mesh_->cluster().node(1).sh("bridge fdb replace " + Cluster::vtepMac(4) + " dev flannel.1 dst " + kWrongDst +
                              " self permanent");
  const auto injected = SteadyClock::now();
  const std::string fdb = mesh_->cluster().node(1).sh("bridge fdb show dev flannel.1");
  ASSERT_NE(fdb.find(Cluster::vtepMac(4) + " dst " + kWrongDst), std::string::npos) << fdb;

  // Which cells fail. node1 -> node4: node1 encapsulates for node4's VTEP MAC towards the
  // wrong IP, so the probe never arrives. node4 -> node1 fails as well, although node4's
  // own FDB is right: its probe reaches node1, but node1's reply to 10.244.4.0 goes out
  // through the same stale FDB entry (to 198.51.100.99) and is lost. So the OVERLAY FAIL
  // set is exactly {node1->node4, node4->node1} (observed every run; {node1->node4} alone
  // would need a reply path that avoids node1's FDB, and there is none); every other
  // overlay pair and the whole underlay (no VXLAN involved) stay OK.
  const Expect oneToFour = [](int s, int d) { return std::string(s == 1 && d == 4 ? "FAIL" : "*"); };
  const Expect expect = [](int s, int d) {
    return std::string((s == 1 && d == 4) || (s == 4 && d == 1) ? "FAIL" : "OK");
  };
  std::string fdb_check;  // node1's vxlan_fdb as GetNode returned it, once it names the entry
  std::vector<Milestone> milestones = {
      {"OVERLAY node1->node4 FAIL", [&] { return layerMismatch("OVERLAY", oneToFour); }},
      {"OVERLAY FAIL set is exactly {node1->node4, node4->node1}, everything else and every UNDERLAY cell OK",
       [&] { return layerMismatch("OVERLAY", expect) + layerMismatch("UNDERLAY", kAllOk); }},
      // The same asymmetry shows in the ISTIOD column: istiod sits behind node1's cni0, so
      // its answers to node4 leave node1 through the stale entry too; node1..3 still reach it.
      {"ISTIOD: node4 FAIL (replies from behind node1 take the stale entry), node1..node3 OK",
       [&] {
         return istiodMismatch(mesh_->matrix("ISTIOD"), [](int n) { return std::string(n == 4 ? "FAIL" : "OK"); });
       }},
      // node1's own vxlan_fdb check, against membership (node4's Hello says its VTEP MAC sits
      // at 198.51.100.14), names node4's entry as stale.
      {"node1's vxlan_fdb (GetNode node1) FAIL naming node4's FDB entry (node4 or " + std::string(kWrongDst) + ")",
       [&] {
         std::string error;
         auto node = mesh_->getNode("node1", &error);
         if (node.is_null()) return error;
         if (!node.contains("checks") || !node["checks"].is_array()) return "no checks: " + node.dump();
         for (const auto& c : node["checks"]) {
           if (c.value("name", "") != "vxlan_fdb") continue;
           std::string text = c.value("summary", "") + " " + (c.contains("details") ? c["details"].dump() : "");
           bool names = containsNoCase(text, "node4") || containsNoCase(text, kWrongDst);
           if (c.value("status", "") == "FAIL" && names) {
             fdb_check = c.value("summary", "");
             return std::string();
           }
           return "vxlan_fdb: " + c.dump();
         }
         return "no vxlan_fdb check: " + node.dump();
       }},
  };
  EXPECT_TRUE(eventuallyEach(milestones, 30s, injected));
  const char* labels[] = {"node1->node4 OVERLAY FAIL", "OVERLAY FAIL set {node1->node4, node4->node1}",
                          "ISTIOD node4 FAIL", "node1's vxlan_fdb FAIL naming node4"};
  for (size_t i = 0; i < milestones.size(); ++i) {
    std::cout << "stale fdb: " << labels[i] << ": "
              << (milestones[i].elapsed >= 0 ? seconds(milestones[i].elapsed) : "not seen") << std::endl;
  }
  if (!fdb_check.empty()) std::cout << "stale fdb: vxlan_fdb summary: " << fdb_check << std::endl;
}

}  // namespace
}  // namespace meshprobe::e2e
