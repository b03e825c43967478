#pragma once
// The fixture of the diagnosis suite (e2e_diagnosis_test.cc holds its scenarios; the file
// comment there says what a scenario does): what a scenario expects and how a Diagnose
// sample is scored, and the Diagnosis fixture that waits quiet, detects, reports, asserts
// recovery and injects faults. Everything that uses mesh.h lives here, in mesh.h's
// anonymous namespace, so only the scenarios' translation unit includes all of this header;
// the rest is in diagnosis_fixture.cc, which sees only the declarations below.

#include <algorithm>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

namespace meshprobe::e2e::diagnosis {

// istio-cni's side of the ZDS socket for the disconnect scenario (a python3 script).
extern const char* const kIstioCni;

// `v` joined with `sep`; `none` when empty.
std::string joinOr(const std::vector<std::string>& v, const std::string& sep, const std::string& none);

// `v` with exactly `digits` decimals.
std::string fixed(double v, int digits);

// Appends one JSON line to $MPE2E_DIAG_RESULTS (when set).
void recordResult(const nlohmann::json& line);

}  // namespace meshprobe::e2e::diagnosis

#ifndef MESHPROBE_DIAGNOSIS_FIXTURE_CC  // diagnosis_fixture.cc needs only the declarations above

#include "tests/e2e/mesh.h"

namespace meshprobe::e2e {
namespace {

using diagnosis::fixed;
using diagnosis::joinOr;
using diagnosis::kIstioCni;
using diagnosis::recordResult;

constexpr auto kQuietDeadline = 60s;     // healthy matrix + zero findings after start
constexpr auto kDetectDeadline = 20s;    // injection -> every expected finding active
constexpr auto kSettle = 3s;             // further polling before the scored sample
constexpr auto kRecoveryDeadline = 15s;  // fault removed -> finding gone
constexpr auto kPollEvery = 200ms;

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

std::string describeScenario(const Scenario& s) {
  std::string out = "scenario " + s.name + "\n  expected:";
  for (const auto& w : s.expected) out += " " + w.key() + (w.also ? " (" + w.also_what + ")" : "");
  out += "\n  allowed:";
  for (const auto& w : s.allowed) out += " " + w.key();
  if (s.allowed.empty()) out += " none";
  return out + "\n";
}

// ---- the fixture ----

class Diagnosis : public MeshTest {
 protected:
  struct Outcome {
    double detect_s = -1;  // -1: not every expected finding within the deadline
    Findings final;        // the scored sample
    Score score;
    std::set<std::string> transient;    // unaccounted findings seen while settling, but not in the final sample
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
    EXPECT_TRUE(cleared) << name << ": still active " << kRecoveryDeadline.count()
                         << " s after the fault was removed:" << wanted << "\n"
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
      daemons_[tag] =
          std::make_unique<Process>(node(n).name(), std::vector<std::string>{"python3", "-c", kIstioCni, sock, ready},
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
    node(n).sh(
        "ip link del flannel.1\n"
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

}  // namespace
}  // namespace meshprobe::e2e

#endif  // MESHPROBE_DIAGNOSIS_FIXTURE_CC
