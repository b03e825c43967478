// meshprobe-agent entry point: wiring only.
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <iostream>

#include "agent/checks/registry.h"
#include "agent/config.h"
#include "agent/daemon/daemon.h"
#include "agent/doctor/doctor.h"
#include "agent/doctor/render.h"
#include "common/logging.h"
#include "common/version.h"

using namespace meshprobe;
using namespace meshprobe::agent;

namespace {

std::atomic<bool> g_stop{false};

constexpr std::chrono::milliseconds kKernelReadTimeout{2000};

int runOnce(const AgentConfig& config) {
  auto netlink = makeKernelNetlinkReader(kKernelReadTimeout);
  auto sock_diag = makeKernelSockDiag(kKernelReadTimeout);
  auto commands = makeProcessCommandRunner();
  SystemClock clock;
  AgentDeps deps{*netlink, *sock_diag, *commands, clock};
  // Leaked on purpose: a check that timed out may still be running in a detached
  // thread, so its object and the seams must outlive this function.
  auto* checks = new std::vector<CheckPtr>(makeChecks(config, deps));
  auto report = runDoctor(config.node_name, *checks, config.check_timeout, clock);
  if (config.output == "json") {
    std::cout << reportToJson(report).dump(2) << std::endl;
  } else {
    std::cout << renderText(report, isatty(STDOUT_FILENO) == 1) << std::flush;
  }
  int code = report.anyFailed() ? 1 : 0;
  std::fflush(nullptr);
  // _exit: do not wait on, or destroy the seams under, a check thread that timed out.
  _exit(code);
}

}  // namespace

int main(int argc, char** argv) {
  AgentConfig config;
  auto outcome = parseAgentConfig(argc, argv, config);
  if (!outcome.ok()) {
    std::cerr << "meshprobe-agent: " << outcome.error().message << "\n(see meshprobe-agent --help)\n";
    return 2;
  }
  if (*outcome == ConfigOutcome::kExitOk) return 0;
  if (auto st = setupLogging(config.log_level, config.log_format); !st.ok()) {
    std::cerr << "meshprobe-agent: " << st.error().message << "\n";
    return 2;
  }
  if (config.once) return runOnce(config);

  std::signal(SIGTERM, [](int) { g_stop = true; });
  std::signal(SIGINT, [](int) { g_stop = true; });
  auto netlink = makeKernelNetlinkReader(kKernelReadTimeout);
  auto sock_diag = makeKernelSockDiag(kKernelReadTimeout);
  auto commands = makeProcessCommandRunner();
  SystemClock clock;
  AgentDeps deps{*netlink, *sock_diag, *commands, clock};
  spdlog::info("meshprobe-agent {} on node {} ({})", kVersion, config.node_name, config.node_ip);
  auto st = runDaemon(config, deps, g_stop);
  if (!st.ok()) spdlog::error("{}", st.error().message);
  spdlog::shutdown();
  std::fflush(nullptr);
  _exit(st.ok() ? 0 : 1);  // a check round may still run in a detached thread
}
