// E2E tests of the diagnosis (issue 4, DESIGN §4/§7): one fault scenario per finding code /
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

#include <sys/stat.h>

#include <algorithm>
#include <fstream>

#include "tests/e2e/mesh.h"

namespace meshprobe::e2e {
namespace {

constexpr auto kQuietDeadline = 60s;     // healthy matrix + zero findings after start
constexpr auto kDetectDeadline = 20s;    // injection -> every expected finding active
constexpr auto kSettle = 3s;             // further polling before the scored sample
constexpr auto kRecoveryDeadline = 15s;  // fault removed -> finding gone
constexpr auto kPollEvery = 200ms;


// istio-cni's side of the ZDS socket for the disconnect scenario: a SOCK_SEQPACKET listener
// that accepts ztunnel and closes the connection when ztunnel hangs up (EOF), as istio-cni's
// ZDS server does. Writes its state to the ready file (atomically). The socket file stays on exit.
constexpr const char* kIstioCni = R"(import os, select, socket, sys
path, ready = sys.argv[1], sys.argv[2]
def say(text):
    with open(ready + ".tmp", "w") as f:
        f.write(text + "\n")
    os.rename(ready + ".tmp", ready)
try:
    os.unlink(path)
except FileNotFoundError:
    pass
lsn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
lsn.bind(path)
lsn.listen(16)
say("listening")
accepted, conns = 0, []
while True:
    readable, _, _ = select.select([lsn] + conns, [], [])
    for s in readable:
        if s is lsn:
            c, _ = lsn.accept()
            conns.append(c)
            accepted += 1
            say("accepted %d open %d" % (accepted, len(conns)))
            continue
        try:
            data = s.recv(65536)
        except OSError:
            data = b""
        if not data:
            conns.remove(s)
            s.close()
            say("accepted %d open %d closed" % (accepted, len(conns)))
)";

// ---- what a scenario expects ----

// A finding the scenario expects or allows: exact code, exact set of blamed nodes, exact
// layer ("" = any layer), and optionally more (`also` returns "" when the finding is fine,
// else what is wrong with it).
struct Want {
  std::string code;
  std::set<std::string> nodes;
  std::string layer;
  std::function<std::string(const DiagFinding&)> also;
  std::string also_what;  // what `also` demands, for messages

  std::string key() const {
    std::string out = code + "[";
    bool first = true;
    for (const auto& n : nodes) {
      out += (first ? "" : ",") + n;
      first = false;
    }
    return out + "]/" + (layer.empty() ? "*" : layer);
  }
  // Code, nodes and layer match (`also` not consulted).
  bool keyMatches(const DiagFinding& f) const {
    return f.code == code && f.nodeSet() == nodes && (layer.empty() || f.layer == layer);
  }
};

Want want(const std::string& code, std::set<int> nodes, const std::string& layer) {
  Want w{code, {}, layer, nullptr, ""};
  for (int n : nodes) w.nodes.insert(nodeName(n));
  return w;
}

Want withAlso(Want w, std::string what, std::function<std::string(const DiagFinding&)> also) {
  w.also_what = std::move(what);
  w.also = std::move(also);
  return w;
}

// `also`: the finding's summary or evidence mentions every word (case-insensitive).
std::function<std::string(const DiagFinding&)> mentions(std::vector<std::string> words) {
  return [words](const DiagFinding& f) {
    std::string text = f.summary;
    for (const auto& e : f.evidence) text += "\n" + e;
    for (const auto& w : words) {
      if (!containsNoCase(text, w)) return "summary/evidence do not mention \"" + w + "\"";
    }
    return std::string();
  };
}

struct Scenario {
  std::string name;
  std::vector<Want> expected;
  std::vector<Want> allowed;
  // Extra per-sample rule ("" = holds), e.g. "no finding blames node1". Checked on the scored sample.
  std::function<std::string(const Findings&)> forbid;
  bool hard = true;  // a real fault (counts in the bench's "p95 detection over hard faults")
};

struct Score {
  size_t expected = 0, found = 0, total = 0, accounted = 0;
  std::vector<std::string> missing;  // expected findings not (properly) present, with why
  std::vector<std::string> extra;    // keys of findings neither expected nor allowed
  double precision = 1, recall = 1;
};

Score score(const Scenario& s, const Findings& findings) {
  Score sc;
  sc.expected = s.expected.size();
  sc.total = findings.list.size();
  for (const auto& w : s.expected) {
    bool present = false;
    std::string why = "absent";
    for (const auto& f : findings.list) {
      if (!w.keyMatches(f)) continue;
      const std::string bad = w.also ? w.also(f) : "";
      if (bad.empty()) {
        present = true;
        break;
      }
      why = "present but " + bad + " (wanted: " + w.also_what + ")";
    }
    if (present) {
      ++sc.found;
    } else {
      sc.missing.push_back(w.key() + ": " + why);
    }
  }
  for (const auto& f : findings.list) {
    auto matches = [&f](const Want& w) { return w.keyMatches(f); };
    if (std::any_of(s.expected.begin(), s.expected.end(), matches) ||
        std::any_of(s.allowed.begin(), s.allowed.end(), matches)) {
      ++sc.accounted;
    } else {
      sc.extra.push_back(f.key());
    }
  }
  sc.precision = sc.total ? static_cast<double>(sc.accounted) / static_cast<double>(sc.total) : 1.0;
  sc.recall = sc.expected ? static_cast<double>(sc.found) / static_cast<double>(sc.expected) : 1.0;
  return sc;
}

std::string joinOr(const std::vector<std::string>& v, const std::string& sep, const std::string& none) {
  if (v.empty()) return none;
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? sep : "") + v[i];
  return out;
}

