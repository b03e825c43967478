// E2E tests of the container image (label image): the binaries INSIDE the image built from
// the Dockerfile (ctest fixture `meshprobe_image`, tests/image/build-image.sh), run with
// podman in the namespace cluster of the e2e tests (tests/e2e/mesh.h).
//
// Each daemon is a container started the way Kubernetes would start it from
// manifests/base: hostNetwork (here `nsenter --net=<node netns> podman run --network host`;
// `ip netns exec` would remount /sys and hide the cgroup mounts podman needs), the
// manifests' user, capabilities (drop ALL, add what the manifest adds), read-only root
// filesystem and host mounts (the node's host root at /host, netns dir, ztunnel socket
// dir, xtables lock, probe key, istiod CA at the example overlay's /etc/istio-ca). The
// securityContext is read from the manifests' text, so the test follows them.
//
//   ImageMesh.ContainersReachEveryCellAndDiagnoseVxlanFilterOnNode2
//       aggregator container in the control netns, an agent container per node: every
//       UNDERLAY/OVERLAY/ISTIOD cell OK through the Query API, then UDP 4789 dropped on
//       node2 gives VXLAN_PORT_FILTERED on node2 quoting the rule (the containerised
//       agent ran the image's iptables-save), also as the image's own CLI reports it.
//   ImageDoctor.OnceInTheImageReportsWhatTheBareBinaryReports
//       `meshprobe-agent --once` from the image with the manifests' mounts vs the bare
//       binary in the same node netns: the same status for every check and the same
//       findings, healthy and with the 4789 DROP rule.
//
// Containers are named mpe2e-<pid>-<role>-<n> and removed (podman rm -f) in TearDown, also
// on failure; containers of earlier runs whose test process is gone are removed at start.

#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <regex>

#include "tests/e2e/mesh.h"

#ifndef MESHPROBE_TEST_IMAGE
#error "MESHPROBE_TEST_IMAGE must be defined by the build"
#endif
#ifndef MESHPROBE_SOURCE_DIR
#error "MESHPROBE_SOURCE_DIR must be defined by the build"
#endif

namespace meshprobe::e2e {
namespace {

constexpr const char* kImage = MESHPROBE_TEST_IMAGE;
constexpr const char* kSourceDir = MESHPROBE_SOURCE_DIR;

// ---- the manifests' securityContext ----

// What podman needs of a container's (and its pod's) securityContext.
struct Security {
  std::string run_as_user, run_as_group;
  std::vector<std::string> caps_add;
  bool drop_all = false, read_only = false, no_new_privileges = false, privileged = false;

