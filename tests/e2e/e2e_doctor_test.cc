// E2E tests of the node doctor: the real `meshprobe-agent --once` binary, run inside a
// node netns of a two-node flannel-VXLAN "cluster" made of network namespaces,
// against real VXLAN devices, FDB/neighbour/route entries, firewall rules, a TLS istiod,
// SOCK_SEQPACKET ztunnel sockets and ambient pod netns. Each test builds a healthy node,
// injects exactly one fault, and asserts the exit code, the check's status and the
// finding code (the contract).
//
// Layout: node1 hosts the istiod pod (10.244.1.10:15012 behind node1's cni0); the agent
// runs on node2, so it reaches istiod only through VXLAN, as in the runbook. node2 has
// the istio-cni/ztunnel socket and the ambient pods.

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "tests/e2e/cluster.h"
#include "tests/e2e/harness.h"

namespace meshprobe::e2e {
namespace {

constexpr int kIstiodNode = 1;
constexpr int kAgentNode = 2;
const std::vector<std::string> kCheckNames = {"vxlan_device", "vxlan_socket", "vxlan_fdb",          "firewall",
                                              "istiod",       "ztunnel",      "ambient_redirection"};


// ---- one node under test, healthy unless told otherwise ----

enum class IstiodMode { kNone, kTlsH2, kTlsNoAlpn, kPlainTcp };
enum class ZtunnelMode { kAbsent, kListenerOnly, kConnected };

struct EnvOptions {
  ClusterOptions cluster;
  IstiodMode istiod = IstiodMode::kTlsH2;
  ZtunnelMode ztunnel = ZtunnelMode::kConnected;
  bool ambient_pod = true;  // a captured pod: Istio 1.24 rules + listeners
  bool ambient_rules = true;
  bool ambient_listeners = true;
  bool plain_pod = true;  // an uncaptured pod: neither rules nor listeners
};

class NodeEnv {
 public:
  explicit NodeEnv(const EnvOptions& options = {}) : tmp_("node"), cluster_(options.cluster) {
    chmod(tmp_.path().c_str(), 0755);  // readable by the unprivileged run too
    tmp_.mkdir("host/proc");
    tmp_.mkdir("netns");
    tmp_.mkdir("ztunnel");
    tmp_.mkdir("logs");
    writeFile(tmp_.sub("host/run/flannel/subnet.env"),
              "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244." + std::to_string(kAgentNode) +
                  ".1/24\nFLANNEL_MTU=" + std::to_string(options.cluster.underlay_mtu - 50) +
                  "\nFLANNEL_IPMASQ=true\n");
    istiod_pod_ = &cluster_.addPod(kIstiodNode, "istiod", 10);
    if (options.istiod != IstiodMode::kNone) startIstiod(options.istiod);
    if (options.ztunnel != ZtunnelMode::kAbsent) startCni();
    if (options.ztunnel == ZtunnelMode::kConnected) startZtunnel();
    if (options.ambient_pod) addAmbientPod("ambient", options.ambient_rules, options.ambient_listeners);
    if (options.plain_pod) addAmbientPod("plain", false, false);
  }

  const Cluster& cluster() const { return cluster_; }
  const TestNetns& agentNode() const { return cluster_.node(kAgentNode); }
  std::string istiodAddr() const { return Cluster::podIp(kIstiodNode, 10) + ":15012"; }
  std::string ztunnelSocket() const { return tmp_.sub("ztunnel/ztunnel.sock"); }
  std::string netnsDir() const { return tmp_.sub("netns"); }
  const TempDir& tmp() const { return tmp_; }
  const std::string& ambientPod() const { return ambient_pod_name_; }

  std::vector<std::string> agentArgs() const {
    return {"--output",
            "json",
            "--node-name",
            "e2e-node2",
            "--node-ip",
            Cluster::nodeIp(kAgentNode),
            "--vxlan-port",
            "4789",
            "--istiod",
            istiodAddr(),
            "--istiod-ca",
            testCerts().ca,
            "--ztunnel-socket",
            ztunnelSocket(),
            "--netns-dir",
            netnsDir(),
            "--host-root",
            tmp_.sub("host"),
            "--flannel-subnet-file",
            "/run/flannel/subnet.env",
            "--check-timeout",
            "10s"};
  }

  AgentRun run(const std::vector<std::string>& args, const AgentOptions& options = {}) const {
    return runAgentOnce(agentNode().name(), args, options);
  }
  AgentRun run() const { return run(agentArgs()); }

