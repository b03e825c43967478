#include "agent/checks/ztunnel_check.h"

#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "agent/kernel/sock_diag_parse.h"
#include "common/finding_catalogue.h"

namespace meshprobe::agent {
namespace {

constexpr const char* kNoZtunnelConsequence = "new ambient pods will fail: no ztunnel connection";
constexpr const char* kZtunnelRemedy =
    "fix ztunnel connectivity first (ztunnel must reach istiod:15012), then new pods start";

std::string typeName(uint8_t type) {
  switch (type) {
    case SOCK_STREAM:
      return "SOCK_STREAM";
    case SOCK_DGRAM:
      return "SOCK_DGRAM";
    case SOCK_SEQPACKET:
      return "SOCK_SEQPACKET";
    default:
      return "type " + std::to_string(type);
  }
}

struct SocketFile {
  bool exists = false;
  bool is_socket = false;
  uint64_t inode = 0;
  uint64_t dev = 0;
  std::string error;  // stat failed for another reason than ENOENT
};

SocketFile statPath(const std::string& path) {
  SocketFile f;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno != ENOENT) f.error = std::string("stat ") + path + ": " + std::strerror(errno);
    return f;
  }
  f.exists = true;
  f.is_socket = S_ISSOCK(st.st_mode);
  f.inode = st.st_ino;
  f.dev = st.st_dev;
  return f;
}

bool sameFile(const UnixSocket& s, const SocketFile& f) {
  if (!f.exists || !s.vfs_inode || *s.vfs_inode != f.inode) return false;
  return !s.vfs_dev || userDevFromKernelDev(*s.vfs_dev) == f.dev;
}

// Is `s` bound to the same address as `listener` (the accepted side of a connection)?
bool sameAddress(const UnixSocket& s, const UnixSocket& listener) {
  if (s.vfs_inode && listener.vfs_inode) return *s.vfs_inode == *listener.vfs_inode && s.vfs_dev == listener.vfs_dev;
  return !listener.path.empty() && s.path == listener.path;
}

nlohmann::json fileJson(const std::string& path, const SocketFile& f) {
  nlohmann::json j = {{"path", path}, {"exists", f.exists}};
  if (f.exists) {
    j["is_socket"] = f.is_socket;
    j["inode"] = f.inode;
  }
  if (!f.error.empty()) j["error"] = f.error;
  return j;
}

