// E2E: ztunnel dies on node2 while istio-cni keeps its accepted ZDS connection open. The
// kernel then shows istio-cni's end ESTABLISHED with peer inode 0 and both shutdown bits
// until istio-cni closes it — seconds later at its next keepalive read, or never on a
// quiet node for releases that notice only when a send fails. The agent must raise
// ZTUNNEL_NOT_CONNECTED on node2 anyway, within the diagnosis suite's detection deadline
// (through the aggregator's Diagnose), and clear it when a new ztunnel connects.
//
// Stand-ins (tests/tools/fake_daemon): istio-cni is `seqpacket-listen` — without
// --keepalive it never closes an accepted connection (the quiet-node case), with
// --keepalive 5000 it closes a dead one at its next 5 s keepalive read, like current
// istio-cni; ztunnel is `seqpacket-connect`, killed with SIGKILL (a crash: the kernel
// releases its socket, nothing is sent). Waits are polls with deadlines.

#include <algorithm>
#include <sstream>

#include "tests/e2e/mesh.h"

namespace meshprobe::e2e {
namespace {

constexpr auto kQuietDeadline = 60s;     // healthy matrix + zero findings after start
constexpr auto kDetectDeadline = 20s;    // injection -> finding active (as e2e_diagnosis)
constexpr auto kRecoveryDeadline = 15s;  // new ztunnel -> finding gone (as e2e_diagnosis)
constexpr auto kPollEvery = 200ms;
constexpr int kNode = 2;

// istio-cni's accepted ZDS sockets as `ss -xanH` shows them in the node's netns.
struct HeldConnection {
  std::string inode;
  std::string peer;  // "0" once ztunnel's end is released
  std::string line;
};

class ZtunnelGone : public MeshTest {
 protected:
  MeshOptions meshOptions() const override {
    MeshOptions o;
    o.nodes = 3;
    return o;
  }
  void TearDown() override {
    daemons_.clear();  // ours first: they live in the mesh's namespaces and temp dir
    MeshTest::TearDown();
  }

  const TestNetns& node() const { return mesh_->cluster().node(kNode); }
  std::string readyFile(const std::string& tag) const { return mesh_->tmpDir() + "/logs/" + tag + ".ready"; }
  std::string sock() const { return mesh_->ztunnelSocket(kNode); }

  // A fake daemon in node2's netns; returns once its ready file says anything.
  Process& start(const std::string& tag, std::vector<std::string> args) {
    std::vector<std::string> argv = {kFakeDaemonBin};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--ready-file", readyFile(tag)});
    daemons_[tag] = std::make_unique<Process>(node().name(), argv, mesh_->tmpDir() + "/logs/" + tag + ".log");
    Process* p = daemons_[tag].get();
    const std::string ready = readyFile(tag);
    waitFor([ready] { return !readFile(ready).empty(); }, 10s, tag + " ready", p);
    return *p;
  }

  void waitCni(const std::string& state, std::chrono::milliseconds timeout, const std::string& what) {
    const std::string ready = readyFile("cni");
    waitFor([ready, state] { return readFile(ready).find(state) != std::string::npos; }, timeout, what,
            daemons_["cni"].get());
  }

  std::vector<HeldConnection> held() const {
    std::vector<HeldConnection> out;
    std::istringstream lines(node().sh("ss -xanH"));
    for (std::string line; std::getline(lines, line);) {
      std::istringstream f(line);
      std::string netid, state, rq, wq, local, inode, star, peer;
      if (!(f >> netid >> state >> rq >> wq >> local >> inode >> star >> peer)) continue;
      if (netid == "u_seq" && state == "ESTAB" && local == sock()) out.push_back({inode, peer, line});
    }
    return out;
  }

  static std::string render(const std::vector<HeldConnection>& v) {
    std::string out;
    for (const auto& c : v) out += "  " + c.line + "\n";
    return out.empty() ? "  (none)\n" : out;
  }

  // node2's ztunnel check as the aggregator has it: "STATUS: summary".
  std::string ztunnelCheck() const {
    std::string error;
    auto j = mesh_->getNode(nodeName(kNode), &error);
    if (j.is_null() || !j.contains("checks") || !j["checks"].is_array()) return "GetNode failed: " + error;
    for (const auto& c : j["checks"]) {
      if (c.value("name", "") == "ztunnel") return c.value("status", "?") + ": " + c.value("summary", "");
    }
    return "no ztunnel check in " + j.dump();
  }

  static bool isZtunnelNotConnectedOnNode2(const DiagFinding& f) {
    return f.code == "ZTUNNEL_NOT_CONNECTED" && f.nodeSet() == std::set<std::string>{nodeName(kNode)} &&
           f.layer == "AMBIENT";
  }

