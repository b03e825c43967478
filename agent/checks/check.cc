#include "agent/checks/check.h"

namespace meshprobe::agent {

std::string_view statusName(CheckStatus s) {
  switch (s) {
    case CheckStatus::kOk: return "OK";
    case CheckStatus::kWarn: return "WARN";
    case CheckStatus::kFail: return "FAIL";
    case CheckStatus::kSkip: return "SKIP";
  }
  return "SKIP";
}

}  // namespace meshprobe::agent