std::string fixed(double v, int digits) {
  std::ostringstream o;
  o << std::fixed << std::setprecision(digits) << v;
  return o.str();
}

std::string describeScenario(const Scenario& s) {
  std::string out = "scenario " + s.name + "\n  expected:";
  for (const auto& w : s.expected) out += " " + w.key() + (w.also ? " (" + w.also_what + ")" : "");
  out += "\n  allowed:";
  for (const auto& w : s.allowed) out += " " + w.key();
  if (s.allowed.empty()) out += " none";
  return out + "\n";
}

// Appends one JSON line to $MPE2E_DIAG_RESULTS (when set).
void recordResult(const nlohmann::json& line) {
  const char* path = std::getenv("MPE2E_DIAG_RESULTS");
  if (!path || !*path) return;
  std::ofstream out(path, std::ios::app);
  out << line.dump() << "\n";
  if (!out) std::cerr << "cannot append to MPE2E_DIAG_RESULTS=" << path << std::endl;
}

// ---- the fixture ----

class Diagnosis : public MeshTest {
 protected:
  struct Outcome {
    double detect_s = -1;  // -1: not every expected finding within the deadline
    Findings final;        // the scored sample
    Score score;
    std::set<std::string> transient;  // unaccounted findings seen while settling, but not in the final sample
    std::vector<std::string> timeline;  // every change of the findings while polling, with the time
  };

  void TearDown() override {
    // Ours first (they live in the mesh's namespaces and temp dir), then the mesh.
    daemons_.clear();
    mounts_.clear();
    netns_.clear();
    MeshTest::TearDown();
  }

  // Healthy matrix and zero findings, both at once.
  ::testing::AssertionResult waitQuiet() {
    return eventually(
        "every UNDERLAY, OVERLAY and ISTIOD cell OK and Diagnose returns zero findings",
        [&] {
          std::string out = healthyMismatch(true);
          Findings f = mesh_->diagnose();
          if (!f.ok || !f.list.empty()) out += f.render();
          return out;
        },
        kQuietDeadline);
  }

