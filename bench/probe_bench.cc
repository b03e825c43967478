// Probe engine benchmarks , each against a baseline measured in the same run.
//
//  (a) throughput on one core (the process is pinned to one CPU):
//      baseline  raw UDP sendto/recvfrom ping-pong against a C echo loop;
//      pipeline  the same ping-pong with the engine's work: encode + HMAC, the real
//                Responder (decode + verify + sign reply), decode + verify + match;
//      prober    the real Prober driving 2000 targets at 10 Hz (20k probes/s offered)
//                against the real Responder: achieved replies/s, loss, CPU per probe.
//  (b) responder latency: serial ping-pong RTT p50/p99 against a minimal C UDP echo
//      server vs against the Responder, same 128-byte signed probe, interleaved blocks.
//
// Usage: probe_bench [--seconds N] [--rt]   (default 3 s per measurement; --rt: SCHED_FIFO)

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "agent/probe/packet.h"
#include "agent/probe/prober.h"
#include "agent/probe/responder.h"

namespace {

using namespace meshprobe;
using namespace meshprobe::agent;
using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;

sockaddr_in loopback(uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

int udpSocket(uint16_t port = 0) {
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = loopback(port);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    std::perror("bind");
    std::exit(1);
  }
  return fd;
}

uint16_t portOf(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

// The minimal C UDP echo server: recvfrom, sendto the same bytes back. 100 ms receive
// timeout so it notices `stop`.
class EchoServer {
 public:
  EchoServer() : fd_(udpSocket()) {
    timeval tv{0, 100000};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    thread_ = std::thread([this] {
      char buf[65536];
      while (!stop_.load(std::memory_order_relaxed)) {
        sockaddr_in from{};
        socklen_t len = sizeof(from);
        ssize_t n = ::recvfrom(fd_, buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&from), &len);
        if (n > 0) ::sendto(fd_, buf, static_cast<size_t>(n), 0, reinterpret_cast<sockaddr*>(&from), len);
      }
    });
  }
  ~EchoServer() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  uint16_t port() const { return portOf(fd_); }

 private:
  int fd_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

double cpuSeconds() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

bool recvWithin(int fd, char* buf, size_t cap, ssize_t& n, int timeout_ms = 1000) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) <= 0) return false;
  n = ::recv(fd, buf, cap, 0);
  return n > 0;
}

struct Rate {
  uint64_t ops = 0;
  double seconds = 0;
  double cpu = 0;
  double perSecond() const { return static_cast<double>(ops) / seconds; }
};

Rate rawPingPong(double seconds) {
  EchoServer echo;
  int fd = udpSocket();
  sockaddr_in to = loopback(echo.port());
  char msg[128] = {};
  char buf[65536];
  Rate r;
  double cpu0 = cpuSeconds();
  auto start = Steady::now();
  auto end = start + std::chrono::duration_cast<Steady::duration>(std::chrono::duration<double>(seconds));
  while (Steady::now() < end) {
    ::sendto(fd, msg, sizeof(msg), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to));
    ssize_t n = 0;
    if (recvWithin(fd, buf, sizeof(buf), n)) ++r.ops;
  }
  r.seconds = std::chrono::duration<double>(Steady::now() - start).count();
  r.cpu = cpuSeconds() - cpu0;
  ::close(fd);
  return r;
}

Rate pipelinePingPong(double seconds, const ProbeKey& key) {
  SystemClock clock;
  ResponderOptions ro;
  ro.node_name = "node-2";
  ro.key = key;
  ro.bind_address = "127.0.0.1";
  ro.port = 0;
  ro.tcp = false;
  ro.rate_per_source = 1e9;
  ro.burst_per_source = 1e9;
  Responder responder(ro, clock);
  if (!responder.start().ok()) std::exit(1);
  int fd = udpSocket();
  sockaddr_in to = loopback(responder.udpPort());
  std::array<uint8_t, kMaxProbeSize> tx{};
  std::array<uint8_t, kMaxProbeSize + 1> rx{};
  std::map<uint64_t, Steady::time_point> outstanding;
  ProbePacket req, rep;
  req.sender = "node-1";
  uint64_t seq = 1;
  Rate r;
  double cpu0 = cpuSeconds();
  auto start = Steady::now();
  auto end = start + std::chrono::duration_cast<Steady::duration>(std::chrono::duration<double>(seconds));
  while (Steady::now() < end) {
    auto now = Steady::now();
    req.sequence = seq;
    req.send_time_ns = static_cast<uint64_t>(now.time_since_epoch().count());
    auto size = encodeProbe(req, &key, 128, tx);
    outstanding.emplace(seq, now);
    ++seq;
    ::sendto(fd, tx.data(), *size, 0, reinterpret_cast<sockaddr*>(&to), sizeof(to));
    ssize_t n = 0;
    if (!recvWithin(fd, reinterpret_cast<char*>(rx.data()), rx.size(), n)) continue;
    if (decodeProbe(std::span<const uint8_t>(rx.data(), static_cast<size_t>(n)), &key, rep) != DecodeStatus::kOk)
      continue;
    auto it = outstanding.find(rep.sequence);
    if (it == outstanding.end()) continue;
    outstanding.erase(it);
    ++r.ops;
  }
  r.seconds = std::chrono::duration<double>(Steady::now() - start).count();
  r.cpu = cpuSeconds() - cpu0;
  ::close(fd);
  return r;
}

