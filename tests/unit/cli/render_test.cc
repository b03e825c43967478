// The CLI's text renderers (cli/render.h): pure proto-in, string-out, so layouts are asserted
// exactly: plain vs TTY (colours, Unicode), the 50-node heatmap, empty cluster, findings.
#include "cli/render.h"

#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>

namespace meshprobe::cli {
namespace {

namespace v1 = meshprobe::v1;
using google::protobuf::util::TimeUtil;

constexpr int64_t kNow = 1795000000;  // 2026-11-18 11:06:40Z

google::protobuf::Timestamp at(int64_t seconds) {
  google::protobuf::Timestamp t;
  t.set_seconds(seconds);
  return t;
}

RenderOptions plain() {
  RenderOptions o;
  o.now = at(kNow);
  return o;
}

RenderOptions tty(bool color = true) {
  RenderOptions o = plain();
  o.unicode = true;
  o.color = color;
  return o;
}

bool hasEscape(const std::string& s) { return s.find('\033') != std::string::npos; }
bool isAscii(const std::string& s) {
  for (unsigned char c : s) {
    if (c >= 0x80) return false;
  }
  return true;
}

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

std::string nodeName(int i) { return "node" + std::to_string(i); }

// A full matrix of `n` nodes, every cell OK except those `state` returns otherwise.
v1::GetMatrixResponse matrix(v1::Layer layer, int n, const std::function<v1::Cell::State(int, int)>& state,
                             const std::function<std::string(int)>& name = nodeName) {
  v1::GetMatrixResponse r;
  r.set_layer(layer);
  for (int i = 1; i <= n; ++i) r.add_nodes(name(i));
  for (int s = 1; s <= n; ++s) {
    for (int d = 1; d <= n; ++d) {
      if (s == d) continue;
      auto* c = r.add_cells();
      c->set_src(name(s));
      c->set_dst(name(d));
      c->set_layer(layer);
      c->set_state(state(s, d));
      *c->mutable_rtt() = TimeUtil::MillisecondsToDuration(1);
      c->set_loss(c->state() == v1::Cell::FAIL ? 1.0 : 0.0);
      *c->mutable_last_update() = at(kNow - 2);
    }
  }
  return r;
}

// ---------------- building blocks ----------------

TEST(FormatAge, SecondsMinutesHoursDaysAndClockSkew) {
  EXPECT_EQ(formatAge(at(kNow), at(kNow)), "0s");
  EXPECT_EQ(formatAge(at(kNow - 42), at(kNow)), "42s");
  EXPECT_EQ(formatAge(at(kNow - 185), at(kNow)), "3m05s");
  EXPECT_EQ(formatAge(at(kNow - 2 * 3600 - 7 * 60), at(kNow)), "2h07m");
  EXPECT_EQ(formatAge(at(kNow - 3 * 86400 - 4 * 3600), at(kNow)), "3d04h");
  EXPECT_EQ(formatAge(at(kNow + 5), at(kNow)), "0s");  // the aggregator's clock ahead of ours
}

TEST(FormatTime, UtcWithZ) { EXPECT_EQ(formatTime(at(kNow)), "2026-11-18 11:06:40Z"); }

TEST(FormatRtt, ScalesWithMagnitude) {
  EXPECT_EQ(formatRtt(TimeUtil::MicrosecondsToDuration(420)), "0.42ms");
  EXPECT_EQ(formatRtt(TimeUtil::MicrosecondsToDuration(12345)), "12.3ms");
  EXPECT_EQ(formatRtt(TimeUtil::MillisecondsToDuration(1200)), "1.20s");
}

TEST(DisplayWidth, IgnoresAnsiEscapesAndCountsCodePoints) {
  EXPECT_EQ(displayWidth("abc"), 3u);
  EXPECT_EQ(displayWidth("\033[1;31mX\033[0m"), 1u);
  EXPECT_EQ(displayWidth("●◐✖"), 3u);
  EXPECT_EQ(displayWidth("\033[32m●\033[0m ok"), 4u);
}

TEST(Json, CamelCaseNamesAndPrimitiveFieldsAlwaysPrinted) {
  v1::ListNodesResponse r;
  auto* n = r.add_nodes();
  n->set_name("node1");
  n->set_node_ip("198.51.100.11");
  n->set_up(false);
  auto j = nlohmann::json::parse(toJson(r));
  ASSERT_EQ(j["nodes"].size(), 1u);
  EXPECT_EQ(j["nodes"][0]["nodeIp"], "198.51.100.11");
  EXPECT_EQ(j["nodes"][0]["up"], false);      // a default bool is still printed
  EXPECT_EQ(j["nodes"][0]["vxlanVni"], 0);    // and a default number
  EXPECT_EQ(j["nodes"][0]["overlayIp"], "");  // and a default string
  EXPECT_FALSE(j["nodes"][0].contains("node_ip"));
}

TEST(Json, MatricesWrapEveryLayerInOneDocument) {
  std::vector<v1::GetMatrixResponse> layers = {
      matrix(v1::UNDERLAY, 2, [](int, int) { return v1::Cell::OK; }),
      matrix(v1::OVERLAY, 2, [](int, int) { return v1::Cell::FAIL; }),
  };
  auto j = nlohmann::json::parse(matricesToJson(layers));
  ASSERT_EQ(j["matrices"].size(), 2u);
  EXPECT_EQ(j["matrices"][0]["layer"], "UNDERLAY");
  EXPECT_EQ(j["matrices"][1]["layer"], "OVERLAY");
  EXPECT_EQ(j["matrices"][1]["cells"].size(), 2u);
  EXPECT_EQ(j["matrices"][1]["cells"][0]["state"], "FAIL");
  EXPECT_EQ(j["matrices"][0]["cells"][0]["loss"], 0);
  EXPECT_EQ(nlohmann::json::parse(matricesToJson({}))["matrices"].size(), 0u);
}

// ---------------- nodes ----------------

v1::ListNodesResponse twoNodes() {
  v1::ListNodesResponse r;
  auto* a = r.add_nodes();
  a->set_name("node1");
  a->set_node_ip("198.51.100.11");
  a->set_overlay_ip("10.244.1.0");
  a->set_vxlan_vni(1);
  a->set_vxlan_port(4789);
  a->set_vxlan_mtu(1450);
  a->set_pod_cidr("10.244.1.0/24");
  a->set_up(true);
  *a->mutable_last_report() = at(kNow - 1);
  auto* b = r.add_nodes();
  b->set_name("node-with-long-name");
  b->set_node_ip("198.51.100.12");
  b->set_overlay_ip("10.244.2.0");
  b->set_vxlan_vni(1);
  b->set_vxlan_port(4789);
  b->set_vxlan_mtu(1450);
  b->set_pod_cidr("10.244.2.0/24");
  b->set_up(false);
  *b->mutable_last_report() = at(kNow - 185);
  return r;
}

TEST(RenderNodes, PlainTableExactly) {
  EXPECT_EQ(renderNodes(twoNodes(), plain()),
            "NODE                 NODE IP        OVERLAY IP  VNI/PORT  MTU   UP   LAST REPORT  POD CIDR\n"
            "node1                198.51.100.11  10.244.1.0  1/4789    1450  yes  1s ago       10.244.1.0/24\n"
            "node-with-long-name  198.51.100.12  10.244.2.0  1/4789    1450  NO   3m05s ago    10.244.2.0/24\n"
            "\n"
            "2 nodes, 1 up, 1 stale\n");
}

TEST(RenderNodes, ColoursOnlyWhenAskedAndColumnsStayAligned) {
  const std::string c = renderNodes(twoNodes(), tty());
  EXPECT_NE(c.find("\033[32myes\033[0m"), std::string::npos) << c;
  EXPECT_NE(c.find("\033[1;31mNO\033[0m"), std::string::npos) << c;
  // Escapes do not count as width: the LAST REPORT column starts at the same display column.
  auto ls = lines(c);
  ASSERT_GE(ls.size(), 3u);
  auto col = [](const std::string& l, const std::string& what) { return displayWidth(l.substr(0, l.find(what))); };
  EXPECT_EQ(col(ls[1], "1s ago"), col(ls[2], "3m05s ago"));
  EXPECT_FALSE(hasEscape(renderNodes(twoNodes(), tty(/*color=*/false))));
}

TEST(RenderNodes, UnsetLastReportIsNeverAndVniMismatchIsWarned) {
  auto r = twoNodes();
  r.mutable_nodes(1)->clear_last_report();
  r.mutable_nodes(1)->set_vxlan_port(8472);
  const std::string out = renderNodes(r, plain());
  EXPECT_NE(out.find("never"), std::string::npos) << out;
  EXPECT_NE(out.find("1/8472"), std::string::npos) << out;
  EXPECT_NE(out.find("warning: nodes disagree on VXLAN VNI/port (1/4789, 1/8472)"), std::string::npos) << out;
}

TEST(RenderNodes, KubernetesNodesWithoutAnAgentAreRowsMarkedMissing) {
  auto r = twoNodes();
  auto* m = r.add_missing_agents();
  m->set_name("node4");
  m->set_ready(true);
  m->set_agent_pod("meshprobe/meshprobe-agent-c2vns");
  m->set_pod_state("CrashLoopBackOff");
  m->set_reason(
      "no meshprobe agent reports from Ready node node4: its agent pod meshprobe/meshprobe-agent-c2vns is "
      "in CrashLoopBackOff");
  auto* n = r.add_missing_agents();
  n->set_name("node5");
  n->set_reason("no meshprobe agent pod is scheduled on it");
  n->set_agent_pod("meshprobe/meshprobe-agent-zz");
  n->set_pod_state("Pending");
  EXPECT_EQ(renderNodes(r, plain()),
            "NODE                 NODE IP        OVERLAY IP  VNI/PORT  MTU   UP       LAST REPORT  POD CIDR\n"
            "node1                198.51.100.11  10.244.1.0  1/4789    1450  yes      1s ago       10.244.1.0/24\n"
            "node-with-long-name  198.51.100.12  10.244.2.0  1/4789    1450  NO       3m05s ago    10.244.2.0/24\n"
            "node4                -              -           -         -     MISSING  never        -\n"
            "node5                -              -           -         -     MISSING  never        -\n"
            "\n"
            "2 nodes, 1 up, 1 stale, 2 Kubernetes nodes without an agent\n"
            "  node4: no meshprobe agent reports from Ready node node4: its agent pod meshprobe/meshprobe-agent-c2vns "
            "is in CrashLoopBackOff\n"
            "  node5: no meshprobe agent pod is scheduled on it (agent pod meshprobe/meshprobe-agent-zz: Pending) "
            "[node NotReady]\n");
  EXPECT_NE(renderNodes(r, tty()).find("\033[1;31mMISSING\033[0m"), std::string::npos);
  // Only missing nodes (no agent has said Hello yet): still a table.
  v1::ListNodesResponse only;
  *only.add_missing_agents() = *m;
  EXPECT_NE(renderNodes(only, plain()).find("0 nodes, 0 up, 1 Kubernetes node without an agent"), std::string::npos);
}

TEST(RenderNamespaces, PlainTableExactly) {
  v1::ListNamespacesResponse r;
  auto* a = r.add_namespaces();
  a->set_name("default");
  a->set_running_pods(4);
  auto* b = r.add_namespaces();
  b->set_name("payments");
  b->set_expect_ambient(true);
  b->set_running_pods(2);
  b->add_findings("NAMESPACE_NOT_AMBIENT");
  auto* c = r.add_namespaces();
  c->set_name("shop");
  c->set_dataplane_mode("ambient");
  c->set_running_pods(5);
  c->set_captured_pods(3);
  c->set_unknown_pods(1);
  c->add_findings("POD_NOT_CAPTURED");
  EXPECT_EQ(renderNamespaces(r, plain()),
            "NAMESPACE  DATAPLANE MODE  EXPECT AMBIENT  CAPTURED         FINDINGS\n"
            "default    -               -               0/4              -\n"
            "payments   -               yes             0/2              NAMESPACE_NOT_AMBIENT\n"
            "shop       ambient         -               3/5 (1 unknown)  POD_NOT_CAPTURED\n"
            "\n"
            "3 namespaces, 1 ambient, 2 with findings\n"
            "CAPTURED: running pods the agents found captured by ztunnel / running pods (unknown: not reported by an "
            "agent)\n");
  const std::string colored = renderNamespaces(r, tty());
  EXPECT_NE(colored.find("\033[1;31mNAMESPACE_NOT_AMBIENT\033[0m"), std::string::npos) << colored;
  EXPECT_EQ(renderNamespaces(v1::ListNamespacesResponse(), plain()), "the Kubernetes API shows no namespaces\n");
}

TEST(RenderNodes, EmptyCluster) {
  EXPECT_EQ(renderNodes(v1::ListNodesResponse(), plain()), "no nodes have reported to the aggregator yet\n");
}

// ---------------- matrix ----------------

TEST(RenderMatrix, PlainFourNodesExactly) {
  auto r = matrix(v1::OVERLAY, 4, [](int s, int d) {
    if (s == 3 || d == 3) return v1::Cell::FAIL;
    if (s == 4 && d == 1) return v1::Cell::DEGRADED;
    return v1::Cell::OK;
  });
  // One cell missing from the answer: shown (and counted) as UNKNOWN.
  r.mutable_cells()->erase(r.mutable_cells()->begin() + 1);  // node1 -> node3
  EXPECT_EQ(renderMatrix(r, plain()),
            "OVERLAY  rows = source, columns = destination\n"
            "         1 2 3 4\n"
            "1 node1  - o ? o\n"
            "2 node2  o - X o\n"
            "3 node3  X X - X\n"
            "4 node4  ~ o X -\n"
            "o OK   ~ DEGRADED   X FAIL   ? UNKNOWN   - self\n"
            "OVERLAY: 12 pairs: 5 OK, 1 DEGRADED, 5 FAIL, 1 UNKNOWN\n"
            "broken pairs:\n"
            "  SRC    DST    STATE     LOSS  RTT     UPDATED\n"
            "  node2  node3  FAIL      100%  1.00ms  2s ago\n"
            "  node3  node1  FAIL      100%  1.00ms  2s ago\n"
            "  node3  node2  FAIL      100%  1.00ms  2s ago\n"
            "  node3  node4  FAIL      100%  1.00ms  2s ago\n"
            "  node4  node3  FAIL      100%  1.00ms  2s ago\n"
            "  node4  node1  DEGRADED  0%    1.00ms  2s ago\n");
}

TEST(RenderMatrix, TtyUsesColouredUnicodeGlyphsAndNoColorKeepsGlyphsOnly) {
  auto r = matrix(v1::UNDERLAY, 3, [](int s, int) { return s == 2 ? v1::Cell::FAIL : v1::Cell::OK; });
  const std::string c = renderMatrix(r, tty());
  EXPECT_NE(c.find("\033[32m●\033[0m"), std::string::npos) << c;
  EXPECT_NE(c.find("\033[1;31m✖\033[0m"), std::string::npos) << c;
  const std::string nc = renderMatrix(r, tty(/*color=*/false));
  EXPECT_FALSE(hasEscape(nc)) << nc;
  EXPECT_NE(nc.find("✖"), std::string::npos) << nc;
  const std::string p = renderMatrix(r, plain());
  EXPECT_FALSE(hasEscape(p));
  EXPECT_TRUE(isAscii(p)) << p;
  EXPECT_NE(p.find("2 node2  X - X"), std::string::npos) << p;  // the plain row, not touched by colour
  EXPECT_NE(p.find("3 node3  o o -"), std::string::npos) << p;
  EXPECT_NE(p.find("X"), std::string::npos) << p;
}

TEST(RenderMatrix, FiftyNodesWithLongNamesFitTheTerminalAndHaveAKey) {
  auto name = [](int i) { return "ip-10-0-" + std::to_string(i) + "-17.eu-west-1.compute.internal"; };
  auto r = matrix(
      v1::OVERLAY, 50, [](int s, int d) { return s == 7 || d == 7 ? v1::Cell::FAIL : v1::Cell::OK; }, name);
  RenderOptions o = plain();
  o.width = 100;
  const std::string out = renderMatrix(r, o);
  auto ls = lines(out);
  // Title, two header lines (tens, units), 50 rows.
  ASSERT_GT(ls.size(), 53u) << out;
  EXPECT_EQ(ls[1].substr(ls[1].size() - 10), "4444444445") << ls[1];  // columns 41..50, tens digit (no gaps)
  EXPECT_EQ(ls[2].substr(ls[2].size() - 10), "1234567890") << ls[2];
  // Heatmap and key fit the terminal (the broken-pairs table keeps full names for copying).
  const size_t key_end = out.find("o OK");
  ASSERT_NE(key_end, std::string::npos);
  auto map_lines = lines(out.substr(0, key_end));
  EXPECT_GT(map_lines.size(), 53u + 25u);  // 50 entries in the key, two a line
  for (const auto& l : map_lines) EXPECT_LE(displayWidth(l), 100u) << l;
  // Row 7 fails to everyone; row 8 fails only to column 7; 50 cells a row (self included).
  const std::string row7 = ls[3 + 6], row8 = ls[3 + 7];
  EXPECT_EQ(row7.substr(row7.size() - 50), std::string(6, 'X') + "-" + std::string(43, 'X'));
  EXPECT_EQ(row8.substr(row8.size() - 50), std::string(6, 'o') + "X" + "-" + std::string(42, 'o'));
  // Names are cut next to the rows; the key lists each one in full with its number.
  EXPECT_NE(ls[3].find("ip-10-0-1-17.eu-west-1.~"), std::string::npos) << ls[3];
  for (int i = 1; i <= 50; ++i) {
    EXPECT_NE(out.find(std::to_string(i) + " " + name(i)), std::string::npos) << name(i) << " not in the key";
  }
  EXPECT_NE(out.find("OVERLAY: 2450 pairs: 2352 OK, 0 DEGRADED, 98 FAIL, 0 UNKNOWN"), std::string::npos);
  EXPECT_NE(out.find("suspect: " + name(7) + " (7): every pair to and from it is broken\n"), std::string::npos) << out;
  EXPECT_EQ(out.find("suspect: " + name(8)), std::string::npos) << out;
  // Broken pairs in row order (node 2 before node 10), not in string order.
  EXPECT_LT(out.find("  " + name(2) + " "), out.find("  " + name(10) + " ")) << out;
  // 98 broken pairs: 20 listed, the rest counted.
  EXPECT_NE(out.find("... and 78 more (meshprobe --output json matrix --layer OVERLAY)"), std::string::npos) << out;
}

TEST(RenderMatrix, WideTerminalKeepsGapsBetweenCells) {
  auto r = matrix(v1::OVERLAY, 12, [](int, int) { return v1::Cell::OK; });
  RenderOptions o = plain();
  o.width = 200;
  auto ls = lines(renderMatrix(r, o));
  EXPECT_EQ(ls[1], std::string(11, ' ') + "                  1 1 1");
  EXPECT_EQ(ls[2], std::string(11, ' ') + "1 2 3 4 5 6 7 8 9 0 1 2");
  EXPECT_EQ(ls[3], " 1 node1   - o o o o o o o o o o o");
  o.width = 30;  // too narrow for gaps
  ls = lines(renderMatrix(r, o));
  EXPECT_EQ(ls[3], " 1 node1   -ooooooooooo");
  // Short names: no key.
  EXPECT_EQ(renderMatrix(r, o).find("key:"), std::string::npos);
}

TEST(RenderMatrix, IstiodIsOneNamedColumn) {
  v1::GetMatrixResponse r;
  r.set_layer(v1::ISTIOD);
  for (int i = 1; i <= 3; ++i) {
    r.add_nodes(nodeName(i));
    auto* c = r.add_cells();
    c->set_src(nodeName(i));
    c->set_dst("istiod");
    c->set_layer(v1::ISTIOD);
    c->set_state(i == 2 ? v1::Cell::FAIL : i == 3 ? v1::Cell::UNKNOWN : v1::Cell::OK);
  }
  const std::string out = renderMatrix(r, plain());
  EXPECT_EQ(out.substr(0, out.find("o OK")),
            "ISTIOD  rows = source, columns = destination\n"
            "         istiod\n"
            "1 node1  o\n"
            "2 node2  X\n"
            "3 node3  ?\n");
  EXPECT_NE(out.find("ISTIOD: 3 pairs: 1 OK, 0 DEGRADED, 1 FAIL, 1 UNKNOWN"), std::string::npos) << out;
  EXPECT_NE(out.find("  node2  istiod  FAIL"), std::string::npos) << out;
  EXPECT_EQ(out.find("- self"), std::string::npos);  // no diagonal in this layer
}

TEST(RenderMatrix, EmptyClusterSaysSo) {
  v1::GetMatrixResponse r;
  r.set_layer(v1::UNDERLAY);
  EXPECT_EQ(renderMatrix(r, plain()),
            "UNDERLAY  rows = source, columns = destination\n"
            "  no nodes have reported to the aggregator yet\n");
}

TEST(RenderMatrix, AllLayersOneAfterAnother) {
  std::vector<v1::GetMatrixResponse> layers = {matrix(v1::UNDERLAY, 2, [](int, int) { return v1::Cell::OK; }),
                                               matrix(v1::OVERLAY, 2, [](int, int) { return v1::Cell::OK; })};
  const std::string out = renderMatrices(layers, plain());
  const auto u = out.find("UNDERLAY  rows"), o = out.find("\nOVERLAY  rows");
  ASSERT_NE(u, std::string::npos) << out;
  ASSERT_NE(o, std::string::npos) << out;
  EXPECT_LT(u, o);
}

// ---------------- findings ----------------

v1::Finding finding(const std::string& code, v1::Severity sev, std::vector<std::string> nodes) {
  v1::Finding f;
  f.set_code(code);
  f.set_severity(sev);
  for (auto& n : nodes) f.add_nodes(n);
  f.set_layer(v1::OVERLAY);
  f.set_summary(code + " summary");
  f.add_evidence("probe node1->node3 OVERLAY: 0/5 received");
  f.add_evidence("probe node3->node1 UNDERLAY: 5/5 received");
  f.set_remedy("check the firewall on node3");
  *f.mutable_onset_time() = at(kNow - 125);
  f.set_id(code + "/" + (nodes.empty() ? "" : nodes[0]));
  return f;
}

TEST(RenderFindings, EmptyMeansNoActiveFindings) {
  EXPECT_EQ(renderFindings(v1::DiagnoseResponse(), plain()),
            "no active findings: every node and layer looks healthy\n");
  EXPECT_EQ(renderFindings(v1::DiagnoseResponse(), plain(), "node2"), "no active findings for node2\n");
}

TEST(RenderFindings, MostSevereFirstWithEveryField) {
  v1::DiagnoseResponse r;
  *r.add_findings() = finding("MTU_MISMATCH", v1::WARNING, {"node2"});
  *r.add_findings() = finding("OVERLAY_PARTITION", v1::CRITICAL, {"node3"});
  auto* istiod = r.add_findings();
  *istiod = finding("ISTIOD_UNREACHABLE", v1::CRITICAL, {});
  istiod->set_layer(v1::ISTIOD);
  auto* h = istiod->add_history();
  *h->mutable_time() = at(kNow - 300);
  h->set_state("ACTIVE");
  h = istiod->add_history();
  *h->mutable_time() = at(kNow - 200);
  h->set_state("CLEARED");
  h = istiod->add_history();
  *h->mutable_time() = at(kNow - 125);
  h->set_state("ACTIVE");

  const std::string out = renderFindings(r, plain());
  EXPECT_EQ(out.substr(0, out.find('\n')), "3 active findings (2 critical, 1 warning), most severe first");
  const auto partition = out.find("CRITICAL  OVERLAY_PARTITION"), istiod_at = out.find("CRITICAL  ISTIOD_UNREACHABLE"),
             mtu = out.find("WARNING   MTU_MISMATCH");
  ASSERT_NE(partition, std::string::npos) << out;
  ASSERT_NE(istiod_at, std::string::npos) << out;
  ASSERT_NE(mtu, std::string::npos) << out;
  EXPECT_LT(partition, istiod_at);  // the aggregator's order within a severity
  EXPECT_LT(istiod_at, mtu);
  const std::string block = out.substr(partition, istiod_at - partition);
  EXPECT_EQ(block,
            "CRITICAL  OVERLAY_PARTITION\n"
            "  OVERLAY_PARTITION summary\n"
            "  layer:    OVERLAY\n"
            "  nodes:    node3\n"
            "  since:    2026-11-18 11:04:35Z (2m05s ago)\n"
            "  evidence:\n"
            "    - probe node1->node3 OVERLAY: 0/5 received\n"
            "    - probe node3->node1 UNDERLAY: 5/5 received\n"
            "  remedy:   check the firewall on node3\n"
            "  id:       OVERLAY_PARTITION/node3\n"
            "\n");
  EXPECT_NE(out.find("  nodes:    (none: outside every node)"), std::string::npos) << out;
  EXPECT_NE(out.find("  layer:    ISTIOD"), std::string::npos) << out;
  EXPECT_NE(out.find("  history:  ACTIVE 2026-11-18 11:01:40Z, CLEARED 2026-11-18 11:03:20Z, ACTIVE 2026-11-18 "
                     "11:04:35Z"),
            std::string::npos)
      << out;
  EXPECT_TRUE(isAscii(out));
  EXPECT_FALSE(hasEscape(out));
  const std::string c = renderFindings(r, tty());
  EXPECT_NE(c.find("\033[1;31mCRITICAL"), std::string::npos) << c;
  EXPECT_NE(c.find("\033[33mWARNING"), std::string::npos) << c;
}

// ---------------- node ----------------

TEST(RenderNode, SummaryChecksProbesFindings) {
  v1::GetNodeResponse r;
  *r.mutable_node() = twoNodes().nodes(0);
  r.mutable_node()->set_vtep_mac("aa:bb:cc:00:00:01");
  r.mutable_node()->set_agent_version("0.1.0");
  auto* c = r.add_checks();
  c->set_name("vxlan_device");
  c->set_status(v1::CheckResult::OK);
  c->set_summary("flannel.1 up: VNI 1, port 4789, MTU 1450");
  c = r.add_checks();
  c->set_name("firewall");
  c->set_status(v1::CheckResult::FAIL);
  c->set_summary("INPUT drops udp dport 4789");
  c = r.add_checks();
  c->set_name("ztunnel");
  c->set_status(v1::CheckResult::SKIP);
  c->set_summary("no ztunnel socket on this node");
  auto* p = r.add_probes();
  p->set_dst("node2");
  p->set_layer(v1::OVERLAY);
  p->set_sent(10);
  p->set_received(4);
  p->set_loss(0.6);
  p->set_recent_loss(1.0);
  p->set_consecutive_failures(3);
  *p->mutable_rtt_p50() = TimeUtil::MicrosecondsToDuration(420);
  *p->mutable_rtt_p99() = TimeUtil::MicrosecondsToDuration(900);
  *p->mutable_last_success() = at(kNow - 9);
  p->set_error("timeout after 800ms");
  p->mutable_path_mtu()->set_size(1450);
  p->mutable_path_mtu()->set_consecutive_failures(2);
  p->mutable_path_mtu()->set_error("EMSGSIZE (path MTU 1400)");
  *r.add_findings() = finding("VXLAN_PORT_FILTERED", v1::CRITICAL, {"node1"});

  const std::string out = renderNode(r, plain());
  EXPECT_EQ(out.substr(0, out.find("\nChecks")),
            "node1  up  last report 1s ago  agent 0.1.0\n"
            "  node IP     198.51.100.11\n"
            "  overlay IP  10.244.1.0  VTEP MAC aa:bb:cc:00:00:01\n"
            "  VXLAN       VNI 1, port 4789, MTU 1450\n"
            "  pod CIDR    10.244.1.0/24\n");
  EXPECT_NE(out.find("  STATUS  CHECK         SUMMARY\n"
                     "  OK      vxlan_device  flannel.1 up: VNI 1, port 4789, MTU 1450\n"
                     "  FAIL    firewall      INPUT drops udp dport 4789\n"
                     "  SKIP    ztunnel       no ztunnel socket on this node\n"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("  OVERLAY  node2  FAILING(3)  60% (4/10)  100%    0.42ms  0.90ms  9s ago   1450 FAIL(2)  "
                     "timeout after 800ms; path MTU: EMSGSIZE (path MTU 1400)"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("Findings\n  CRITICAL  VXLAN_PORT_FILTERED\n"), std::string::npos) << out;

  r.clear_findings();
  r.mutable_node()->set_up(false);
  const std::string stale = renderNode(r, plain());
  EXPECT_NE(stale.find("node1  STALE (not reporting)"), std::string::npos) << stale;
  EXPECT_NE(stale.find("  no active findings for node1"), std::string::npos) << stale;
}

TEST(RenderNode, AHealthyProbeAsTheAggregatorKeepsItShowsLossWithoutCounts) {
  v1::GetNodeResponse r;
  *r.mutable_node() = twoNodes().nodes(0);
  auto* p = r.add_probes();  // as GetNodeResponse.probes documents a reduced healthy cell
  p->set_dst("node2");
  p->set_layer(v1::UNDERLAY);
  p->set_sent(1);
  p->set_received(1);
  *p->mutable_rtt_p50() = TimeUtil::MicrosecondsToDuration(250);
  *p->mutable_last_success() = at(kNow - 2);
  const std::string out = renderNode(r, plain());
  EXPECT_NE(out.find("  UNDERLAY  node2  ok     0%    -       0.25ms  -    2s ago"), std::string::npos) << out;
  EXPECT_EQ(out.find("(1/1)"), std::string::npos) << out;
}

TEST(MergeFindings, DoctorFirstThenTheNodesOwnNotYetDiagnosed) {
  google::protobuf::RepeatedPtrField<v1::Finding> diagnosed, reported;
  *diagnosed.Add() = finding("VXLAN_PORT_FILTERED", v1::CRITICAL, {"node3"});
  *reported.Add() = finding("VXLAN_PORT_FILTERED", v1::CRITICAL, {});  // the agent's raw version
  reported.Mutable(0)->clear_id();
  *reported.Add() = finding("MTU_MISMATCH", v1::WARNING, {});
  auto merged = mergeFindings(diagnosed, reported);
  ASSERT_EQ(merged.size(), 2);
  EXPECT_EQ(merged[0].code(), "VXLAN_PORT_FILTERED");
  EXPECT_EQ(merged[0].nodes_size(), 1);  // the doctor's, with the blamed node
  EXPECT_EQ(merged[1].code(), "MTU_MISMATCH");
  EXPECT_EQ(mergeFindings({}, reported).size(), 2);
}

TEST(RenderNode, NothingReportedYet) {
  v1::GetNodeResponse r;
  r.mutable_node()->set_name("node9");
  const std::string out = renderNode(r, plain());
  EXPECT_NE(out.find("(no check results reported yet)"), std::string::npos) << out;
  EXPECT_NE(out.find("(no probe results reported yet)"), std::string::npos) << out;
  EXPECT_NE(out.find("last report never"), std::string::npos) << out;
}

}  // namespace
}  // namespace meshprobe::cli
