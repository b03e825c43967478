// meshprobe-agent entry point: wiring only.
#include <malloc.h>
#include <pthread.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdio>
#include <iostream>
#include <memory>

#include "agent/checks/registry.h"
#include "agent/config.h"
#include "agent/daemon/daemon.h"
#include "agent/doctor/doctor.h"
#include "agent/doctor/render.h"
#include "agent/kernel/netlink_cache.h"
#include "common/logging.h"
#include "common/version.h"

using namespace meshprobe;
using namespace meshprobe::agent;

namespace {

constexpr std::chrono::milliseconds kKernelReadTimeout{2000};

// The kernel seams and the clock, in one shared object: a check abandoned on shutdown
// (blocked in the kernel) holds a reference and keeps them alive until it returns.
struct Seams {
  std::unique_ptr<NetlinkReader> netlink = makeKernelNetlinkReader(kKernelReadTimeout);
  std::unique_ptr<SockDiag> sock_diag = makeKernelSockDiag(kKernelReadTimeout);
  std::unique_ptr<CommandRunner> commands = makeProcessCommandRunner();
  std::unique_ptr<RulesetGeneration> rulesets = makeKernelRulesetGeneration(kKernelReadTimeout);
  SystemClock clock;
  AgentDeps deps() { return AgentDeps{*netlink, *sock_diag, *commands, clock, nullptr, rulesets.get()}; }
};

int runOnce(const AgentConfig& config) {
  auto seams = std::make_shared<Seams>();
  AgentDeps deps = seams->deps();
  deps.netlink.beginRound();  // one rtnetlink snapshot for every check
  auto report = runDoctor(config.node_name, makeChecks(config, deps), config.check_timeout, seams->clock, seams);
  if (config.output == "json") {
    std::cout << reportToJson(report).dump(2) << std::endl;
  } else {
    std::cout << renderText(report, isatty(STDOUT_FILENO) == 1) << std::flush;
  }
  return report.anyFailed() ? 1 : 0;
}

// SIGTERM/SIGINT are blocked in every thread (the mask is inherited) and taken here
// with sigwait: no handler, no flag to poll.
int runDaemon(const AgentConfig& config, const sigset_t& stop_signals) {
  auto seams = std::make_shared<Seams>();
  // rtnetlink from the notification-fed cache (one dump, then the kernel's events; the
  // reader owns the cache, whose thread ends with it). --once keeps a fresh dump.
  if (auto cache = NetlinkCache::start(); cache.ok()) {
    seams->netlink = makeCachedNetlinkReader(*cache);
  } else {
    spdlog::warn("rtnetlink cache unavailable, dumping every round: {}", cache.error().message);
  }
  spdlog::info("meshprobe-agent {} on node {} ({})", kVersion, config.node_name, config.node_ip);
  Daemon daemon(config, seams->deps(), seams);
  if (auto st = daemon.start(); !st.ok()) {
    spdlog::error("{}", st.error().message);
    return 1;
  }
  int sig = 0;
  sigwait(&stop_signals, &sig);
  spdlog::info("signal {}", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  daemon.stop();
  return 0;
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
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  if (!config.once) pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);  // before any thread starts
  // One malloc arena for every thread. glibc gives each thread that allocates its own arena
  // (up to 8 per core), and the agent's threads (gRPC's, the checks', the prober's) each
  // keep a few hundred KiB of free pages in theirs: about 2 MiB of the daemon's RSS. Its
  // allocations are few and on different threads at different times, so the one lock
  // costs nothing measurable (bench/agent_scale.sh: CPU unchanged at 1,000 peers).
  mallopt(M_ARENA_MAX, 1);
  if (auto st = setupLogging(config.log_level, config.log_format); !st.ok()) {
    std::cerr << "meshprobe-agent: " << st.error().message << "\n";
    return 2;
  }
  const int code = config.once ? runOnce(config) : runDaemon(config, stop_signals);
  spdlog::shutdown();
  return code;
}
