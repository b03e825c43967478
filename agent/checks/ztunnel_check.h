#pragma once
// ztunnel: istio-cni's SOCK_SEQPACKET listener at --ztunnel-socket (istio-cni up) and
// the established connections on it (ztunnel connected), read over NETLINK_SOCK_DIAG
// (AF_UNIX). The listener is matched by the socket file's inode (stat() vs
// UNIX_DIAG_VFS), falling back to the bound name; the accepted side of each connection
// carries the listener's name and file, the peer of each is ztunnel's socket. A connection
// counts only while ztunnel's end is alive (peer inode non-zero, no shutdown bit): after
// ztunnel dies, istio-cni may hold its accepted socket for seconds (until its keepalive
// read) or indefinitely (older releases, until a send fails), and that socket must not
// hide ZTUNNEL_NOT_CONNECTED.

#include "agent/checks/check.h"
#include "agent/config.h"
#include "agent/kernel/sock_diag.h"

namespace meshprobe::agent {

class ZtunnelCheck final : public Check {
 public:
  ZtunnelCheck(const AgentConfig& config, SockDiag& sock_diag);
  std::string_view name() const override { return "ztunnel"; }
  CheckResult run() override;

 private:
  const AgentConfig& config_;
  SockDiag& sock_diag_;
};

}  // namespace meshprobe::agent
