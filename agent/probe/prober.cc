#include "agent/probe/prober.h"

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <boost/asio.hpp>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "agent/probe/df_socket.h"
#include "agent/probe/outcome_window.h"
#include "common/thread_name.h"

namespace meshprobe::agent {
namespace {

namespace asio = boost::asio;
using udp = asio::ip::udp;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using TimePoint = std::chrono::steady_clock::time_point;

constexpr size_t kClosedMemory = 16384;  // recently completed sequences (late vs duplicate)

std::string tcpErrorText(const error_code& ec) {
  if (ec == asio::error::connection_refused) return "connection refused";
  if (ec == asio::error::network_unreachable) return "network unreachable";
  if (ec == asio::error::host_unreachable) return "host unreachable";
  if (ec == asio::error::timed_out) return "timed out";
  return ec.message();
}

struct TargetState {
  ProbeTarget target;
  std::optional<size_t> ring_position;  // the peer's in the scheduler's rotation, if any
  uint64_t version = 0;                  // TargetStats::version: set by touch()
  udp::endpoint endpoint;
  uint64_t sent = 0;
  uint64_t received = 0;
  OutcomeWindow window;
  std::optional<Duration> last_rtt;
  std::optional<std::chrono::system_clock::time_point> last_success;
  std::optional<std::chrono::system_clock::time_point> last_probe;
  uint32_t consecutive_failures = 0;
  std::string last_error;
  ProbeFailure last_failure = ProbeFailure::kNone;
  std::optional<bool> tcp_reachable;
  std::string tcp_error;
  ProbeFailure tcp_failure = ProbeFailure::kNone;
  std::string responder;
  bool tcp_in_flight = false;
  bool tcp_checked_this_streak = false;
  // DF path-MTU probes (df.size == target.path_mtu_size).
  PathMtuStats df;
  uint32_t regular_since_df = 0;  // regular probes since the last DF probe
  bool df_outstanding = false;
};

struct Outstanding {
  TargetId id = 0;
  TimePoint sent;
  TimePoint deadline;
  uint64_t send_time_ns = 0;
  bool retry = false;
  bool df = false;  // a DF path-MTU probe
  size_t size = 0;  // request bytes (UDP payload)
};

struct TcpCheck {
  explicit TcpCheck(asio::io_context& io) : socket(io), timer(io) {}
  tcp::socket socket;
  asio::steady_timer timer;
  bool timed_out = false;
};

Duration percentile(std::vector<Duration>& sorted, double p) {
  // Nearest rank.
  size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

}  // namespace

struct Prober::Impl {
  Impl(ProberOptions o, const Clock& c)
      : options(normalize(std::move(o))),
        clock(c),
        scheduler(c, schedulerOptions()),
        socket(io),
        df_socket(io),
        timer(io) {
    // Sequences start at the wall clock in nanoseconds, not at a random value: responders
    // keep an anti-replay window per sender (agent/probe/replay_window.h), so a restarted
    // prober must continue above its previous run's sequences, and it does unless it sent
    // more than one probe per nanosecond or the clock stepped back (the window's restart
    // rule takes the sender back then).
    const auto wall = std::chrono::duration_cast<std::chrono::nanoseconds>(clock.wallNow().time_since_epoch());
    next_seq = static_cast<uint64_t>(std::max<int64_t>(wall.count(), 1));
  }

  static ProberOptions normalize(ProberOptions o) {
    if (o.interval <= Duration::zero()) o.interval = std::chrono::seconds(1);
    if (o.timeout <= Duration::zero()) o.timeout = std::min<Duration>(o.interval, std::chrono::seconds(1)) * 8 / 10;
    if (o.max_jitter <= Duration::zero()) o.max_jitter = o.interval / 20;
    if (o.window == 0) o.window = 1;
    if (o.tcp_check_after < 1) o.tcp_check_after = 1;
    if (o.path_mtu_every < 1) o.path_mtu_every = 1;
    if (o.min_tick <= Duration::zero()) {
      o.min_tick = std::clamp<Duration>(o.interval / 50, std::chrono::milliseconds(1), std::chrono::milliseconds(20));
    }
    o.min_tick = std::min<Duration>(o.min_tick, std::chrono::milliseconds(100));
    return o;
  }