  void startIstiod(IstiodMode mode) {
    const auto& c = testCerts();
    std::vector<std::string> argv;
    if (mode == IstiodMode::kPlainTcp) {
      argv = {kFakeDaemonBin, "tcp-listen", "15012"};
    } else {
      argv = {"openssl", "s_server", "-accept", "15012", "-cert", c.cert, "-key", c.key, "-www"};
      if (mode == IstiodMode::kTlsH2) argv.insert(argv.end(), {"-alpn", "h2"});
    }
    istiod_ = std::make_unique<Process>(istiod_pod_->name(), argv, tmp_.sub("logs/istiod.log"));
    pid_t pid = istiod_->pid();
    waitFor([pid] { return tcpListening(pid, 15012); }, 10s, "istiod listener on 15012", istiod_.get());
  }
  void killIstiod() { istiod_->kill9(); }

  // istio-cni's side: the SOCK_SEQPACKET listener at the ztunnel socket path, in node2's netns.
  void startCni() {
    cni_ready_ = tmp_.sub("logs/cni.ready");
    cni_ = std::make_unique<Process>(
        agentNode().name(),
        std::vector<std::string>{kFakeDaemonBin, "seqpacket-listen", ztunnelSocket(), "--ready-file", cni_ready_},
        tmp_.sub("logs/cni.log"));
    waitFor([this] { return !readFile(cni_ready_).empty(); }, 10s, "istio-cni listener", cni_.get());
  }
  void killCni() { cni_->kill9(); }  // like a crash: the socket file stays

  // ztunnel's side: connects to the socket and holds the connection.
  void startZtunnel() {
    const std::string ready = tmp_.sub("logs/ztunnel.ready");
    ztunnel_ = std::make_unique<Process>(
        agentNode().name(),
        std::vector<std::string>{kFakeDaemonBin, "seqpacket-connect", ztunnelSocket(), "--ready-file", ready},
        tmp_.sub("logs/ztunnel.log"));
    waitFor([ready] { return !readFile(ready).empty(); }, 10s, "ztunnel connected", ztunnel_.get());
    waitFor([this] { return readFile(cni_ready_).find("accepted 1") != std::string::npos; }, 10s,
            "istio-cni accepted ztunnel", cni_.get());
  }

  // A pod netns bind-mounted into our --netns-dir under its own name, optionally with the
  // Istio 1.24 in-pod rules and ztunnel's in-pod listeners (15001/15006/15008).
  const TestNetns& addAmbientPod(const std::string& name, bool rules, bool listeners) {
    const auto& pod = cluster_.addNetns(name);
    if (rules) {
      CmdOptions options;
      options.netns = pod.name();
      options.stdin_data = kIstio124InPodRules;
      mustRun({"iptables-restore"}, options);
    }
    if (listeners) {
      const std::string ready = tmp_.sub("logs/" + name + ".ready");
      listeners_.push_back(std::make_unique<Process>(
          pod.name(),
          std::vector<std::string>{kFakeDaemonBin, "tcp-listen", "15001", "15006", "15008", "--ready-file", ready},
          tmp_.sub("logs/" + name + ".log")));
      waitFor([ready] { return !readFile(ready).empty(); }, 10s, "ztunnel in-pod listeners in " + pod.name(),
              listeners_.back().get());
    }
    mounts_.push_back(std::make_unique<BindMount>(pod.path(), netnsDir() + "/" + pod.name()));
    if (name == "ambient") ambient_pod_name_ = pod.name();
    return pod;
  }

 private:
  // Destroyed bottom-up: processes, then mounts, then namespaces, then the temp dir.
  TempDir tmp_;
  Cluster cluster_;
  const TestNetns* istiod_pod_ = nullptr;
  std::string ambient_pod_name_;
  std::string cni_ready_;
  std::vector<std::unique_ptr<BindMount>> mounts_;
  std::unique_ptr<Process> istiod_;
  std::unique_ptr<Process> cni_;
  std::unique_ptr<Process> ztunnel_;
  std::vector<std::unique_ptr<Process>> listeners_;
};

// Replaces `flag`'s value in args (or appends it).
std::vector<std::string> withFlag(std::vector<std::string> args, const std::string& flag, const std::string& value) {
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == flag) {
      args[i + 1] = value;
      return args;
    }
  }
  args.push_back(flag);
  args.push_back(value);
  return args;
}

// The check's summary mentions at least one of `words`.
::testing::AssertionResult checkMentionsAny(const AgentRun& run, std::string_view name,
                                            std::initializer_list<std::string_view> words) {
  const auto* c = run.check(name);
  if (!c) return ::testing::AssertionFailure() << "no check '" << name << "':\n" << run.describe();
  std::string summary = c->value("summary", "");
  for (auto w : words) {
    if (containsNoCase(summary, w)) return ::testing::AssertionSuccess();
  }
  std::string want;
  for (auto w : words) want += " '" + std::string(w) + "'";
  return ::testing::AssertionFailure() << "check " << name << " summary mentions none of" << want
                                       << "\n  check JSON: " << c->dump() << "\n"
                                       << run.describe();
}

