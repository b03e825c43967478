#include "common/flags.h"

#include <algorithm>
#include <cctype>

namespace po = boost::program_options;

namespace meshprobe {

std::string envNameForFlag(const std::string& flag) {
  std::string env = "MESHPROBE_";
  for (char c : flag) env.push_back(c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  return env;
}

Result<ParseOutcome> parseFlags(int argc, const char* const argv[], const po::options_description& desc,
                                po::variables_map& vm, const po::positional_options_description* positional) {
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
