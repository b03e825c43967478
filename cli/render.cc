#include "cli/render.h"

#include <google/protobuf/util/time_util.h>

#include <cstdio>
#include <map>
#include <sstream>

namespace meshprobe::cli {
namespace {

using meshprobe::v1::Cell;

const char* kReset = "\033[0m";

std::string paint(const std::string& text, const char* code, bool color) {
  return color ? std::string(code) + text + kReset : text;
}

// One character per cell so 50 nodes fit a laptop terminal.
std::string cellGlyph(Cell::State s, bool color) {
  switch (s) {
    case Cell::OK: return paint(color ? "●" : "o", "\033[32m", color);
    case Cell::DEGRADED: return paint(color ? "◐" : "~", "\033[33m", color);
    case Cell::FAIL: return paint(color ? "✖" : "X", "\033[31;1m", color);
    default: return paint("?", "\033[90m", color);
  }
}

std::string ms(const google::protobuf::Duration& d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2fms",
                static_cast<double>(google::protobuf::util::TimeUtil::DurationToNanoseconds(d)) / 1e6);
  return buf;
}

}  // namespace

std::string renderNodes(const meshprobe::v1::ListNodesResponse& r, bool color) {
  std::ostringstream out;
  char line[256];
  std::snprintf(line, sizeof line, "%-20s %-5s %-16s %-16s %-18s %-6s %-6s %s\n", "NODE", "UP", "NODE IP", "OVERLAY IP",
                "VTEP MAC", "VNI", "PORT", "POD CIDR");
  out << line;
  for (const auto& n : r.nodes()) {
    std::snprintf(line, sizeof line, "%-20s ", n.name().c_str());
    out << line << paint(n.up() ? "yes  " : "NO   ", n.up() ? "\033[32m" : "\033[31;1m", color);
    std::snprintf(line, sizeof line, " %-16s %-16s %-18s %-6u %-6u %s\n", n.node_ip().c_str(), n.overlay_ip().c_str(),
                  n.vtep_mac().c_str(), n.vxlan_vni(), n.vxlan_port(), n.pod_cidr().c_str());
    out << line;
  }
  if (r.nodes().empty()) out << "(no nodes have reported)\n";
  return out.str();
}

std::string renderMatrix(const meshprobe::v1::GetMatrixResponse& r, bool color) {
  std::ostringstream out;
  out << meshprobe::v1::Layer_Name(r.layer()) << " reachability (row = source, column = destination)\n";
  std::map<std::pair<std::string, std::string>, const Cell*> cells;
  std::vector<std::string> dsts;
  for (const auto& c : r.cells()) {
    cells[{c.src(), c.dst()}] = &c;
    if (r.layer() == meshprobe::v1::ISTIOD && dsts.empty()) dsts.push_back(c.dst());
  }
  if (r.layer() != meshprobe::v1::ISTIOD) dsts.assign(r.nodes().begin(), r.nodes().end());
  size_t width = 4;
  for (const auto& n : r.nodes()) width = std::max(width, n.size());
  out << std::string(width + 2, ' ');
  for (size_t j = 0; j < dsts.size(); ++j) out << (r.layer() == meshprobe::v1::ISTIOD ? dsts[j] : std::to_string((j + 1) % 10)) << " ";
  out << "\n";
  int broken = 0;
  for (size_t i = 0; i < static_cast<size_t>(r.nodes_size()); ++i) {
    const auto& src = r.nodes(static_cast<int>(i));
    char head[128];
    std::snprintf(head, sizeof head, "%-*s  ", static_cast<int>(width), src.c_str());
    out << head;
    for (const auto& dst : dsts) {
      if (dst == src) {
        out << "- ";
        continue;
      }
      auto it = cells.find({src, dst});
      Cell::State s = it == cells.end() ? Cell::UNKNOWN : it->second->state();
      if (s == Cell::FAIL || s == Cell::DEGRADED) ++broken;
      out << cellGlyph(s, color) << " ";
    }
    out << " " << (i + 1) << "\n";
  }
  out << "\n" << cellGlyph(Cell::OK, color) << " OK  " << cellGlyph(Cell::DEGRADED, color) << " DEGRADED  "
      << cellGlyph(Cell::FAIL, color) << " FAIL  " << cellGlyph(Cell::UNKNOWN, color) << " UNKNOWN\n";
  if (broken > 0) {
    out << "\nBroken pairs:\n";
    for (const auto& c : r.cells()) {
      if (c.state() != Cell::FAIL && c.state() != Cell::DEGRADED) continue;
      out << "  " << c.src() << " -> " << c.dst() << "  " << Cell::State_Name(c.state()) << "  loss "
          << static_cast<int>(c.loss() * 100 + 0.5) << "%";
      if (c.has_rtt()) out << "  rtt " << ms(c.rtt());
      out << "\n";
    }
  }
  return out.str();
}

std::string renderNode(const meshprobe::v1::GetNodeResponse& r, bool color) {
  std::ostringstream out;
  const auto& n = r.node();
  out << n.name() << "  " << (n.up() ? paint("up", "\033[32m", color) : paint("DOWN (stale)", "\033[31;1m", color))
      << "  node IP " << n.node_ip() << "  overlay " << n.overlay_ip() << "  VTEP " << n.vtep_mac() << "  VNI "
      << n.vxlan_vni() << "  port " << n.vxlan_port() << "  pod CIDR " << n.pod_cidr() << "\n\nChecks:\n";
  for (const auto& c : r.checks()) {
    std::string status = meshprobe::v1::CheckResult::Status_Name(c.status());
    const char* code = c.status() == meshprobe::v1::CheckResult::OK     ? "\033[32m"
                       : c.status() == meshprobe::v1::CheckResult::FAIL ? "\033[31;1m"
                                                                        : "\033[33m";
    char name[64];
    std::snprintf(name, sizeof name, "  %-20s ", c.name().c_str());
    char st[16];
    std::snprintf(st, sizeof st, "%-5s", status.c_str());
    out << name << paint(st, code, color) << " " << c.summary() << "\n";
  }
  out << "\nProbes:\n";
  for (const auto& p : r.probes()) {
    out << "  " << meshprobe::v1::Layer_Name(p.layer()) << " -> " << p.dst() << "  loss "
        << static_cast<int>(p.loss() * 100 + 0.5) << "%";
    if (p.has_rtt_p50()) out << "  p50 " << ms(p.rtt_p50());
    if (p.has_rtt_p99()) out << "  p99 " << ms(p.rtt_p99());
    if (!p.error().empty()) out << "  " << p.error();
    out << "\n";
  }
  return out.str();
}

std::string renderFindings(const meshprobe::v1::DiagnoseResponse& r, bool color) {
  std::ostringstream out;
  if (r.findings().empty()) return "No findings: every node and layer looks healthy.\n";
  for (const auto& f : r.findings()) {
    const char* code = f.severity() == meshprobe::v1::CRITICAL ? "\033[31;1m" : "\033[33m";
    out << paint(f.code(), code, color) << " [" << meshprobe::v1::Severity_Name(f.severity()) << ", "
        << meshprobe::v1::Layer_Name(f.layer()) << "]";
    if (!f.nodes().empty()) {
      out << " nodes:";
      for (const auto& n : f.nodes()) out << " " << n;
    }
    out << "\n  " << f.summary() << "\n";
    for (const auto& e : f.evidence()) out << "  evidence: " << e << "\n";
    if (!f.remedy().empty()) out << "  remedy:   " << f.remedy() << "\n";
  }
  return out.str();
}

}  // namespace meshprobe::cli