// Every finding has the contract shape and is blamed on this node.
::testing::AssertionResult findingsHaveContractShape(const AgentRun& run, const std::string& node) {
  if (!run.json.is_object() || !run.json["findings"].is_array())
    return ::testing::AssertionFailure() << "no findings array:\n" << run.describe();
  static const std::set<std::string> kSeverities = {"INFO", "WARNING", "CRITICAL"};
  for (const auto& f : run.json["findings"]) {
    bool ok = f.is_object() && f.contains("code") && f["code"].is_string() && !f["code"].get<std::string>().empty() &&
              f.contains("severity") && f["severity"].is_string() &&
              kSeverities.count(f["severity"].get<std::string>()) && f.contains("layer") && f["layer"].is_string() &&
              f.contains("summary") && f["summary"].is_string() && !f["summary"].get<std::string>().empty() &&
              f.contains("evidence") && f["evidence"].is_array() && f.contains("remedy") && f["remedy"].is_string() &&
              !f["remedy"].get<std::string>().empty() && f.contains("nodes") && f["nodes"].is_array() &&
              f["nodes"].size() == 1 && f["nodes"][0] == node;
    if (!ok) return ::testing::AssertionFailure() << "finding without the contract shape: " << f.dump();
    for (const auto& e : f["evidence"]) {
      if (!e.is_string()) return ::testing::AssertionFailure() << "evidence is not strings: " << f.dump();
    }
  }
  return ::testing::AssertionSuccess();
}

class E2E : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!havePrivileges(&why)) GTEST_SKIP() << why;
  }
};

// ======================= healthy node =======================

class Healthy : public E2E {};

TEST_F(Healthy, AllChecksOkAndJsonHasContractShape) {
  NodeEnv env;
  auto run = env.run();
  ASSERT_TRUE(run.json.is_object()) << run.describe();
  EXPECT_TRUE(exitIs(run, 0));
  EXPECT_EQ(run.json.value("node", ""), "e2e-node2");
  ASSERT_TRUE(run.json["checks"].is_array()) << run.describe();
  ASSERT_TRUE(run.json["findings"].is_array()) << run.describe();
  std::multiset<std::string> names;
  for (const auto& c : run.json["checks"]) {
    ASSERT_TRUE(c.is_object() && c["name"].is_string() && c["status"].is_string() && c["summary"].is_string() &&
                c.contains("details") && c["details"].is_object())
        << "check without the contract shape: " << c.dump();
    names.insert(c["name"].get<std::string>());
    EXPECT_FALSE(c["summary"].get<std::string>().empty()) << c.dump();
  }
  EXPECT_EQ(names, std::multiset<std::string>(kCheckNames.begin(), kCheckNames.end())) << run.describe();
  // Every check applies on this node (VXLAN, istiod, ztunnel, ambient pods): all OK.
  for (const auto& name : kCheckNames) EXPECT_TRUE(checkIs(run, name, {"OK"}));
  EXPECT_TRUE(run.json["findings"].empty()) << run.describe();
  // The device's own facts are reported.
  EXPECT_TRUE(checkMentions(run, "vxlan_device", {"flannel.1", "4789"}, /*in_details=*/true));
  EXPECT_TRUE(checkMentions(run, "ambient_redirection", {env.ambientPod()}, /*in_details=*/true));
}

TEST_F(Healthy, NonAmbientNodeSkipsWithReason) {
  EnvOptions options;
  options.ztunnel = ZtunnelMode::kAbsent;
  options.ambient_pod = false;
  options.plain_pod = false;
  NodeEnv env(options);
  auto run = env.run();
  EXPECT_TRUE(exitIs(run, 0));
  EXPECT_TRUE(checkIs(run, "ztunnel", {"SKIP"}));
  EXPECT_TRUE(checkMentionsAny(run, "ztunnel", {"ztunnel.sock", "no ", "not "}));
  EXPECT_TRUE(checkIs(run, "ambient_redirection", {"OK", "SKIP"}));
  for (const auto& name : {"vxlan_device", "vxlan_socket", "vxlan_fdb", "firewall", "istiod"}) {
    EXPECT_TRUE(checkIs(run, name, {"OK"}));
  }
}