  std::vector<std::string> podmanFlags() const {
    std::vector<std::string> f;
    if (!run_as_user.empty()) f.insert(f.end(), {"--user", run_as_user + (run_as_group.empty() ? "" : ":" + run_as_group)});
    if (privileged) f.push_back("--privileged");
    if (drop_all) f.insert(f.end(), {"--cap-drop", "ALL"});
    for (const auto& c : caps_add) f.insert(f.end(), {"--cap-add", c});
    // Kubernetes mounts no tmpfs on a read-only root; podman would unless told not to.
    if (read_only) f.insert(f.end(), {"--read-only", "--read-only-tmpfs=false"});
    if (no_new_privileges) f.insert(f.end(), {"--security-opt", "no-new-privileges"});
    return f;
  }
};

// Reads the securityContext fields of a one-container workload manifest (comments dropped).
// Pod- and container-level fields are merged (the container's win, as in Kubernetes:
// the container level comes later in these files).
Security readSecurity(const std::string& manifest) {
  std::ifstream in(std::string(kSourceDir) + "/manifests/base/" + manifest);
  if (!in) throw HarnessError("cannot read manifests/base/" + manifest);
  Security s;
  static const std::regex kv(R"(^\s*(runAsUser|runAsGroup|readOnlyRootFilesystem|allowPrivilegeEscalation|privileged):\s*(\S+)\s*$)");
  static const std::regex item(R"(^\s*-\s*([A-Z_]+)\s*$)");
  bool in_add = false;
  std::string line;
  while (std::getline(in, line)) {
    line = line.substr(0, line.find('#'));
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    std::smatch m;
    if (in_add && std::regex_match(line, m, item)) {
      s.caps_add.push_back(m[1]);
      continue;
    }
    in_add = std::regex_match(line, std::regex(R"(^\s*add:\s*$)"));
    if (std::regex_search(line, std::regex(R"(^\s*drop:\s*\[\s*"?ALL"?\s*\])"))) s.drop_all = true;
    if (!std::regex_match(line, m, kv)) continue;
    if (m[1] == "runAsUser") s.run_as_user = m[2];
    if (m[1] == "runAsGroup") s.run_as_group = m[2];
    if (m[1] == "readOnlyRootFilesystem") s.read_only = m[2] == "true";
    if (m[1] == "allowPrivilegeEscalation") s.no_new_privileges = m[2] == "false";
    if (m[1] == "privileged") s.privileged = m[2] == "true";
  }
  return s;
}

// ---- containers ----

CmdOptions timeoutOf(std::chrono::milliseconds t) {
  CmdOptions o;
  o.timeout = t;
  return o;
}

std::string baseName(const std::string& path) { return path.substr(path.rfind('/') + 1); }
std::string dirName(const std::string& path) { return path.substr(0, path.rfind('/')); }

// The agent's host paths mapped to where the DaemonSet mounts them (manifests/base/
// agent-daemonset.yaml, the example overlay's istio CA): returns the podman -v flags and
// rewrites the argv (the binary becomes the image's /usr/local/bin one).
std::vector<std::string> containerize(std::vector<std::string>& argv) {
  std::vector<std::string> mounts;
  auto mount = [&](const std::string& src, const std::string& dst, const std::string& opts) {
    mounts.insert(mounts.end(), {"-v", src + ":" + dst + (opts.empty() ? "" : ":" + opts)});
  };
  argv.at(0) = "/usr/local/bin/" + baseName(argv[0]);
  for (size_t i = 1; i + 1 < argv.size(); ++i) {
    std::string& value = argv[i + 1];
    if (argv[i] == "--host-root") {
      mount(value + "/proc", "/host/proc", "ro");
      mount(value + "/run/flannel", "/host/run/flannel", "ro");
      value = "/host";
    } else if (argv[i] == "--netns-dir") {
      mount(value, "/var/run/netns", "ro,rslave");  // mountPropagation: HostToContainer
      value = "/var/run/netns";
    } else if (argv[i] == "--ztunnel-socket") {
      mount(dirName(value), "/var/run/ztunnel", "ro,rslave");
      value = "/var/run/ztunnel/" + baseName(value);
    } else if (argv[i] == "--istiod-ca") {
      mount(value, "/etc/istio-ca/root-cert.pem", "ro");
      value = "/etc/istio-ca/root-cert.pem";
    } else if (argv[i] == "--probe-key-file") {
      mount(value, "/etc/meshprobe/probe-key/key", "ro");
      value = "/etc/meshprobe/probe-key/key";
    }
  }
  if (baseName(argv[0]) == "meshprobe-agent") {
    // hostPath /run/xtables.lock, type FileOrCreate (what iptables itself would create).
    if (::access("/run/xtables.lock", F_OK) != 0) writeFile("/run/xtables.lock", "", 0600);
    mount("/run/xtables.lock", "/run/xtables.lock", "");
  }
  return mounts;
}

// The containers one test made; all removed in the destructor.
class Containers {
 public:
  Containers() : agent_(readSecurity("agent-daemonset.yaml")), aggregator_(readSecurity("aggregator-deployment.yaml")) {}
  ~Containers() { removeAll(); }
  Containers(const Containers&) = delete;
  Containers& operator=(const Containers&) = delete;

  // argv that runs `argv` (a host binary and its flags) from the image in `netns`, with
  // the manifests' securityContext for the binary's role and hostNetwork.
  std::vector<std::string> command(const std::string& role, const std::string& netns, std::vector<std::string> argv) {
    const bool aggregator = baseName(argv.at(0)) == "meshprobe-aggregator";
    const std::string name = runPrefix() + role + "-" + std::to_string(++seq_);
    names_.push_back(name);
    std::vector<std::string> mounts = containerize(argv);
    std::vector<std::string> out = {"nsenter", "--net=/var/run/netns/" + netns, "podman", "run", "--rm",
                                    "--name", name, "--network", "host", "--pull", "never"};
    const auto security = (aggregator ? aggregator_ : agent_).podmanFlags();
    out.insert(out.end(), security.begin(), security.end());
    out.insert(out.end(), mounts.begin(), mounts.end());
    out.push_back(kImage);
    out.insert(out.end(), argv.begin(), argv.end());
    return out;
  }
  const std::vector<std::string>& names() const { return names_; }
  const Security& agentSecurity() const { return agent_; }
  const Security& aggregatorSecurity() const { return aggregator_; }

