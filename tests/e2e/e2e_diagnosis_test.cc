// E2E tests of the diagnosis: one fault scenario per finding code /
// runbook row, injected into a fresh 4-node mesh (mesh.h: namespace cluster, istiod behind
// node1, the real aggregator in the control netns, one real agent per node). Each scenario:
//
//   1. waits until the mesh is healthy (every UNDERLAY, OVERLAY and ISTIOD cell OK) AND
//      Diagnose returns zero findings;
//   2. injects a real fault (kernel state inside the test's namespaces only);
//   3. polls Diagnose (deadline 20 s) until every EXPECTED finding — exact code, exact set
//      of blamed nodes, exact layer — is active, and records the seconds from injection;
//   4. keeps polling ~3 s more and scores the last sample: precision = findings that are
//      expected or ALLOWED / all findings, recall = expected present / expected;
//   5. prints `DIAG scenario=<name> detect_s=<x> expected=<n> found=<n> extra=<codes>
//      precision=<p> recall=<r>` and, with MPE2E_DIAG_RESULTS=FILE, appends it as a JSON
//      line (bench/diagnosis_suite.sh builds its table from those lines);
//   6. asserts recall == 1 and no finding outside expected + allowed.
// Two scenarios also remove the fault and assert the finding clears within 15 s. The soak
// test runs a healthy mesh under background jitter and asserts Diagnose stays empty.
//
// On failure the message carries every finding seen (code, nodes, layer, summary, evidence,
// remedy) and mesh_->diagnostics() (matrices, nodes, probe summaries, log tails).
// MPE2E_VERBOSE=1 prints every change of the findings while polling.
//
// The fixture (Want, Scenario, scoring, the Diagnosis fixture and its fault helpers) is in
// diagnosis_fixture.h / diagnosis_fixture.cc; this file holds the scenarios.

#include <sys/stat.h>

#include "tests/e2e/diagnosis_fixture.h"

