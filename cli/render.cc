#include "cli/render.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>
#include <map>
#include <set>
#include <sstream>
#include <utility>

namespace meshprobe::cli {
namespace {

namespace v1 = meshprobe::v1;
using google::protobuf::util::TimeUtil;
using v1::Cell;

// ---- colours ----

constexpr const char* kReset = "\033[0m";
constexpr const char* kGreen = "\033[32m";
constexpr const char* kYellow = "\033[33m";
constexpr const char* kRed = "\033[1;31m";
constexpr const char* kGrey = "\033[90m";
constexpr const char* kBold = "\033[1m";

std::string paint(const std::string& text, const char* code, bool color) {
  return color && code != nullptr && !text.empty() ? std::string(code) + text + kReset : text;
}

std::string padRight(const std::string& s, size_t width) {
  size_t w = displayWidth(s);
  return w >= width ? s : s + std::string(width - w, ' ');
}

std::string padLeft(const std::string& s, size_t width) {
  size_t w = displayWidth(s);
  return w >= width ? s : std::string(width - w, ' ') + s;
}

// A table: a header row, then rows; cells may carry ANSI colour. Columns are separated by two
// spaces and sized to their widest cell; the last column is not padded (no trailing blanks).
class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  std::string render(const std::string& indent, bool color) const {
    std::vector<size_t> widths(header_.size(), 0);
    auto measure = [&](const std::vector<std::string>& row) {
      for (size_t i = 0; i < row.size() && i < widths.size(); ++i)
        widths[i] = std::max(widths[i], displayWidth(row[i]));
    };
    measure(header_);
    for (const auto& r : rows_) measure(r);
    std::string out;
    auto line = [&](const std::vector<std::string>& row, bool header) {
      std::string l = indent;
      for (size_t i = 0; i < row.size() && i < widths.size(); ++i) {
        const bool last = i + 1 == row.size();
        std::string cell = last ? row[i] : padRight(row[i], widths[i]);
        l += header ? paint(cell, kBold, color) : cell;
        if (!last) l += "  ";
      }
      while (!l.empty() && l.back() == ' ') l.pop_back();
      out += l + "\n";
    };
    line(header_, true);
    for (const auto& r : rows_) line(r, false);
    return out;
  }

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

// ---- matrix glyphs ----

struct Glyph {
  const char* ascii;
  const char* unicode;
  const char* color;
  const char* label;
};

Glyph glyphFor(Cell::State s) {
  switch (s) {
    case Cell::OK:
      return {"o", "●", kGreen, "OK"};
    case Cell::DEGRADED:
      return {"~", "◐", kYellow, "DEGRADED"};
    case Cell::FAIL:
      return {"X", "✖", kRed, "FAIL"};
    default:
      return {"?", "?", kGrey, "UNKNOWN"};
  }
}

std::string glyph(Cell::State s, const RenderOptions& o) {
  Glyph g = glyphFor(s);
  return paint(o.unicode ? g.unicode : g.ascii, g.color, o.color);
}

std::string selfGlyph(const RenderOptions& o) { return paint(o.unicode ? "·" : "-", kGrey, o.color); }

Cell::State normalize(Cell::State s) {
  return s == Cell::OK || s == Cell::DEGRADED || s == Cell::FAIL ? s : Cell::UNKNOWN;
}

std::string percent(double fraction) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%d%%", static_cast<int>(fraction * 100 + 0.5));
  return buf;
}

std::string ago(const google::protobuf::Timestamp& t, const RenderOptions& o) {
  if (t.seconds() == 0 && t.nanos() == 0) return "never";
  if (o.now.seconds() == 0 && o.now.nanos() == 0) return formatTime(t);
  return formatAge(t, o.now) + " ago";
}

bool isSet(const google::protobuf::Timestamp& t) { return t.seconds() != 0 || t.nanos() != 0; }

size_t digits(size_t n) {
  size_t d = 1;
  while (n >= 10) {
    n /= 10;
    ++d;
  }
  return d;
}

constexpr size_t kMaxLabel = 24;        // longest node name shown in full next to a row
constexpr size_t kMaxBrokenPairs = 20;  // broken pairs listed under a heatmap

std::string layerName(v1::Layer l) {
  const std::string& n = v1::Layer_Name(l);
  return n.empty() ? "LAYER_" + std::to_string(static_cast<int>(l)) : n;
}

std::string severityLabel(v1::Severity s) {
  switch (s) {
    case v1::CRITICAL:
      return "CRITICAL";
    case v1::WARNING:
      return "WARNING";
    case v1::INFO:
      return "INFO";
    default:
      return "UNSPECIFIED";
  }
}

const char* severityColor(v1::Severity s) {
  switch (s) {
    case v1::CRITICAL:
      return kRed;
    case v1::WARNING:
      return kYellow;
    default:
      return nullptr;
  }
}

const char* statusColor(v1::CheckResult::Status s) {
  switch (s) {
    case v1::CheckResult::OK:
      return kGreen;
    case v1::CheckResult::WARN:
      return kYellow;
    case v1::CheckResult::FAIL:
      return kRed;
    default:
      return kGrey;
  }
}

std::string statusLabel(v1::CheckResult::Status s) {
  const std::string& n = v1::CheckResult::Status_Name(s);
  return n.empty() || s == v1::CheckResult::STATUS_UNSPECIFIED ? "?" : n;
}

std::string joined(const google::protobuf::RepeatedPtrField<std::string>& items, const std::string& sep) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : sep) + i;
  return out;
}