TEST_F(Healthy, TextOutputListsEveryCheck) {
  NodeEnv env;
  auto run = env.run(withFlag(env.agentArgs(), "--output", "text"));
  EXPECT_TRUE(exitIs(run, 0));
  EXPECT_TRUE(run.json.is_null()) << "text output looks like JSON";
  for (const auto& name : kCheckNames) {
    EXPECT_NE(run.cmd.out.find(name), std::string::npos) << "text output lacks " << name << ":\n" << run.cmd.out;
  }
  EXPECT_EQ(run.cmd.out.find("\033["), std::string::npos) << "colour codes when stdout is not a TTY";
}

// ======================= vxlan_device =======================

class VxlanDevice : public E2E {};

TEST_F(VxlanDevice, DeviceMissing) {
  NodeEnv env;
  env.agentNode().sh("ip link del flannel.1");
  auto run = env.run();
  EXPECT_TRUE(exitIs(run, 1));
  EXPECT_TRUE(checkIs(run, "vxlan_device", {"FAIL"}));
  EXPECT_TRUE(checkMentions(run, "vxlan_device", {"flannel.1"}));
  EXPECT_TRUE(hasFinding(run, "VXLAN_DEVICE_MISSING", {"flannel.1"}));
  EXPECT_TRUE(findingsHaveContractShape(run, "e2e-node2"));
}

TEST_F(VxlanDevice, DeviceDown) {
  NodeEnv env;
  env.agentNode().sh("ip link set flannel.1 down");
  auto run = env.run();
  EXPECT_TRUE(exitIs(run, 1));
  EXPECT_TRUE(checkIs(run, "vxlan_device", {"FAIL"}));
  EXPECT_TRUE(checkMentions(run, "vxlan_device", {"flannel.1", "down"}));
  EXPECT_TRUE(hasFinding(run, "VXLAN_DEVICE_MISSING"));
}

TEST_F(VxlanDevice, UnderlayMtuLoweredBelowDeviceMtu) {
  NodeEnv env;
  // flannel.1 stays at 1450 while eth0 drops to 1400: 1450 > 1400 - 50.
  env.agentNode().sh("ip link set eth0 mtu 1400");
  ASSERT_NE(env.agentNode().sh("ip -o link show flannel.1").find("mtu 1450"), std::string::npos)
      << "the kernel changed flannel.1's MTU itself";
  auto run = env.run();
  EXPECT_TRUE(checkIs(run, "vxlan_device", {"WARN", "FAIL"}));
  EXPECT_TRUE(checkMentions(run, "vxlan_device", {"1450"}, /*in_details=*/true));
  EXPECT_TRUE(hasFinding(run, "MTU_MISMATCH", {"1450"}));
  EXPECT_TRUE(exitMatchesChecks(run));
}

TEST_F(VxlanDevice, NonexistentDeviceFlagIsNamed) {
  NodeEnv env;
  auto run = env.run(withFlag(env.agentArgs(), "--vxlan-device", "vxlan.e2e"));
  EXPECT_TRUE(exitIs(run, 1));
  EXPECT_TRUE(checkIs(run, "vxlan_device", {"FAIL"}));
  EXPECT_TRUE(checkMentions(run, "vxlan_device", {"vxlan.e2e"}));
}

// ======================= vxlan_socket =======================

class VxlanSocket : public E2E {};

TEST_F(VxlanSocket, DevicePort8472WhileExpecting4789) {
  EnvOptions options;
  options.cluster.vxlan_port = 8472;  // flannel's Linux default on every node
  NodeEnv env(options);
  auto run = env.run();  // --vxlan-port 4789
  EXPECT_TRUE(checkIs(run, "vxlan_socket", {"WARN", "FAIL"}));
  EXPECT_TRUE(checkMentions(run, "vxlan_socket", {"8472", "4789"}));
  EXPECT_TRUE(hasFinding(run, "VXLAN_CONFIG_MISMATCH", {"8472", "4789"}));
  // The socket on the device's own port exists: not "missing".
  EXPECT_TRUE(noFinding(run, "VXLAN_SOCKET_MISSING"));
  EXPECT_TRUE(exitMatchesChecks(run));
}

TEST_F(VxlanSocket, NoSocketWhenDeviceDown) {
  NodeEnv env;
  env.agentNode().sh("ip link set flannel.1 down");  // the kernel closes the VXLAN UDP socket
  ASSERT_EQ(env.agentNode().sh("ss -Hlun 'sport = :4789'"), "") << "a UDP socket on 4789 is still bound";
  auto run = env.run();
  EXPECT_TRUE(exitIs(run, 1));
  EXPECT_TRUE(checkIs(run, "vxlan_socket", {"FAIL"}));
  EXPECT_TRUE(checkMentions(run, "vxlan_socket", {"4789"}));
  EXPECT_TRUE(hasFinding(run, "VXLAN_SOCKET_MISSING", {"4789"}));
}