  SchedulerOptions schedulerOptions() const {
    SchedulerOptions s;
    s.interval = options.interval;
    s.max_jitter = options.max_jitter;
    s.retries = options.retries;
    s.retry_spacing = options.retry_spacing;
    s.seed = options.node_name;
    s.rng_seed = options.rng_seed;
    return s;
  }

  ProberOptions options;
  const Clock& clock;
  asio::io_context io;  // declared before the sockets: destroyed after them

  mutable std::mutex mu;  // everything below
  ProbeScheduler scheduler;
  std::unordered_map<TargetId, TargetState> states;
  std::vector<TargetId> order;
  std::map<uint64_t, Outstanding> outstanding;  // by sequence: same timeout, so also by deadline
  // Completed sequences, to tell a late or duplicate reply from an unknown one: slot
  // seq % kClosedMemory holds seq * 2 + answered (0: empty). Sequences are handed out one
  // after another, so a completed one is remembered until the one kClosedMemory later
  // completes: a fixed table, no allocation or hashing per probe.
  std::vector<uint64_t> closed = std::vector<uint64_t>(kClosedMemory, 0);
  ProberCounters counters;
  uint64_t next_seq = 0;
  size_t df_in_flight = 0;  // DF probes in `outstanding`
  TimePoint last_tick{};

  udp::socket socket;
  udp::socket df_socket;  // IP_PMTUDISC_PROBE: DF path-MTU probes
  asio::steady_timer timer;
  std::thread thread;
  bool running = false;
  uint16_t local_port = 0;
  uint16_t df_local_port = 0;
  std::array<uint8_t, kMaxProbeSize + 1> rx{};
  std::array<uint8_t, kMaxProbeSize> tx{};
  ProbePacket reply;

  const ProbeKey* key() const { return options.key ? &*options.key : nullptr; }

  void remember(uint64_t seq, bool answered) { closed[seq % kClosedMemory] = seq * 2 + (answered ? 1 : 0); }
  // Whether `seq` completed recently, and if so whether it was answered.
  std::optional<bool> completed(uint64_t seq) const {
    const uint64_t slot = closed[seq % kClosedMemory];
    if (slot == 0 || slot / 2 != seq) return std::nullopt;
    return (slot & 1) != 0;
  }

  void pushOutcome(TargetState& s, Outcome o) { s.window.push(o, options.window); }

  // Every change to what snapshot() reports goes through here: a fresh version from one
  // counter for all targets, so no two states ever share one.
  uint64_t last_version = 0;
  void touch(TargetState& s) { s.version = ++last_version; }

  // --- I/O thread, with mu held -------------------------------------------------------

  void recordMiss(TargetId id, bool retry, std::string error, ProbeFailure failure) {
    scheduler.onMiss(id, retry);
    auto it = states.find(id);
    if (it == states.end()) return;
    TargetState& s = it->second;
    touch(s);
    ++s.consecutive_failures;
    if (s.consecutive_failures == static_cast<uint32_t>(options.retries) + 1) {
      ++counters.transitions;
      if (options.on_transition) options.on_transition();
    }
    s.last_error = std::move(error);
    s.last_failure = failure;
    pushOutcome(s, Outcome{false, {}});
    if (static_cast<int>(s.consecutive_failures) >= options.tcp_check_after && !s.tcp_in_flight &&
        !s.tcp_checked_this_streak) {
      startTcpCheck(id, s);
    }
  }

