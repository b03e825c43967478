// The finding catalogue against everything that repeats it: the code constants, the alert
// rules (their code matchers evaluated against every code), the docs tables and the proto
// comment. Adding a finding code without its catalogue row, remedy, docs rows or alert
// fails here, naming what is missing.
#include "common/finding_catalogue.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace meshprobe {
namespace {

// tests/data/../.. is the source tree.
const std::string kSource = std::string(MESHPROBE_TEST_DATA) + "/../..";

std::string readSource(const std::string& rel) {
  std::ifstream in(kSource + "/" + rel);
  EXPECT_TRUE(in.good()) << "cannot read " << rel;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

std::set<std::string> catalogueCodes() {
  std::set<std::string> out;
  for (const auto& s : findingCatalogue()) out.emplace(s.code);
  return out;
}

// Every `UPPER_CASE` token in backquotes.
std::set<std::string> quotedCodes(const std::string& text) {
  static const std::regex re("`([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)`");
  std::set<std::string> out;
  for (std::sregex_iterator it(text.begin(), text.end(), re), end; it != end; ++it) out.insert((*it)[1]);
  return out;
}

// The lines of a markdown section: from the heading that starts with `heading` to the
// next heading of the same or a higher level.
std::vector<std::string> section(const std::string& text, const std::string& heading) {
  std::vector<std::string> out;
  bool in = false;
  size_t level = 0;
  for (const auto& l : lines(text)) {
    if (!l.empty() && l[0] == '#') {
      const size_t hashes = l.find_first_not_of('#');
      if (in && hashes <= level) break;
      if (l.rfind(heading, 0) == 0) {
        in = true;
        level = hashes;
        continue;
      }
    }
    if (in) out.push_back(l);
  }
  EXPECT_FALSE(out.empty()) << "no section '" << heading << "'";
  return out;
}

// Table rows of a section as cells (trimmed), header and separator left out.
std::vector<std::vector<std::string>> tableRows(const std::vector<std::string>& sec) {
  std::vector<std::vector<std::string>> rows;
  bool header_seen = false;
  for (const auto& l : sec) {
    if (l.rfind("|", 0) != 0) continue;
    if (!header_seen) {
      header_seen = true;
      continue;
    }
    if (l.rfind("|---", 0) == 0) continue;
    std::vector<std::string> cells;
    std::string cell;
    // Split on '|' that is not escaped ("\|" appears inside commands).
    for (size_t i = 1; i < l.size(); ++i) {
      if (l[i] == '|' && l[i - 1] != '\\') {
        const auto b = cell.find_first_not_of(' '), e = cell.find_last_not_of(' ');
        cells.push_back(b == std::string::npos ? "" : cell.substr(b, e - b + 1));
        cell.clear();
      } else {
        cell += l[i];
      }
    }
    rows.push_back(cells);
  }
  return rows;
}

// ---- the alert rules ----

struct Alert {
  std::string name;
  std::string text;  // the rule's lines
  std::vector<std::pair<std::string, std::string>> code_matchers;  // (op, value)
};

std::map<std::string, Alert> alertsOf(const std::string& yaml) {
  static const std::regex alert_re(R"(^\s*-?\s*alert:\s*(\S+))");
  static const std::regex group_re(R"(^\s*-\s*name:)");
  static const std::regex matcher_re(R"re(\bcode\s*(=~|!~|!=|=)\s*"([^"]*)")re");
  std::map<std::string, Alert> out;
  Alert* cur = nullptr;
  for (const auto& l : lines(yaml)) {
    std::smatch m;
    if (std::regex_search(l, m, alert_re)) {
      cur = &out[m[1]];
      cur->name = m[1];
    } else if (std::regex_search(l, group_re)) {
      cur = nullptr;
    }
    if (cur) cur->text += l + "\n";
  }
  for (auto& [name, a] : out) {
    for (std::sregex_iterator it(a.text.begin(), a.text.end(), matcher_re), end; it != end; ++it)
      a.code_matchers.emplace_back((*it)[1], (*it)[2]);
  }
  return out;
}

// Whether a series with code=`code` passes the alert's code matchers (Prometheus regexes
// are anchored at both ends, as regex_match is). No code matcher: not about findings.
bool alertMatches(const Alert& a, const std::string& code) {
  if (a.code_matchers.empty()) return false;
  for (const auto& [op, value] : a.code_matchers) {
    bool ok = false;
    if (op == "=") ok = code == value;
    if (op == "!=") ok = code != value;
    if (op == "=~") ok = std::regex_match(code, std::regex(value));
    if (op == "!~") ok = !std::regex_match(code, std::regex(value));
    if (!ok) return false;
  }
  return true;
}

// ---- the tests ----

TEST(FindingCatalogue, EveryCodeConstantHasARowAndEveryRowAConstant) {
  // The code strings the code knows: the constants in common/finding.h.
  const std::string header = readSource("common/finding.h");
  static const std::regex re(R"re(constexpr\s+std::string_view\s+k\w+\s*=\s*"([A-Z0-9_]+)")re");
  std::set<std::string> constants;
  for (std::sregex_iterator it(header.begin(), header.end(), re), end; it != end; ++it) constants.insert((*it)[1]);
  ASSERT_GE(constants.size(), 14u);
  for (const auto& c : constants) EXPECT_NE(findFinding(c), nullptr) << c << " has no row in the finding catalogue";
  EXPECT_EQ(catalogueCodes(), constants);
  EXPECT_EQ(catalogueCodes().size(), findingCatalogue().size()) << "a code has two rows";
}

TEST(FindingCatalogue, EveryRowIsComplete) {
  const std::set<std::string> checks{"vxlan_device", "vxlan_socket", "vxlan_fdb", "firewall",
                                     "istiod",       "ztunnel",      "ambient_redirection"};
  for (const auto& s : findingCatalogue()) {
    SCOPED_TRACE(std::string(s.code));
    EXPECT_FALSE(s.remedy.empty()) << "no remedy";
    EXPECT_FALSE(s.alert.empty()) << "no alert";
    if (!s.check.empty()) {
      EXPECT_TRUE(checks.count(std::string(s.check))) << "unknown check " << s.check;
    }
    for (auto other : s.supersedes) EXPECT_NE(findFinding(other), nullptr) << "supersedes unknown " << other;
    for (auto other : s.explains) EXPECT_NE(findFinding(other), nullptr) << "explains unknown " << other;
    // Every remedy, filled in, has no placeholder left.
    std::vector<std::string_view> whens{""};
    for (const auto& v : s.variants) {
      EXPECT_FALSE(v.text.empty());
      whens.push_back(v.when);
    }
    for (auto when : whens) {
      const std::string r = remedyFor(s.code, when, "node7", "node9");
      EXPECT_FALSE(r.empty());
      EXPECT_EQ(r.find('{'), std::string::npos) << when << ": " << r;
    }
  }
}

TEST(FindingCatalogue, Relations) {
  EXPECT_TRUE(supersedes(codes::kVxlanDeviceMissing, codes::kVxlanSocketMissing));
  EXPECT_TRUE(supersedes(codes::kVxlanPortFiltered, codes::kOverlayPartition));
  EXPECT_TRUE(supersedes(codes::kVxlanPortFiltered, codes::kPairUnreachable));
  EXPECT_FALSE(supersedes(codes::kOverlayPartition, codes::kVxlanPortFiltered));
  EXPECT_FALSE(supersedes(codes::kMtuMismatch, codes::kOverlayPartition));
  EXPECT_TRUE(explains(codes::kOverlayFdbStale, codes::kIstiodUnreachable));
  EXPECT_FALSE(explains(codes::kCniAgentDown, codes::kIstiodUnreachable));
  EXPECT_FALSE(supersedes("NO_SUCH_CODE", codes::kOverlayPartition));
  // The Kubernetes-aware codes: a broken overlay, underlay or istiod path explains the
  // node's ztunnel not being ready; the Kubernetes view of a silent node replaces AGENT_STALE.
  EXPECT_TRUE(explains(codes::kOverlayPartition, codes::kZtunnelNotReady));
  EXPECT_TRUE(explains(codes::kVxlanPortFiltered, codes::kZtunnelNotReady));
  EXPECT_TRUE(explains(codes::kUnderlayUnreachable, codes::kZtunnelNotReady));
  EXPECT_TRUE(explains(codes::kIstiodUnreachable, codes::kZtunnelNotReady));
  EXPECT_FALSE(explains(codes::kAgentStale, codes::kZtunnelNotReady));
  EXPECT_TRUE(explains(codes::kAgentStale, codes::kIstiodUnreachable));  // unchanged
  EXPECT_TRUE(supersedes(codes::kAgentMissing, codes::kAgentStale));
  EXPECT_FALSE(supersedes(codes::kAgentStale, codes::kAgentMissing));
  EXPECT_EQ(findFinding("NO_SUCH_CODE"), nullptr);
  EXPECT_EQ(remedyFor("NO_SUCH_CODE"), "");
}

TEST(FindingCatalogue, RemedyTemplatesAndVariants) {
  EXPECT_EQ(remedyFor(codes::kPairUnreachable, "underlay", "n1", "n3"),
            "Check the network path between n1 and n3 (routes, ACLs, security groups).");
  EXPECT_THAT(remedyFor(codes::kPairUnreachable, "", "n1", "n3"), ::testing::HasSubstr("on n1 and n3 (bridge fdb"));
  // An unknown situation is the default remedy.
  EXPECT_EQ(remedyFor(codes::kAgentStale, "nonsense", "n2"), remedyFor(codes::kAgentStale, "", "n2"));
  EXPECT_THAT(remedyFor(codes::kVxlanConfigMismatch, "", "n4"), ::testing::HasSubstr("restart the flannel pod on n4"));
}

TEST(FindingCatalogue, EveryCodeFiresItsAlert) {
  for (const std::string file : {"manifests/monitoring/meshprobe-rules.yaml", "manifests/monitoring/prometheusrule.yaml"}) {
    SCOPED_TRACE(file);
    const auto alerts = alertsOf(readSource(file));
    ASSERT_FALSE(alerts.empty());
    for (const auto& s : findingCatalogue()) {
      const std::string code(s.code);
      auto a = alerts.find(std::string(s.alert));
      ASSERT_NE(a, alerts.end()) << code << ": no alert " << s.alert;
      EXPECT_TRUE(alertMatches(a->second, code)) << a->first << "'s expression does not match code " << code;
    }
    // And no alert names a code the catalogue does not know (a typo never fires).
    for (const auto& [name, a] : alerts) {
      for (const auto& [op, value] : a.code_matchers) {
        std::string alternatives = value;
        for (size_t at = 0, next; at <= alternatives.size(); at = next + 1) {
          next = alternatives.find('|', at);
          if (next == std::string::npos) next = alternatives.size();
          const std::string code = alternatives.substr(at, next - at);
          EXPECT_NE(findFinding(code), nullptr) << name << " names unknown code " << code;
        }
      }
    }
  }
}

TEST(FindingCatalogue, AlertMatcherEvaluation) {
  Alert a{"A", "", {{"=~", "OVERLAY_PARTITION|VXLAN_.*"}}};
  EXPECT_TRUE(alertMatches(a, "OVERLAY_PARTITION"));
  EXPECT_TRUE(alertMatches(a, "VXLAN_PORT_FILTERED"));
  EXPECT_FALSE(alertMatches(a, "OVERLAY_PARTITION_X"));  // anchored, as in Prometheus
  EXPECT_FALSE(alertMatches(a, "MTU_MISMATCH"));
  EXPECT_FALSE(alertMatches(Alert{"B", "", {}}, "MTU_MISMATCH"));
}

TEST(FindingCatalogue, OperationsGuideTables) {
  const std::string ops = readSource("docs/operations.md");
  // Section 8: one row per code, nothing else.
  std::set<std::string> rows;
  for (const auto& r : tableRows(section(ops, "## 8."))) {
    ASSERT_FALSE(r.empty());
    const auto codes = quotedCodes(r[0]);
    ASSERT_EQ(codes.size(), 1u) << r[0];
    rows.insert(*codes.begin());
    EXPECT_GE(r.size(), 3u);
  }
  EXPECT_EQ(rows, catalogueCodes()) << "docs/operations.md section 8 rows differ from the catalogue";

  // Section 9: each runbook row lists exactly the codes that answer it.
  std::map<RunbookRow, std::set<std::string>> want;
  for (const auto& s : findingCatalogue()) {
    if (s.runbook != RunbookRow::kNone) want[s.runbook].emplace(s.code);
  }
  std::map<RunbookRow, std::set<std::string>> got;
  for (const auto& r : tableRows(section(ops, "## 9."))) {
    ASSERT_GE(r.size(), 3u);
    bool known = false;
    for (RunbookRow row : {RunbookRow::kZtunnelNotReady, RunbookRow::kCrossNodeFailure,
                           RunbookRow::kPodCreationBlocked, RunbookRow::kNoHbone}) {
      if (r[0].rfind(std::string(runbookRowName(row)), 0) == 0) {
        got[row] = quotedCodes(r[2]);
        known = true;
      }
    }
    EXPECT_TRUE(known) << "runbook row not in the catalogue: " << r[0];
  }
  EXPECT_EQ(got, want) << "docs/operations.md section 9 differs from the catalogue's runbook rows";

  // Section 10: each alert's row names every code the catalogue assigns to it.
  std::map<std::string, std::set<std::string>> alert_rows;
  for (const auto& r : tableRows(section(ops, "## 10."))) {
    if (r.size() < 2) continue;
    const auto names = std::regex_search(r[0], std::regex("`Meshprobe\\w+`")) ? r[0] : "";
    if (names.empty()) continue;
    alert_rows[r[0].substr(1, r[0].size() - 2)] = quotedCodes(r[1]);
  }
  for (const auto& s : findingCatalogue()) {
    auto it = alert_rows.find(std::string(s.alert));
    ASSERT_NE(it, alert_rows.end()) << "docs/operations.md section 10 has no row for alert " << s.alert;
    EXPECT_TRUE(it->second.count(std::string(s.code))) << "alert row " << s.alert << " does not name " << s.code;
  }
}

TEST(FindingCatalogue, ArchitectureChecksTable) {
  const std::string arch = readSource("docs/architecture.md");
  std::map<std::string, std::set<std::string>> want, got;
  for (const auto& s : findingCatalogue()) {
    if (!s.check.empty()) want[std::string(s.check)].emplace(s.code);
  }
  for (const auto& r : tableRows(section(arch, "### Checks and the findings they raise locally"))) {
    ASSERT_GE(r.size(), 3u);
    got[r[0].substr(1, r[0].size() - 2)] = quotedCodes(r[2]);
  }
  EXPECT_EQ(got, want) << "docs/architecture.md's checks table differs from the catalogue's `check` column";
}

TEST(FindingCatalogue, ReadmeTable) {
  const std::string readme = readSource("README.md");
  std::map<std::string, std::vector<std::string>> rows;
  bool in = false;
  for (const auto& l : lines(readme)) {
    if (l.rfind("| code | severity | layer | alert |", 0) == 0) {
      in = true;
      continue;
    }
    if (!in) continue;
    if (l.rfind("|", 0) != 0) break;
    if (l.rfind("|---", 0) == 0) continue;
    auto r = tableRows({"| h |", l});
    ASSERT_EQ(r.size(), 1u);
    ASSERT_GE(r[0].size(), 4u) << l;
    const auto codes = quotedCodes(r[0][0]);
    ASSERT_EQ(codes.size(), 1u) << l;
    rows[*codes.begin()] = r[0];
  }
  ASSERT_FALSE(rows.empty()) << "README.md has no '| code | severity | layer | alert |' table";
  std::set<std::string> listed;
  for (const auto& [code, r] : rows) listed.insert(code);
  EXPECT_EQ(listed, catalogueCodes());
  for (const auto& s : findingCatalogue()) {
    auto it = rows.find(std::string(s.code));
    if (it == rows.end()) continue;
    SCOPED_TRACE(std::string(s.code));
    EXPECT_EQ(it->second[1], std::string(severityName(s.severity)));
    EXPECT_EQ(it->second[2], s.layer == Layer::kUnspecified ? "—" : std::string(layerName(s.layer)));
    EXPECT_EQ(it->second[3], "`" + std::string(s.alert) + "`");
  }
}

TEST(FindingCatalogue, ProtoCommentListsEveryCode) {
  const std::string proto = readSource("proto/meshprobe/v1/types.proto");
  // The comment block right above `message Finding {`.
  std::vector<std::string> comment;
  for (const auto& l : lines(proto)) {
    if (l.rfind("//", 0) == 0) {
      comment.push_back(l);
    } else if (l.rfind("message Finding {", 0) == 0) {
      break;
    } else {
      comment.clear();
    }
  }
  ASSERT_FALSE(comment.empty());
  std::set<std::string> listed;
  static const std::regex re("\\b([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)\\b");
  for (const auto& l : comment) {
    for (std::sregex_iterator it(l.begin(), l.end(), re), end; it != end; ++it) listed.insert((*it)[1]);
  }
  EXPECT_EQ(listed, catalogueCodes()) << "the comment above Finding in types.proto differs from the catalogue";
}

// Node checks build their findings with findingOf: severity and layer come from the row.
TEST(FindingCatalogue, FindingOfCarriesTheRowsSeverityAndLayer) {
  for (const FindingSpec& spec : findingCatalogue()) {
    const Finding f = findingOf(spec.code);
    EXPECT_EQ(f.code, spec.code);
    EXPECT_EQ(f.severity, spec.severity) << spec.code;
    EXPECT_EQ(f.layer, spec.layer) << spec.code;
  }
  const Finding unknown = findingOf("NOT_A_CODE");
  EXPECT_EQ(unknown.severity, Severity::kCritical);
  EXPECT_EQ(unknown.layer, Layer::kUnspecified);
}

}  // namespace
}  // namespace meshprobe
