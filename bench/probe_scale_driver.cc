// Standalone prober / responder for bench/probe_scale.sh (benchmark c): the
// agent's daemon mode does not exist yet, so this drives the probe engine alone.
//
//   probe_scale_driver --mode responder [--port 9473] [--key-file F]
//       answers until SIGINT/SIGTERM, then prints its counters.
//   probe_scale_driver --mode prober --peers 1000 [--underlay-base 10.200.0.0]
//       [--overlay-base 10.201.0.0] [--interval 1s] [--warmup 5] [--duration 30]
//       [--port 9473] [--key-file F]
//       probes peers x {UNDERLAY, OVERLAY} (peer i at base + i + 1), measures its own CPU
//       (getrusage) and RSS over the measurement window and prints one result line.
//   probe_scale_driver --mode raw-prober ... (same flags)
//       the baseline: the same targets at the same rate from a bare loop (10 ms ticks,
//       sendto of one pre-signed request, non-blocking recv drain, no bookkeeping), so the
//       kernel's share of the cost on this machine is measured in the same run.

#include <arpa/inet.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "agent/probe/prober.h"
#include "agent/probe/responder.h"
#include "common/duration.h"

namespace {

using namespace meshprobe;
using namespace meshprobe::agent;
using Steady = std::chrono::steady_clock;

std::atomic<bool> g_stop{false};
void onSignal(int) { g_stop = true; }

double cpuSeconds() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

long statusKb(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::atol(line.c_str() + field.size() + 1);
  }
  return -1;
}

std::string addOffset(const std::string& base, uint32_t off) {
  in_addr a{};
  if (::inet_pton(AF_INET, base.c_str(), &a) != 1) return "";
  a.s_addr = htonl(ntohl(a.s_addr) + off);
  char buf[INET_ADDRSTRLEN];
  ::inet_ntop(AF_INET, &a, buf, sizeof(buf));
  return buf;
}