  void recordReply(TargetId id, Duration rtt, const std::string& responder) {
    scheduler.onReply(id);
    auto it = states.find(id);
    if (it == states.end()) return;
    TargetState& s = it->second;
    touch(s);
    ++s.received;
    if (s.consecutive_failures > static_cast<uint32_t>(options.retries)) {
      ++counters.transitions;
      if (options.on_transition) options.on_transition();
    }
    s.consecutive_failures = 0;
    s.last_rtt = rtt;
    s.last_success = clock.wallNow();
    s.responder = responder;
    s.tcp_reachable.reset();
    s.tcp_error.clear();
    s.tcp_failure = ProbeFailure::kNone;
    s.tcp_checked_this_streak = false;
    pushOutcome(s, Outcome{true, rtt});
    if (options.on_rtt) options.on_rtt(s.target, rtt);
  }

  // DF probes: their own accounting, never the regular probes' (loss, failures, on_rtt).
  // The state of the DF probe of `request_size` bytes, or nullptr when the target is gone
  // or its size changed since (the outcome then belongs to no current history).
  TargetState* dfOwner(TargetId id, size_t request_size) {
    auto it = states.find(id);
    if (it == states.end()) return nullptr;
    TargetState& s = it->second;
    s.df_outstanding = false;
    const size_t expected = probePayloadForIpSize(s.df.size, s.endpoint.address().is_v6());
    return request_size == expected ? &s : nullptr;
  }

  void recordDfMiss(TargetId id, size_t request_size, std::string error, ProbeFailure failure) {
    ++counters.path_mtu_failures;
    TargetState* owner = dfOwner(id, request_size);
    if (owner == nullptr) return;
    TargetState& s = *owner;
    touch(s);
    if (s.df.consecutive_failures + 1 == kPathMtuConfirm) ++counters.path_mtu_transitions;
    ++s.df.consecutive_failures;
    s.df.last_error = std::move(error);
    s.df.last_failure = failure;
  }

  void recordDfReply(TargetId id, size_t request_size) {
    ++counters.path_mtu_replies;
    TargetState* owner = dfOwner(id, request_size);
    if (owner == nullptr) return;
    TargetState& s = *owner;
    touch(s);
    if (s.df.consecutive_failures >= kPathMtuConfirm) ++counters.path_mtu_transitions;
    ++s.df.received;
    s.df.consecutive_failures = 0;
    s.df.last_success = clock.wallNow();
  }

  // "no reply within 500ms", plus the kernel's path MTU when it is below the probe size
  // (a VXLAN device that met a smaller underlay MTU caches it for the inner destination).
  std::string dfTimeoutText(const TargetState& s) const {
    std::string text = "no reply within " + formatDuration(options.timeout);
    auto mtu = kernelPathMtu(s.target.address);
    if (mtu && *mtu < s.df.size) text += " (kernel path MTU " + std::to_string(*mtu) + ")";
    return text;
  }

  void startTcpCheck(TargetId id, TargetState& s) {
    s.tcp_in_flight = true;
    s.tcp_checked_this_streak = true;
    ++counters.tcp_checks;
    auto check = std::make_shared<TcpCheck>(io);
    tcp::endpoint ep(s.endpoint.address(), options.port);
    check->timer.expires_after(options.tcp_timeout);
    check->timer.async_wait([check](const error_code& ec) {
      if (ec) return;  // cancelled: the connect finished first
      check->timed_out = true;
      error_code ignored;
      check->socket.close(ignored);
    });
    check->socket.async_connect(ep, [this, check, id](const error_code& ec) {
      check->timer.cancel();
      error_code ignored;
      check->socket.close(ignored);
      std::lock_guard lock(mu);
      auto it = states.find(id);
      if (it == states.end()) return;
      TargetState& st = it->second;
      st.tcp_in_flight = false;
      if (st.consecutive_failures == 0) return;  // UDP recovered meanwhile
      touch(st);
      st.tcp_reachable = !ec && !check->timed_out;
      st.tcp_error = *st.tcp_reachable ? "" : check->timed_out ? "timed out" : tcpErrorText(ec);
      st.tcp_failure = *st.tcp_reachable ? ProbeFailure::kNone
                       : check->timed_out ? ProbeFailure::kTimeout
                                          : probeFailureOf(ec.value());
    });
  }