// ======================= vxlan_fdb =======================

class VxlanFdb : public E2E {};

TEST_F(VxlanFdb, PeerFdbEntryDeleted) {
  NodeEnv env;
  env.agentNode().sh("bridge fdb del " + Cluster::vtepMac(kIstiodNode) + " dev flannel.1 dst " +
                     Cluster::nodeIp(kIstiodNode) + " self");
  auto run = env.run();
  EXPECT_TRUE(exitIs(run, 1));
  EXPECT_TRUE(checkIs(run, "vxlan_fdb", {"FAIL"}));
  EXPECT_TRUE(hasFinding(run, "OVERLAY_FDB_STALE", {"10.244.1.0"}));
}

TEST_F(VxlanFdb, PeerRouteDeleted) {
  NodeEnv env;
  env.agentNode().sh("ip route del " + Cluster::podSubnet(kIstiodNode));
  auto run = env.run();
  EXPECT_TRUE(exitIs(run, 1));
  EXPECT_TRUE(checkIs(run, "vxlan_fdb", {"FAIL"}));
  EXPECT_TRUE(hasFinding(run, "OVERLAY_FDB_STALE", {"10.244.1.0"}));
}

// ======================= firewall =======================

class Firewall : public E2E {
 protected:
  void expectFiltered(const AgentRun& run, std::initializer_list<std::string_view> rule_words) {
    EXPECT_TRUE(exitIs(run, 1));
    EXPECT_TRUE(checkIs(run, "firewall", {"FAIL"}));
    EXPECT_TRUE(hasFinding(run, "VXLAN_PORT_FILTERED", rule_words));
  }
};

TEST_F(Firewall, IptablesNftDropsVxlanPort) {
  NodeEnv env;
  env.agentNode().sh("iptables-nft -A INPUT -p udp --dport 4789 -j DROP");
  expectFiltered(env.run(), {"INPUT", "--dport 4789", "DROP"});
}

TEST_F(Firewall, IptablesLegacyDropsVxlanPort) {
  NodeEnv env;
  env.agentNode().sh("iptables-legacy -A INPUT -p udp --dport 4789 -j DROP");
  expectFiltered(env.run(), {"INPUT", "--dport 4789", "DROP"});
}

TEST_F(Firewall, NativeNftDropsVxlanPort) {
  NodeEnv env;
  env.agentNode().sh(
      "nft add table inet t\n"
      "nft add chain inet t in '{ type filter hook input priority 0; }'\n"
      "nft add rule inet t in udp dport 4789 drop\n");
  expectFiltered(env.run(), {"4789", "drop"});
}

TEST_F(Firewall, RejectOfIstiodPortInOutput) {
  NodeEnv env;
  env.agentNode().sh("iptables -A OUTPUT -p tcp --dport 15012 -j REJECT");
  expectFiltered(env.run(), {"OUTPUT", "15012", "REJECT"});
}

TEST_F(Firewall, HealthyRulesetIsOk) {
  NodeEnv env;
  // What a flannel + kube-proxy node carries, plus near misses that must not count:
  // TCP (not UDP) on 4789, UDP on 4790, and an ACCEPT of the VXLAN port.
  env.agentNode().sh(
      "iptables -t mangle -N KUBE-IPTABLES-HINT\n"
      "iptables -t nat -N FLANNEL-POSTRTG\n"
      "iptables -t nat -A POSTROUTING -m comment --comment 'flanneld masq' -j FLANNEL-POSTRTG\n"
      "iptables -t nat -A FLANNEL-POSTRTG -s 10.244.0.0/16 -d 10.244.0.0/16 -j RETURN\n"
      "iptables -N FLANNEL-FWD\n"
      "iptables -A FORWARD -m comment --comment 'flanneld forward' -j FLANNEL-FWD\n"
      "iptables -A FLANNEL-FWD -s 10.244.0.0/16 -j ACCEPT\n"
      "iptables -A FLANNEL-FWD -d 10.244.0.0/16 -j ACCEPT\n"
      "iptables -A INPUT -p udp --dport 4789 -j ACCEPT\n"
      "iptables -A INPUT -p tcp --dport 4789 -j DROP\n"
      "iptables -A INPUT -p udp --dport 4790 -j DROP\n");
  auto run = env.run();
  EXPECT_TRUE(checkIs(run, "firewall", {"OK"}));
  EXPECT_TRUE(noFinding(run, "VXLAN_PORT_FILTERED"));
  EXPECT_TRUE(exitIs(run, 0));
}

