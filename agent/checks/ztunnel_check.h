#pragma once
#include "agent/kernel/sock_diag.h"
#include "agent/checks/check.h"
#include "agent/config.h"

namespace meshprobe::agent {

class ZtunnelCheck final : public Check {
 public:
  ZtunnelCheck(const AgentConfig& config, SockDiag& sock_diag);
  std::string_view name() const override { return "ztunnel"; }
  CheckResult run() override;

 private:
  const AgentConfig& config_;
  SockDiag& sock_diag_;
};

}  // namespace meshprobe::agent