bool sleepUnless(double seconds) {
  auto end = Steady::now() + std::chrono::duration<double>(seconds);
  while (Steady::now() < end) {
    if (g_stop) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return true;
}

void report(const char* what, size_t targets, double wall, uint64_t sent, uint64_t replies, uint64_t timeouts,
            size_t healthy, double median_rtt_us, double cpu) {
  long rss = statusKb("VmRSS"), hwm = statusKb("VmHWM");
  std::printf(
      "%s targets=%zu window=%.1fs sent=%lu (%.0f/s) replies=%lu timeouts=%lu healthy_targets=%zu "
      "median_rtt_p50=%.0fus cpu=%.3fs cpu_pct_of_core=%.3f rss_mib=%.1f peak_rss_mib=%.1f\n",
      what, targets, wall, sent, static_cast<double>(sent) / wall, replies, timeouts, healthy, median_rtt_us, cpu,
      cpu / wall * 100, static_cast<double>(rss) / 1024, static_cast<double>(hwm) / 1024);
}

int rawProber(int peers, const std::string& underlay, const std::string& overlay, int port, Duration interval,
              double warmup, double duration, const std::optional<ProbeKey>& key) {
  std::vector<sockaddr_in> to;
  for (int i = 0; i < peers; ++i) {
    for (const auto& base : {underlay, overlay}) {
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(static_cast<uint16_t>(port));
      ::inet_pton(AF_INET, addOffset(base, static_cast<uint32_t>(i + 1)).c_str(), &a.sin_addr);
      to.push_back(a);
    }
  }
  // Every probe gets its own sequence, as the agent's (a keyed responder drops a repeated
  // one as a replay), so the baseline signs each probe as the agent does.
  ProbePacket p;
  p.sender = "prober";
  p.sequence = static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
  std::array<uint8_t, 128> probe{};
  if (!encodeProbe(p, key ? &*key : nullptr, probe.size(), probe).ok()) return 1;
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  char buf[65536];
  const auto tick = std::chrono::milliseconds(10);
  const size_t per_tick = std::max<size_t>(
      1, to.size() * static_cast<size_t>(tick.count()) /
             static_cast<size_t>(std::chrono::duration_cast<std::chrono::milliseconds>(interval).count()));
  size_t next = 0;
  uint64_t sent = 0, replies = 0, sent0 = 0, replies0 = 0;
  double cpu0 = 0;
  auto start = Steady::now();
  auto measure_from = start + std::chrono::duration_cast<Steady::duration>(std::chrono::duration<double>(warmup));
  auto end = measure_from + std::chrono::duration_cast<Steady::duration>(std::chrono::duration<double>(duration));
  bool measuring = false;
  auto wake = start;
  while (!g_stop) {
    wake += tick;
    std::this_thread::sleep_until(wake);
    auto now = Steady::now();
    if (!measuring && now >= measure_from) {
      measuring = true;
      sent0 = sent;
      replies0 = replies;
      cpu0 = cpuSeconds();
      measure_from = now;
    }
    if (now >= end) break;
    while (::recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0) ++replies;
    for (size_t k = 0; k < per_tick; ++k) {
      const sockaddr_in& a = to[next];
      next = (next + 1) % to.size();
      ++p.sequence;
      if (!encodeProbe(p, key ? &*key : nullptr, probe.size(), probe).ok()) return 1;
      if (::sendto(fd, probe.data(), probe.size(), 0, reinterpret_cast<const sockaddr*>(&a), sizeof(a)) > 0) ++sent;
    }
  }
  double cpu = cpuSeconds() - cpu0;
  double wall = std::chrono::duration<double>(Steady::now() - measure_from).count();
  report("raw-baseline", to.size(), wall, sent - sent0, replies - replies0, 0, 0, 0, cpu);
  ::close(fd);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode, key_file, underlay = "10.200.0.0", overlay = "10.201.0.0", interval_text = "1s";
  int peers = 1000, port = kDefaultProbePort;
  double warmup = 5, duration = 30;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string f = argv[i], v = argv[i + 1];
    if (f == "--mode")
      mode = v;
    else if (f == "--peers")
      peers = std::atoi(v.c_str());
    else if (f == "--port")
      port = std::atoi(v.c_str());
    else if (f == "--key-file")
      key_file = v;
    else if (f == "--underlay-base")
      underlay = v;
    else if (f == "--overlay-base")
      overlay = v;
    else if (f == "--interval")
      interval_text = v;
    else if (f == "--warmup")
      warmup = std::atof(v.c_str());
    else if (f == "--duration")
      duration = std::atof(v.c_str());
    else {
      std::fprintf(stderr, "unknown flag %s\n", f.c_str());
      return 2;
    }
  }
  std::signal(SIGINT, onSignal);
  std::signal(SIGTERM, onSignal);
  std::optional<ProbeKey> key;
  if (!key_file.empty()) {
    auto k = loadProbeKeyFile(key_file);
    if (!k) {
      std::fprintf(stderr, "%s\n", k.error().message.c_str());
      return 2;
    }
    key = *k;
  }
  SystemClock clock;
  if (mode == "responder") {
    ResponderOptions o;
    o.node_name = "responder";
    o.key = key;
    o.port = static_cast<uint16_t>(port);
    o.rate_per_source = 1e6;  // one prober source sends for all 2000 targets
    o.burst_per_source = 1e6;
    Responder r(o, clock);
    if (auto st = r.start(); !st) {
      std::fprintf(stderr, "%s\n", st.error().message.c_str());
      return 1;
    }
    std::printf("responder ready on %d\n", r.udpPort());
    std::fflush(stdout);
    while (sleepUnless(3600)) {
    }
    r.stop();
    auto c = r.counters();
    std::printf("responder received=%lu answered=%lu invalid=%lu unauthenticated=%lu rate_limited=%lu\n", c.received,
                c.answered, c.dropped_invalid, c.dropped_unauthenticated, c.dropped_rate_limited);
    return 0;
  }
  auto interval = parseDuration(interval_text);
  if (!interval) return 2;
  if (mode == "raw-prober") return rawProber(peers, underlay, overlay, port, *interval, warmup, duration, key);
  if (mode != "prober") {
    std::fprintf(stderr, "--mode prober|raw-prober|responder\n");
    return 2;
  }
  ProberOptions o;
  o.node_name = "prober";
  o.key = key;
  o.port = static_cast<uint16_t>(port);
  o.interval = *interval;
  Prober p(o, clock);
  std::vector<ProbeTarget> targets;
  for (int i = 0; i < peers; ++i) {
    std::string name = "node-" + std::to_string(i + 1);
    targets.push_back({name, Layer::kUnderlay, addOffset(underlay, static_cast<uint32_t>(i + 1))});
    targets.push_back({name, Layer::kOverlay, addOffset(overlay, static_cast<uint32_t>(i + 1))});
  }
  if (auto st = p.setTargets(targets); !st) {
    std::fprintf(stderr, "%s\n", st.error().message.c_str());
    return 1;
  }
  if (auto st = p.start(); !st) {
    std::fprintf(stderr, "%s\n", st.error().message.c_str());
    return 1;
  }
  if (!sleepUnless(warmup)) return 1;
  auto c0 = p.counters();
  double cpu0 = cpuSeconds();
  auto t0 = Steady::now();
  if (!sleepUnless(duration)) return 1;
  double cpu = cpuSeconds() - cpu0;
  double wall = std::chrono::duration<double>(Steady::now() - t0).count();
  auto c1 = p.counters();
  auto stats = p.stats();
  p.stop();
  size_t healthy = 0;
  std::vector<int64_t> p50s;
  for (const auto& s : stats) {
    if (s.loss == 0 && s.received > 0) ++healthy;
    if (s.rtt_p50) p50s.push_back(s.rtt_p50->count());
  }
  std::sort(p50s.begin(), p50s.end());
  double median_rtt_us = p50s.empty() ? 0 : static_cast<double>(p50s[p50s.size() / 2]) / 1000.0;
  report("prober", stats.size(), wall, c1.sent - c0.sent, c1.replies - c0.replies, c1.timeouts - c0.timeouts, healthy,
         median_rtt_us, cpu);
  return 0;
}
