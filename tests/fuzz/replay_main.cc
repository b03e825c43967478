// unit_fuzz_replay NAME DIR...: runs fuzz target NAME (fuzz_target.h) over every regular
// file in the given directories (missing directories are skipped: a target may have no
// kept regressions yet). Fails when the target is unknown or no input was found; a broken
// invariant or a sanitizer report ends the process, which fails the test.

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <vector>

#include "tests/fuzz/fuzz_target.h"

namespace meshprobe::fuzz {
std::map<std::string, TargetFn>& registry() {
  static std::map<std::string, TargetFn> r;
  return r;
}
}  // namespace meshprobe::fuzz

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  if (argc < 2) {
    std::cerr << "usage: unit_fuzz_replay NAME DIR...\n";
    return 2;
  }
  const auto& targets = meshprobe::fuzz::registry();
  auto it = targets.find(argv[1]);
  if (it == targets.end()) {
    std::cerr << "unit_fuzz_replay: no fuzz target named '" << argv[1] << "'; known:";
    for (const auto& [name, fn] : targets) std::cerr << " " << name;
    std::cerr << "\n";
    return 2;
  }
  std::vector<fs::path> inputs;
  for (int i = 2; i < argc; ++i) {
    std::error_code ec;
    if (!fs::is_directory(argv[i], ec)) continue;
    for (const auto& entry : fs::directory_iterator(argv[i])) {
      if (entry.is_regular_file()) inputs.push_back(entry.path());
    }
  }
  std::sort(inputs.begin(), inputs.end());
  if (inputs.empty()) {
    std::cerr << "unit_fuzz_replay: no inputs for '" << argv[1] << "' in the given directories\n";
    return 1;
  }
  for (const auto& path : inputs) {
    std::ifstream in(path, std::ios::binary);
    const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::cout << "replay " << argv[1] << " " << path.string() << " (" << bytes.size() << " bytes)" << std::endl;
    it->second(std::span<const uint8_t>(bytes.data(), bytes.size()));
  }
  std::cout << "replayed " << inputs.size() << " inputs through " << argv[1] << "\n";
  return 0;
}
