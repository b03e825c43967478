#pragma once
// Sockets as NETLINK_SOCK_DIAG reports them (`ss` without parsing `ss`).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace meshprobe::agent {

struct InetSocket {
  int family = 0;             // AF_INET / AF_INET6
  int protocol = 0;           // IPPROTO_UDP / IPPROTO_TCP
  uint8_t state = 0;          // TCP_* state numbers (TCP_LISTEN = 10; UDP unconnected = TCP_CLOSE = 7)
  std::string local_address;  // "0.0.0.0", "::"
  uint16_t local_port = 0;
  std::string remote_address;
  uint16_t remote_port = 0;
  uint64_t inode = 0;  // sockfs inode. Not a kernel/user marker: on current kernels the VXLAN
                       // device's kernel UDP socket has a nonzero inode too (no owning process)
  uint32_t uid = 0;
  uint32_t bound_ifindex = 0;  // SO_BINDTODEVICE (inet_diag_sockid.idiag_if), 0 when unbound
};

struct UnixSocket {
  uint64_t inode = 0;
  uint8_t type = 0;                           // SOCK_STREAM / SOCK_DGRAM / SOCK_SEQPACKET
  uint8_t state = 0;                          // TCP_LISTEN (10) / TCP_ESTABLISHED (1) / TCP_CLOSE (7)
  std::string path;                           // bound name; abstract names start with '@'; empty when unbound
  uint64_t peer_inode = 0;                    // UNIX_DIAG_PEER, 0 when none
  std::optional<uint64_t> vfs_inode;          // UNIX_DIAG_VFS: inode of the socket file
  std::optional<uint32_t> vfs_dev;            // the file's device in the KERNEL's dev_t encoding (major << 20 | minor);
                                              // see userDevFromKernelDev() in sock_diag_parse.h
  uint32_t pending_connections = 0;           // UNIX_DIAG_ICONS count / rqlen for listeners
  std::vector<uint64_t> pending_peer_inodes;  // UNIX_DIAG_ICONS: the connecting (client) sockets not yet accepted
  uint32_t rqueue = 0;                        // UNIX_DIAG_RQLEN: listeners: queued connections; others: bytes queued
  uint32_t wqueue = 0;                        // UNIX_DIAG_RQLEN: listeners: backlog limit; others: bytes unsent
  // UNIX_DIAG_SHUTDOWN (sent unconditionally since Linux 3.10): sk_shutdown, a mask of
  // kUnixRcvShutdown | kUnixSendShutdown. When a connected stream/seqpacket socket's peer is
  // released (its process died or closed it), the kernel sets both bits here and the peer
  // inode reads 0, while this end stays ESTABLISHED until its owner closes it.
  std::optional<uint8_t> shutdown;
};

inline constexpr uint8_t kUnixRcvShutdown = 1;   // RCV_SHUTDOWN: nothing more will arrive
inline constexpr uint8_t kUnixSendShutdown = 2;  // SEND_SHUTDOWN: nothing more can be sent

}  // namespace meshprobe::agent
