// fake_daemon: stands in for node daemons in e2e tests (run it inside a test netns).
//
//   fake_daemon seqpacket-listen PATH [--ready-file F]   istio-cni: SOCK_SEQPACKET listener on PATH;
//                                                         accepts and holds connections
//   fake_daemon seqpacket-connect PATH [--ready-file F]  ztunnel: connects to PATH and holds the connection
//   fake_daemon tcp-listen PORT... [--ready-file F]       TCP listeners on [::]:PORT (dual-stack) (e.g. 15001 15006
//   15008);
//                                                         each accepted connection gets "not tls\n" and is closed
//
// The ready file is written (atomically, by rename) once every socket is set up, and rewritten as
// "accepted N" after each accepted connection, so tests poll it with a deadline instead of sleeping.
// Runs until SIGTERM/SIGINT. A listener does not unlink PATH on exit (like a crashed istio-cni).

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
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

// Accepts on every listener until a signal; accepted sockets are held (seqpacket) or
// answered and closed (tcp).
void serve(const std::vector<int>& listeners, bool hold, const std::string& ready_file) {
  std::vector<int> held;
  int accepted = 0;
  while (!g_stop) {
    std::vector<pollfd> fds;
    for (int fd : listeners) fds.push_back({fd, POLLIN, 0});
    int n = poll(fds.data(), fds.size(), 1000);
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
      writeReady(ready_file, "accepted " + std::to_string(accepted));
    }
  }
  for (int c : held) close(c);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr,
                 "usage: fake_daemon seqpacket-listen|seqpacket-connect PATH | tcp-listen PORT... "
                 "[--ready-file F]\n");
    return 2;
  }
  std::string mode = argv[1];
  std::vector<std::string> args;
  std::string ready_file;
  for (int i = 2; i < argc; ++i) {
    if (std::string(argv[i]) == "--ready-file" && i + 1 < argc) {
      ready_file = argv[++i];
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
    serve({fd}, /*hold=*/true, ready_file);
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