  void expire(TimePoint now) {
    while (!outstanding.empty() && outstanding.begin()->second.deadline <= now) {
      auto [seq, out] = *outstanding.begin();
      outstanding.erase(outstanding.begin());
      if (out.df) --df_in_flight;
      remember(seq, false);
      if (out.df) {
        auto st = states.find(out.id);
        recordDfMiss(out.id, out.size, st == states.end() ? std::string() : dfTimeoutText(st->second),
                     ProbeFailure::kTimeout);
        continue;
      }
      ++counters.timeouts;
      recordMiss(out.id, out.retry, "no reply within " + formatDuration(options.timeout), ProbeFailure::kTimeout);
    }
  }

  void send(const DueProbe& d) {
    auto it = states.find(d.id);
    if (it == states.end()) return;
    TimePoint now = clock.monotonicNow();  // per probe: a batch takes a few microseconds each
    TargetState& s = it->second;
    uint64_t seq = next_seq++;
    ProbePacket p;
    p.type = ProbeType::kRequest;
    p.sequence = seq;
    p.send_time_ns = static_cast<uint64_t>(now.time_since_epoch().count());
    p.sender = options.node_name;
    touch(s);
    ++s.sent;
    s.last_probe = clock.wallNow();
    auto size =
        encodeProbe(p, key(), std::max(options.request_size, minimumProbeSize(p.sender.size(), key() != nullptr)), tx);
    if (!size) {
      ++counters.send_errors;
      recordMiss(d.id, d.retry, "encode: " + size.error().message, ProbeFailure::kOther);
      return;
    }
    error_code ec;
    socket.send_to(asio::buffer(tx.data(), *size), s.endpoint, 0, ec);
    if (ec) {
      ++counters.send_errors;
      recordMiss(d.id, d.retry, "send: " + ec.message(), probeFailureOf(ec.value()));
      return;
    }
    ++counters.sent;
    outstanding.emplace(seq, Outstanding{d.id, now, now + options.timeout, p.send_time_ns, d.retry, false, *size});
  }

  // With each regular probe: a DF probe when the cadence says so (see prober.h).
  void maybeSendDf(TargetId id) {
    auto it = states.find(id);
    if (it == states.end() || it->second.df.size == 0) return;
    TargetState& s = it->second;
    ++s.regular_since_df;
    const bool confirming = s.df.consecutive_failures > 0 && s.df.consecutive_failures < kPathMtuConfirm;
    const bool due =
        s.df.sent == 0 || confirming || s.regular_since_df >= static_cast<uint32_t>(options.path_mtu_every);
    if (!due || s.df_outstanding) return;
    s.regular_since_df = 0;
    sendDf(id, s);
  }

  void sendDf(TargetId id, TargetState& s) {
    TimePoint now = clock.monotonicNow();
    uint64_t seq = next_seq++;
    ProbePacket p;
    p.type = ProbeType::kRequest;
    p.sequence = seq;
    p.send_time_ns = static_cast<uint64_t>(now.time_since_epoch().count());
    p.sender = options.node_name;
    touch(s);
    ++s.df.sent;
    const size_t payload = probePayloadForIpSize(s.df.size, s.endpoint.address().is_v6());
    const size_t minimum = minimumProbeSize(p.sender.size(), key() != nullptr);
    if (payload < minimum) {
      recordDfMiss(id, payload, "path MTU probe size " + std::to_string(s.df.size) + " is below the smallest probe",
                   ProbeFailure::kOther);
      return;
    }
    auto size = encodeProbe(p, key(), payload, tx);
    if (!size) {
      recordDfMiss(id, payload, "encode: " + size.error().message, ProbeFailure::kOther);
      return;
    }
    error_code ec;
    df_socket.send_to(asio::buffer(tx.data(), *size), s.endpoint, 0, ec);
    if (ec) {
      // EMSGSIZE: larger than the outgoing device's MTU (with PROBE the cached path MTU
      // does not count): say what the kernel thinks the path MTU is.
      recordDfMiss(id, payload, dfSendErrorText(s.df.size, ec.value(), kernelPathMtu(s.target.address)),
                   probeFailureOf(ec.value()));
      return;
    }
    ++counters.path_mtu_sent;
    s.df_outstanding = true;
    outstanding.emplace(seq, Outstanding{id, now, now + options.timeout, p.send_time_ns, false, true, *size});
    ++df_in_flight;
  }