// One finding, indented by `indent`.
std::string renderFinding(const v1::Finding& f, const RenderOptions& o, const std::string& indent) {
  std::ostringstream out;
  out << indent << paint(padRight(severityLabel(f.severity()), 8), severityColor(f.severity()), o.color) << "  "
      << paint(f.code().empty() ? "(no code)" : f.code(), kBold, o.color) << "\n";
  const std::string in = indent + "  ";
  out << in << f.summary() << "\n";
  out << in << "layer:    " << layerName(f.layer()) << "\n";
  out << in << "nodes:    " << (f.nodes().empty() ? "(none: outside every node)" : joined(f.nodes(), ", ")) << "\n";
  if (isSet(f.onset_time())) {
    out << in << "since:    " << formatTime(f.onset_time());
    if (isSet(o.now)) out << " (" << formatAge(f.onset_time(), o.now) << " ago)";
    out << "\n";
  }
  if (isSet(f.clear_time())) out << in << "cleared:  " << formatTime(f.clear_time()) << "\n";
  if (!f.evidence().empty()) {
    out << in << "evidence:\n";
    for (const auto& e : f.evidence()) out << in << "  - " << e << "\n";
  }
  if (!f.remedy().empty()) out << in << "remedy:   " << f.remedy() << "\n";
  if (f.history_size() > 1) {
    out << in << "history:  ";
    for (int i = 0; i < f.history_size(); ++i) {
      const auto& h = f.history(i);
      out << (i ? ", " : "") << h.state() << " " << formatTime(h.time());
    }
    out << "\n";
  }
  if (!f.id().empty()) out << in << "id:       " << f.id() << "\n";
  return out.str();
}

// Findings most severe first; the order the aggregator gave is kept within a severity.
std::vector<const v1::Finding*> bySeverity(const google::protobuf::RepeatedPtrField<v1::Finding>& findings) {
  std::vector<const v1::Finding*> out;
  for (const auto& f : findings) out.push_back(&f);
  std::stable_sort(out.begin(), out.end(),
                   [](const v1::Finding* a, const v1::Finding* b) { return a->severity() > b->severity(); });
  return out;
}

}  // namespace

// ---- building blocks ----