struct ProberRun {
  double offered = 0;
  double replies_per_s = 0;
  double loss = 0;
  double cpu_fraction = 0;  // of one core, the prober process (responder is a child)
  double cpu_per_probe_us = 0;
};

// The Responder runs in a forked child so getrusage(RUSAGE_SELF) is the prober's alone.
ProberRun fullProber(double seconds, const ProbeKey& key, int targets, Duration interval) {
  int port_fd = udpSocket();
  uint16_t port = portOf(port_fd);
  ::close(port_fd);
  int ready[2], done[2];
  if (::pipe(ready) != 0 || ::pipe(done) != 0) std::exit(1);
  pid_t child = ::fork();
  if (child == 0) {
    ::close(ready[0]);
    ::close(done[1]);
    SystemClock clock;
    ResponderOptions ro;
    ro.node_name = "node-2";
    ro.key = key;
    ro.bind_address = "127.0.0.1";
    ro.port = port;
    ro.tcp = false;
    ro.rate_per_source = 1e9;
    ro.burst_per_source = 1e9;
    Responder responder(ro, clock);
    char ok = responder.start().ok() ? 1 : 0;
    if (::write(ready[1], &ok, 1) != 1) ::_exit(1);
    char c;
    while (::read(done[0], &c, 1) > 0) {
    }
    responder.stop();
    ::_exit(0);
  }
  ::close(ready[1]);
  ::close(done[0]);
  char ok = 0;
  if (::read(ready[0], &ok, 1) != 1 || ok != 1) std::exit(1);
  ProberRun r;
  {
    SystemClock clock;
    ProberOptions po;
    po.node_name = "node-1";
    po.key = key;
    po.port = port;
    po.bind_address = "127.0.0.1";
    po.interval = interval;
    Prober prober(po, clock);
    std::vector<ProbeTarget> ts;
    for (int i = 0; i < targets; ++i) ts.push_back({"peer-" + std::to_string(i), Layer::kUnderlay, "127.0.0.1"});
    if (!prober.setTargets(ts).ok() || !prober.start().ok()) std::exit(1);
    std::this_thread::sleep_for(interval * 3);  // warm-up: every target probed a few times
    auto c0 = prober.counters();
    double cpu0 = cpuSeconds();
    auto t0 = Steady::now();
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    auto c1 = prober.counters();
    double cpu = cpuSeconds() - cpu0;
    double wall = std::chrono::duration<double>(Steady::now() - t0).count();
    prober.stop();
    r.offered = targets / std::chrono::duration<double>(interval).count();
    uint64_t replies = c1.replies - c0.replies;
    uint64_t timeouts = c1.timeouts - c0.timeouts;
    r.replies_per_s = static_cast<double>(replies) / wall;
    r.loss = replies + timeouts == 0 ? 0 : static_cast<double>(timeouts) / static_cast<double>(replies + timeouts);
    r.cpu_fraction = cpu / wall;
    r.cpu_per_probe_us = replies == 0 ? 0 : cpu / static_cast<double>(replies) * 1e6;
  }
  ::close(done[1]);
  ::waitpid(child, nullptr, 0);
  return r;
}

// Serial ping-pong RTTs (ns) of `probe` against `port`, `count` samples.
void sampleRtts(int fd, uint16_t port, const std::string& probe, int count, std::vector<int64_t>& out) {
  sockaddr_in to = loopback(port);
  char buf[65536];
  for (int i = 0; i < count; ++i) {
    auto t0 = Steady::now();
    ::sendto(fd, probe.data(), probe.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to));
    ssize_t n = 0;
    if (!recvWithin(fd, buf, sizeof(buf), n)) continue;
    out.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(Steady::now() - t0).count());
  }
}