std::string countText(size_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

std::string shutdownText(uint8_t mask) {
  if (mask == 0) return "none";
  std::string out;
  if (mask & kUnixRcvShutdown) out = "read";
  if (mask & kUnixSendShutdown) out += out.empty() ? "write" : "+write";
  return out;
}

// "" while ztunnel's end of an accepted connection is alive, else why it is not.
std::string peerGoneReason(const UnixSocket& s) {
  const uint8_t shut = s.shutdown.value_or(0);
  if (s.peer_inode == 0) {
    std::string why = "ztunnel's end is released (peer inode 0";
    if (shut != 0) why += ", shut down for " + shutdownText(shut);
    return why + ")";
  }
  if (shut != 0) {
    return "shut down for " + shutdownText(shut) + " (peer inode " + std::to_string(s.peer_inode) +
           "): the connection is closing";
  }
  return "";
}

Finding cniAgentDown(std::string summary, std::vector<std::string> evidence, const std::string& path) {
  Finding f = findingOf(codes::kCniAgentDown);
  f.summary = std::move(summary);
  f.evidence = std::move(evidence);
  f.remedy =
      "Restart the istio-cni pod on this node (kubectl delete pod <istio-cni-node-pod> -n istio-system) so it "
      "listens on " +
      path +
      " again; until it does and ztunnel connects, new ambient pods stay in "
      "ContainerCreating (\"no ztunnel connection\")";
  return f;
}

// --- the steps of ZtunnelCheck::run(), in order -----------------------------------------

// The check's outcome; run() turns it into the CheckResult.
struct Verdict {
  CheckStatus status = CheckStatus::kSkip;
  std::string summary;
  std::vector<Finding> findings;
};

struct Listener {
  const UnixSocket* socket = nullptr;  // nullptr: none found
  std::string matched_by;              // "socket file inode" | "bound name"
};

// The listener: by the socket file's inode first (robust to how the path was spelled
// at bind time), then by the bound name; SOCK_SEQPACKET preferred over other types.
Listener findListener(const std::vector<UnixSocket>& sockets, const SocketFile& file, const std::string& path) {
  Listener found;
  auto pick = [&](auto&& matches, const char* how) {
    for (bool want_seqpacket : {true, false}) {
      for (const auto& s : sockets) {
        if (found.socket) return;
        if (s.state != TCP_LISTEN || !matches(s)) continue;
        if (want_seqpacket && s.type != SOCK_SEQPACKET) continue;
        found.socket = &s;
        found.matched_by = how;
      }
    }
  };
  pick([&](const UnixSocket& s) { return sameFile(s, file); }, "socket file inode");
  pick([&](const UnixSocket& s) { return s.path == path; }, "bound name");
  return found;
}

// No listener: the path cannot be read, nothing is there (not an ambient node), or a
// file without a listener (istio-cni is down).
Verdict noListener(const SocketFile& file, const std::string& path, size_t sockets_seen, nlohmann::json& details) {
  if (!file.error.empty()) {
    return {
        CheckStatus::kFail,
        "cannot tell whether this is an ambient node: " + file.error + ", and no unix listener is bound at that name",
        {}};
  }
  if (!file.exists) {
    details["reason"] = "not an ambient node";
    return {CheckStatus::kSkip, "not an ambient node: no socket file and no istio-cni listener at " + path, {}};
  }
  const std::string what = file.is_socket ? "stale socket file" : "file that is not a socket";
  Verdict v{CheckStatus::kFail, what + " at " + path + ": istio-cni is not running (no listener)", {}};
  v.findings.push_back(cniAgentDown(
      "no istio-cni listener on " + path + " (" + what + "): istio-cni is not running; " + kNoZtunnelConsequence,
      {path + " exists (inode " + std::to_string(file.inode) + (file.is_socket ? ", socket" : ", not a socket") + ")",
       "sock_diag: no unix socket in LISTEN bound to that file or name (" + std::to_string(sockets_seen) +
           " unix sockets seen)"},
      path));
  return v;
}

nlohmann::json listenerJson(const Listener& l) {
  const UnixSocket& s = *l.socket;
  nlohmann::json lj = {{"inode", s.inode},     {"type", typeName(s.type)},
                       {"bound_name", s.path}, {"matched_by", l.matched_by},
                       {"backlog", s.wqueue},  {"pending_connections", s.pending_connections}};
  if (s.vfs_inode) lj["file_inode"] = *s.vfs_inode;
  return lj;
}

// A listener of another type than istio-cni's SOCK_SEQPACKET: ztunnel cannot connect.
Verdict wrongType(const Listener& l, const std::string& path) {
  const UnixSocket& s = *l.socket;
  Verdict v{
      CheckStatus::kFail,
      path + " has a " + typeName(s.type) + " listener, not istio-cni's SOCK_SEQPACKET: ztunnel cannot connect to it",
      {}};
  v.findings.push_back(cniAgentDown("the listener on " + path + " is " + typeName(s.type) +
                                        ", not istio-cni's SOCK_SEQPACKET socket: "
                                        "ztunnel's connect fails (EPROTOTYPE); " +
                                        kNoZtunnelConsequence,
                                    {"sock_diag: listener inode " + std::to_string(s.inode) + " type " +
                                     typeName(s.type) + " matched by " + l.matched_by},
                                    path));
  return v;
}

// Connections: the accepted (server) side carries the listener's name and file; its
// peer is ztunnel's socket. Embryos still in the accept queue are not connections.
std::vector<const UnixSocket*> acceptedConnections(const std::vector<UnixSocket>& sockets, const UnixSocket& listener) {
  std::vector<const UnixSocket*> accepted;
  for (const auto& s : sockets) {
    if (&s == &listener || s.state != TCP_ESTABLISHED || s.type != listener.type) continue;
    if (!sameAddress(s, listener)) continue;
    const auto& pending = listener.pending_peer_inodes;
    if (s.peer_inode != 0 && std::find(pending.begin(), pending.end(), s.peer_inode) != pending.end()) continue;
    accepted.push_back(&s);
  }
  return accepted;
}

struct Connections {
  std::vector<const UnixSocket*> alive;
  std::vector<std::string> gone;  // why each stale connection is not counted
};

// A connection counts only while ztunnel's end is alive. When ztunnel dies, the kernel
// releases its socket, sets both shutdown bits on istio-cni's accepted end and reports
// its peer inode as 0 — but that end stays ESTABLISHED until istio-cni closes it, which
// it does only at its next keepalive read (seconds later) or, in older releases, at its
// next failed send (never, on a quiet node). So peer inode 0 or any shutdown bit means
// "ztunnel is gone". Whether the peer appears in this dump is no evidence either way:
// ztunnel's socket lives in ztunnel's own netns, and sock_diag lists only this netns's.
Connections classifyConnections(const std::vector<const UnixSocket*>& accepted, const std::vector<UnixSocket>& sockets,
                                const UnixSocket& listener, nlohmann::json& details) {
  Connections out;
  nlohmann::json conns = nlohmann::json::array();
  for (const auto* s : accepted) {
    nlohmann::json c = {{"inode", s->inode}, {"peer_inode", s->peer_inode}};
    const bool peer_seen = std::any_of(sockets.begin(), sockets.end(),
                                       [&](const UnixSocket& p) { return p.inode == s->peer_inode && p.inode != 0; });
    c["peer_seen"] = peer_seen;
    if (s->shutdown) c["shutdown"] = shutdownText(*s->shutdown);
    const std::string why = peerGoneReason(*s);
    c["peer_alive"] = why.empty();
    if (why.empty()) {
      out.alive.push_back(s);
    } else {
      c["not_counted"] = why;
      out.gone.push_back("accepted socket inode " + std::to_string(s->inode) + ": " + why);
    }
    conns.push_back(std::move(c));
  }
  details["connections"] = conns;
  details["established"] = out.alive.size();
  details["stale"] = out.gone.size();
  details["pending_peer_inodes"] = listener.pending_peer_inodes;
  return out;
}

// The listener is reachable through the path only when the file there is its file;
// "" when it is (or cannot be told).
std::string pathProblem(const Listener& l, const SocketFile& file, const std::string& path) {
  if (l.matched_by != "bound name") return "";
  if (!file.exists && file.error.empty()) {
    return "the socket file " + path +
           " was deleted while istio-cni still listens: a (re)connecting "
           "ztunnel gets ENOENT";
  }
  if (file.exists && l.socket->vfs_inode) {
    return path + " is another file (inode " + std::to_string(file.inode) +
           ") than the one istio-cni "
           "listens on (inode " +
           std::to_string(*l.socket->vfs_inode) +
           "): a (re)connecting ztunnel is "
           "refused";
  }
  return "";
}

// Listening, but no connection with a live ztunnel end: ZTUNNEL_NOT_CONNECTED.
Verdict notConnected(const std::string& path, const UnixSocket& listener, const Connections& c,
                     const std::string& path_problem) {
  std::string summary = "istio-cni listens on " + path + " but ztunnel is not connected: " + kNoZtunnelConsequence;
  if (!c.gone.empty()) {
    summary +=
        " (" + countText(c.gone.size(), "connection", "connections") + " still held by istio-cni, ztunnel's end gone)";
  }
  std::vector<std::string> evidence = {"sock_diag: SOCK_SEQPACKET listener inode " + std::to_string(listener.inode) +
                                       " on " + path + ", 0 connections with a live ztunnel end"};
  if (!c.gone.empty()) {
    evidence.push_back(countText(c.gone.size(), "accepted connection is", "accepted connections are") +
                       " still open on istio-cni's side although ztunnel's end is gone (istio-cni closes it at "
                       "its next keepalive read or failed send)");
    evidence.insert(evidence.end(), c.gone.begin(), c.gone.end());
  }
  if (listener.pending_connections > 0) {
    evidence.push_back(countText(listener.pending_connections, "connection waits", "connections wait") +
                       " in the accept queue: istio-cni is not accepting");
  }
  if (!path_problem.empty()) evidence.push_back(path_problem);
  Finding f = findingOf(codes::kZtunnelNotConnected);
  f.summary = "no ztunnel connection on istio-cni's socket " + path + ": " + kNoZtunnelConsequence;
  f.evidence = std::move(evidence);
  f.remedy = kZtunnelRemedy;
  Verdict v{CheckStatus::kFail, std::move(summary), {}};
  v.findings.push_back(std::move(f));
  return v;
}

// ztunnel connected: OK, or WARN when the path no longer leads to the listener.
Verdict connected(const std::string& path, const UnixSocket& listener, const Connections& c,
                  const std::string& path_problem) {
  std::string summary = "istio-cni listening on " + path + " (SOCK_SEQPACKET), " +
                        countText(c.alive.size(), "ztunnel connection", "ztunnel connections");
  if (listener.pending_connections > 0) summary += ", " + std::to_string(listener.pending_connections) + " pending";
  if (!c.gone.empty()) summary += ", " + std::to_string(c.gone.size()) + " stale (ztunnel's end gone) not counted";
  if (!path_problem.empty()) return {CheckStatus::kWarn, summary + "; but " + path_problem, {}};
  return {CheckStatus::kOk, summary, {}};
}

// Everything after the socket list was read.
Verdict judge(const std::string& path, const SocketFile& file, const std::vector<UnixSocket>& sockets,
              nlohmann::json& details) {
  details["unix_sockets_seen"] = sockets.size();
  const Listener listener = findListener(sockets, file, path);
  if (!listener.socket) return noListener(file, path, sockets.size(), details);
  details["listener"] = listenerJson(listener);
  if (listener.socket->type != SOCK_SEQPACKET) return wrongType(listener, path);
  const Connections c =
      classifyConnections(acceptedConnections(sockets, *listener.socket), sockets, *listener.socket, details);
  const std::string path_problem = pathProblem(listener, file, path);
  if (!path_problem.empty()) details["path_problem"] = path_problem;
  if (c.alive.empty()) return notConnected(path, *listener.socket, c, path_problem);
  return connected(path, *listener.socket, c, path_problem);
}

}  // namespace

ZtunnelCheck::ZtunnelCheck(const AgentConfig& config, SockDiag& sock_diag) : config_(config), sock_diag_(sock_diag) {}

CheckResult ZtunnelCheck::run() {
  const std::string& path = config_.ztunnel_socket;
  const SocketFile file = statPath(path);
  nlohmann::json details = {{"socket_file", fileJson(path, file)}};
  Verdict v;
  auto sockets = sock_diag_.unixSockets();
  if (sockets) {
    v = judge(path, file, *sockets, details);
  } else {
    details["error"] = sockets.error().message;
    v = {CheckStatus::kFail, "cannot list unix sockets over sock_diag: " + sockets.error().message, {}};
  }
  CheckResult r = result(v.status, std::move(v.summary));
  r.details = std::move(details);
  r.findings = std::move(v.findings);
  return r;
}

}  // namespace meshprobe::agent