google::protobuf::RepeatedPtrField<v1::Finding> mergeFindings(
    const google::protobuf::RepeatedPtrField<v1::Finding>& diagnosed,
    const google::protobuf::RepeatedPtrField<v1::Finding>& reported) {
  google::protobuf::RepeatedPtrField<v1::Finding> out = diagnosed;
  std::set<std::string> codes, ids;
  for (const auto& f : diagnosed) {
    codes.insert(f.code());
    if (!f.id().empty()) ids.insert(f.id());
  }
  for (const auto& f : reported) {
    if (codes.count(f.code()) || (!f.id().empty() && ids.count(f.id()))) continue;
    *out.Add() = f;
  }
  return out;
}

size_t displayWidth(const std::string& s) {
  size_t w = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == 0x1b) {  // CSI: ESC [ ... final byte in 0x40..0x7e
      if (i + 1 < s.size() && s[i + 1] == '[') {
        i += 2;
        while (i < s.size() && !(s[i] >= 0x40 && s[i] <= 0x7e)) ++i;
      }
      continue;
    }
    if ((c & 0xc0) == 0x80) continue;  // UTF-8 continuation byte
    ++w;
  }
  return w;
}

std::string formatAge(const google::protobuf::Timestamp& then, const google::protobuf::Timestamp& now) {
  int64_t s = now.seconds() - then.seconds();
  if (now.nanos() < then.nanos()) --s;
  if (s < 0) s = 0;
  char buf[32];
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(s));
  } else if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  } else if (s < 86400) {
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(s / 3600),
                  static_cast<long long>(s % 3600 / 60));
  } else {
    std::snprintf(buf, sizeof buf, "%lldd%02lldh", static_cast<long long>(s / 86400),
                  static_cast<long long>(s % 86400 / 3600));
  }
  return buf;
}

std::string formatTime(const google::protobuf::Timestamp& t) {
  std::time_t secs = static_cast<std::time_t>(t.seconds());
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%SZ", &tm);
  return buf;
}

std::string formatRtt(const google::protobuf::Duration& d) {
  const double ms = static_cast<double>(TimeUtil::DurationToNanoseconds(d)) / 1e6;
  char buf[32];
  if (ms >= 1000) {
    std::snprintf(buf, sizeof buf, "%.2fs", ms / 1000);
  } else if (ms >= 10) {
    std::snprintf(buf, sizeof buf, "%.1fms", ms);
  } else {
    std::snprintf(buf, sizeof buf, "%.2fms", ms);
  }
  return buf;
}

std::string toJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions opts;
  opts.add_whitespace = true;
  opts.always_print_primitive_fields = true;  // scripts see loss 0, not a missing field
  auto st = google::protobuf::util::MessageToJsonString(m, &out, opts);
  if (!st.ok()) return "{}\n";
  if (out.empty() || out.back() != '\n') out += "\n";
  return out;
}

std::string matrixToJson(const v1::GetMatrixResponse& r) {
  v1::GetMatrixResponse whole = r;
  whole.clear_next_page_token();
  whole.clear_total_cells();
  std::string out = toJson(whole);
  // always_print_primitive_fields prints the two (now empty) paging fields last, at the top
  // level; take them out so the output is what it was before paging.
  for (const char* field : {",\n \"nextPageToken\": \"\"", ",\n \"totalCells\": 0"}) {
    if (auto at = out.rfind(field); at != std::string::npos) out.erase(at, std::string(field).size());
  }
  return out;
}

std::string matricesToJson(const std::vector<v1::GetMatrixResponse>& layers) {
  std::string out = "{\n \"matrices\": [";
  for (size_t i = 0; i < layers.size(); ++i) {
    std::string inner = matrixToJson(layers[i]);
    while (!inner.empty() && inner.back() == '\n') inner.pop_back();
    std::string indented;
    for (char c : inner) {
      indented += c;
      if (c == '\n') indented += "  ";
    }
    out += std::string(i ? "," : "") + "\n  " + indented;
  }
  out += layers.empty() ? "]\n}\n" : "\n ]\n}\n";
  return out;
}

