#include "common/flags.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <optional>
#include <string_view>

namespace po = boost::program_options;

namespace meshprobe {

std::string envNameForFlag(const std::string& flag) {
  std::string env = "MESHPROBE_";
  for (char c : flag) env.push_back(c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  return env;
}

namespace {

// boost::program_options (1.74) builds an error's text by replacing these placeholders
// until none is left; an argument that contains one makes that loop grow the text forever
// (found by the flags fuzz target). No flag or value of ours needs them.
std::optional<std::string> placeholderIn(std::string_view text) {
  for (std::string_view p : {"%canonical_option%", "%original_token%", "%option%", "%value%", "%prefix%"}) {
    if (text.find(p) != std::string_view::npos) return std::string(p);
  }
  return std::nullopt;
}

}  // namespace

Result<ParseOutcome> parseFlags(int argc, const char* const argv[], const po::options_description& desc,
                                po::variables_map& vm, const po::positional_options_description* positional) {
  for (int i = 1; i < argc; ++i) {
    if (auto p = placeholderIn(argv[i])) return Error{"argument " + std::to_string(i) + " contains " + *p};
  }
  for (const auto& opt : desc.options()) {
    const char* value = std::getenv(envNameForFlag(opt->long_name()).c_str());
    if (value == nullptr) continue;
    if (auto p = placeholderIn(value)) return Error{envNameForFlag(opt->long_name()) + " contains " + *p};
  }
  try {
    po::command_line_parser parser(argc, argv);
    parser.options(desc);
    if (positional) parser.positional(*positional);
    po::store(parser.run(), vm);
    // Environment: MESHPROBE_FOO_BAR -> foo-bar, only for flags that exist.
    po::store(po::parse_environment(desc,
                                    [&desc](const std::string& env) -> std::string {
                                      if (env.rfind("MESHPROBE_", 0) != 0) return "";
                                      for (const auto& opt : desc.options()) {
                                        if (envNameForFlag(opt->long_name()) == env) return opt->long_name();
                                      }
                                      return "";
                                    }),
              vm);
    po::notify(vm);
  } catch (const po::error& e) {
    return Error{e.what()};
  }
  if (vm.count("help")) return ParseOutcome::kHelp;
  if (vm.count("version")) return ParseOutcome::kVersion;
  return ParseOutcome::kRun;
}

}  // namespace meshprobe