  void tick() {
    std::lock_guard lock(mu);
    TimePoint now = clock.monotonicNow();
    last_tick = now;
    drain(now);
    expire(now);
    for (const auto& d : scheduler.takeDue()) {
      send(d);
      if (!d.retry) maybeSendDf(d.id);
    }
    arm(now);
  }

  void arm(TimePoint now) {
    std::optional<TimePoint> next = scheduler.nextDue();
    if (!outstanding.empty()) {
      // Replies are read at ticks: come back after min_tick while anything is outstanding.
      TimePoint d = std::min(outstanding.begin()->second.deadline, now + options.min_tick);
      next = next ? std::min(*next, d) : d;
    }
    // Re-evaluate at least once a second; never sooner than min_tick after the last tick
    // (coalesces wake-ups when thousands of targets are spread over the interval).
    TimePoint wake = next.value_or(now + std::chrono::seconds(1));
    wake = std::clamp(wake, last_tick + options.min_tick, now + std::chrono::seconds(1));
    timer.expires_after(std::max<Duration>(wake - now, Duration::zero()));
    timer.async_wait([this](const error_code& ec) {
      if (ec == asio::error::operation_aborted || !socket.is_open()) return;
      tick();
    });
  }

  // Reads every queued reply. Replies are read at ticks (every min_tick while probes are
  // outstanding), not on each arrival, so 2000 targets cost ~50 wake-ups/s instead of
  // one per reply; the kernel's receive timestamp (SO_TIMESTAMPNS) keeps RTTs exact. The
  // DF socket only while a DF probe is out (one in `path_mtu_every` regular probes): a
  // reply that comes after its probe timed out waits for the next one and is counted
  // late then.
  void drain(TimePoint now) {
    drain(socket.native_handle(), now);
    if (df_socket.is_open() && df_in_flight > 0) drain(df_socket.native_handle(), now);
  }

