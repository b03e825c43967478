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
#include <functional>
#include <optional>
#include <string>

namespace meshprobe::agent {
namespace {

// Reads a trivially copyable T at `offset` without assuming alignment.
template <typename T>
T loadAt(std::span<const uint8_t> bytes, size_t offset) {
  T value;
  std::memcpy(&value, bytes.data() + offset, sizeof(T));
  return value;
}

std::vector<uint8_t> finishRequest(char* buf, const nlmsghdr* nlh) {
  const auto* begin = reinterpret_cast<const uint8_t*>(buf);
  return std::vector<uint8_t>(begin, begin + nlh->nlmsg_len);
}

struct MessageFilter {
  uint32_t seq = 0;
  uint32_t portid = 0;
};

using OnMessage = std::function<Status(const nlmsghdr& hdr, std::span<const uint8_t> message)>;

// Walks a stream of netlink messages. Data messages (SOCK_DIAG_BY_FAMILY) go to
// onData; control messages end the walk (DONE) or fail it (ERROR, OVERRUN, DUMP_INTR).
// With a filter, messages of another seq/portid are skipped before anything else.
Result<bool> walkMessages(std::span<const uint8_t> bytes, std::optional<MessageFilter> filter,
                          const OnMessage& onData) {
  size_t off = 0;
  while (off < bytes.size()) {
    const size_t remaining = bytes.size() - off;
    if (remaining < sizeof(nlmsghdr)) {
      return Error{"sock_diag reply truncated: " + std::to_string(remaining) + " trailing bytes at offset " +
                   std::to_string(off)};
    }
    const auto hdr = loadAt<nlmsghdr>(bytes, off);
    if (hdr.nlmsg_len < sizeof(nlmsghdr) || hdr.nlmsg_len > remaining) {
      return Error{"sock_diag reply truncated: message at offset " + std::to_string(off) + " claims " +
                   std::to_string(hdr.nlmsg_len) + " bytes, " + std::to_string(remaining) + " left"};
    }
    const auto message = bytes.subspan(off, hdr.nlmsg_len);
    const auto payload = message.subspan(sizeof(nlmsghdr));
    off += std::min<size_t>(NLMSG_ALIGN(hdr.nlmsg_len), remaining);

    if (filter && (hdr.nlmsg_seq != filter->seq || hdr.nlmsg_pid != filter->portid)) continue;
    if (hdr.nlmsg_flags & NLM_F_DUMP_INTR) {
      return Error{"sock_diag dump interrupted (NLM_F_DUMP_INTR): socket table changed during the dump"};
    }
    switch (hdr.nlmsg_type) {
      case NLMSG_NOOP:
        continue;
      case NLMSG_OVERRUN:
        return Error{"sock_diag reply overrun (NLMSG_OVERRUN)"};
      case NLMSG_ERROR: {
        if (payload.size() < sizeof(int)) return Error{"sock_diag NLMSG_ERROR truncated"};
        const int err = loadAt<int>(payload, 0);
        if (err == 0) continue;  // an ACK; dumps do not normally send one
        return Error::fromErrno("sock_diag dump", err < 0 ? -err : err);
      }
      case NLMSG_DONE: {
        if (payload.size() >= sizeof(int)) {
          const int status = loadAt<int>(payload, 0);
          if (status < 0) return Error::fromErrno("sock_diag dump ended with an error", -status);
        }
        if (Status s = onData(hdr, message); !s) return s.error();
        return true;
      }
      case SOCK_DIAG_BY_FAMILY:
        if (Status s = onData(hdr, message); !s) return s.error();
        continue;
      default:
        return Error{"sock_diag reply: unexpected message type " + std::to_string(hdr.nlmsg_type)};
    }
  }
  return false;
}

// Walks the netlink attributes in `attrs`, calling fn(type, payload) for each.
template <typename Fn>
Status walkAttributes(std::span<const uint8_t> attrs, Fn&& fn) {
  size_t off = 0;
  while (off < attrs.size()) {
    const size_t remaining = attrs.size() - off;
    if (remaining < sizeof(nlattr)) return Error{"sock_diag attribute truncated"};
    const auto attr = loadAt<nlattr>(attrs, off);
    if (attr.nla_len < sizeof(nlattr) || attr.nla_len > remaining) {
      return Error{"sock_diag attribute " + std::to_string(attr.nla_type & NLA_TYPE_MASK) + " has bad length " +
                   std::to_string(attr.nla_len)};
    }
    if (Status s = fn(attr.nla_type & NLA_TYPE_MASK, attrs.subspan(off + NLA_HDRLEN, attr.nla_len - NLA_HDRLEN)); !s) {
      return s;
    }
    off += std::min<size_t>(NLA_ALIGN(attr.nla_len), remaining);
  }
  return okStatus();
}

std::string formatAddress(int family, const uint32_t (&words)[4]) {
  char text[INET6_ADDRSTRLEN] = {};
  if (!inet_ntop(family, words, text, sizeof(text))) return "";
  return text;
}

Result<InetSocket> parseInetMessage(std::span<const uint8_t> payload, int protocol) {
  if (payload.size() < sizeof(inet_diag_msg)) {
    return Error{"inet_diag message too short: " + std::to_string(payload.size()) + " bytes"};
  }
  const auto msg = loadAt<inet_diag_msg>(payload, 0);
  if (msg.idiag_family != AF_INET && msg.idiag_family != AF_INET6) {
    return Error{"inet_diag message with unexpected family " + std::to_string(msg.idiag_family)};
  }
  InetSocket s;
  s.family = msg.idiag_family;
  s.protocol = protocol;
  s.state = msg.idiag_state;
  s.local_address = formatAddress(s.family, msg.id.idiag_src);
  s.local_port = ntohs(msg.id.idiag_sport);
  s.remote_address = formatAddress(s.family, msg.id.idiag_dst);
  s.remote_port = ntohs(msg.id.idiag_dport);
  s.inode = msg.idiag_inode;
  s.uid = msg.idiag_uid;
  s.bound_ifindex = msg.id.idiag_if;
  const size_t attrs_at = NLMSG_ALIGN(sizeof(inet_diag_msg));
  if (payload.size() > attrs_at) {
    Status st = walkAttributes(payload.subspan(attrs_at), [&](uint16_t type, std::span<const uint8_t> value) {
      if (type == INET_DIAG_PROTOCOL) {
        if (value.size() < 1) return Status(Error{"INET_DIAG_PROTOCOL attribute is empty"});
        s.protocol = value[0];
      }
      return okStatus();
    });
    if (!st) return st.error();
  }
  return s;
}

Result<UnixSocket> parseUnixMessage(std::span<const uint8_t> payload) {
  if (payload.size() < sizeof(unix_diag_msg)) {
    return Error{"unix_diag message too short: " + std::to_string(payload.size()) + " bytes"};
  }
  const auto msg = loadAt<unix_diag_msg>(payload, 0);
  if (msg.udiag_family != AF_UNIX) {
    return Error{"unix_diag message with unexpected family " + std::to_string(msg.udiag_family)};
  }
  UnixSocket s;
  s.inode = msg.udiag_ino;
  s.type = msg.udiag_type;
  s.state = msg.udiag_state;
  bool have_icons = false;
  const size_t attrs_at = NLMSG_ALIGN(sizeof(unix_diag_msg));
  if (payload.size() > attrs_at) {
    Status st = walkAttributes(payload.subspan(attrs_at), [&](uint16_t type, std::span<const uint8_t> v) -> Status {
      switch (type) {
        case UNIX_DIAG_NAME: {
          std::string name(reinterpret_cast<const char*>(v.data()), v.size());
          if (!name.empty() && name[0] == '\0') {
            name[0] = '@';  // abstract namespace, as ss prints it
          } else {
            while (!name.empty() && name.back() == '\0') name.pop_back();
          }
          s.path = std::move(name);
          break;
        }
        case UNIX_DIAG_VFS: {
          if (v.size() < sizeof(unix_diag_vfs)) return Error{"UNIX_DIAG_VFS attribute too short"};
          const auto vfs = loadAt<unix_diag_vfs>(v, 0);
          s.vfs_inode = vfs.udiag_vfs_ino;
          s.vfs_dev = vfs.udiag_vfs_dev;
          break;
        }
        case UNIX_DIAG_PEER:
          if (v.size() < sizeof(uint32_t)) return Error{"UNIX_DIAG_PEER attribute too short"};
          s.peer_inode = loadAt<uint32_t>(v, 0);
          break;
        case UNIX_DIAG_ICONS:
          if (v.size() % sizeof(uint32_t) != 0) return Error{"UNIX_DIAG_ICONS attribute has a partial entry"};
          have_icons = true;
          for (size_t i = 0; i < v.size(); i += sizeof(uint32_t))
            s.pending_peer_inodes.push_back(loadAt<uint32_t>(v, i));
          break;
        case UNIX_DIAG_RQLEN: {
          if (v.size() < sizeof(unix_diag_rqlen)) return Error{"UNIX_DIAG_RQLEN attribute too short"};
          const auto rq = loadAt<unix_diag_rqlen>(v, 0);
          s.rqueue = rq.udiag_rqueue;
          s.wqueue = rq.udiag_wqueue;
          break;
        }
        case UNIX_DIAG_SHUTDOWN:
          if (v.size() < sizeof(uint8_t)) return Error{"UNIX_DIAG_SHUTDOWN attribute is empty"};
          s.shutdown = v[0];
          break;
        default:
          break;
      }
      return okStatus();
    });
    if (!st) return st.error();
  }
  if (s.state == TCP_LISTEN) {
    s.pending_connections = have_icons ? static_cast<uint32_t>(s.pending_peer_inodes.size()) : s.rqueue;
  }
  return s;
}

template <typename T, typename ParseOne>
Result<std::vector<T>> parseDump(std::span<const uint8_t> dump, ParseOne&& parseOne) {
  std::vector<T> out;
  auto walked = walkMessages(dump, std::nullopt, [&](const nlmsghdr& hdr, std::span<const uint8_t> message) -> Status {
    if (hdr.nlmsg_type != SOCK_DIAG_BY_FAMILY) return okStatus();
    auto parsed = parseOne(message.subspan(sizeof(nlmsghdr)));
    if (!parsed) return parsed.error();
    out.push_back(std::move(parsed.value()));
    return okStatus();
  });
  if (!walked) return walked.error();
  if (!walked.value())
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
  DumpProgress progress;
  auto walked = walkMessages(chunk, MessageFilter{seq, portid},
                             [&](const nlmsghdr& hdr, std::span<const uint8_t> message) -> Status {
                               kept.insert(kept.end(), message.begin(), message.end());
                               kept.resize(NLMSG_ALIGN(kept.size()), 0);
                               if (hdr.nlmsg_type != NLMSG_DONE) ++progress.messages;
                               return okStatus();
                             });
  if (!walked) return walked.error();
  progress.done = walked.value();
  return progress;
}

uint64_t userDevFromKernelDev(uint32_t kernel_dev) { return makedev(kernel_dev >> 20, kernel_dev & 0xfffffu); }

Result<std::vector<InetSocket>> parseInetDiagDump(std::span<const uint8_t> dump, int protocol) {
  return parseDump<InetSocket>(dump, [protocol](std::span<const uint8_t> p) { return parseInetMessage(p, protocol); });
}

Result<std::vector<UnixSocket>> parseUnixDiagDump(std::span<const uint8_t> dump) {
  return parseDump<UnixSocket>(dump, parseUnixMessage);
}

}  // namespace meshprobe::agent