// A directory of fake firewall tools that print `output` and exit 0.
std::string fakeTools(const TempDir& tmp, const std::string& output) {
  std::string dir = tmp.mkdir("fakebin");
  for (const char* tool :
       {"iptables", "iptables-save", "iptables-nft", "iptables-nft-save", "iptables-legacy", "iptables-legacy-save",
        "ip6tables", "ip6tables-save", "ip6tables-nft-save", "ip6tables-legacy-save", "nft"}) {
    writeFile(dir + "/" + tool, "#!/bin/sh\n/bin/cat <<'EOF'\n" + output + "\nEOF\n", 0755);
  }
  return dir;
}

TEST_F(Firewall, UnparsableToolOutputGetsAVerdict) {
  NodeEnv env;
  AgentOptions options;
  const char* path = std::getenv("PATH");
  // The agent looks in $PATH first, so these shadow the real tools.
  options.env = {"PATH=" + fakeTools(env.tmp(), "%%% this is not a ruleset {{{ -A -j\n*filter\n-A INPUT -j") + ":" +
                 (path ? path : "/usr/sbin:/usr/bin:/sbin:/bin")};
  auto run = env.run(env.agentArgs(), options);
  ASSERT_TRUE(run.json.is_object()) << "no JSON report (crash?):\n" << run.describe();
  EXPECT_TRUE(checkIs(run, "firewall", {"FAIL", "SKIP"}));
  EXPECT_TRUE(checkMentionsAny(run, "firewall", {"iptables", "nft"}));
  // The verdict is about the output, not about a tool that did not run.
  EXPECT_TRUE(checkMentionsAny(run, "firewall", {"pars", "unexpected", "invalid", "malformed", "line"}));
  EXPECT_TRUE(exitMatchesChecks(run));
}

TEST_F(Firewall, MissingToolsGetAVerdict) {
  NodeEnv env;
  AgentOptions options;
  // The agent also searches the sbin directories when $PATH lacks a tool, so hide the
  // tools themselves: in a private mount namespace of the agent's own (gone when it
  // exits), /dev/null is bind-mounted over every iptables/nft binary.
  options.wrapper = {"unshare",
                     "--mount",
                     "--propagation",
                     "private",
                     "sh",
                     "-ec",
                     "for t in iptables-save iptables-nft-save iptables-legacy-save ip6tables-save "
                     "ip6tables-nft-save ip6tables-legacy-save nft; do\n"
                     "  p=$(command -v $t) || continue\n"
                     "  mount --bind /dev/null \"$(readlink -f \"$p\")\"\n"
                     "done\n"
                     "exec \"$@\"",
                     "hide-firewall-tools"};
  auto run = env.run(env.agentArgs(), options);
  ASSERT_TRUE(run.json.is_object()) << "no JSON report (crash?):\n" << run.describe();
  EXPECT_TRUE(checkIs(run, "firewall", {"FAIL", "SKIP"}));
  EXPECT_TRUE(checkMentionsAny(run, "firewall", {"iptables", "nft"}));
  EXPECT_TRUE(checkMentionsAny(run, "firewall",
                               {"not found", "not installed", "missing", "no such", "no executable", "no iptables"}));
  EXPECT_TRUE(exitMatchesChecks(run));
}

// ======================= istiod =======================

class Istiod : public E2E {};

TEST_F(Istiod, TlsWithH2AndVerifiedChainIsOk) {
  NodeEnv env;
  auto run = env.run();
  EXPECT_TRUE(checkIs(run, "istiod", {"OK"}));
  EXPECT_TRUE(checkMentions(run, "istiod", {"h2"}, /*in_details=*/true));
  EXPECT_TRUE(noFinding(run, "ISTIOD_UNREACHABLE"));
  EXPECT_TRUE(exitIs(run, 0));
}

TEST_F(Istiod, ListenerKilledFailsAtConnect) {
  NodeEnv env;
  env.killIstiod();
  auto run = env.run();
  EXPECT_TRUE(exitIs(run, 1));
  EXPECT_TRUE(checkIs(run, "istiod", {"FAIL"}));
  EXPECT_TRUE(checkMentions(run, "istiod", {"connect"}));
  EXPECT_TRUE(hasFinding(run, "ISTIOD_UNREACHABLE", {"connect"}));
}

TEST_F(Istiod, PlainTcpFailsAtTls) {
  EnvOptions options;
  options.istiod = IstiodMode::kPlainTcp;
  NodeEnv env(options);
  auto run = env.run();
  EXPECT_TRUE(exitIs(run, 1));
  EXPECT_TRUE(checkIs(run, "istiod", {"FAIL"}));
  EXPECT_TRUE(checkMentions(run, "istiod", {"tls"}));
  EXPECT_TRUE(hasFinding(run, "ISTIOD_UNREACHABLE", {"tls"}));
}