  void drain(int fd, TimePoint now) {
    for (int i = 0; i < 4096; ++i) {
      iovec iov{rx.data(), rx.size()};
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(timespec))];
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof(control);
      ssize_t n = ::recvmsg(fd, &msg, MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        break;  // EAGAIN: drained (ICMP errors are not enabled, so nothing else is queued)
      }
      TimePoint received = now;
      for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_TIMESTAMPNS) {
          timespec ts{};
          std::memcpy(&ts, CMSG_DATA(c), sizeof(ts));
          // Age of the datagram on the wall clock, applied to the monotonic clock.
          auto arrived =
              std::chrono::system_clock::time_point(std::chrono::duration_cast<std::chrono::system_clock::duration>(
                  std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec)));
          auto age = clock.wallNow() - arrived;
          if (age > std::chrono::system_clock::duration::zero() && age < std::chrono::seconds(10)) {
            received = now - std::chrono::duration_cast<Duration>(age);
          }
        }
      }
      handle(static_cast<size_t>(n), received);
    }
  }

  void handle(size_t n, TimePoint received) {
    DecodeStatus st = decodeProbe(std::span<const uint8_t>(rx.data(), n), key(), reply);
    if (st == DecodeStatus::kMissingMac || st == DecodeStatus::kBadMac) {
      ++counters.dropped_unauthenticated;
      return;
    }
    if (st != DecodeStatus::kOk || reply.type != ProbeType::kReply) {
      ++counters.dropped_invalid;
      return;
    }
    auto it = outstanding.find(reply.sequence);
    if (it == outstanding.end()) {
      const std::optional<bool> c = completed(reply.sequence);
      if (!c) {
        ++counters.dropped_unknown;
      } else if (*c) {
        ++counters.dropped_duplicate;
      } else {
        ++counters.dropped_late;
      }
      return;
    }
    if (it->second.send_time_ns != reply.send_time_ns) {
      ++counters.dropped_unknown;  // right sequence, wrong timestamp: forged or replayed
      return;
    }
    Outstanding out = it->second;
    if (received > out.deadline) {
      ++counters.dropped_late;  // arrived after the timeout; expire() records the miss
      return;
    }
    outstanding.erase(it);
    if (out.df) --df_in_flight;
    remember(reply.sequence, true);
    if (out.df) {
      // The responder answers with exactly the request's size; anything else did not
      // carry the full size back.
      if (n != out.size) {
        recordDfMiss(out.id, out.size,
                     "reply of " + std::to_string(n) + " bytes to a " + std::to_string(out.size) + "-byte DF probe",
                     ProbeFailure::kBadReply);
      } else {
        recordDfReply(out.id, out.size);
      }
      return;
    }
    ++counters.replies;
    recordReply(out.id, std::max<Duration>(received - out.sent, Duration(1)), reply.sender);
  }

  // `rtts`: scratch space, reused across targets.
  TargetStats snapshot(TargetId id, const TargetState& s, std::vector<Duration>& rtts) const {
    TargetStats t;
    t.target = s.target;
    t.id = id;
    t.version = s.version;
    t.sent = s.sent;
    t.received = s.received;
    t.window_probes = s.window.size();
    rtts.clear();
    size_t misses = 0;
    Duration jitter_sum{};
    size_t jitter_n = 0;
    bool have_prev = false;  // the previous outcome was a reply, whose RTT is prev
    Duration prev{};
    for (size_t i = 0; i < s.window.size(); ++i) {
      const Outcome o = s.window[i];
      if (!o.ok) {
        ++misses;
        have_prev = false;
        continue;
      }
      rtts.push_back(o.rtt);
      if (have_prev) {
        jitter_sum += o.rtt > prev ? o.rtt - prev : prev - o.rtt;
        ++jitter_n;
      }
      prev = o.rtt;
      have_prev = true;
    }
    t.loss = s.window.empty() ? 0.0 : static_cast<double>(misses) / static_cast<double>(s.window.size());
    size_t recent = 0, recent_misses = 0;
    for (size_t i = s.window.size(); i > 0 && recent < kRecentProbes; --i, ++recent) {
      if (!s.window[i - 1].ok) ++recent_misses;
    }
    t.recent_loss = recent == 0 ? 0.0 : static_cast<double>(recent_misses) / static_cast<double>(recent);
    if (!rtts.empty()) {
      std::sort(rtts.begin(), rtts.end());
      t.rtt_p50 = percentile(rtts, 0.50);
      t.rtt_p99 = percentile(rtts, 0.99);
    }
    if (jitter_n > 0) t.jitter = jitter_sum / static_cast<int64_t>(jitter_n);
    t.last_rtt = s.last_rtt;
    t.last_success = s.last_success;
    t.last_probe = s.last_probe;
    t.consecutive_failures = s.consecutive_failures;
    t.last_error = s.last_error;
    t.last_failure = s.last_failure;
    t.tcp_reachable = s.tcp_reachable;
    t.tcp_error = s.tcp_error;
    t.tcp_failure = s.tcp_failure;
    t.responder = s.responder;
    t.path_mtu = s.df;
    return t;
  }
};

ProbeFailure probeFailureOf(int err) {
  switch (err) {
    case ECONNREFUSED: return ProbeFailure::kRefused;
    case ENETUNREACH:
    case EHOSTUNREACH: return ProbeFailure::kUnreachable;
    case EMSGSIZE: return ProbeFailure::kMessageTooLong;
    case ETIMEDOUT: return ProbeFailure::kTimeout;
    default: return ProbeFailure::kOther;
  }
}