  // The whole story for one istio-cni stand-in.
  void run(const std::string& scenario, bool cni_keepalive) {
    std::vector<std::string> cni_args = {"seqpacket-listen", sock()};
    if (cni_keepalive) cni_args.insert(cni_args.end(), {"--keepalive", "5000"});
    start("cni", cni_args);
    start("ztunnel1", {"seqpacket-connect", sock()});
    waitCni("accepted 1 open 1", 10s, "istio-cni accepted ztunnel");

    // Healthy first, and the check really sees the connection (a SKIP would be quiet too).
    ASSERT_TRUE(eventually(
        "healthy matrix, zero findings, node2's ztunnel check OK with 1 connection",
        [&] {
          std::string out = healthyMismatch(true);
          Findings f = mesh_->diagnose();
          if (!f.ok || !f.list.empty()) out += f.render();
          const std::string z = ztunnelCheck();
          if (z.rfind("OK: ", 0) != 0 || z.find("1 ztunnel connection") == std::string::npos) {
            out += "ztunnel check: " + z + "\n";
          }
          return out;
        },
        kQuietDeadline));

    // ztunnel crashes.
    daemons_["ztunnel1"]->kill9();
    const auto t0 = SteadyClock::now();

    Findings f;
    const bool detected = pollUntil(
        [&] {
          f = mesh_->diagnose();
          return f.ok && std::any_of(f.list.begin(), f.list.end(), isZtunnelNotConnectedOnNode2);
        },
        kDetectDeadline, kPollEvery);
    const double detect_s = secondsSince(t0);
    const auto stale = held();
    std::cout << "DIAG scenario=" << scenario << " detect_s=" << (detected ? seconds(detect_s) : "nan")
              << " held_by_cni_at_detection=" << stale.size() << std::endl;
    ASSERT_TRUE(detected) << "no ZTUNNEL_NOT_CONNECTED on node2 within " << kDetectDeadline.count()
                          << " s of ztunnel's death\n"
                          << f.render() << "ztunnel check: " << ztunnelCheck() << "\nistio-cni's sockets:\n"
                          << render(stale) << mesh_->diagnostics();
    for (const auto& x : f.list) {
      EXPECT_TRUE(isZtunnelNotConnectedOnNode2(x)) << "unexpected finding: " << x.describe();
    }
    const std::string check = ztunnelCheck();
    EXPECT_EQ(check.rfind("FAIL: ", 0), 0u) << check;

    if (!cni_keepalive) {
      // The point of the scenario: istio-cni still held the dead ztunnel's connection
      // (ESTABLISHED, peer inode 0) when the finding was raised.
      ASSERT_EQ(stale.size(), 1u) << render(stale);
      EXPECT_EQ(stale[0].peer, "0") << render(stale);
      EXPECT_TRUE(check.find("1 connection still held by istio-cni") != std::string::npos) << check;
      EXPECT_NE(readFile(readyFile("cni")).find("open 1"), std::string::npos) << "the stand-in never closes";
    } else {
      // Its keepalive read closes the dead connection; the finding stays.
      waitCni("open 0 closed", 10s, "istio-cni closed the dead ztunnel's connection at its keepalive");
      EXPECT_TRUE(held().empty()) << render(held());
      Findings after = mesh_->diagnose();
      EXPECT_TRUE(after.ok && std::any_of(after.list.begin(), after.list.end(), isZtunnelNotConnectedOnNode2))
          << after.render();
    }

    // A new ztunnel connects: the finding clears.
    start("ztunnel2", {"seqpacket-connect", sock()});
    waitCni("accepted 2", 10s, "istio-cni accepted the new ztunnel");
    const auto t1 = SteadyClock::now();
    const bool cleared = pollUntil(
        [&] {
          f = mesh_->diagnose();
          return f.ok && std::none_of(f.list.begin(), f.list.end(), isZtunnelNotConnectedOnNode2);
        },
        kRecoveryDeadline, kPollEvery);
    std::cout << "DIAG scenario=" << scenario << ".recovery clear_s=" << (cleared ? seconds(secondsSince(t1)) : "nan")
              << std::endl;
    ASSERT_TRUE(cleared) << "ZTUNNEL_NOT_CONNECTED still active " << kRecoveryDeadline.count()
                         << " s after a new ztunnel connected\n"
                         << f.render() << "ztunnel check: " << ztunnelCheck() << "\nistio-cni's sockets:\n"
                         << render(held()) << mesh_->diagnostics();
    EXPECT_TRUE(eventually(
        "node2's ztunnel check OK with 1 connection",
        [&] {
          const std::string z = ztunnelCheck();
          bool ok = z.rfind("OK: ", 0) == 0 && z.find("1 ztunnel connection") != std::string::npos;
          // The stale connection still held next to the new one is said, not counted.
          if (!cni_keepalive) ok = ok && z.find("1 stale") != std::string::npos;
          return ok ? std::string() : z + "\n";
        },
        10s));
  }

  std::map<std::string, std::unique_ptr<Process>> daemons_;
};

TEST_F(ZtunnelGone, IstioCniThatNeverClosesTheDeadConnection) {
  run("ztunnel_dead_cni_holds", /*cni_keepalive=*/false);
}

TEST_F(ZtunnelGone, IstioCniThatClosesItAtItsKeepalive) {
  run("ztunnel_dead_cni_keepalive", /*cni_keepalive=*/true);
}

}  // namespace
}  // namespace meshprobe::e2e
