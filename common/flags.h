#pragma once
// Command-line parsing shared by the three binaries (Boost.Program_options). Every flag
// also reads MESHPROBE_<FLAG_IN_CAPS> from the environment; the command line
// wins over the environment.

#include <boost/program_options.hpp>
#include <iosfwd>
#include <string>

#include "common/result.h"

namespace meshprobe {

// "node-name" -> "MESHPROBE_NODE_NAME"
std::string envNameForFlag(const std::string& flag);

enum class ParseOutcome { kRun, kHelp, kVersion };

// Parses argv then the environment into `vm`. Errors name the offending flag.
Result<ParseOutcome> parseFlags(int argc, const char* const argv[],
                                const boost::program_options::options_description& desc,
                                boost::program_options::variables_map& vm,
                                const boost::program_options::positional_options_description* positional = nullptr);

}  // namespace meshprobe
