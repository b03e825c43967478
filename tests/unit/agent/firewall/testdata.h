#pragma once
// Shared by the firewall unit tests: captured inputs from tests/data/firewall.

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

namespace meshprobe::agent::testing {

inline std::string firewallData(const std::string& name) {
  std::ifstream in(std::string(MESHPROBE_TEST_DATA) + "/firewall/" + name, std::ios::binary);
  if (!in) throw std::runtime_error("missing test data file " + name);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace meshprobe::agent::testing