TEST_F(Istiod, TlsWithoutH2FailsNamingH2) {
  EnvOptions options;
  options.istiod = IstiodMode::kTlsNoAlpn;
  NodeEnv env(options);
  auto run = env.run();
  EXPECT_TRUE(exitIs(run, 1));
  EXPECT_TRUE(checkIs(run, "istiod", {"FAIL"}));
  EXPECT_TRUE(checkMentions(run, "istiod", {"h2"}));
  EXPECT_TRUE(hasFinding(run, "ISTIOD_UNREACHABLE", {"h2"}));
}

TEST_F(Istiod, UntrustedChainFailsAtTls) {
  NodeEnv env;
  auto run = env.run(withFlag(env.agentArgs(), "--istiod-ca", testCerts().other_ca));
  EXPECT_TRUE(exitIs(run, 1));
  EXPECT_TRUE(checkIs(run, "istiod", {"FAIL"}));
  EXPECT_TRUE(checkMentions(run, "istiod", {"tls"}));
}

// ======================= ztunnel =======================

class Ztunnel : public E2E {};

TEST_F(Ztunnel, SocketAbsentSkips) {
  EnvOptions options;
  options.ztunnel = ZtunnelMode::kAbsent;
  NodeEnv env(options);
  auto run = env.run();
  EXPECT_TRUE(checkIs(run, "ztunnel", {"SKIP"}));
  EXPECT_FALSE(run.check("ztunnel") && run.check("ztunnel")->value("summary", "").empty()) << "SKIP without a reason";
  EXPECT_TRUE(exitIs(run, 0));
}

TEST_F(Ztunnel, StaleSocketFileMeansCniDown) {
  EnvOptions options;
  options.ztunnel = ZtunnelMode::kListenerOnly;
  NodeEnv env(options);
  env.killCni();
  ASSERT_TRUE(std::filesystem::exists(env.ztunnelSocket())) << "the socket file should outlive the listener";
  auto run = env.run();
  EXPECT_TRUE(exitIs(run, 1));
  EXPECT_TRUE(checkIs(run, "ztunnel", {"FAIL"}));
  EXPECT_TRUE(hasFinding(run, "CNI_AGENT_DOWN", {"ztunnel.sock"}));
}

TEST_F(Ztunnel, ListenerWithoutZtunnelIsNotConnected) {
  EnvOptions options;
  options.ztunnel = ZtunnelMode::kListenerOnly;
  NodeEnv env(options);
  auto run = env.run();
  EXPECT_TRUE(exitIs(run, 1));
  EXPECT_TRUE(checkIs(run, "ztunnel", {"FAIL"}));
  EXPECT_TRUE(checkMentions(run, "ztunnel", {"no ztunnel connection"}));
  EXPECT_TRUE(hasFinding(run, "ZTUNNEL_NOT_CONNECTED"));
}

TEST_F(Ztunnel, ConnectedIsOk) {
  NodeEnv env;  // listener + connected ztunnel
  auto run = env.run();
  EXPECT_TRUE(checkIs(run, "ztunnel", {"OK"}));
  EXPECT_TRUE(noFinding(run, "ZTUNNEL_NOT_CONNECTED"));
  EXPECT_TRUE(noFinding(run, "CNI_AGENT_DOWN"));
  EXPECT_TRUE(exitIs(run, 0));
}

// ======================= ambient_redirection =======================

class Ambient : public E2E {};

TEST_F(Ambient, RulesAndListenersAreCaptured) {
  NodeEnv env;
  // The pod's interface, as a CNI plugin leaves it: a global IPv4 and IPv6 (and the
  // kernel's link-local IPv6, which is not the pod's address). Both veth ends stay in the
  // pod's netns; the peer end has no address of its own.
  sh(env.ambientPod(),
     "ip link add eth0 type veth peer name eth0-peer\n"
     "ip addr add 10.244.2.77/24 dev eth0\n"
     "ip addr add fd00:10:244:2::77/64 dev eth0 nodad\n"
     "ip link set eth0-peer up\n"
     "ip link set eth0 up\n");
  auto run = env.run();
  EXPECT_TRUE(checkIs(run, "ambient_redirection", {"OK"}));
  EXPECT_TRUE(checkMentions(run, "ambient_redirection", {env.ambientPod(), "captured"}, /*in_details=*/true));
  EXPECT_TRUE(noFinding(run, "AMBIENT_REDIRECTION_BROKEN"));
  EXPECT_TRUE(exitIs(run, 0));
  // The addresses read inside the pod's netns, beside its state (what the report's
  // pod_netns carries to the aggregator).
  const auto* check = run.check("ambient_redirection");
  ASSERT_NE(check, nullptr) << run.describe();
  const nlohmann::json pods = check->value("details", nlohmann::json::object()).value("pods", nlohmann::json::array());
  nlohmann::json pod;
  for (const auto& p : pods) {
    if (p.value("name", "") == env.ambientPod()) pod = p;
  }
  ASSERT_TRUE(pod.is_object()) << check->dump();
  EXPECT_EQ(pod.value("state", ""), "captured") << pod.dump();
  EXPECT_EQ(pod.value("ips", nlohmann::json()), nlohmann::json::array({"10.244.2.77", "fd00:10:244:2::77"}))
      << pod.dump();
}