Prober::Prober(ProberOptions options, const Clock& clock) : impl_(std::make_unique<Impl>(std::move(options), clock)) {}

Prober::~Prober() { stop(); }

Status Prober::start() {
  Impl& m = *impl_;
  if (m.running) return okStatus();
  if (m.options.node_name.empty() || m.options.node_name.size() > kMaxNodeNameLength) {
    return Error{"prober needs a node name of 1.." + std::to_string(kMaxNodeNameLength) + " characters"};
  }
  error_code ec;
  auto addr = asio::ip::make_address(m.options.bind_address, ec);
  if (ec) return Error{"invalid prober bind address \"" + m.options.bind_address + "\""};
  udp::endpoint ep(addr, 0);
  auto open = [&](udp::socket& sock) {
    sock.open(ep.protocol(), ec);
    if (!ec) sock.bind(ep, ec);
    if (!ec) sock.non_blocking(true, ec);
    if (!ec && m.options.receive_buffer > 0) {
      error_code ignored;  // best effort: the kernel caps it at net.core.rmem_max
      sock.set_option(asio::socket_base::receive_buffer_size(m.options.receive_buffer), ignored);
    }
    if (ec) return;
    int on = 1;  // kernel receive timestamps; without them RTTs include up to min_tick of queueing
    ::setsockopt(sock.native_handle(), SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof(on));
  };
  open(m.socket);
  if (ec) {
    error_code ignored;
    m.socket.close(ignored);
    return Error{"cannot open prober socket on " + m.options.bind_address + ": " + ec.message(), ec.value()};
  }
  // The DF socket: its own port, so replies to DF probes come back to it.
  open(m.df_socket);
  if (!ec) {
    if (int err = setDontFragmentProbe(m.df_socket.native_handle(), addr.is_v6()); err != 0) {
      ec = error_code(err, boost::system::system_category());
    }
  }
  if (ec) {
    error_code ignored;
    m.socket.close(ignored);
    m.df_socket.close(ignored);
    return Error{"cannot open the DF (path MTU) prober socket on " + m.options.bind_address + ": " + ec.message(),
                 ec.value()};
  }
  m.local_port = m.socket.local_endpoint().port();
  m.df_local_port = m.df_socket.local_endpoint().port();
  asio::post(m.io, [&m] { m.tick(); });
  m.running = true;
  m.thread = std::thread([&m] {
    nameThisThread("mp-prober");
    m.io.run();
  });
  return okStatus();
}

void Prober::stop() {
  Impl& m = *impl_;
  if (!m.running) return;
  m.io.stop();
  if (m.thread.joinable()) m.thread.join();
  error_code ignored;
  m.timer.cancel();
  m.socket.close(ignored);
  m.df_socket.close(ignored);
  m.running = false;
}