double pct(std::vector<int64_t>& v, double p) {
  std::sort(v.begin(), v.end());
  size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  return static_cast<double>(v[i]) / 1000.0;
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 3;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--seconds") seconds = std::atof(argv[i + 1]);
  }
  auto key = ProbeKey::fromBytes("benchmark-cluster-key-0123456789abcdef");
  if (!key) return 1;

  bool rt = false;
  for (int i = 1; i < argc; ++i) rt = rt || std::string(argv[i]) == "--rt";
  if (rt) {
    // Opt-in: SCHED_FIFO for this process and the threads it creates, so a loaded machine's
    // other work does not preempt the measurement (both sides get the same treatment).
    sched_param sp{};
    sp.sched_priority = 1;
    if (sched_setscheduler(0, SCHED_FIFO, &sp) != 0) std::perror("sched_setscheduler");
  }
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(0, &one);
  bool pinned = sched_setaffinity(0, sizeof(one), &one) == 0;
  std::printf("== (a) probe engine throughput%s\n", rt ? " (SCHED_FIFO)" : "");
  std::printf("-- serial ping-pong, %s, %.0f s each\n",
              pinned ? "process pinned to CPU 0 (client and server threads share one core)" : "NOT pinned", seconds);
  Rate raw = rawPingPong(seconds);
  Rate pipe = pipelinePingPong(seconds, *key);
  std::printf("baseline raw UDP ping-pong (C echo)                            %8.0f round trips/s\n", raw.perSecond());
  std::printf("engine: encode+HMAC -> Responder -> decode+verify+match        %8.0f probes/s = %.2f x baseline\n",
              pipe.perSecond(), pipe.perSecond() / raw.perSecond());
  cpu_set_t all;
  CPU_ZERO(&all);
  for (int c = 0; c < CPU_SETSIZE; ++c) CPU_SET(c, &all);
  sched_setaffinity(0, sizeof(all), &all);
  std::printf("-- the real Prober (one io thread) vs the Responder in a child process; CPU = the prober process\n");
  for (int targets : {2000, 4000}) {
    ProberRun pr = fullProber(seconds, *key, targets, 100ms);
    std::printf(
        "%d targets @10 Hz: offered %6.0f/s achieved %6.0f replies/s loss %.4f, prober CPU %.0f%% of one core, "
        "%.1f us per probe -> capacity %.0f probes/s per core (target >= 20000)\n",
        targets, pr.offered, pr.replies_per_s, pr.loss, pr.cpu_fraction * 100, pr.cpu_per_probe_us,
        pr.cpu_per_probe_us > 0 ? 1e6 / pr.cpu_per_probe_us : 0.0);
  }

  // (b) latency: no pinning, client and server on separate cores when available.
  std::printf("== (b) responder latency, serial ping-pong, 128-byte signed probe, interleaved blocks\n");
  SystemClock clock;
  ResponderOptions ro;
  ro.node_name = "node-2";
  ro.key = *key;
  ro.bind_address = "127.0.0.1";
  ro.port = 0;
  ro.tcp = false;
  ro.rate_per_source = 1e9;
  ro.burst_per_source = 1e9;
  Responder responder(ro, clock);
  if (!responder.start().ok()) return 1;
  EchoServer echo;
  ProbePacket p;
  p.sender = "node-1";
  p.sequence = 1;
  std::string probe = *encodeProbe(p, &*key, 128);
  int fd = udpSocket();
  std::vector<int64_t> base, resp;
  int blocks = static_cast<int>(std::max(1.0, seconds * 10));
  for (int b = 0; b < blocks; ++b) {
    sampleRtts(fd, echo.port(), probe, 1000, base);
    sampleRtts(fd, responder.udpPort(), probe, 1000, resp);
  }
  ::close(fd);
  double b50 = pct(base, 0.50), b99 = pct(base, 0.99), r50 = pct(resp, 0.50), r99 = pct(resp, 0.99);
  std::printf("C echo server : n=%zu p50 %7.1f us  p99 %7.1f us\n", base.size(), b50, b99);
  std::printf("Responder     : n=%zu p50 %7.1f us  p99 %7.1f us\n", resp.size(), r50, r99);
  std::printf("delta         :         p50 %+7.1f us  p99 %+7.1f us  (target p99 <= +50 us: %s)\n", r50 - b50,
              r99 - b99, r99 - b99 <= 50 ? "met" : "NOT met");
  return 0;
}