  // podman inspect --format FORMAT NAME (trimmed), "" when it fails.
  static std::string inspect(const std::string& name, const std::string& format) {
    CmdResult r = runCommand({"podman", "inspect", "--format", format, name}, timeoutOf(30s));
    std::string out = r.exit_code == 0 ? r.out : "";
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
    return out;
  }

  void removeAll() {
    if (names_.empty()) return;
    std::vector<std::string> argv = {"podman", "rm", "--force", "--ignore", "--time", "0"};
    argv.insert(argv.end(), names_.begin(), names_.end());
    CmdResult r = runCommand(argv, timeoutOf(120s));
    if (r.exit_code != 0) std::cerr << "container cleanup: " << r.describe() << "\n";
    names_.clear();
  }

  // Containers named mpe2e-<pid>-* of test processes that are gone (an interrupted run).
  static void removeLeftovers() {
    CmdResult r = runCommand({"podman", "ps", "--all", "--format", "{{.Names}}"}, timeoutOf(30s));
    std::istringstream in(r.out);
    std::string name;
    static const std::regex mine(R"(^mpe2e-(\d+)-.*)");
    while (std::getline(in, name)) {
      std::smatch m;
      if (!std::regex_match(name, m, mine)) continue;
      const pid_t pid = static_cast<pid_t>(std::stol(m[1]));
      if (pid == getpid() || ::kill(pid, 0) == 0 || errno != ESRCH) continue;
      runCommand({"podman", "rm", "--force", "--ignore", "--time", "0", name}, timeoutOf(60s));
    }
  }

