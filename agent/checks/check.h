#pragma once
// One node-local check (a collector is one small unit registered in one
// table). A check is a class with name() and run(); it gets its kernel access through
// the seams in AgentDeps, so its logic is unit-tested with fakes and proven against
// the real kernel in network namespaces. run() never throws: failures are results.

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/ambient/pod_capture.h"
#include "common/duration.h"
#include "common/finding.h"

namespace meshprobe::agent {

enum class CheckStatus { kOk, kWarn, kFail, kSkip };
std::string_view statusName(CheckStatus s);  // "OK" | "WARN" | "FAIL" | "SKIP"

struct CheckResult {
  std::string name;
  CheckStatus status = CheckStatus::kSkip;
  std::string summary;
  nlohmann::json details = nlohmann::json::object();
  std::vector<Finding> findings;   // local findings with contract codes (nodes filled by the doctor)
  Duration duration{};
  // ambient_redirection only: each pod netns' capture state and addresses, for the report's
  // typed pod_netns (the same facts are in details for people). Unset for other checks.
  std::optional<PodCaptures> pod_captures;
};

class Check {
 public:
  virtual ~Check() = default;
  virtual std::string_view name() const = 0;
  virtual CheckResult run() = 0;

 protected:
  CheckResult result(CheckStatus status, std::string summary) const {
    CheckResult r;
    r.name = std::string(name());
    r.status = status;
    r.summary = std::move(summary);
    return r;
  }
};

using CheckPtr = std::unique_ptr<Check>;

}  // namespace meshprobe::agent
