#include "agent/probe/responder.h"

#include <array>
#include <boost/asio.hpp>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "agent/probe/df_socket.h"
#include "agent/probe/rate_limiter.h"
#include "agent/probe/replay_window.h"
#include "common/thread_name.h"

namespace meshprobe::agent {
namespace {

namespace asio = boost::asio;
using udp = asio::ip::udp;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using TimePoint = std::chrono::steady_clock::time_point;

std::string sourceKey(const asio::ip::address& a) {
  if (a.is_v4()) {
    auto b = a.to_v4().to_bytes();
    return std::string(reinterpret_cast<const char*>(b.data()), b.size());
  }
  auto b = a.to_v6().to_bytes();
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

// A sender's anti-replay key: its address (length-prefixed, so an IPv4 and an IPv6
// address never run into the name) and the node name it signed.
std::string replayKey(const std::string& source, const std::string& sender) {
  std::string k;
  k.reserve(1 + source.size() + sender.size());
  k.push_back(static_cast<char>(source.size()));
  k += source;
  k += sender;
  return k;
}

}  // namespace

struct Responder::Impl {
  Impl(ResponderOptions o, const Clock& c)
      : options(std::move(o)),
        clock(c),
        limiter(options.rate_per_source, options.burst_per_source, options.max_sources),
        replay(options.max_sources),
        udp_socket(io),
        acceptor(io) {}

  ResponderOptions options;
  const Clock& clock;
  SourceRateLimiter limiter;  // I/O thread only
  ReplayWindow replay;        // I/O thread only; consulted only with a key
  asio::io_context io;
  udp::socket udp_socket;
  tcp::acceptor acceptor;
  std::thread thread;
  bool running = false;
  uint16_t udp_port = 0;
  uint16_t tcp_port = 0;

  std::array<uint8_t, kMaxProbeSize + 1> rx{};  // one extra byte detects oversized datagrams
  std::array<uint8_t, kMaxProbeSize> tx{};
  udp::endpoint from;
  ProbePacket request;

  mutable std::mutex mu;
  ResponderCounters counters;

  boost::system::error_code openUdp(const udp::endpoint& ep);
  boost::system::error_code openTcp(const tcp::endpoint& ep);

  void receive() {
    udp_socket.async_receive_from(asio::buffer(rx), from, [this](const error_code& ec, size_t n) {
      if (ec == asio::error::operation_aborted || !udp_socket.is_open()) return;
      if (!ec) {
        handle(n);
        // Drain what is already queued before going back to the reactor.
        for (int i = 0; i < 64; ++i) {
          error_code rec;
          size_t m = udp_socket.receive_from(asio::buffer(rx), from, 0, rec);
          if (rec) break;
          handle(m);
        }
      }
      receive();
    });
  }

  void handle(size_t n) {
    ResponderCounters delta;
    delta.received = 1;
    const ProbeKey* key = options.key ? &*options.key : nullptr;
    DecodeStatus st = decodeProbe(std::span<const uint8_t>(rx.data(), n), key, request);
    if (st == DecodeStatus::kMissingMac || st == DecodeStatus::kBadMac) {
      delta.dropped_unauthenticated = 1;
    } else if (st != DecodeStatus::kOk || request.type != ProbeType::kRequest) {
      delta.dropped_invalid = 1;
    } else if (key != nullptr && replay.check(replayKey(sourceKey(from.address()), request.sender), request.sequence) ==
                                     ReplayWindow::Verdict::kReplayed) {
      // Only an authenticated sequence is recorded: unsigned traffic cannot move a window.
      delta.dropped_replayed = 1;
    } else if (!limiter.allow(sourceKey(from.address()), clock.monotonicNow())) {
      delta.dropped_rate_limited = 1;
    } else {
      auto size = encodeReply(request, n, options.node_name, key, tx);
      error_code ec;
      if (size) udp_socket.send_to(asio::buffer(tx.data(), *size), from, 0, ec);
      if (!size || ec) {
        delta.send_errors = 1;
      } else {
        delta.answered = 1;
      }
    }
    std::lock_guard lock(mu);
    counters.received += delta.received;
    counters.answered += delta.answered;
    counters.dropped_invalid += delta.dropped_invalid;
    counters.dropped_unauthenticated += delta.dropped_unauthenticated;
    counters.dropped_replayed += delta.dropped_replayed;
    counters.dropped_rate_limited += delta.dropped_rate_limited;
    counters.send_errors += delta.send_errors;
    counters.sources_evicted = limiter.evictions();
    counters.replay_windows_evicted = replay.evictions();
  }