TEST_F(Ambient, RulesWithoutListenersAreBroken) {
  EnvOptions options;
  options.ambient_listeners = false;
  NodeEnv env(options);
  auto run = env.run();
  EXPECT_TRUE(exitIs(run, 1));
  EXPECT_TRUE(checkIs(run, "ambient_redirection", {"FAIL"}));
  EXPECT_TRUE(hasFinding(run, "AMBIENT_REDIRECTION_BROKEN", {env.ambientPod()}));
}

TEST_F(Ambient, ListenersWithoutRulesAreReported) {
  EnvOptions options;
  options.ambient_rules = false;
  NodeEnv env(options);
  auto run = env.run();
  EXPECT_TRUE(checkIs(run, "ambient_redirection", {"WARN", "FAIL"}));
  EXPECT_TRUE(hasFinding(run, "AMBIENT_REDIRECTION_BROKEN", {env.ambientPod()}));
  EXPECT_TRUE(exitMatchesChecks(run));
}

// ======================= bad input =======================

class BadInput : public E2E {};
// Usage errors need no namespaces and no privileges.
class Usage : public ::testing::Test {};

TEST_F(BadInput, MissingNetnsDir) {
  NodeEnv env;
  const std::string missing = env.tmp().sub("no-such-dir");
  auto run = env.run(withFlag(env.agentArgs(), "--netns-dir", missing));
  ASSERT_TRUE(run.json.is_object()) << "no JSON report (crash?):\n" << run.describe();
  EXPECT_TRUE(checkIs(run, "ambient_redirection", {"FAIL", "SKIP"}));
  EXPECT_TRUE(checkMentions(run, "ambient_redirection", {"no-such-dir"}));
  EXPECT_TRUE(exitMatchesChecks(run));
}

TEST_F(BadInput, NetnsDirIsAFile) {
  NodeEnv env;
  const std::string file = env.tmp().sub("not-a-dir");
  writeFile(file, "x");
  auto run = env.run(withFlag(env.agentArgs(), "--netns-dir", file));
  ASSERT_TRUE(run.json.is_object()) << "no JSON report (crash?):\n" << run.describe();
  EXPECT_TRUE(checkIs(run, "ambient_redirection", {"FAIL", "SKIP"}));
  EXPECT_TRUE(checkMentions(run, "ambient_redirection", {"not-a-dir"}));
  EXPECT_TRUE(exitMatchesChecks(run));
}

TEST_F(BadInput, WithoutRootPrivilegedChecksSayWhy) {
  NodeEnv env;
  AgentOptions options;
  options.wrapper = {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"};
  auto run = env.run(env.agentArgs(), options);
  ASSERT_TRUE(run.json.is_object()) << "no JSON report (crash?):\n" << run.describe();
  for (const char* name : {"firewall", "ambient_redirection"}) {
    EXPECT_TRUE(checkIs(run, name, {"FAIL", "SKIP"}));
    EXPECT_TRUE(checkMentionsAny(run, name, {"permission", "EPERM", "EACCES", "not permitted", "root", "privilege"}));
  }
  EXPECT_TRUE(exitMatchesChecks(run));
}

TEST_F(Usage, UnknownFlagExits2NamingIt) {
  auto run = runAgentOnce("", {"--no-such-flag"});
  EXPECT_TRUE(exitIs(run, 2));
  EXPECT_NE(run.cmd.err.find("no-such-flag"), std::string::npos) << run.describe();
}

TEST_F(Usage, InvalidPortExits2NamingTheFlag) {
  auto run = runAgentOnce("", {"--vxlan-port", "70000"});
  EXPECT_TRUE(exitIs(run, 2));
  EXPECT_NE(run.cmd.err.find("vxlan-port"), std::string::npos) << run.describe();
}

TEST_F(Usage, InvalidOutputExits2NamingTheFlag) {
  auto run = runAgentOnce("", {"--output", "yaml"});
  EXPECT_TRUE(exitIs(run, 2));
  EXPECT_NE(run.cmd.err.find("output"), std::string::npos) << run.describe();
}

}  // namespace
}  // namespace meshprobe::e2e
