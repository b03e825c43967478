// E2E tests of the meshprobe CLI: the real binary in the control netns against the
// real aggregator of a 4-node mesh (mesh.h), every subcommand in text and in JSON, content
// asserted (node names, cell counts, states, checks, findings); then one fault (VXLAN port
// dropped on node3) to see FAIL cells and findings rendered. One mesh for all of it (a mesh
// costs ~10 s). Separately, without a mesh: a dead address (connection refused) and a
// blackholed one (no answer) in a small namespace: exit 1, one line naming the address, and
// never longer than --timeout.

#include "tests/e2e/mesh.h"

namespace meshprobe::e2e {
namespace {

const std::vector<std::string> kCheckNames = {"vxlan_device", "vxlan_socket", "vxlan_fdb",          "firewall",
                                              "istiod",       "ztunnel",      "ambient_redirection"};

// `meshprobe ARGS...` in `netns` with exactly these flags (no --output default added).
CmdResult meshprobe(const std::string& netns, const std::vector<std::string>& args,
                    std::chrono::milliseconds timeout = 10s, std::vector<std::string> env = {}) {
  std::vector<std::string> argv = {MESHPROBE_CLI_BIN};
  argv.insert(argv.end(), args.begin(), args.end());
  CmdOptions o;
  o.netns = netns;
  o.timeout = timeout;
  o.drop_meshprobe_env = true;
  o.env = std::move(env);
  return runCommand(argv, o);
}

bool has(const std::string& s, const std::string& what) { return s.find(what) != std::string::npos; }

bool isAscii(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

nlohmann::json parseJson(const CmdResult& r) {
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  auto j = nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(j.is_discarded()) << "not JSON:\n" << r.out;
  return j.is_discarded() ? nlohmann::json() : j;
}

class CliTest : public MeshTest {
 protected:
  // meshprobe --aggregator <mesh> ARGS (text unless ARGS say otherwise), in the control netns.
  CmdResult text(std::vector<std::string> args) {
    args.insert(args.begin(), {"--aggregator", Mesh::grpcAddr(), "--timeout", "3s"});
    return meshprobe(mesh_->control().name(), args);
  }

  // Polls `meshprobe ARGS` (text) until it exits 0 with every `want` and no `unwanted` substring
  // (cells may flicker for a moment on a loaded machine); `out` gets the last output.
  ::testing::AssertionResult textShows(const std::vector<std::string>& args, const std::vector<std::string>& want,
                                       const std::vector<std::string>& unwanted, std::string* out = nullptr,
                                       std::chrono::milliseconds timeout = 15s) {
    std::string what = "meshprobe";
    for (const auto& a : args) what += " " + a;
    return eventually(
        what,
        [&] {
          auto r = text(args);
          if (out) *out = r.out;
          if (r.exit_code != 0) return r.describe() + "\n";
          std::string missing;
          for (const auto& w : want) {
            if (!has(r.out, w)) missing += "  missing: '" + w + "'\n";
          }
          for (const auto& u : unwanted) {
            if (has(r.out, u)) missing += "  unwanted: '" + u + "'\n";
          }
          return missing.empty() ? missing : missing + r.out;
        },
        timeout);
  }
};

TEST_F(CliTest, EverySubcommandInTextAndJsonThenAFaultRendered) {
  ASSERT_TRUE(waitHealthy());  // polls `meshprobe --output json matrix --layer L` itself
  const int n = mesh_->nodes();

  // ---- nodes ----
  {
    auto j = parseJson(mesh_->cli({"nodes"}));
    ASSERT_TRUE(j.contains("nodes")) << j.dump(2);
    EXPECT_EQ(j["nodes"].size(), static_cast<size_t>(n));
    for (int i = 1; i <= n; ++i) {
      const auto* node = findNode(j, nodeName(i));
      ASSERT_NE(node, nullptr) << j.dump(2);
      EXPECT_TRUE(node->value("up", false)) << node->dump();
      EXPECT_EQ(node->value("nodeIp", ""), Cluster::nodeIp(i));
      EXPECT_EQ(node->value("vxlanPort", 0u), 4789u);
      EXPECT_TRUE(node->contains("lastReport")) << node->dump();
    }
    auto t = text({"nodes"});
    ASSERT_EQ(t.exit_code, 0) << t.describe();
    std::cout << "---- meshprobe nodes ----\n" << t.out;
    EXPECT_TRUE(has(t.out, "NODE")) << t.out;
    EXPECT_TRUE(has(t.out, "LAST REPORT")) << t.out;
    for (int i = 1; i <= n; ++i) {
      // One row per node: name, node IP, overlay IP, VNI/port, up.
      std::istringstream rows(t.out);
      bool found = false;
      for (std::string row; std::getline(rows, row);) {
        if (row.rfind(nodeName(i) + " ", 0) != 0) continue;
        found = true;
        EXPECT_TRUE(has(row, Cluster::nodeIp(i))) << row;
        EXPECT_TRUE(has(row, Cluster::vtepAddr(i))) << row;
        EXPECT_TRUE(has(row, "1/4789")) << row;
        EXPECT_TRUE(has(row, " yes ")) << row;
        EXPECT_TRUE(has(row, " ago")) << row;
      }
      EXPECT_TRUE(found) << nodeName(i) << " has no row:\n" << t.out;
    }
    EXPECT_TRUE(has(t.out, std::to_string(n) + " nodes, " + std::to_string(n) + " up")) << t.out;
    EXPECT_FALSE(has(t.out, "\033[")) << "coloured although piped:\n" << t.out;
  }

  // ---- matrix: JSON per layer, JSON of every layer, the text heatmap ----
  {
    const size_t pairs = static_cast<size_t>(n * (n - 1));
    for (const char* layer : {"UNDERLAY", "OVERLAY"}) {
      auto m = mesh_->matrix(layer);
      EXPECT_EQ(matrixMismatch(layer, m, kAllOk, n), "");
      EXPECT_EQ(m.cell_count, pairs) << layer;
    }
    auto istiod = mesh_->matrix("ISTIOD");
    EXPECT_EQ(istiodMismatch(
                  istiod, [](int) { return std::string("OK"); }, n),
              "");
    EXPECT_EQ(istiod.cell_count, static_cast<size_t>(n));

    ASSERT_TRUE(eventually(
        "meshprobe --output json matrix: {\"matrices\": [UNDERLAY, OVERLAY, ISTIOD]}, every cell OK",
        [&] {
          std::string error;
          auto all = Mesh::parse(mesh_->cli({"matrix"}), &error);
          if (all.is_null()) return error;
          if (!all.contains("matrices") || all["matrices"].size() != 3) return "not 3 matrices: " + all.dump();
          const char* layers[] = {"UNDERLAY", "OVERLAY", "ISTIOD"};
          std::string out;
          for (size_t k = 0; k < 3; ++k) {
            const auto& m = all["matrices"][k];
            if (m.value("layer", "") != layers[k]) out += std::string("not ") + layers[k] + ": " + m.dump() + "\n";
            if (m["cells"].size() != (k == 2 ? static_cast<size_t>(n) : pairs)) {
              out += std::string(layers[k]) + ": " + std::to_string(m["cells"].size()) + " cells\n";
            }
            for (const auto& c : m["cells"]) {
              if (c.value("state", "") != "OK") out += "not OK: " + c.dump() + "\n";
            }
          }
          return out;
        },
        15s));

    // The text heatmaps: every layer, every node's row (index, name, its cells: all OK but
    // itself), the counts, no broken pairs; piped, so plain ASCII.
    std::vector<std::string> want = {
        "UNDERLAY  rows = source, columns = destination",
        "OVERLAY  rows = source, columns = destination",
        "ISTIOD  rows = source, columns = destination",
        "UNDERLAY: " + std::to_string(pairs) + " pairs: " + std::to_string(pairs) + " OK",
        "OVERLAY: " + std::to_string(pairs) + " pairs: " + std::to_string(pairs) + " OK",
        "ISTIOD: " + std::to_string(n) + " pairs: " + std::to_string(n) + " OK",
    };
    for (int i = 1; i <= n; ++i) {
      std::string row = std::to_string(i) + " " + nodeName(i) + "  ";
      for (int d = 1; d <= n; ++d) row += std::string(d == i ? "-" : "o") + (d < n ? " " : "");
      want.push_back(row);
    }
    std::string t;
    EXPECT_TRUE(textShows({"matrix"}, want, {"broken pairs", "\033["}, &t));
    std::cout << "---- meshprobe matrix ----\n" << t;
    EXPECT_TRUE(isAscii(t)) << "piped output must be plain ASCII:\n" << t;

    auto one = text({"matrix", "--layer", "OVERLAY"});
    ASSERT_EQ(one.exit_code, 0) << one.describe();
    EXPECT_TRUE(has(one.out, "OVERLAY  rows")) << one.out;
    EXPECT_FALSE(has(one.out, "UNDERLAY")) << one.out;
  }

  // ---- node NAME ----
  {
    auto j = parseJson(mesh_->cli({"node", "node2"}));
    ASSERT_TRUE(j.contains("checks") && j["checks"].is_array()) << j.dump(2);
    EXPECT_EQ(j["node"].value("name", ""), "node2");
    std::map<std::string, std::string> checks;  // name -> status
    for (const auto& c : j["checks"]) checks[c.value("name", "")] = c.value("status", "");
    for (const auto& name : kCheckNames) EXPECT_TRUE(checks.count(name)) << name << " missing: " << j.dump(2);
    EXPECT_EQ(checks["vxlan_device"], "OK");
    EXPECT_FALSE(j["probes"].empty()) << j.dump(2);

    auto t = text({"node", "node2"});
    ASSERT_EQ(t.exit_code, 0) << t.describe();
    std::cout << "---- meshprobe node node2 ----\n" << t.out;
    EXPECT_EQ(t.out.rfind("node2  up  last report ", 0), 0u) << t.out;
    EXPECT_TRUE(has(t.out, "  node IP     " + Cluster::nodeIp(2))) << t.out;
    // Each check on its own line, with the status the JSON gave and its summary.
    for (const auto& c : j["checks"]) {
      const std::string status = c.value("status", ""), name = c.value("name", ""), summary = c.value("summary", "");
      std::string line;
      std::istringstream rows(t.out);
      for (std::string row; std::getline(rows, row);) {
        if (has(row, " " + name + " ")) line = row;
      }
      EXPECT_EQ(line.rfind("  " + status, 0), 0u) << name << ": '" << line << "' in:\n" << t.out;
      // The summary as JSON had it, up to any timings (a newer report may have come in between).
      const std::string stable = summary.substr(0, std::min<size_t>(summary.find('('), 40));
      EXPECT_TRUE(has(line, stable)) << name << ": '" << line << "' lacks '" << stable << "'";
    }
    for (int d : {1, 3, 4}) EXPECT_TRUE(has(t.out, "  OVERLAY   " + nodeName(d))) << t.out;
    EXPECT_TRUE(has(t.out, "Findings\n")) << t.out;
  }

  // ---- diagnose: text agrees with JSON ----
  auto diagnoseAgrees = [&](const std::vector<std::string>& extra) {
    std::vector<std::string> args = {"diagnose"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto j = parseJson(mesh_->cli(args));
    auto t = text(args);
    EXPECT_EQ(t.exit_code, 0) << t.describe();  // findings or not
    EXPECT_TRUE(j.contains("findings") && j["findings"].is_array()) << j.dump(2);
    if (j["findings"].empty()) {
      EXPECT_TRUE(has(t.out, "no active findings")) << t.out;
    } else {
      EXPECT_TRUE(has(t.out, std::to_string(j["findings"].size()) + " active finding")) << t.out;
      for (const auto& f : j["findings"]) {
        EXPECT_TRUE(has(t.out, f.value("code", "?"))) << f.dump() << "\n" << t.out;
        EXPECT_TRUE(has(t.out, f.value("summary", "?"))) << f.dump() << "\n" << t.out;
      }
    }
    return std::make_pair(j, t.out);
  };
  {
    auto [j, t] = diagnoseAgrees({});
    std::cout << "---- meshprobe diagnose (healthy) ----\n" << t;
    auto [j2, t2] = diagnoseAgrees({"--node", "node3"});
    EXPECT_TRUE(has(t2, j2["findings"].empty() ? "no active findings for node3" : "for node3")) << t2;
  }

  // ---- usage and unknown names against the live aggregator ----
  {
    auto unknown = text({"node", "node9"});
    EXPECT_EQ(unknown.exit_code, 1) << unknown.describe();
    EXPECT_TRUE(has(unknown.err, "no node named 'node9'")) << unknown.err;
    EXPECT_TRUE(has(unknown.err, Mesh::grpcAddr())) << unknown.err;
    EXPECT_TRUE(unknown.out.empty()) << unknown.out;
    auto unknown_diag = mesh_->cli({"diagnose", "--node", "node9"});
    EXPECT_EQ(unknown_diag.exit_code, 1) << unknown_diag.describe();
    EXPECT_TRUE(has(unknown_diag.err, "node9")) << unknown_diag.err;
    auto bad_layer = text({"matrix", "--layer", "AMBIENT"});
    EXPECT_EQ(bad_layer.exit_code, 2) << bad_layer.describe();
    auto bad_flag = text({"nodes", "--colour"});
    EXPECT_EQ(bad_flag.exit_code, 2) << bad_flag.describe();
    EXPECT_TRUE(has(bad_flag.err, "--colour")) << bad_flag.err;
    auto help = text({"diagnose", "--help"});
    EXPECT_EQ(help.exit_code, 0) << help.describe();
    EXPECT_TRUE(has(help.out, "Usage: meshprobe [FLAGS] diagnose")) << help.out;
  }

  // ---- a fault: node3 drops VXLAN, so its OVERLAY row and column FAIL ----
  mesh_->cluster().node(3).sh("iptables -A INPUT -p udp --dport 4789 -j DROP");
  const Expect node3Fails = [](int s, int d) { return std::string(s == 3 || d == 3 ? "FAIL" : "OK"); };
  ASSERT_TRUE(eventually(
      "OVERLAY cells to and from node3 FAIL, the rest OK", [&] { return layerMismatch("OVERLAY", node3Fails); }, 30s));
  {
    std::string t;
    EXPECT_TRUE(
        textShows({"matrix", "--layer", "OVERLAY"},
                  {"3 node3  X X - X", "1 node1  - o X o", "OVERLAY: 12 pairs: 6 OK, 0 DEGRADED, 6 FAIL, 0 UNKNOWN",
                   "suspect: node3 (3): every pair to and from it is broken", "broken pairs:", "  node3  node1  FAIL"},
                  {"UNDERLAY"}, &t));
    std::cout << "---- meshprobe matrix --layer OVERLAY (node3 drops VXLAN) ----\n" << t;
  }
  // The same fault through the filters and paging: only the FAIL cells, two per page, every
  // page fetched (progress on stderr), one JSON answer without the paging fields.
  ASSERT_TRUE(eventually(
      "meshprobe --output json matrix --layer OVERLAY --state FAIL --page-size 2: node3's 6 FAIL cells in 3 pages",
      [&] {
        auto r = mesh_->cli({"matrix", "--layer", "OVERLAY", "--state", "FAIL", "--page-size", "2"});
        std::string error;
        auto j = Mesh::parse(r, &error);
        if (j.is_null()) return error;
        std::string out;
        if (j["cells"].size() != 6) out += std::to_string(j["cells"].size()) + " cells\n";
        for (const auto& c : j["cells"]) {
          if (c.value("state", "") != "FAIL" || (c.value("src", "") != "node3" && c.value("dst", "") != "node3")) {
            out += "unexpected: " + c.dump() + "\n";
          }
        }
        if (j.contains("nextPageToken") || j.contains("totalCells")) out += "paging fields in the output\n";
        if (!has(r.err, "OVERLAY: 2 of 6 cells\n") || !has(r.err, "OVERLAY: 6 of 6 cells\n")) {
          out += "no progress on stderr: " + r.err;
        }
        return out.empty() ? out : out + j.dump();
      },
      15s));
  {
    std::string t;
    EXPECT_TRUE(textShows({"matrix", "--layer", "OVERLAY", "--node", "node3", "--state", "FAIL"},
                          {"(only from or to node3; FAIL)", "3 node3  X X - X",
                           "OVERLAY: 6 pairs shown: 0 OK, 0 DEGRADED, 6 FAIL, 0 UNKNOWN"},
                          {"suspect:"}, &t));
    std::cout << "---- meshprobe matrix --layer OVERLAY --node node3 --state FAIL ----\n" << t;
    auto unknown = text({"matrix", "--layer", "OVERLAY", "--node", "node9"});
    EXPECT_EQ(unknown.exit_code, 1) << unknown.describe();
    EXPECT_TRUE(has(unknown.err, "no node named 'node9'")) << unknown.err;
  }
  // The doctor names it: some CRITICAL finding blaming node3, in text as in JSON.
  ASSERT_TRUE(eventually(
      "a finding blaming node3",
      [&] {
        std::string error;
        auto j = Mesh::parse(mesh_->cli({"diagnose", "--node", "node3"}), &error);
        if (j.is_null()) return error;
        if (!j.contains("findings") || j["findings"].empty()) return "no findings: " + j.dump();
        return std::string();
      },
      30s));
  {
    auto [j, t] = diagnoseAgrees({"--node", "node3"});
    std::cout << "---- meshprobe diagnose --node node3 (node3 drops VXLAN) ----\n" << t;
    ASSERT_FALSE(j["findings"].empty());
    const auto& first = j["findings"][0];
    EXPECT_TRUE(has(t, "  nodes:    ")) << t;
    EXPECT_TRUE(has(t, "  layer:    " + first.value("layer", "?"))) << t;
    EXPECT_TRUE(has(t, "  since:    ")) << t;
    if (!first.value("remedy", "").empty()) {
      EXPECT_TRUE(has(t, "  remedy:   " + first.value("remedy", ""))) << t;
    }
    if (!first.value("id", "").empty()) {
      EXPECT_TRUE(has(t, "  id:       " + first.value("id", ""))) << t;
    }
    // Most severe first, as the text lists them.
    size_t last = 0;
    for (const char* sev : {"CRITICAL  ", "WARNING   ", "INFO      "}) {
      auto at = t.find(std::string("\n") + sev);
      if (at == std::string::npos) continue;
      EXPECT_GE(at, last) << sev << " listed before a more severe finding:\n" << t;
      last = t.rfind(std::string("\n") + sev);
    }
    auto node = text({"node", "node3"});
    ASSERT_EQ(node.exit_code, 0) << node.describe();
    // node NAME shows the diagnosis blaming it too.
    EXPECT_TRUE(has(node.out, "Findings\n  " + first.value("severity", "?"))) << "node3's findings:\n" << node.out;
    EXPECT_TRUE(has(node.out, first.value("code", "?"))) << "node3's findings:\n" << node.out;
    EXPECT_TRUE(has(node.out, "FAILING(")) << "node3's failing probes:\n" << node.out;
  }
}

// ---- a dead aggregator: no mesh needed, a namespace with the control address ----

TEST(CliDeadAggregator, RefusedAndBlackholedAddressesFailFastNamingTheAddress) {
  std::string why;
  if (!havePrivileges(&why)) GTEST_SKIP() << why;
  dropMeshprobeEnv();
  TestNetns ns("cli-dead");
  // 198.51.100.2 is local (port 1: nothing listens, connect refused); the rest of the /24 sits
  // behind a veth whose peer has no address, so ARP for .99 goes unanswered (connect hangs for
  // ~3 s before EHOSTUNREACH: only --timeout ends it sooner).
  ns.sh(
      "ip link set lo up; ip link add v0 type veth peer name v1; ip link set v1 up; ip link set v0 up; "
      "ip addr add 198.51.100.2/24 dev v0");

  for (std::vector<std::string> cmd : {std::vector<std::string>{"nodes"},
                                       {"matrix"},
                                       {"matrix", "--layer", "ISTIOD"},
                                       {"node", "node1"},
                                       {"diagnose"}}) {
    for (const char* output : {"text", "json"}) {
      std::vector<std::string> args = {"--aggregator", "198.51.100.2:1", "--output", output, "--timeout", "2s"};
      args.insert(args.end(), cmd.begin(), cmd.end());
      const auto t0 = SteadyClock::now();
      auto r = meshprobe(ns.name(), args);
      const double took = secondsSince(t0);
      SCOPED_TRACE(r.describe());
      EXPECT_EQ(r.exit_code, 1);
      EXPECT_EQ(r.err, "meshprobe: cannot reach the aggregator at 198.51.100.2:1: connection refused (UNAVAILABLE)\n");
      EXPECT_TRUE(r.out.empty()) << r.out;
      EXPECT_LT(took, 2.0) << "a refused connection must not wait for the deadline";
    }
  }

  // Blackholed: exit 1 right after --timeout (1s), never a hang.
  const auto t0 = SteadyClock::now();
  auto r = meshprobe(ns.name(), {"--aggregator", "198.51.100.99:9470", "--timeout", "1s", "matrix"});
  const double took = secondsSince(t0);
  SCOPED_TRACE(r.describe());
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, "meshprobe: cannot reach the aggregator at 198.51.100.99:9470: ")) << r.err;
  EXPECT_TRUE(has(r.err, "(DEADLINE_EXCEEDED)") || has(r.err, "(UNAVAILABLE)")) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_GE(took, 0.9);
  EXPECT_LT(took, 2.5) << "--timeout 1s must bound the whole command (three layers)";
  std::cout << "blackholed aggregator, --timeout 1s: exit " << r.exit_code << " after " << seconds(took) << ": "
            << r.err;

  // The default address when nothing is given: 127.0.0.1:9470, also named.
  auto d = meshprobe(ns.name(), {"nodes"});
  EXPECT_EQ(d.exit_code, 1) << d.describe();
  EXPECT_TRUE(has(d.err, "127.0.0.1:9470: connection refused")) << d.err;
  // The environment variable works too.
  auto e = meshprobe(ns.name(), {"nodes"}, 10s, {"MESHPROBE_AGGREGATOR=198.51.100.2:2"});
  EXPECT_EQ(e.exit_code, 1) << e.describe();
  EXPECT_TRUE(has(e.err, "198.51.100.2:2: connection refused")) << e.err;
}

}  // namespace
}  // namespace meshprobe::e2e