  void accept() {
    acceptor.async_accept([this](const error_code& ec, tcp::socket sock) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
      if (!ec) {
        error_code ignored;
        sock.close(ignored);
        std::lock_guard lock(mu);
        ++counters.tcp_accepted;
      }
      accept();
    });
  }
};

Responder::Responder(ResponderOptions options, const Clock& clock)
    : impl_(std::make_unique<Impl>(std::move(options), clock)) {}

Responder::~Responder() { stop(); }

// Opens and binds the UDP socket: non-blocking, replies with DF.
error_code Responder::Impl::openUdp(const udp::endpoint& ep) {
  error_code ec;
  udp_socket.open(ep.protocol(), ec);
  if (!ec) udp_socket.bind(ep, ec);
  if (!ec) udp_socket.non_blocking(true, ec);
  if (!ec && options.receive_buffer > 0) {
    error_code ignored;  // best effort: the kernel caps it at net.core.rmem_max
    udp_socket.set_option(asio::socket_base::receive_buffer_size(options.receive_buffer), ignored);
  }
  if (!ec) {
    // Replies go out with DF, ignoring any cached path MTU: a padded path-MTU probe's
    // same-size reply must cross the return path whole or not at all (never fragmented
    // locally), so a small MTU on the way back is detected too. Small replies are unaffected.
    if (int err = setDontFragmentProbe(udp_socket.native_handle(), ep.address().is_v6()); err != 0) {
      ec = error_code(err, boost::system::system_category());
    }
  }
  if (ec) {
    error_code ignored;
    udp_socket.close(ignored);
  }
  return ec;
}

error_code Responder::Impl::openTcp(const tcp::endpoint& ep) {
  error_code ec;
  acceptor.open(ep.protocol(), ec);
  if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor.bind(ep, ec);
  if (!ec) acceptor.listen(64, ec);
  if (ec) {
    error_code ignored;
    acceptor.close(ignored);
  }
  return ec;
}

Status Responder::start() {
  Impl& m = *impl_;
  if (m.running) return okStatus();
  error_code ec;
  auto addr = asio::ip::make_address(m.options.bind_address, ec);
  if (ec) return Error{"invalid probe bind address \"" + m.options.bind_address + "\""};
  std::string where = m.options.bind_address + ":" + std::to_string(m.options.port);
  const bool ephemeral = m.options.port == 0;
  // With port 0 the kernel picks UDP's number and TCP takes the same, so one port serves
  // both; but that number may already be taken on TCP. Then another UDP number is tried,
  // the rejected UDP sockets held open meanwhile so the kernel cannot hand one back again.
  constexpr int kEphemeralAttempts = 64;
  std::vector<udp::socket> rejected;
  for (int attempt = 1;; ++attempt) {
    if ((ec = m.openUdp(udp::endpoint(addr, m.options.port)))) {
      return Error{"cannot bind probe responder to udp " + where + ": " + ec.message(), ec.value()};
    }
    m.udp_port = m.udp_socket.local_endpoint().port();
    if (!m.options.tcp) break;
    ec = m.openTcp(tcp::endpoint(addr, m.udp_port));
    if (!ec) break;
    if (!ephemeral || ec != asio::error::address_in_use || attempt == kEphemeralAttempts) {
      error_code ignored;
      m.udp_socket.close(ignored);
      std::string tries = ephemeral && ec == asio::error::address_in_use
                              ? " (" + std::to_string(attempt) + " ephemeral ports tried)"
                              : "";
      return Error{"cannot listen for probes on tcp " + m.options.bind_address + ":" + std::to_string(m.udp_port) +
                       ": " + ec.message() + tries,
                   ec.value()};
    }
    rejected.push_back(std::move(m.udp_socket));  // leaves m.udp_socket closed, ready to reopen
  }
  rejected.clear();
  if (m.options.tcp) {
    m.tcp_port = m.acceptor.local_endpoint().port();
    m.accept();
  }
  m.receive();
  m.running = true;
  m.thread = std::thread([&m] {
    nameThisThread("mp-responder");
    m.io.run();
  });
  return okStatus();
}

void Responder::stop() {
  Impl& m = *impl_;
  if (!m.running) return;
  asio::post(m.io, [&m] {
    error_code ignored;
    m.udp_socket.close(ignored);
    m.acceptor.close(ignored);
  });
  m.io.stop();
  if (m.thread.joinable()) m.thread.join();
  error_code ignored;
  m.udp_socket.close(ignored);
  m.acceptor.close(ignored);
  m.running = false;
}

uint16_t Responder::udpPort() const { return impl_->udp_port; }
uint16_t Responder::tcpPort() const { return impl_->tcp_port; }

ResponderCounters Responder::counters() const {
  std::lock_guard lock(impl_->mu);
  return impl_->counters;
}

}  // namespace meshprobe::agent
