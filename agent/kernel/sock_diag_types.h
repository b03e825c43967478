#pragma once
// Sockets as NETLINK_SOCK_DIAG reports them (`ss` without parsing `ss`).

#include <cstdint>
#include <optional>
#include <string>

namespace meshprobe::agent {

struct InetSocket {
  int family = 0;             // AF_INET / AF_INET6
  int protocol = 0;           // IPPROTO_UDP / IPPROTO_TCP
  uint8_t state = 0;          // TCP_* state numbers (TCP_LISTEN = 10; UDP unconnected = TCP_CLOSE = 7)
  std::string local_address;  // "0.0.0.0", "::"
  uint16_t local_port = 0;
  std::string remote_address;
  uint16_t remote_port = 0;
  uint64_t inode = 0;         // 0 for kernel sockets (e.g. the VXLAN socket)
  uint32_t uid = 0;
};

struct UnixSocket {
  uint64_t inode = 0;
  uint8_t type = 0;           // SOCK_STREAM / SOCK_DGRAM / SOCK_SEQPACKET
  uint8_t state = 0;          // TCP_LISTEN (10) / TCP_ESTABLISHED (1) / TCP_CLOSE (7)
  std::string path;           // bound name; abstract names start with '@'; empty when unbound
  uint64_t peer_inode = 0;    // UNIX_DIAG_PEER, 0 when none
  std::optional<uint64_t> vfs_inode;   // UNIX_DIAG_VFS: inode of the socket file
  std::optional<uint32_t> vfs_dev;
  uint32_t pending_connections = 0;    // UNIX_DIAG_ICONS count / rqlen for listeners
};

}  // namespace meshprobe::agent
