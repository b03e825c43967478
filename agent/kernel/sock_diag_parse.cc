#include "agent/kernel/sock_diag_parse.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/sysmacros.h>

#include <cstring>
#include <string>

#include "agent/kernel/netlink_walk.h"

namespace meshprobe::agent {
namespace {

std::vector<uint8_t> finishRequest(char* buf, const nlmsghdr* nlh) {
  const auto* begin = reinterpret_cast<const uint8_t*>(buf);
  return std::vector<uint8_t>(begin, begin + nlh->nlmsg_len);
}

std::string formatAddress(int family, const uint32_t (&words)[4]) {
  char text[INET6_ADDRSTRLEN] = {};
  if (!inet_ntop(family, words, text, sizeof(text))) return "";
  return text;
}

Status parseInetMessage(const nlmsghdr* h, int protocol, std::vector<InetSocket>& out) {
  auto msg = netlinkHeader<inet_diag_msg>(h);
  if (!msg) return Error{"inet_diag message: " + msg.error().message};
  const inet_diag_msg& m = **msg;
  if (m.idiag_family != AF_INET && m.idiag_family != AF_INET6) {
    return Error{"inet_diag message with unexpected family " + std::to_string(m.idiag_family)};
  }
  NetlinkAttrs<INET_DIAG_MAX> t;
  if (Status st = parseMessageAttrs<inet_diag_msg>(h, t); !st) return st;
  NetlinkAttrReader r;
  InetSocket s;
  s.family = m.idiag_family;
  s.protocol = t[INET_DIAG_PROTOCOL] != nullptr ? r.integer<uint8_t>(t[INET_DIAG_PROTOCOL], "INET_DIAG_PROTOCOL")
                                                 : protocol;
  s.state = m.idiag_state;
  s.local_address = formatAddress(s.family, m.id.idiag_src);
  s.local_port = ntohs(m.id.idiag_sport);
  s.remote_address = formatAddress(s.family, m.id.idiag_dst);
  s.remote_port = ntohs(m.id.idiag_dport);
  s.inode = m.idiag_inode;
  s.uid = m.idiag_uid;
  s.bound_ifindex = m.id.idiag_if;
  if (!r.ok()) return Error{r.error()};
  out.push_back(std::move(s));
  return okStatus();
}

// UNIX_DIAG_NAME: a path, or an abstract name shown with a leading '@' as ss prints it.
std::string unixName(std::span<const uint8_t> v) {
  std::string name(reinterpret_cast<const char*>(v.data()), v.size());
  if (!name.empty() && name[0] == '\0') {
    name[0] = '@';
  } else {
    while (!name.empty() && name.back() == '\0') name.pop_back();
  }
  return name;
}

Status parseUnixMessage(const nlmsghdr* h, std::vector<UnixSocket>& out) {
  auto msg = netlinkHeader<unix_diag_msg>(h);
  if (!msg) return Error{"unix_diag message: " + msg.error().message};
  const unix_diag_msg& m = **msg;
  if (m.udiag_family != AF_UNIX) {
    return Error{"unix_diag message with unexpected family " + std::to_string(m.udiag_family)};
  }
  NetlinkAttrs<UNIX_DIAG_MAX> t;
  if (Status st = parseMessageAttrs<unix_diag_msg>(h, t); !st) return st;
  NetlinkAttrReader r;
  UnixSocket s;
  s.inode = m.udiag_ino;
  s.type = m.udiag_type;
  s.state = m.udiag_state;
  if (t[UNIX_DIAG_NAME] != nullptr) s.path = unixName(NetlinkAttrReader::payload(t[UNIX_DIAG_NAME]));
  if (t[UNIX_DIAG_VFS] != nullptr) {
    const auto vfs = r.value<unix_diag_vfs>(t[UNIX_DIAG_VFS], "UNIX_DIAG_VFS");
    s.vfs_inode = vfs.udiag_vfs_ino;
    s.vfs_dev = vfs.udiag_vfs_dev;
  }
  s.peer_inode = r.integer<uint32_t>(t[UNIX_DIAG_PEER], "UNIX_DIAG_PEER");
  const bool have_icons = t[UNIX_DIAG_ICONS] != nullptr;
  if (have_icons) {
    const auto v = NetlinkAttrReader::payload(t[UNIX_DIAG_ICONS]);
    if (v.size() % sizeof(uint32_t) != 0) return Error{"UNIX_DIAG_ICONS attribute has a partial entry"};
    for (size_t i = 0; i < v.size(); i += sizeof(uint32_t)) {
      uint32_t inode;
      std::memcpy(&inode, v.data() + i, sizeof(inode));
      s.pending_peer_inodes.push_back(inode);
    }
  }
  if (t[UNIX_DIAG_RQLEN] != nullptr) {
    const auto rq = r.value<unix_diag_rqlen>(t[UNIX_DIAG_RQLEN], "UNIX_DIAG_RQLEN");
    s.rqueue = rq.udiag_rqueue;
    s.wqueue = rq.udiag_wqueue;
  }
  s.shutdown = r.integer<uint8_t>(t[UNIX_DIAG_SHUTDOWN], "UNIX_DIAG_SHUTDOWN");
  if (!r.ok()) return Error{r.error()};
  if (s.state == TCP_LISTEN) {
    s.pending_connections = have_icons ? static_cast<uint32_t>(s.pending_peer_inodes.size()) : s.rqueue;
  }
  out.push_back(std::move(s));
  return okStatus();
}

NetlinkWalkOptions sockDiagWalk() {
  NetlinkWalkOptions options;
  options.what = "sock_diag dump";
  options.data_type = SOCK_DIAG_BY_FAMILY;
  return options;
}

// A whole dump through the shared walker: it must end with NLMSG_DONE.
template <typename T, typename ParseOne>
Result<std::vector<T>> parseDump(std::span<const uint8_t> dump, ParseOne&& parseOne) {
  std::vector<T> out;
  auto walked = walkNetlinkMessages(dump, sockDiagWalk(), [&](const nlmsghdr* h) { return parseOne(h, out); });
  if (!walked) return walked.error();
  if (!walked->done)
    return Error{"sock_diag reply truncated: no NLMSG_DONE after " + std::to_string(out.size()) + " sockets"};
  return out;
}

}  // namespace

uint32_t defaultUnixDiagShow() {
  return UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS | UDIAG_SHOW_RQLEN;
}

std::vector<uint8_t> buildInetDiagRequest(uint8_t family, uint8_t protocol, uint32_t states, uint32_t seq) {
  alignas(nlmsghdr) char buf[MNL_NLMSG_HDRLEN + MNL_ALIGN(sizeof(inet_diag_req_v2))] = {};
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = SOCK_DIAG_BY_FAMILY;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  nlh->nlmsg_seq = seq;
  auto* req = static_cast<inet_diag_req_v2*>(mnl_nlmsg_put_extra_header(nlh, sizeof(inet_diag_req_v2)));
  req->sdiag_family = family;
  req->sdiag_protocol = protocol;
  req->idiag_states = states;
  req->idiag_ext = 0;
  return finishRequest(buf, nlh);
}

std::vector<uint8_t> buildUnixDiagRequest(uint32_t show, uint32_t seq) {
  alignas(nlmsghdr) char buf[MNL_NLMSG_HDRLEN + MNL_ALIGN(sizeof(unix_diag_req))] = {};
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = SOCK_DIAG_BY_FAMILY;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  nlh->nlmsg_seq = seq;
  auto* req = static_cast<unix_diag_req*>(mnl_nlmsg_put_extra_header(nlh, sizeof(unix_diag_req)));
  req->sdiag_family = AF_UNIX;
  req->udiag_states = ~0u;
  req->udiag_show = show;
  return finishRequest(buf, nlh);
}

Result<DumpProgress> collectDumpChunk(std::span<const uint8_t> chunk, uint32_t seq, uint32_t portid,
                                      std::vector<uint8_t>& kept) {
  NetlinkWalkOptions options = sockDiagWalk();
  options.seq = seq;
  options.portid = portid;
  options.visit_done = true;
  auto walked = walkNetlinkMessages(chunk, options, [&](const nlmsghdr* h) {
    const auto* p = reinterpret_cast<const uint8_t*>(h);
    kept.insert(kept.end(), p, p + h->nlmsg_len);
    kept.resize(NLMSG_ALIGN(kept.size()), 0);
    return okStatus();
  });
  if (!walked) return walked.error();
  return DumpProgress{walked->done, walked->messages};
}

uint64_t userDevFromKernelDev(uint32_t kernel_dev) { return makedev(kernel_dev >> 20, kernel_dev & 0xfffffu); }

Result<std::vector<InetSocket>> parseInetDiagDump(std::span<const uint8_t> dump, int protocol) {
  return parseDump<InetSocket>(
      dump, [protocol](const nlmsghdr* h, std::vector<InetSocket>& out) { return parseInetMessage(h, protocol, out); });
}

Result<std::vector<UnixSocket>> parseUnixDiagDump(std::span<const uint8_t> dump) {
  return parseDump<UnixSocket>(dump, parseUnixMessage);
}

}  // namespace meshprobe::agent