namespace meshprobe::e2e {
namespace {

// ======================= 1. istiod down =======================

TEST_F(Diagnosis, S01IstiodListenerKilledBlamesIstiodNotTheNodes) {
  Scenario s{"istiod_down", {want("ISTIOD_UNREACHABLE", {}, "ISTIOD")}, {}, nullptr};
  runScenario(s, [&] { mesh_->stopIstiod(); });
}

// ======================= 2. node2's overlay down, istiod on node1 =======================

TEST_F(Diagnosis, S02Node2OverlayDownExplainsItsIstiodFailure) {
  Scenario s{"overlay_down_istiod_elsewhere",
             {want("VXLAN_DEVICE_MISSING", {2}, "OVERLAY"),
              withAlso(want("ISTIOD_UNREACHABLE", {2}, "ISTIOD"), "explained by node2's overlay",
                       mentions({"overlay"}))},
             {},
             [](const Findings& f) {
               for (const auto& x : f.list) {
                 if (x.code == "ISTIOD_UNREACHABLE" && x.nodes.empty())
                   return "istiod itself is blamed (ISTIOD_UNREACHABLE with nodes=[]): " + x.describe();
               }
               return std::string();
             }};
  runScenario(s, [&] { node(2).sh("ip link set flannel.1 down"); });
}

// ======================= 3. flannel.1 deleted on node3 =======================

TEST_F(Diagnosis, S03VxlanDeviceDeletedOnNode3) {
  Scenario s{"vxlan_device_deleted",
             {want("VXLAN_DEVICE_MISSING", {3}, "OVERLAY")},
             {want("ISTIOD_UNREACHABLE", {3}, "ISTIOD")},
             nullptr};
  runScenario(s, [&] { node(3).sh("ip link del flannel.1"); });
}

// ======================= 4. UDP 4789 dropped on node2 (+ recovery) =======================

TEST_F(Diagnosis, S04VxlanPortDroppedOnNode2QuotesTheRuleAndClears) {
  Scenario s{"vxlan_port_filtered",
             {withAlso(want("VXLAN_PORT_FILTERED", {2}, "OVERLAY"), "an evidence line quotes the rule (4789, DROP)",
                       [](const DiagFinding& f) {
                         for (const auto& e : f.evidence) {
                           if (containsNoCase(e, "4789") && containsNoCase(e, "DROP")) return std::string();
                         }
                         return std::string("no evidence line contains both \"4789\" and \"DROP\"");
                       })},
             {want("ISTIOD_UNREACHABLE", {2}, "ISTIOD")},
             nullptr};
  // Recovery is checked whenever the fault was detected (also if precision failed).
  Outcome o = runScenario(s, [&] { node(2).sh("iptables -A INPUT -p udp --dport 4789 -j DROP"); });
  if (HasFatalFailure() || o.detect_s < 0) return;
  node(2).sh("iptables -D INPUT -p udp --dport 4789 -j DROP");
  expectRecovery("vxlan_port_filtered.recovery", {want("VXLAN_PORT_FILTERED", {2}, "")}, SteadyClock::now());
}

// ======================= 5. stale FDB entry on node1 for node4 =======================

TEST_F(Diagnosis, S05StaleFdbEntryOnNode1ForNode4) {
  Scenario s{"fdb_stale",
             {want("OVERLAY_FDB_STALE", {1}, "OVERLAY")},
             // istiod's replies to node4 leave node1 through the stale entry.
             {want("ISTIOD_UNREACHABLE", {4}, "ISTIOD")},
             nullptr};
  runScenario(s, [&] {
    node(1).sh("bridge fdb replace " + Cluster::vtepMac(4) + " dev flannel.1 dst " + kWrongDst + " self permanent");
    const std::string fdb = node(1).sh("bridge fdb show dev flannel.1");
    ASSERT_NE(fdb.find(Cluster::vtepMac(4) + " dst " + kWrongDst), std::string::npos) << fdb;
  });
}

// ======================= 6. ztunnel disconnected on node2 =======================

TEST_F(Diagnosis, S06ZtunnelDisconnectedOnNode2) {
  // istio-cni + a connected ztunnel before the healthy wait: the agents read the path each run.
  startCniAndZtunnel(2, /*closing_cni=*/true);
  Scenario s{"ztunnel_disconnected", {want("ZTUNNEL_NOT_CONNECTED", {2}, "AMBIENT")}, {}, nullptr};
  runScenario(s, [&] {
    daemons_.erase("ztunnel2");  // SIGTERM: ztunnel closes its connection and exits
    const std::string ready = mesh_->tmpDir() + "/logs/cni2.ready";
    waitFor([ready] { return readFile(ready).find("open 0") != std::string::npos; }, 5s,
            "istio-cni closed ztunnel's connection", daemons_["cni2"].get());
  });
}

// ======================= 7. istio-cni gone on node2 =======================

TEST_F(Diagnosis, S07IstioCniGoneOnNode2) {
  startCniAndZtunnel(2);
  Scenario s{"cni_down", {want("CNI_AGENT_DOWN", {2}, "AMBIENT")}, {}, nullptr};
  runScenario(s, [&] {
    // Like a crashed istio-cni: the listener is gone, its socket file stays (what
    // ztunnel_check reports as CNI_AGENT_DOWN; a removed file means "not an ambient node").
    daemons_["cni2"]->kill9();
    struct stat st {};
    ASSERT_EQ(::stat(mesh_->ztunnelSocket(2).c_str(), &st), 0) << "the socket file should outlive the listener";
    ASSERT_TRUE(S_ISSOCK(st.st_mode));
  });
}

// ======================= 8. ambient pod with rules but no listeners on node3 =======================

TEST_F(Diagnosis, S08AmbientPodWithoutZtunnelListenersOnNode3) {
  Scenario s{"ambient_redirection_broken", {want("AMBIENT_REDIRECTION_BROKEN", {3}, "AMBIENT")}, {}, nullptr};
  runScenario(s, [&] { addAmbientPod(3, "amb3", /*rules=*/true, /*listeners=*/false); });
}

// ======================= 8b. a captured pod's rules removed on node3 =======================

TEST_F(Diagnosis, S08bCapturedPodLosesItsRulesOnNode3) {
  // Healthy first (istio-cni's rules and ztunnel's listeners), so node3's agent has read the
  // pod's rules and reuses that reading while the kernel's ruleset fingerprint in the pod's
  // namespace stays put. Removing the rules (iptables-restore flushes the tables it is
  // given and deletes their chains) must move the fingerprint and be seen.
  const TestNetns& pod = addAmbientPod(3, "amb3r", /*rules=*/true, /*listeners=*/true);
  Scenario s{"ambient_rules_removed", {want("AMBIENT_REDIRECTION_BROKEN", {3}, "AMBIENT")}, {}, nullptr};
  runScenario(s, [&] { pod.sh("printf '*raw\\nCOMMIT\\n*mangle\\nCOMMIT\\n*nat\\nCOMMIT\\n' | iptables-restore\n"); });
}

// ======================= 9. node4's underlay MTU lowered =======================

TEST_F(Diagnosis, S09UnderlayMtuLoweredOnNode4) {
  Scenario s{"mtu_mismatch", {want("MTU_MISMATCH", {4}, "OVERLAY")}, {}, nullptr};
  runScenario(s, [&] {
    node(4).sh("ip link set eth0 mtu 1400");
    std::cout << "node4: eth0 mtu " << node(4).sh("cat /sys/class/net/eth0/mtu") << "       flannel.1 mtu "
              << node(4).sh("cat /sys/class/net/flannel.1/mtu");
  });
}

// ======================= 10. node2's VXLAN device on port 8472 =======================

TEST_F(Diagnosis, S10Node2VxlanDeviceOnPort8472) {
  Scenario s{"vxlan_port_mismatch",
             {want("VXLAN_CONFIG_MISMATCH", {2}, "OVERLAY")},
             {want("ISTIOD_UNREACHABLE", {2}, "ISTIOD")},
             nullptr};
  runScenario(s, [&] {
    recreateVxlanDevice(2, 8472);
    const std::string link = node(2).sh("ip -d link show flannel.1");
    ASSERT_NE(link.find("dstport 8472"), std::string::npos) << link;
  });
}

// ======================= 11. node4's underlay link down =======================

TEST_F(Diagnosis, S11UnderlayLinkDownOnNode4) {
  Scenario s{"underlay_down",
             {want("UNDERLAY_UNREACHABLE", {4}, "UNDERLAY")},
             // Its stream to the aggregator runs over the underlay too; so does its overlay.
             {want("AGENT_STALE", {4}, ""), want("ISTIOD_UNREACHABLE", {4}, "ISTIOD")},
             nullptr};
  runScenario(s, [&] { node(4).sh("ip link set eth0 down"); });
}

// ======================= 12. an agent stopped (+ recovery) =======================

TEST_F(Diagnosis, S12AgentStoppedOnNode3IsStaleAndClearsOnRestart) {
  Scenario s{"agent_stale", {want("AGENT_STALE", {3}, "")}, {}, nullptr};
  Outcome o = runScenario(s, [&] { mesh_->stopAgent(3); });  // --stale-after 3s
  if (HasFatalFailure() || o.detect_s < 0) return;
  mesh_->restartAgent(3);
  expectRecovery("agent_stale.recovery", {want("AGENT_STALE", {3}, "")}, SteadyClock::now());
}

// ======================= 13. two faults on two nodes at once =======================

TEST_F(Diagnosis, S13TwoFaultsOnTwoNodesAreBothNamed) {
  Scenario s{"two_faults",
             {want("VXLAN_PORT_FILTERED", {2}, "OVERLAY"), want("VXLAN_DEVICE_MISSING", {3}, "OVERLAY")},
             {want("ISTIOD_UNREACHABLE", {2}, "ISTIOD"), want("ISTIOD_UNREACHABLE", {3}, "ISTIOD")},
             blamesNone({1, 4})};
  runScenario(s, [&] {
    node(2).sh("iptables -A INPUT -p udp --dport 4789 -j DROP");
    node(3).sh("ip link del flannel.1");
  });
}

// ======================= 14. node2 partitioned on the overlay, no local cause =======================

TEST_F(Diagnosis, S14OverlayPartitionOfNode2WithNoLocalCause) {
  Scenario s{"overlay_partition",
             {want("OVERLAY_PARTITION", {2}, "OVERLAY")},
             {want("ISTIOD_UNREACHABLE", {2}, "ISTIOD")},
             nullptr};
  const std::string ip = Cluster::nodeIp(2);
  Outcome o = runScenario(s, [&] {
    // In the bridge, not on node2: node2's own kernel state (device, socket, firewall, FDB) stays clean.
    underlayDropVxlan({"ip daddr " + ip, "ip saddr " + ip});
    std::cout << "underlay nft ruleset:\n" << mesh_->cluster().underlay().sh("nft list table bridge mpf");
  });
  if (HasFatalFailure() || o.detect_s < 0) return;
  EXPECT_EQ(layerMismatch("UNDERLAY", kAllOk), "") << "the underlay must stay OK while the overlay is partitioned";
}

// ======================= 15. one bad pair =======================

// istiod behind node4 here, so the bad pair node1<->node3 carries no istiod traffic and the
// scenario is the pair alone (with istiod on node1, node3's istiod path would cross the pair).
class DiagnosisIstiodOnNode4 : public Diagnosis {
 protected:
  MeshOptions meshOptions() const override {
    MeshOptions o;
    o.istiod_node = 4;
    return o;
  }
};

TEST_F(DiagnosisIstiodOnNode4, S15OneBadPairBlamesThePairNotANode) {
  Scenario s{"pair_unreachable", {want("PAIR_UNREACHABLE", {1, 3}, "OVERLAY")}, {}, nullptr};
  const std::string a = Cluster::nodeIp(1), b = Cluster::nodeIp(3);
  Outcome o = runScenario(s, [&] {
    underlayDropVxlan({"ip saddr " + a + " ip daddr " + b, "ip saddr " + b + " ip daddr " + a});
  });
  if (HasFatalFailure() || o.detect_s < 0) return;
  EXPECT_EQ(layerMismatch("UNDERLAY", kAllOk), "") << "the underlay must stay OK";
}

// ======================= soak: healthy mesh under jitter =======================

// Bursty UDP traffic from one node to its peers (node and overlay addresses, discard port):
// bursts of ~15 KB every 0.1-0.6 s. Behind a tbf on eth0 each burst queues for tens of ms,
// so probes see variable delay; the average rate stays far below the limit, so no loss.
constexpr const char* kBurster = R"(import random, socket, sys, time
peers = sys.argv[1:]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload = b"j" * 1000
while True:
    dst = random.choice(peers)
    for _ in range(15):
        try:
            s.sendto(payload, (dst, 9))
        except OSError:
            pass
    time.sleep(random.uniform(0.1, 0.6))  # traffic pacing of the jitter source, not synchronization
)";

TEST_F(Diagnosis, HealthySoakHasNoFindings) {
  int soak_s = 120;
  if (const char* v = std::getenv("MPE2E_SOAK_SECONDS"); v && *v) soak_s = std::max(1, std::atoi(v));
  ASSERT_TRUE(waitQuiet());

  // Jitter: netem first; without sch_netem, a tbf on every node's eth0 plus bursty traffic.
  std::string mechanism;
  CmdResult netem = runCommand({"ip", "netns", "exec", node(1).name(), "tc", "qdisc", "add", "dev", "eth0", "root",
                                "netem", "delay", "20ms", "10ms"});
  if (netem.exit_code == 0) {
    for (int n = 2; n <= mesh_->nodes(); ++n) node(n).sh("tc qdisc add dev eth0 root netem delay 20ms 10ms");
    mechanism = "netem delay 20ms 10ms on every node's eth0";
  } else {
    std::cout << "netem unavailable (" << netem.err.substr(0, netem.err.find('\n'))
              << "): using tbf + bursty background traffic" << std::endl;
    for (int n = 1; n <= mesh_->nodes(); ++n) {
      node(n).sh("tc qdisc add dev eth0 root tbf rate 4mbit burst 4kb latency 150ms");
      std::vector<std::string> argv = {"python3", "-c", kBurster};
      for (int p = 1; p <= mesh_->nodes(); ++p) {
        if (p == n) continue;
        argv.push_back(Cluster::nodeIp(p));
        argv.push_back(Cluster::vtepAddr(p));
      }
      daemons_["burst" + std::to_string(n)] =
          std::make_unique<Process>(node(n).name(), argv, mesh_->tmpDir() + "/logs/burst-" + nodeName(n) + ".log");
    }
    mechanism =
        "tbf rate 4mbit burst 4kb latency 150ms on every node's eth0 + bursts of 15x1000 B UDP every 0.1-0.6 s "
        "from every node to a random peer (underlay and overlay addresses)";
  }
  std::cout << "jitter mechanism: " << mechanism << std::endl;
  std::cout << "node1 eth0 qdisc: " << node(1).sh("tc -s qdisc show dev eth0");

  const auto t0 = SteadyClock::now();
  const auto end = t0 + std::chrono::seconds(soak_s);
  size_t polls = 0, nonempty = 0, failed = 0;
  std::string seen;
  while (SteadyClock::now() < end) {
    const auto round = SteadyClock::now();
    Findings f = mesh_->diagnose();
    ++polls;
    if (!f.ok) {
      ++failed;
      seen += "[" + seconds(secondsSince(t0)) + "] " + f.render();
    } else if (!f.list.empty()) {
      ++nonempty;
      seen += "[" + seconds(secondsSince(t0)) + "] " + f.render();
      std::cout << "[" << seconds(secondsSince(t0)) << "] " << f.render() << std::flush;
    }
    for (const auto& [tag, p] : daemons_) {
      ASSERT_TRUE(p->alive()) << tag << " died: " << p->describe();
    }
    // Poll interval: the soak polls Diagnose once a second for its whole duration.
    std::this_thread::sleep_for(std::chrono::duration_cast<std::chrono::milliseconds>(
        std::max(SteadyClock::duration::zero(), round + 1s - SteadyClock::now())));
  }
  std::cout << "node1 eth0 qdisc after: " << node(1).sh("tc -s qdisc show dev eth0");
  // Probe RTT spread the jitter produced (p50/p99 per pair), for the record.
  std::string error;
  if (auto n1 = mesh_->getNode("node1", &error); !n1.is_null() && n1.contains("probes")) {
    for (const auto& p : n1["probes"]) {
      std::cout << "  probe node1->" << p.value("dst", "?") << " " << p.value("layer", "?")
                << " p50=" << p.value("rttP50", "-") << " p99=" << p.value("rttP99", "-")
                << " loss=" << p.value("loss", 0.0) << std::endl;
    }
  }
  std::cout << "DIAG scenario=soak seconds=" << soak_s << " polls=" << polls << " nonempty=" << nonempty
            << " failed_queries=" << failed << std::endl;
  recordResult({{"kind", "soak"},
                {"scenario", "soak"},
                {"seconds", soak_s},
                {"polls", polls},
                {"nonempty", nonempty},
                {"failed_queries", failed},
                {"mechanism", mechanism}});
  EXPECT_EQ(nonempty + failed, 0u) << "Diagnose was not empty on a healthy mesh under jitter (" << mechanism
                                   << "):\n"
                                   << seen << mesh_->diagnostics();
}

}  // namespace
}  // namespace meshprobe::e2e
