#include "common/duration.h"

#include <cctype>
#include <cmath>
#include <cstdio>

namespace meshprobe {

std::optional<Duration> parseDuration(std::string_view text) {
  if (text == "0") return Duration::zero();
  if (text.empty()) return std::nullopt;
  double total_ns = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    bool seen_digit = false, seen_dot = false;
    while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) {
      if (text[i] == '.') {
        if (seen_dot) return std::nullopt;
        seen_dot = true;
      } else {
        seen_digit = true;
      }
      ++i;
    }
    if (!seen_digit) return std::nullopt;
    double number = std::stod(std::string(text.substr(start, i - start)));
    size_t unit_start = i;
    while (i < text.size() && std::isalpha(static_cast<unsigned char>(text[i]))) ++i;
    std::string_view unit = text.substr(unit_start, i - unit_start);
    double scale;
    if (unit == "ns") scale = 1;
    else if (unit == "us" || unit == "µs") scale = 1e3;
    else if (unit == "ms") scale = 1e6;
    else if (unit == "s") scale = 1e9;
    else if (unit == "m") scale = 60e9;
    else if (unit == "h") scale = 3600e9;
    else return std::nullopt;
    total_ns += number * scale;
  }
  if (total_ns > 9.2e18) return std::nullopt;
  return Duration(static_cast<int64_t>(std::llround(total_ns)));
}

std::string formatDuration(Duration d) {
  char buf[64];
  double ns = static_cast<double>(d.count());
  if (ns >= 1e9) std::snprintf(buf, sizeof buf, "%.3gs", ns / 1e9);
  else if (ns >= 1e6) std::snprintf(buf, sizeof buf, "%.3gms", ns / 1e6);
  else if (ns >= 1e3) std::snprintf(buf, sizeof buf, "%.3gus", ns / 1e3);
  else std::snprintf(buf, sizeof buf, "%.0fns", ns);
  return buf;
}

}  // namespace meshprobe
