#pragma once
// istiod: can this node complete DNS, TCP and TLS (ALPN h2) to istiod's xDS port 15012?
// ztunnel stays 0/1 READY until it can (runbook, "ztunnel pods not ready").

#include <optional>

#include "agent/checks/check.h"
#include "agent/config.h"
#include "agent/istiod/tls_probe.h"

namespace meshprobe::agent {

// Seams for tests: a fake resolver (no DNS server is ever queried) and a short timeout.
struct IstiodCheckOptions {
  Resolver resolver;                      // empty: systemResolver()
  std::optional<Duration> probe_timeout;  // empty: derived from config.check_timeout
};

// The whole-probe deadline: 3 s, or less when the check timeout leaves no room for it
// (the check timeout minus a margin, so the probe's own verdict beats the doctor's).
Duration istiodProbeTimeout(Duration check_timeout);

class IstiodCheck final : public Check {
 public:
  IstiodCheck(const AgentConfig& config);
  IstiodCheck(const AgentConfig& config, IstiodCheckOptions options);
  std::string_view name() const override { return "istiod"; }
  CheckResult run() override;

 private:
  CheckResult evaluate(const TlsProbeResult& probe, Duration timeout) const;

  const AgentConfig& config_;
  IstiodCheckOptions options_;
};

// The check's details JSON for one probe (exposed for tests and the agent's /checks).
nlohmann::json istiodProbeDetails(const TlsProbeResult& probe, Duration timeout);

}  // namespace meshprobe::agent