// ---- nodes ----

std::string renderNodes(const v1::ListNodesResponse& r, const RenderOptions& o) {
  if (r.nodes().empty() && r.missing_agents().empty()) return "no nodes have reported to the aggregator yet\n";
  Table t({"NODE", "NODE IP", "OVERLAY IP", "VNI/PORT", "MTU", "UP", "LAST REPORT", "POD CIDR"});
  int up = 0;
  for (const auto& n : r.nodes()) {
    if (n.up()) ++up;
    auto orDash = [](const std::string& s) { return s.empty() ? std::string("-") : s; };
    t.add({n.name(), orDash(n.node_ip()), orDash(n.overlay_ip()),
           n.vxlan_vni() || n.vxlan_port() ? std::to_string(n.vxlan_vni()) + "/" + std::to_string(n.vxlan_port())
                                           : std::string("-"),
           n.vxlan_mtu() ? std::to_string(n.vxlan_mtu()) : std::string("-"),
           n.up() ? paint("yes", kGreen, o.color) : paint("NO", kRed, o.color), ago(n.last_report(), o),
           orDash(n.pod_cidr())});
  }
  // Kubernetes Nodes without an agent (only from an aggregator with the Kubernetes API).
  for (const auto& m : r.missing_agents()) {
    t.add({m.name(), "-", "-", "-", "-", paint("MISSING", m.ready() ? kRed : kYellow, o.color), "never", "-"});
  }
  std::ostringstream out;
  out << t.render("", o.color);
  out << "\n" << r.nodes_size() << " node" << (r.nodes_size() == 1 ? "" : "s") << ", " << up << " up";
  if (up < r.nodes_size()) out << ", " << paint(std::to_string(r.nodes_size() - up) + " stale", kRed, o.color);
  if (!r.missing_agents().empty()) {
    const int n = r.missing_agents_size();
    out << ", " << paint(std::to_string(n) + " Kubernetes node" + (n == 1 ? "" : "s") + " without an agent", kRed,
                         o.color);
  }
  out << "\n";
  for (const auto& m : r.missing_agents()) {
    out << "  " << m.name() << ": " << (m.reason().empty() ? "no agent has said Hello" : m.reason());
    // The pod, when the reason does not already name it.
    if (!m.agent_pod().empty() && m.reason().find(m.agent_pod()) == std::string::npos) {
      out << " (agent pod " << m.agent_pod() << ": " << m.pod_state() << ")";
    }
    if (!m.ready()) out << " [node NotReady]";
    out << "\n";
  }
  // Nodes that disagree on VNI or port cannot talk over VXLAN: say so under the table.
  std::set<std::pair<uint32_t, uint32_t>> vxlan;
  for (const auto& n : r.nodes()) {
    if (n.vxlan_vni() || n.vxlan_port()) vxlan.insert({n.vxlan_vni(), n.vxlan_port()});
  }
  if (vxlan.size() > 1) {
    out << paint("warning:", kYellow, o.color) << " nodes disagree on VXLAN VNI/port (";
    bool first = true;
    for (const auto& [vni, port] : vxlan) {
      out << (first ? "" : ", ") << vni << "/" << port;
      first = false;
    }
    out << "): they cannot reach each other over the overlay\n";
  }
  return out.str();
}

// ---- namespaces ----

