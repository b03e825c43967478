#pragma once

#include "agent/checks/check.h"
#include "agent/config.h"

namespace meshprobe::agent {

class AmbientRedirectionCheck final : public Check {
 public:
  AmbientRedirectionCheck(const AgentConfig& config);
  std::string_view name() const override { return "ambient_redirection"; }
  CheckResult run() override;

 private:
  const AgentConfig& config_;
};

}  // namespace meshprobe::agent
