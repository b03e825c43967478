#include "common/duration.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>

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
    // strtod, not stod: a number too large for a double is HUGE_VAL (refused below), not
    // an exception.
    const double number = std::strtod(std::string(text.substr(start, i - start)).c_str(), nullptr);
    size_t unit_start = i;
    // Letters, and the UTF-8 bytes of "µ".
    while (i < text.size() && (std::isalpha(static_cast<unsigned char>(text[i])) || (text[i] & 0x80) != 0)) ++i;
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
  if (d.count() < 0) return "-" + formatDuration(-d);
  const double ns = static_cast<double>(d.count());
  if (d >= std::chrono::minutes(1)) {
    // Like Go: "1m30s", "41m3s", "2h0m0.5s" (seconds to the millisecond). Three
    // significant digits of one unit would need an exponent here ("2.46e+03s"), which
    // parseDuration rightly refuses.
    const int64_t ms = (d.count() + 500'000) / 1'000'000;
    const int64_t h = ms / 3'600'000, m = ms / 60'000 % 60, sec_ms = ms % 60'000;
    std::string out = h > 0 ? std::to_string(h) + "h" : "";
    out += std::to_string(m) + "m";
    std::snprintf(buf, sizeof buf, "%.3f", static_cast<double>(sec_ms) / 1e3);
    std::string sec = buf;
    while (sec.back() == '0') sec.pop_back();
    if (sec.back() == '.') sec.pop_back();
    return out + sec + "s";
  }
  // Three significant digits of the largest unit that fits; a value that rounds up to 1000
  // of a unit ("1e+03ms") is 1 of the next one.
  struct Unit {
    double scale;
    const char* name;
  };
  static constexpr Unit kUnits[] = {{1e9, "s"}, {1e6, "ms"}, {1e3, "us"}};
  for (size_t i = 0; i < std::size(kUnits); ++i) {
    if (ns < kUnits[i].scale) continue;
    std::snprintf(buf, sizeof buf, "%.3g%s", ns / kUnits[i].scale, kUnits[i].name);
    if (std::strchr(buf, 'e') != nullptr && i > 0) std::snprintf(buf, sizeof buf, "1%s", kUnits[i - 1].name);
    return buf;
  }
  std::snprintf(buf, sizeof buf, "%.0fns", ns);
  if (std::strcmp(buf, "1000ns") == 0) return "1us";
  return buf;
}

}  // namespace meshprobe
