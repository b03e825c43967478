// fake_daemon: stands in for node daemons in e2e tests (run it inside a test netns).
//
//   fake_daemon seqpacket-listen PATH [--keepalive MS] [--ready-file F]
//                                                         istio-cni: SOCK_SEQPACKET listener on PATH;
//                                                         accepts and holds connections (see below)
//   fake_daemon seqpacket-connect PATH [--ready-file F]  ztunnel: connects to PATH and holds the connection
//   fake_daemon tcp-listen PORT... [--ready-file F]       TCP listeners on [::]:PORT (dual-stack) (e.g. 15001 15006
//   15008);
//                                                         each accepted connection gets "not tls\n" and is closed
//
// The ready file is written (atomically, by rename) once every socket is set up, and rewritten as
// "accepted N" (tcp) or "accepted N open M" (seqpacket) after each accepted connection and, for
// seqpacket, after each one it closes, so tests poll it with a deadline instead of sleeping.
// Runs until SIGTERM/SIGINT. A listener does not unlink PATH on exit (like a crashed istio-cni).
//
// istio-cni's ZDS server (cni/pkg/nodeagent/ztunnelserver.go, handleConn) never reads from an
// accepted ztunnel connection except when it waits for an ack after sending, and does not close
// it when ztunnel goes away until it notices:
//   - without --keepalive: only a failed send ("sendmsg: broken pipe") disposes of a connection,
//     so on a quiet node (no pod added or deleted) a dead ztunnel's connection is held forever —
//     as by releases without the keepalive, and by any release between keepalives;
//   - with --keepalive MS: like current releases (defaultZTunnelKeepAliveCheckInterval = 5 s),
//     every MS it does a short read (CheckAlive) on each connection: EOF or an error closes it;
//     data is a protocol error (ztunnel never speaks first) and closes it too; "would block"
//     means alive.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace {

volatile sig_atomic_t g_stop = 0;
void onSignal(int) { g_stop = 1; }

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "fake_daemon: %s: %s\n", what.c_str(), std::strerror(errno));
  std::exit(1);
}

void writeReady(const std::string& file, const std::string& text) {
  if (file.empty()) return;
  std::string tmp = file + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text << "\n";
  }
  if (std::rename(tmp.c_str(), file.c_str()) != 0) die("rename " + file);
}

sockaddr_un unixAddr(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    errno = ENAMETOOLONG;
    die(path);
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  return addr;
}

using Clock = std::chrono::steady_clock;

// istio-cni's keepalive: a non-blocking read on every held connection; closes the ones whose
// peer is gone (EOF/error) or that sent something unasked. Returns how many it closed.
int keepaliveSweep(std::vector<int>& held) {
  int closed = 0;
  for (auto it = held.begin(); it != held.end();) {
    char buf[1024];
    const ssize_t n = recv(*it, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      ++it;  // alive: nothing to read
      continue;
    }
    close(*it);  // EOF, an error, or an unexpected message
    it = held.erase(it);
    ++closed;
  }
  return closed;
}

// Accepts on every listener until a signal; accepted sockets are held (seqpacket) or
// answered and closed (tcp). `keepalive` > 0: held sockets are checked that often.
void serve(const std::vector<int>& listeners, bool hold, const std::string& ready_file,
           std::chrono::milliseconds keepalive = std::chrono::milliseconds(0)) {
  std::vector<int> held;
  int accepted = 0;
  auto next_keepalive = Clock::now() + keepalive;
  auto state = [&] {
    return "accepted " + std::to_string(accepted) + (hold ? " open " + std::to_string(held.size()) : "");
  };
  while (!g_stop) {
    if (keepalive.count() > 0 && Clock::now() >= next_keepalive) {
      if (keepaliveSweep(held) > 0) writeReady(ready_file, state() + " closed");
      next_keepalive = Clock::now() + keepalive;
    }
    std::vector<pollfd> fds;
    for (int fd : listeners) fds.push_back({fd, POLLIN, 0});
    int timeout_ms = 1000;
    if (keepalive.count() > 0) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(next_keepalive - Clock::now()).count();
      timeout_ms = static_cast<int>(std::clamp<long long>(left, 0, 1000));
    }
    int n = poll(fds.data(), fds.size(), timeout_ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    for (const auto& p : fds) {
      if (!(p.revents & POLLIN)) continue;
      int c = accept(p.fd, nullptr, nullptr);
      if (c < 0) continue;
      ++accepted;
      if (hold) {
        held.push_back(c);
      } else {
        const char msg[] = "not tls\n";
        (void)!write(c, msg, sizeof msg - 1);
        close(c);
      }
      writeReady(ready_file, state());
    }
  }
  for (int c : held) close(c);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr,
                 "usage: fake_daemon seqpacket-listen PATH [--keepalive MS] | seqpacket-connect PATH | "
                 "tcp-listen PORT... [--ready-file F]\n");
    return 2;
  }
  std::string mode = argv[1];
  std::vector<std::string> args;
  std::string ready_file;
  std::chrono::milliseconds keepalive{0};
  for (int i = 2; i < argc; ++i) {
    if (std::string(argv[i]) == "--ready-file" && i + 1 < argc) {
      ready_file = argv[++i];
    } else if (std::string(argv[i]) == "--keepalive" && i + 1 < argc) {
      keepalive = std::chrono::milliseconds(std::atol(argv[++i]));
    } else {
      args.push_back(argv[i]);
    }
  }
  struct sigaction sa {};
  sa.sa_handler = onSignal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  if (mode == "seqpacket-listen") {
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    auto addr = unixAddr(args.at(0));
    unlink(args[0].c_str());
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) die("bind " + args[0]);
    if (listen(fd, 16) != 0) die("listen");
    writeReady(ready_file, "listening");
    serve({fd}, /*hold=*/true, ready_file, keepalive);
    return 0;
  }
  if (mode == "seqpacket-connect") {
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    auto addr = unixAddr(args.at(0));
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) die("connect " + args[0]);
    writeReady(ready_file, "connected");
    while (!g_stop) pause();
    close(fd);
    return 0;
  }
  if (mode == "tcp-listen") {
    std::vector<int> listeners;
    for (const auto& port : args) {
      // Like ztunnel: one dual-stack socket on [::] ("*:15001" in ss); 0.0.0.0 without IPv6.
      const auto port_n = htons(static_cast<uint16_t>(std::atoi(port.c_str())));
      int one = 1, zero = 0;
      int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
        sockaddr_in6 addr{};
        addr.sin6_family = AF_INET6;
        addr.sin6_port = port_n;
        addr.sin6_addr = in6addr_any;
        if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) die("bind tcp [::]:" + port);
      } else {
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) die("socket");
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = port_n;
        addr.sin_addr.s_addr = htonl(INADDR_ANY);
        if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) die("bind tcp 0.0.0.0:" + port);
      }
      if (listen(fd, 64) != 0) die("listen");
      listeners.push_back(fd);
    }
    writeReady(ready_file, "listening");
    serve(listeners, /*hold=*/false, ready_file);
    return 0;
  }
  std::fprintf(stderr, "fake_daemon: unknown mode '%s'\n", mode.c_str());
  return 2;
}