 private:
  Security agent_, aggregator_;
  std::vector<std::string> names_;
  int seq_ = 0;
};

::testing::AssertionResult imagePresent() {
  CmdResult r = runCommand({"podman", "image", "exists", kImage}, timeoutOf(30s));
  if (r.exit_code == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "image " << kImage
                                       << " not built (ctest fixture image_build, tests/image/build-image.sh): "
                                       << r.describe();
}

// ---- the daemons in containers ----

class ImageMesh : public MeshTest {
 protected:
  static void SetUpTestSuite() { Containers::removeLeftovers(); }

  MeshOptions meshOptions() const override {
    MeshOptions o;
    o.agent_args = {"--probe-key-file", key_};
    o.launcher = [this](const std::string& role, const std::string& netns, const std::vector<std::string>& argv) {
      return containers_->command(role, netns, argv);
    };
    return o;
  }
  void SetUp() override {
    std::string why;
    if (!havePrivileges(&why)) GTEST_SKIP() << why;
    ASSERT_TRUE(imagePresent());
    containers_ = std::make_unique<Containers>();
    writeFile(key_, "image-test-probe-key\n", 0400);  // the Secret's defaultMode 0400
    MeshTest::SetUp();
  }
  void TearDown() override {
    MeshTest::TearDown();  // SIGTERM to each `podman run` (forwarded to the container), then the netns
    containers_.reset();   // podman rm -f whatever is left
  }

  TempDir tmp_{"image"};
  const std::string key_ = tmp_.sub("probe-key");
  std::unique_ptr<Containers> containers_;
};

TEST_F(ImageMesh, ContainersReachEveryCellAndDiagnoseVxlanFilterOnNode2) {
  // The daemons are the containers, run as the manifests say.
  ASSERT_EQ(containers_->names().size(), static_cast<size_t>(mesh_->nodes() + 1));
  for (const auto& name : containers_->names()) {
    const bool aggregator = name.find("aggregator") != std::string::npos;
    EXPECT_EQ(Containers::inspect(name, "{{.State.Status}}"), "running") << name << mesh_->diagnostics();
    EXPECT_EQ(Containers::inspect(name, "{{.ImageName}}"), kImage) << name;
    const Security& s = aggregator ? containers_->aggregatorSecurity() : containers_->agentSecurity();
    EXPECT_EQ(Containers::inspect(name, "{{.Config.User}}"),
              s.run_as_user + (s.run_as_group.empty() ? "" : ":" + s.run_as_group)) << name;
    std::set<std::string> want, got;
    for (const auto& c : s.caps_add) want.insert("CAP_" + c);
    std::string caps = Containers::inspect(name, "{{range .EffectiveCaps}}{{.}} {{end}}");
    std::istringstream words(caps);
    for (std::string c; words >> c;) got.insert(c);
    EXPECT_EQ(got, want) << name << ": effective capabilities \"" << caps << "\"";
  }
  EXPECT_EQ(containers_->agentSecurity().caps_add.size(), 4u) << "agent-daemonset.yaml's capabilities.add";
  EXPECT_EQ(containers_->aggregatorSecurity().run_as_user, "65532");

  double healthy_s = 0;
  ASSERT_TRUE(waitHealthy(Via::kCli, &healthy_s));
  std::cout << "IMAGE mesh healthy after " << seconds(healthy_s) << "\n";
  ASSERT_TRUE(eventually("Diagnose returns no finding", [&] {
    Findings f = mesh_->diagnose();
    return f.ok && f.list.empty() ? std::string() : f.render();
  }, 30s));

  // The fault of e2e_diagnosis S04: UDP 4789 dropped on node2.
  const auto t0 = SteadyClock::now();
  mesh_->cluster().node(2).sh("iptables -A INPUT -p udp --dport 4789 -j DROP");
  double detect_s = 0;
  ASSERT_TRUE(eventually(
      "VXLAN_PORT_FILTERED on node2 (OVERLAY) quoting the rule",
      [&] {
        Findings f = mesh_->diagnose();
        if (!f.ok) return f.render();
        for (const auto& d : f.list) {
          if (d.code != "VXLAN_PORT_FILTERED" || d.nodeSet() != std::set<std::string>{"node2"} || d.layer != "OVERLAY")
            continue;
          for (const auto& e : d.evidence) {
            if (containsNoCase(e, "4789") && containsNoCase(e, "DROP")) return std::string();
          }
          return "no evidence line quotes the rule:\n" + f.render();
        }
        return "not yet:\n" + f.render();
      },
      20s, &detect_s, t0));
  std::cout << "IMAGE VXLAN_PORT_FILTERED on node2 after " << seconds(detect_s) << "\n";
  // Nothing blames another node; only node2's istiod reachability may suffer (istiod is
  // behind node1, reached over VXLAN).
  Findings f = mesh_->diagnose();
  ASSERT_TRUE(f.ok) << f.render();
  for (const auto& d : f.list) {
    EXPECT_TRUE((d.code == "VXLAN_PORT_FILTERED" || d.code == "ISTIOD_UNREACHABLE") &&
                d.nodeSet() == std::set<std::string>{"node2"})
        << d.describe();
  }
  EXPECT_EQ(layerMismatch("UNDERLAY", kAllOk), "") << "the underlay is untouched";

  // The image's own CLI, in a container in the control netns, says the same.
  std::vector<std::string> cli = {"nsenter", "--net=" + mesh_->control().path(), "podman", "run", "--rm",
                                  "--network", "host", "--pull", "never", "--name", runPrefix() + "cli",
                                  kImage, "meshprobe", "--aggregator", Mesh::grpcAddr(), "--output", "json",
                                  "diagnose", "--node", "node2"};
  CmdResult r = runCommand(cli, timeoutOf(60s));
  runCommand({"podman", "rm", "--force", "--ignore", runPrefix() + "cli"}, timeoutOf(60s));
  std::string error;
  Findings from_image = parseFindings(Mesh::parse(r, &error));
  ASSERT_TRUE(from_image.ok) << r.describe() << " " << error;
  EXPECT_TRUE(std::any_of(from_image.list.begin(), from_image.list.end(),
                          [](const DiagFinding& d) { return d.code == "VXLAN_PORT_FILTERED"; }))
      << from_image.render();
}

// ---- the node doctor in the image ----

class ImageDoctor : public MeshTest {
 protected:
  static void SetUpTestSuite() { Containers::removeLeftovers(); }
  MeshOptions meshOptions() const override {  // daemons: the bare binaries
    MeshOptions o;
    o.nodes = 2;
    return o;
  }
  void SetUp() override {
    std::string why;
    if (!havePrivileges(&why)) GTEST_SKIP() << why;
    ASSERT_TRUE(imagePresent());
    containers_ = std::make_unique<Containers>();
    MeshTest::SetUp();
  }
  void TearDown() override {
    containers_.reset();
    MeshTest::TearDown();
  }

  // Node n's doctor flags (besides --once): what its daemon gets, without the daemon-only ones.
  std::vector<std::string> onceArgs(int n) const {
    std::vector<std::string> args = mesh_->agentArgs(n), out = {"--output", "json"};
    for (size_t i = 1; i < args.size(); i += 2) {
      if (args[i] == "--insecure") {  // the one flag without a value
        --i;
        continue;
      }
      if (args[i] == "--aggregator" || args[i] == "--interval") continue;
      out.insert(out.end(), {args[i], args[i + 1]});
    }
    return out;
  }

  AgentRun bare(int n) { return runAgentOnce(mesh_->cluster().nodeNs(n), onceArgs(n)); }

  AgentRun inImage(int n) {
    std::vector<std::string> argv = {kAgentBin, "--once"};
    const auto args = onceArgs(n);
    argv.insert(argv.end(), args.begin(), args.end());
    AgentRun run;
    run.cmd = runCommand(containers_->command("doctor-" + nodeName(n), mesh_->cluster().nodeNs(n), argv),
                         timeoutOf(90s));
    run.exit_code = run.cmd.exit_code;
    const auto first = run.cmd.out.find('{');
    if (first != std::string::npos) {
      run.json = nlohmann::json::parse(run.cmd.out.substr(first), nullptr, /*allow_exceptions=*/false);
      if (run.json.is_discarded()) run.json = nullptr;
    }
    return run;
  }

  // "" when both runs give every check the same status and raise the same finding codes.
  static std::string difference(const AgentRun& bare, const AgentRun& image) {
    if (bare.json.is_null()) return "bare run gave no JSON: " + bare.describe();
    if (image.json.is_null()) return "image run gave no JSON: " + image.describe();
    std::string out;
    std::set<std::string> names;
    for (const auto* run : {&bare, &image}) {
      for (const auto& c : run->json.value("checks", nlohmann::json::array())) names.insert(c.value("name", ""));
    }
    for (const auto& n : names) {
      if (bare.status(n) != image.status(n))
        out += "  " + n + ": bare " + bare.status(n) + ", image " + image.status(n) + "\n";
    }
    auto codes = [](const AgentRun& r) {
      std::multiset<std::string> c;
      for (const auto& f : r.json.value("findings", nlohmann::json::array())) c.insert(f.value("code", ""));
      return c;
    };
    if (codes(bare) != codes(image)) out += "  findings differ\n";
    if (bare.exit_code != image.exit_code)
      out += "  exit code: bare " + std::to_string(bare.exit_code) + ", image " + std::to_string(image.exit_code) + "\n";
    return out.empty() ? "" : out + "---- bare ----\n" + bare.describe() + "\n---- image ----\n" + image.describe();
  }

  std::unique_ptr<Containers> containers_;
};

TEST_F(ImageDoctor, OnceInTheImageReportsWhatTheBareBinaryReports) {
  // Healthy: the overlay to istiod (behind node1) is up once node2's own checks pass.
  AgentRun b, i;
  ASSERT_TRUE(eventually("node2's bare doctor passes every check it can run", [&] {
    b = bare(2);
    return b.exit_code == 0 && b.status("istiod") == "OK" ? std::string() : b.describe();
  }, 30s));
  i = inImage(2);
  EXPECT_EQ(difference(b, i), "");
  EXPECT_EQ(b.json.value("checks", nlohmann::json::array()).size(), 7u) << b.describe();
  for (const char* check : {"vxlan_device", "vxlan_socket", "vxlan_fdb", "firewall", "istiod"}) {
    EXPECT_TRUE(checkIs(i, check, {"OK"}));
  }
  std::cout << "IMAGE doctor healthy: " << i.describe() << "\n";

  // With UDP 4789 dropped on node2, both read the rule (the image's iptables-save) and fail.
  mesh_->cluster().node(2).sh("iptables -A INPUT -p udp --dport 4789 -j DROP");
  b = bare(2);
  i = inImage(2);
  EXPECT_EQ(difference(b, i), "");
  EXPECT_TRUE(checkIs(i, "firewall", {"FAIL"}));
  EXPECT_TRUE(hasFinding(i, "VXLAN_PORT_FILTERED", {"4789"}));
  EXPECT_TRUE(exitIs(i, 1));
  mesh_->cluster().node(2).sh("iptables -D INPUT -p udp --dport 4789 -j DROP");
}

}  // namespace
}  // namespace meshprobe::e2e