Status Prober::setTargets(const std::vector<ProbeTarget>& targets) {
  Impl& m = *impl_;
  std::vector<ProbeTarget> valid;
  std::vector<udp::endpoint> endpoints;
  std::string bad;
  for (const auto& t : targets) {
    error_code ec;
    auto addr = asio::ip::make_address(t.address, ec);
    if (ec) {
      bad += (bad.empty() ? "" : ", ") + targetLabel(t);
      continue;
    }
    valid.push_back(t);
    endpoints.emplace_back(addr, m.options.port);
  }
  {
    std::lock_guard lock(m.mu);
    if (m.options.probe_budget > 0) {
      // The rotation's members: this node and every peer with a target (any layer). An
      // equal plan leaves the schedule as it is.
      std::vector<std::string> members{m.options.node_name};
      for (const auto& t : valid) members.push_back(t.peer);
      m.scheduler.setRotation(std::make_shared<const ProbeRotation>(
          std::move(members), m.options.node_name, perRoundCapacity(m.options.probe_budget, m.options.interval)));
    }
    std::vector<TargetId> ids = m.scheduler.setTargets(valid);
    const std::shared_ptr<const ProbeRotation>& rotation = m.scheduler.rotation();
    // In place: a new map of every target's state for each membership change held two
    // copies of the prober's largest table while it was made (about 5 MB each at 5,000 peers).
    std::unordered_set<TargetId> listed(ids.begin(), ids.end());
    std::erase_if(m.states, [&](const auto& kv) { return listed.count(kv.first) == 0; });
    std::vector<TargetId> order;
    order.reserve(listed.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      if (listed.erase(ids[i]) == 0) continue;  // listed twice: the first one counts
      order.push_back(ids[i]);
      auto [it, added] = m.states.try_emplace(ids[i]);
      TargetState& s = it->second;
      if (!added && s.df.size != valid[i].path_mtu_size) {
        s.df = PathMtuStats{};  // a new size: its history does not apply
        s.regular_since_df = 0;
      }
      if (added) s.endpoint = endpoints[i];
      s.target = valid[i];
      s.ring_position = rotation ? rotation->positionOf(s.target.peer) : std::nullopt;
      s.df.size = valid[i].path_mtu_size;
      m.touch(s);
    }
    m.order = std::move(order);
  }
  if (m.running) asio::post(m.io, [&m] { m.tick(); });  // new targets may be due sooner
  if (!bad.empty()) return Error{"skipped probe targets without an IP address: " + bad};
  return okStatus();
}

std::vector<TargetStats> Prober::stats() const {
  std::lock_guard lock(impl_->mu);
  std::vector<TargetStats> out;
  out.reserve(impl_->order.size());
  std::vector<Duration> scratch;
  for (TargetId id : impl_->order) out.push_back(impl_->snapshot(id, impl_->states.at(id), scratch));
  return out;
}

std::vector<Prober::TargetVersion> Prober::versions() const {
  std::lock_guard lock(impl_->mu);
  std::vector<TargetVersion> out;
  out.reserve(impl_->order.size());
  for (TargetId id : impl_->order) out.push_back({id, impl_->states.at(id).version});
  return out;
}

std::vector<TargetStats> Prober::stats(const std::vector<uint64_t>& ids) const {
  std::lock_guard lock(impl_->mu);
  std::vector<TargetStats> out;
  out.reserve(ids.size());
  std::vector<Duration> scratch;
  for (uint64_t id : ids) {
    auto it = impl_->states.find(id);
    if (it != impl_->states.end()) out.push_back(impl_->snapshot(id, it->second, scratch));
  }
  return out;
}

std::map<Layer, size_t> Prober::targetsPerLayer() const {
  std::lock_guard lock(impl_->mu);
  std::map<Layer, size_t> out;
  for (const auto& [id, state] : impl_->states) ++out[state.target.layer];
  return out;
}

ProberCounters Prober::counters() const {
  std::lock_guard lock(impl_->mu);
  return impl_->counters;
}

ProbeRotationStatus Prober::rotationStatus() const {
  std::lock_guard lock(impl_->mu);
  ProbeRotationStatus st;
  st.skipped = impl_->scheduler.skipped();
  const auto& r = impl_->scheduler.rotation();
  const uint64_t round = roundOf(impl_->clock.wallNow(), impl_->options.interval);
  for (const auto& [id, s] : impl_->states) {
    if (!r || r->assignedAt(s.ring_position, round)) ++st.targets_this_round[s.target.layer];
  }
  if (!r) {  // no budget: every peer every round
    std::set<std::string_view> peers;
    for (const auto& [id, s] : impl_->states) peers.insert(s.target.peer);
    st.per_round = peers.size();
    return st;
  }
  st.sparse = r->sparse();
  st.per_round = r->perRound();
  st.coverage_rounds = r->coverageRounds();
  return st;
}

uint16_t Prober::localPort() const { return impl_->local_port; }
uint16_t Prober::dfLocalPort() const { return impl_->df_local_port; }
const ProberOptions& Prober::options() const { return impl_->options; }

}  // namespace meshprobe::agent
