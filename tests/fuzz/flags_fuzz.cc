// What operators type: durations ("1m30s", "250ms"), listen addresses ("0.0.0.0:9472",
// "[::1]:0"), and the agent's whole command line (boost::program_options plus the
// MESHPROBE_* environment). The input is split at NUL bytes: the first piece is tried as a
// duration and as a listen address, all pieces together as argv.
// Seeds: tests/fuzz/corpus/flags.

#include <string>
#include <vector>

#include "agent/config.h"
#include "common/duration.h"
#include "common/http_server.h"
#include "tests/fuzz/fuzz_target.h"

MESHPROBE_FUZZ_TARGET(flags) {
  const std::string_view text = meshprobe::fuzz::asText(data);
  std::vector<std::string> pieces;
  size_t start = 0;
  while (start <= text.size() && pieces.size() < 64) {
    const size_t nul = text.find('\0', start);
    pieces.emplace_back(text.substr(start, nul == std::string_view::npos ? std::string_view::npos : nul - start));
    if (nul == std::string_view::npos) break;
    start = nul + 1;
  }

  if (auto d = meshprobe::parseDuration(pieces[0])) {
    // What formatDuration prints parses back to the same duration (within its rounding:
    // it keeps 3 significant digits of the largest unit that fits).
    const std::string shown = meshprobe::formatDuration(*d);
    auto again = meshprobe::parseDuration(shown);
    FUZZ_CHECK(again.has_value());
    const auto diff = *again > *d ? *again - *d : *d - *again;
    FUZZ_CHECK(diff <= *d / 200 + std::chrono::nanoseconds(1));
  }
  if (auto l = meshprobe::parseListenAddress(pieces[0]); !l.ok()) FUZZ_CHECK(!l.error().message.empty());

  // --help and --version print to stdout and stop: skip them, they are not input parsing.
  for (const auto& p : pieces) {
    if (p == "-h" || p.starts_with("--he") || p.starts_with("--v")) return;
  }
  std::vector<const char*> argv = {"meshprobe-agent"};
  for (const auto& p : pieces) argv.push_back(p.c_str());
  meshprobe::agent::AgentConfig config;
  auto outcome = meshprobe::agent::parseAgentConfig(static_cast<int>(argv.size()), argv.data(), config);
  if (!outcome.ok()) FUZZ_CHECK(!outcome.error().message.empty());
}
