#include "agent/doctor/render.h"

#include <cstdio>
#include <sstream>

namespace meshprobe::agent {
namespace {

const char* statusColor(CheckStatus s) {
  switch (s) {
    case CheckStatus::kOk: return "\033[32m";
    case CheckStatus::kWarn: return "\033[33m";
    case CheckStatus::kFail: return "\033[31;1m";
    case CheckStatus::kSkip: return "\033[90m";
  }
  return "";
}

}  // namespace

nlohmann::json findingToJson(const Finding& f) {
  return {{"code", f.code},         {"severity", severityName(f.severity)},
          {"nodes", f.nodes},       {"layer", layerName(f.layer)},
          {"summary", f.summary},   {"evidence", f.evidence},
          {"remedy", f.remedy}};
}

nlohmann::json reportToJson(const DoctorReport& report) {
  nlohmann::json checks = nlohmann::json::array();
  for (const auto& c : report.checks) {
    checks.push_back({{"name", c.name},
                      {"status", statusName(c.status)},
                      {"summary", c.summary},
                      {"details", c.details},
                      {"duration_seconds", std::chrono::duration<double>(c.duration).count()}});
  }
  nlohmann::json findings = nlohmann::json::array();
  for (const auto& f : report.findings) findings.push_back(findingToJson(f));
  return {{"node", report.node}, {"checks", checks}, {"findings", findings}};
}

std::string renderText(const DoctorReport& report, bool color) {
  std::ostringstream out;
  out << "meshprobe node doctor: " << report.node << "\n\n";
  size_t width = 5;
  for (const auto& c : report.checks) width = std::max(width, c.name.size());
  char line[64];
  std::snprintf(line, sizeof line, "%-*s  %-6s %8s  ", static_cast<int>(width), "CHECK", "STATUS", "TIME");
  out << line << "SUMMARY\n";
  for (const auto& c : report.checks) {
    std::snprintf(line, sizeof line, "%-*s  ", static_cast<int>(width), c.name.c_str());
    out << line;
    std::string status(statusName(c.status));
    if (color) out << statusColor(c.status);
    std::snprintf(line, sizeof line, "%-6s", status.c_str());
    out << line;
    if (color) out << "\033[0m";
    std::snprintf(line, sizeof line, " %6.1fms  ", std::chrono::duration<double, std::milli>(c.duration).count());
    out << line << c.summary << "\n";
  }
  if (!report.findings.empty()) {
    out << "\nFindings:\n";
    for (const auto& f : report.findings) {
      if (color) out << (f.severity == Severity::kCritical ? "\033[31;1m" : "\033[33m");
      out << "  " << f.code << " [" << severityName(f.severity) << ", " << layerName(f.layer) << "]";
      if (color) out << "\033[0m";
      out << ": " << f.summary << "\n";
      for (const auto& e : f.evidence) out << "      evidence: " << e << "\n";
      if (!f.remedy.empty()) out << "      remedy:   " << f.remedy << "\n";
    }
  } else {
    out << "\nNo findings.\n";
  }
  return out.str();
}

}  // namespace meshprobe::agent