std::string renderNamespaces(const v1::ListNamespacesResponse& r, const RenderOptions& o) {
  if (r.namespaces().empty()) return "the Kubernetes API shows no namespaces\n";
  Table t({"NAMESPACE", "DATAPLANE MODE", "EXPECT AMBIENT", "CAPTURED", "FINDINGS"});
  int ambient = 0, with_findings = 0;
  for (const auto& n : r.namespaces()) {
    if (n.dataplane_mode() == "ambient") ++ambient;
    if (!n.findings().empty()) ++with_findings;
    std::string mode = n.dataplane_mode().empty() ? "-" : n.dataplane_mode();
    if (n.expect_ambient() && n.dataplane_mode() != "ambient") mode = paint(mode, kRed, o.color);
    std::string captured = std::to_string(n.captured_pods()) + "/" + std::to_string(n.running_pods());
    if (n.unknown_pods() > 0) captured += " (" + std::to_string(n.unknown_pods()) + " unknown)";
    std::string findings;
    for (const auto& f : n.findings()) findings += (findings.empty() ? "" : ", ") + f;
    t.add({n.name() + (n.terminating() ? " (terminating)" : ""), mode, n.expect_ambient() ? "yes" : "-", captured,
           findings.empty() ? "-" : paint(findings, kRed, o.color)});
  }
  std::ostringstream out;
  out << t.render("", o.color);
  const int total = r.namespaces_size();
  out << "\n" << total << " namespace" << (total == 1 ? "" : "s") << ", " << ambient << " ambient";
  if (with_findings > 0) out << ", " << paint(std::to_string(with_findings) + " with findings", kRed, o.color);
  out << "\nCAPTURED: running pods the agents found captured by ztunnel / running pods (unknown: not reported by an "
         "agent)\n";
  return out.str();
}

// ---- matrix ----