  // Polls Diagnose after the injection at `t0` (see the file comment, steps 3-4).
  Outcome detect(const Scenario& s, SteadyClock::time_point t0) {
    Outcome o;
    const bool verbose = std::getenv("MPE2E_VERBOSE") && *std::getenv("MPE2E_VERBOSE");
    std::string last_render;
    auto sample = [&] {
      o.final = mesh_->diagnose();
      std::string r = o.final.render();
      if (r != last_render) {
        o.timeline.push_back("[" + seconds(secondsSince(t0)) + "] " + r);
        if (verbose) std::cerr << s.name << " " << o.timeline.back();
        last_render = std::move(r);
      }
      o.score = score(s, o.final);
    };
    const bool detected = pollUntil(
        [&] {
          sample();
          return o.final.ok && o.score.found == o.score.expected;
        },
        kDetectDeadline, kPollEvery);
    if (detected) o.detect_s = secondsSince(t0);
    // Keep polling (never a bare sleep) for kSettle; the last sample is the one scored.
    const auto settle_end = SteadyClock::now() + kSettle;
    pollUntil(
        [&] {
          sample();
          for (const auto& e : o.score.extra) o.transient.insert(e);
          return SteadyClock::now() >= settle_end;
        },
        kSettle + 5s, kPollEvery);
    for (const auto& e : o.score.extra) o.transient.erase(e);
    return o;
  }

  void report(const Scenario& s, const Outcome& o) {
    const std::string detect = o.detect_s >= 0 ? fixed(o.detect_s, 2) : "nan";
    std::cout << "DIAG scenario=" << s.name << " detect_s=" << detect << " expected=" << o.score.expected
              << " found=" << o.score.found << " extra=" << joinOr(o.score.extra, ",", "-")
              << " precision=" << fixed(o.score.precision, 2) << " recall=" << fixed(o.score.recall, 2) << std::endl;
    if (!o.transient.empty()) {
      std::cout << "DIAG-NOTE scenario=" << s.name << " transient extra (seen while settling, gone at the end): "
                << joinOr({o.transient.begin(), o.transient.end()}, ",", "-") << std::endl;
    }
    nlohmann::json line = {{"kind", "fault"},
                           {"scenario", s.name},
                           {"test", ::testing::UnitTest::GetInstance()->current_test_info()->name()},
                           {"hard", s.hard},
                           {"detect_s", o.detect_s >= 0 ? nlohmann::json(o.detect_s) : nlohmann::json(nullptr)},
                           {"expected", o.score.expected},
                           {"found", o.score.found},
                           {"findings", o.score.total},
                           {"extra", o.score.extra},
                           {"transient", std::vector<std::string>(o.transient.begin(), o.transient.end())},
                           {"precision", o.score.precision},
                           {"recall", o.score.recall},
                           {"query_ok", o.final.ok}};
    recordResult(line);
  }

  ::testing::AssertionResult verdict(const Scenario& s, const Outcome& o) {
    std::string problems;
    if (!o.final.ok) problems += "Diagnose failed: " + o.final.error + "\n";
    if (o.detect_s < 0) {
      problems += "not every expected finding active within " + std::to_string(kDetectDeadline.count()) + " s\n";
    }
    for (const auto& m : o.score.missing) problems += "missing at the end: " + m + "\n";
    for (const auto& e : o.score.extra) problems += "finding outside expected + allowed: " + e + "\n";
    if (s.forbid) {
      if (std::string f = s.forbid(o.final); !f.empty()) problems += f + "\n";
    }
    if (problems.empty()) return ::testing::AssertionSuccess();
    std::string timeline;
    for (const auto& t : o.timeline) timeline += t;
    // The blamed nodes' own checks as the aggregator has them (GetNode): what the agent saw.
    std::set<std::string> blamed;
    for (const auto& w : s.expected) blamed.insert(w.nodes.begin(), w.nodes.end());
    std::string checks;
    for (const auto& n : blamed) {
      std::string error;
      auto node = mesh_->getNode(n, &error);
      checks += "---- " + n + "'s checks (GetNode) ----\n";
      if (node.is_null() || !node.contains("checks") || !node["checks"].is_array()) {
        checks += "  " + (node.is_null() ? error : node.dump()) + "\n";
        continue;
      }
      for (const auto& c : node["checks"]) {
        checks += "  " + c.value("name", "?") + " " + c.value("status", "?") + ": " + c.value("summary", "") + "\n";
      }
    }
    return ::testing::AssertionFailure() << describeScenario(s) << "---- problems ----\n"
                                         << problems << "---- scored sample (" << fixed(secondsSince(injected_), 1)
                                         << " s after injection) ----\n"
                                         << o.final.render() << "---- every change of Diagnose since injection ----\n"
                                         << timeline << checks << mesh_->diagnostics();
  }

