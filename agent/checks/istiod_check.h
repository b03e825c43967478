#pragma once

#include "agent/checks/check.h"
#include "agent/config.h"

namespace meshprobe::agent {

class IstiodCheck final : public Check {
 public:
  IstiodCheck(const AgentConfig& config);
  std::string_view name() const override { return "istiod"; }
  CheckResult run() override;

 private:
  const AgentConfig& config_;
};

}  // namespace meshprobe::agent