std::string renderMatrix(const v1::GetMatrixResponse& r, const RenderOptions& o) {
  const std::string layer = layerName(r.layer());
  const bool istiod = r.layer() == v1::ISTIOD;
  std::ostringstream out;
  const bool filtered = !o.matrix_filter.empty();
  out << paint(layer, kBold, o.color) << "  rows = source, columns = destination";
  if (filtered) out << "  (only " << o.matrix_filter << ")";
  out << "\n";

  // Rows: the nodes in the aggregator's order, then any source only the cells name.
  std::vector<std::string> rows(r.nodes().begin(), r.nodes().end());
  std::set<std::string> known(rows.begin(), rows.end());
  std::map<std::pair<std::string, std::string>, const Cell*> cells;
  std::vector<std::string> extra_dsts;  // ISTIOD: the destinations ("istiod"), first seen first
  for (const auto& c : r.cells()) {
    cells[{c.src(), c.dst()}] = &c;
    if (known.insert(c.src()).second) rows.push_back(c.src());
    if (istiod && std::find(extra_dsts.begin(), extra_dsts.end(), c.dst()) == extra_dsts.end())
      extra_dsts.push_back(c.dst());
  }
  if (!istiod) {
    for (const auto& c : r.cells()) {
      if (known.insert(c.dst()).second) rows.push_back(c.dst());
    }
  }
  if (rows.empty()) {
    out << (filtered ? "  no cell matches\n" : "  no nodes have reported to the aggregator yet\n");
    return out.str();
  }
  if (istiod && extra_dsts.empty()) extra_dsts.push_back("istiod");
  const std::vector<std::string>& cols = istiod ? extra_dsts : rows;

  // Row labels: "<index> <name>", names cut to kMaxLabel (the key below lists them in full).
  const size_t iw = digits(rows.size());
  size_t lw = 4;
  bool cut = false;
  for (const auto& n : rows) lw = std::max(lw, std::min(displayWidth(n), kMaxLabel));
  auto label = [&](size_t i) {
    std::string name = rows[i];
    if (displayWidth(name) > lw) {
      name = name.substr(0, lw - 1) + (o.unicode ? "…" : "~");
      cut = true;
    }
    return padLeft(std::to_string(i + 1), iw) + " " + padRight(name, lw) + "  ";
  };
  const size_t prefix = iw + 1 + lw + 2;

  // Columns: numbered (ISTIOD: named). A gap between cells unless the terminal is too narrow.
  std::vector<std::string> col_heads;
  size_t step = 2;
  if (istiod) {
    size_t w = 1;
    for (const auto& c : cols) w = std::max(w, displayWidth(c));
    step = w + 1;
    std::string head(prefix, ' ');
    for (const auto& c : cols) head += padRight(c, step);
    while (!head.empty() && head.back() == ' ') head.pop_back();
    col_heads.push_back(head);
  } else {
    if (prefix + 2 * cols.size() > static_cast<size_t>(std::max(o.width, 1))) step = 1;
    const size_t dw = digits(cols.size());
    for (size_t d = 0; d < dw; ++d) {  // one header line per digit, most significant first
      std::string head(prefix, ' ');
      for (size_t j = 1; j <= cols.size(); ++j) {
        const std::string num = std::to_string(j);
        const size_t pad = dw - num.size();
        head += d < pad ? ' ' : num[d - pad];
        if (step == 2) head += ' ';
      }
      while (!head.empty() && head.back() == ' ') head.pop_back();
      col_heads.push_back(head);
    }
  }
  for (const auto& h : col_heads) out << h << "\n";

  std::map<Cell::State, int> counts;
  std::vector<const Cell*> broken;
  for (size_t i = 0; i < rows.size(); ++i) {
    std::string line = label(i);
    for (const auto& dst : cols) {
      std::string g;
      if (!istiod && dst == rows[i]) {
        g = selfGlyph(o);
      } else {
        auto it = cells.find({rows[i], dst});
        if (filtered && it == cells.end()) {  // filtered out: not a state
          line += step == 1 ? " " : padRight(" ", step);
          continue;
        }
        Cell::State s = it == cells.end() ? Cell::UNKNOWN : normalize(it->second->state());
        ++counts[s];
        if (s == Cell::FAIL || s == Cell::DEGRADED) broken.push_back(it->second);
        g = glyph(s, o);
      }
      line += step == 1 ? g : padRight(g, step);
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out << line << "\n";
  }
  if (cut) {  // every name in full, as many per line as the terminal takes
    size_t entry = 0;
    for (size_t i = 0; i < rows.size(); ++i) entry = std::max(entry, iw + 1 + displayWidth(rows[i]));
    const size_t per_line = std::max<size_t>(1, (static_cast<size_t>(std::max(o.width, 1)) - 2) / (entry + 3));
    out << "key:\n";
    for (size_t i = 0; i < rows.size(); ++i) {
      const std::string e = padLeft(std::to_string(i + 1), iw) + " " + rows[i];
      const bool eol = (i + 1) % per_line == 0 || i + 1 == rows.size();
      out << (i % per_line == 0 ? "  " : "") << (eol ? e : padRight(e, entry + 3)) << (eol ? "\n" : "");
    }
  }

  out << glyph(Cell::OK, o) << " OK   " << glyph(Cell::DEGRADED, o) << " DEGRADED   " << glyph(Cell::FAIL, o)
      << " FAIL   " << glyph(Cell::UNKNOWN, o) << " UNKNOWN";
  if (!istiod) out << "   " << selfGlyph(o) << " self";
  out << "\n";
  int total = 0;
  for (const auto& [_, n] : counts) total += n;
  out << layer << ": " << total << " pair" << (total == 1 ? "" : "s") << (filtered ? " shown" : "") << ": " << counts[Cell::OK] << " OK, "
      << counts[Cell::DEGRADED] << " DEGRADED, " << counts[Cell::FAIL] << " FAIL, " << counts[Cell::UNKNOWN]
      << " UNKNOWN\n";

  // A node whose every pair, to and from it, is broken is the likely culprit: say so first.
  if (!istiod && !filtered && rows.size() > 2 && !broken.empty()) {
    std::map<std::string, size_t> broken_pairs;
    for (const Cell* c : broken) {
      ++broken_pairs[c->src()];
      ++broken_pairs[c->dst()];
    }
    std::vector<size_t> suspects;
    for (size_t i = 0; i < rows.size(); ++i) {
      if (broken_pairs[rows[i]] == 2 * (rows.size() - 1)) suspects.push_back(i);
    }
    if (suspects.size() * 2 < rows.size()) {  // not when most of the cluster is down
      for (size_t i : suspects) {
        out << paint("suspect:", kRed, o.color) << " " << rows[i] << " (" << (i + 1)
            << "): every pair to and from it is broken\n";
      }
    }
  }

  if (!broken.empty()) {
    // FAIL before DEGRADED, then in row order (the aggregator's node order).
    std::map<std::string, size_t> order;
    for (size_t i = 0; i < rows.size(); ++i) order[rows[i]] = i;
    auto index = [&](const std::string& name) {
      auto it = order.find(name);
      return it == order.end() ? rows.size() : it->second;
    };
    std::stable_sort(broken.begin(), broken.end(), [&](const Cell* a, const Cell* b) {
      if (a->state() != b->state()) return a->state() == Cell::FAIL;
      return std::make_pair(index(a->src()), index(a->dst())) < std::make_pair(index(b->src()), index(b->dst()));
    });
    Table t({"SRC", "DST", "STATE", "LOSS", "RTT", "UPDATED"});
    for (size_t k = 0; k < broken.size() && k < kMaxBrokenPairs; ++k) {
      const Cell* c = broken[k];
      const Glyph g = glyphFor(normalize(c->state()));
      t.add({c->src(), c->dst(), paint(g.label, g.color, o.color), percent(c->loss()),
             c->has_rtt() && (c->rtt().seconds() || c->rtt().nanos()) ? formatRtt(c->rtt()) : "-",
             ago(c->last_update(), o)});
    }
    out << "broken pairs:\n" << t.render("  ", o.color);
    if (broken.size() > kMaxBrokenPairs) {
      out << "  ... and " << broken.size() - kMaxBrokenPairs << " more (meshprobe --output json matrix --layer "
          << layer << ")\n";
    }
  }
  return out.str();
}

std::string renderMatrices(const std::vector<v1::GetMatrixResponse>& layers, const RenderOptions& o) {
  std::string out;
  for (size_t i = 0; i < layers.size(); ++i) out += (i ? "\n" : "") + renderMatrix(layers[i], o);
  return out;
}

// ---- node ----

// A probe the aggregator rebuilt from a healthy packed cell (see GetNodeResponse.probes):
// answered, without p99. An agent's own result always has a p99 once anything was answered.
static bool reducedProbe(const v1::ProbeResult& p) { return p.sent() == 1 && p.received() == 1 && !p.has_rtt_p99(); }

std::string renderNode(const v1::GetNodeResponse& r, const RenderOptions& o) {
  const auto& n = r.node();
  std::ostringstream out;
  out << paint(n.name(), kBold, o.color) << "  "
      << (n.up() ? paint("up", kGreen, o.color) : paint("STALE (not reporting)", kRed, o.color)) << "  last report "
      << ago(n.last_report(), o);
  if (!n.agent_version().empty()) out << "  agent " << n.agent_version();
  out << "\n";
  auto orDash = [](const std::string& s) { return s.empty() ? std::string("-") : s; };
  out << "  node IP     " << orDash(n.node_ip()) << "\n";
  out << "  overlay IP  " << orDash(n.overlay_ip()) << "  VTEP MAC " << orDash(n.vtep_mac()) << "\n";
  out << "  VXLAN       VNI " << n.vxlan_vni() << ", port " << n.vxlan_port() << ", MTU "
      << (n.vxlan_mtu() ? std::to_string(n.vxlan_mtu()) : "-") << "\n";
  out << "  pod CIDR    " << orDash(n.pod_cidr()) << "\n";

  out << "\n" << paint("Checks", kBold, o.color) << "\n";
  if (r.checks().empty()) {
    out << "  (no check results reported yet)\n";
  } else {
    Table t({"STATUS", "CHECK", "SUMMARY"});
    for (const auto& c : r.checks()) {
      t.add({paint(statusLabel(c.status()), statusColor(c.status()), o.color), c.name(), c.summary()});
    }
    out << t.render("  ", o.color);
  }

  out << "\n" << paint("Probes", kBold, o.color) << "\n";
  if (r.probes().empty()) {
    out << "  (no probe results reported yet)\n";
  } else {
    Table t({"LAYER", "DST", "STATE", "LOSS", "RECENT", "P50", "P99", "LAST OK", "PATH MTU", "ERROR"});
    for (const auto& p : r.probes()) {
      const bool failing = p.consecutive_failures() > 0;
      std::string state = failing ? paint("FAILING(" + std::to_string(p.consecutive_failures()) + ")", kRed, o.color)
                                  : paint("ok", kGreen, o.color);
      if (p.sent() == 0) state = paint("-", kGrey, o.color);
      std::string pmtu = "-";
      if (p.has_path_mtu() && p.path_mtu().size() > 0) {
        const auto& m = p.path_mtu();
        pmtu = std::to_string(m.size()) +
               (m.consecutive_failures() > 0
                    ? " " + paint("FAIL(" + std::to_string(m.consecutive_failures()) + ")", kRed, o.color)
                    : " ok");
      }
      std::string error = p.error();
      if (p.has_path_mtu() && !p.path_mtu().error().empty() && p.path_mtu().consecutive_failures() > 0)
        error += (error.empty() ? "" : "; ") + std::string("path MTU: ") + p.path_mtu().error();
      t.add({layerName(p.layer()), p.dst(), state,
             // A healthy cell as the aggregator keeps it has no counts (and no p99): loss only.
             reducedProbe(p) ? percent(p.loss())
                             : percent(p.loss()) + " (" + std::to_string(p.received()) + "/" +
                                   std::to_string(p.sent()) + ")",
             p.has_recent_loss() ? percent(p.recent_loss()) : "-",
             p.has_rtt_p50() && p.received() ? formatRtt(p.rtt_p50()) : "-",
             p.has_rtt_p99() && p.received() ? formatRtt(p.rtt_p99()) : "-", ago(p.last_success(), o), pmtu,
             error.empty() ? "-" : error});
    }
    out << t.render("  ", o.color);
  }

  out << "\n" << paint("Findings", kBold, o.color) << "\n";
  if (r.findings().empty()) {
    out << "  no active findings for " << n.name() << "\n";
  } else {
    for (const auto* f : bySeverity(r.findings())) out << renderFinding(*f, o, "  ");
  }
  return out.str();
}

// ---- diagnose ----

std::string renderFindings(const v1::DiagnoseResponse& r, const RenderOptions& o, const std::string& node) {
  if (r.findings().empty()) {
    return node.empty() ? "no active findings: every node and layer looks healthy\n"
                        : "no active findings for " + node + "\n";
  }
  std::map<v1::Severity, int> counts;
  for (const auto& f : r.findings()) ++counts[f.severity()];
  std::ostringstream out;
  out << r.findings_size() << " active finding" << (r.findings_size() == 1 ? "" : "s");
  if (!node.empty()) out << " for " << node;
  out << " (";
  bool first = true;
  for (auto s : {v1::CRITICAL, v1::WARNING, v1::INFO, v1::SEVERITY_UNSPECIFIED}) {
    if (!counts[s]) continue;
    std::string label = severityLabel(s);
    std::transform(label.begin(), label.end(), label.begin(),
                   [](char c) { return static_cast<char>(std::tolower(c)); });
    out << (first ? "" : ", ") << counts[s] << " " << label;
    first = false;
  }
  out << "), most severe first\n";
  for (const auto* f : bySeverity(r.findings())) out << "\n" << renderFinding(*f, o, "");
  return out.str();
}

}  // namespace meshprobe::cli