  // Waits quiet, injects, detects, reports, asserts. Returns the outcome (for follow-ups).
  Outcome runScenario(const Scenario& s, const std::function<void()>& inject) {
    Outcome o;
    EXPECT_TRUE(waitQuiet()) << describeScenario(s);
    if (::testing::Test::HasFailure()) return o;
    inject();
    injected_ = SteadyClock::now();
    if (::testing::Test::HasFatalFailure()) return o;
    o = detect(s, injected_);
    report(s, o);
    EXPECT_TRUE(verdict(s, o));
    return o;
  }

  // After the fault is removed at `t0`: polls until no finding matches any of `gone`.
  void expectRecovery(const std::string& name, const std::vector<Want>& gone, SteadyClock::time_point t0) {
    Findings f;
    std::vector<std::string> timeline;
    std::string last;
    const bool cleared = pollUntil(
        [&] {
          f = mesh_->diagnose();
          if (std::string r = f.render(); r != last) {
            timeline.push_back("[" + seconds(secondsSince(t0)) + "] " + r);
            last = r;
          }
          if (!f.ok) return false;
          for (const auto& w : gone) {
            if (std::any_of(f.list.begin(), f.list.end(), [&](const DiagFinding& x) { return w.keyMatches(x); }))
              return false;
          }
          return true;
        },
        kRecoveryDeadline, kPollEvery);
    const double clear_s = cleared ? secondsSince(t0) : -1;
    std::vector<std::string> remaining;
    for (const auto& x : f.list) remaining.push_back(x.key());
    std::cout << "DIAG scenario=" << name << " clear_s=" << (cleared ? fixed(clear_s, 2) : "nan")
              << " remaining=" << joinOr(remaining, ",", "-") << std::endl;
    recordResult({{"kind", "recovery"},
                  {"scenario", name},
                  {"test", ::testing::UnitTest::GetInstance()->current_test_info()->name()},
                  {"clear_s", cleared ? nlohmann::json(clear_s) : nlohmann::json(nullptr)},
                  {"remaining", remaining}});
    std::string wanted;
    for (const auto& w : gone) wanted += " " + w.key();
    EXPECT_TRUE(cleared) << name << ": still active " << kRecoveryDeadline.count() << " s after the fault was removed:"
                         << wanted << "\n"
                         << f.render() << "---- every change of Diagnose since the fault was removed ----\n"
                         << joinOr(timeline, "", "") << mesh_->diagnostics();
  }

  // ---- fault helpers ----

  const TestNetns& node(int n) const { return mesh_->cluster().node(n); }

  // A fake daemon (istio-cni listener, ztunnel client, in-pod listeners) in `netns`; returns
  // once its ready file says so.
  Process& startDaemon(const std::string& netns, const std::string& tag, std::vector<std::string> args) {
    const std::string ready = mesh_->tmpDir() + "/logs/" + tag + ".ready";
    std::vector<std::string> argv = {kFakeDaemonBin};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--ready-file", ready});
    daemons_[tag] = std::make_unique<Process>(netns, argv, mesh_->tmpDir() + "/logs/" + tag + ".log");
    Process* p = daemons_[tag].get();
    waitFor([ready] { return !readFile(ready).empty(); }, 10s, tag + " ready", p);
    return *p;
  }

  // istio-cni's SOCK_SEQPACKET listener at node n's ztunnel socket path, and ztunnel connected
  // to it. `closing_cni`: the listener is kIstioCni (closes a connection once ztunnel hangs up,
  // as istio-cni does) instead of fake_daemon's (which holds accepted sockets forever).
  void startCniAndZtunnel(int n, bool closing_cni = false) {
    const std::string sock = mesh_->ztunnelSocket(n);
    const std::string tag = "cni" + std::to_string(n);
    if (closing_cni) {
      const std::string ready = mesh_->tmpDir() + "/logs/" + tag + ".ready";
      daemons_[tag] = std::make_unique<Process>(node(n).name(),
                                                std::vector<std::string>{"python3", "-c", kIstioCni, sock, ready},
                                                mesh_->tmpDir() + "/logs/" + tag + ".log");
      Process* p = daemons_[tag].get();
      waitFor([ready] { return !readFile(ready).empty(); }, 10s, tag + " ready", p);
    } else {
      startDaemon(node(n).name(), tag, {"seqpacket-listen", sock});
    }
    startDaemon(node(n).name(), "ztunnel" + std::to_string(n), {"seqpacket-connect", sock});
    const std::string cni_ready = mesh_->tmpDir() + "/logs/cni" + std::to_string(n) + ".ready";
    waitFor([cni_ready] { return readFile(cni_ready).find("accepted 1") != std::string::npos; }, 10s,
            "istio-cni accepted ztunnel", daemons_["cni" + std::to_string(n)].get());
  }

  // An ambient pod netns under node n's --netns-dir, with the ISTIO_* rules and/or
  // ztunnel's in-pod listeners.
  const TestNetns& addAmbientPod(int n, const std::string& name, bool rules, bool listeners) {
    netns_.push_back(std::make_unique<TestNetns>(name));
    const TestNetns& pod = *netns_.back();
    if (rules) {
      CmdOptions options;
      options.netns = pod.name();
      options.stdin_data = kIstio124InPodRules;
      mustRun({"iptables-restore"}, options);
    }
    if (listeners) startDaemon(pod.name(), name + "-listeners", {"tcp-listen", "15001", "15006", "15008"});
    const std::string dst = mesh_->netnsDir(n) + "/" + pod.name();
    mounts_.push_back(std::make_unique<BindMount>(pod.path(), dst));
    // node n's agent is already running in its own mount namespace (`ip netns exec` makes
    // one, a slave of ours, but the temp dir is not a shared mount, so our bind mount does
    // not propagate). Mount it there too, as kubelet's HostToContainer propagation of
    // /var/run/netns would; it goes away with the agent's mount namespace.
    mustRun({"nsenter", "-t", std::to_string(mesh_->agent(n).pid()), "-m", "--", "mount", "--bind", pod.path(), dst});
    return pod;
  }

  // Bridge-family nftables in the underlay netns (the bridge every node's eth0 hangs off):
  // drops bridged VXLAN packets matching `match` ("ip daddr X" ...). Nodes' own kernel state
  // stays clean.
  void underlayDropVxlan(const std::vector<std::string>& matches) {
    const TestNetns& u = mesh_->cluster().underlay();
    std::string script =
        "nft add table bridge mpf\n"
        "nft add chain bridge mpf mpfwd '{ type filter hook forward priority 0; }'\n";
    for (const auto& m : matches) script += "nft add rule bridge mpf mpfwd " + m + " udp dport 4789 drop\n";
    u.sh(script);
  }

  // Recreates node n's flannel.1 with another UDP port (same VNI, MAC, MTU, address) and
  // reprograms what flannel programs for every peer.
  void recreateVxlanDevice(int n, int port) {
    node(n).sh("ip link del flannel.1\n"
               "ip link add flannel.1 type vxlan id 1 dstport " +
               std::to_string(port) + " local " + Cluster::nodeIp(n) +
               " dev eth0 nolearning\n"
               "ip link set flannel.1 address " +
               Cluster::vtepMac(n) +
               " mtu 1450 up\n"
               "ip addr add " +
               Cluster::vtepAddr(n) + "/32 dev flannel.1\n");
    for (int p = 1; p <= mesh_->nodes(); ++p) {
      if (p != n) mesh_->cluster().programPeer(n, p);
    }
  }

  // "" unless some finding blames one of `nodes`.
  static std::function<std::string(const Findings&)> blamesNone(std::set<int> nodes) {
    return [nodes](const Findings& f) {
      std::string out;
      for (const auto& x : f.list) {
        for (int n : nodes) {
          if (x.nodeSet().count(nodeName(n))) out += "a finding blames " + nodeName(n) + ": " + x.key() + "\n";
        }
      }
      return out;
    };
  }

  SteadyClock::time_point injected_ = SteadyClock::now();
  std::map<std::string, std::unique_ptr<Process>> daemons_;
  std::vector<std::unique_ptr<BindMount>> mounts_;
  std::vector<std::unique_ptr<TestNetns>> netns_;
};

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
