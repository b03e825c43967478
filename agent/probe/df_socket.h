#pragma once
// Socket helpers for DF-set path-MTU probes, shared by the prober (requests)
// and the responder (replies).

#include <cstdint>
#include <optional>
#include <string>

namespace meshprobe::agent {

// Sets IP_MTU_DISCOVER (IPV6_MTU_DISCOVER for an IPv6 socket) to IP_PMTUDISC_PROBE: DF
// is set and the kernel's cached path MTU is ignored, so a datagram up to the outgoing
// device's MTU is sent as is (larger ones fail with EMSGSIZE) and nothing is fragmented
// locally. Falls back to IP_PMTUDISC_DO (DF, but sends above a cached path MTU fail
// with EMSGSIZE) where PROBE is unknown. On an IPv6 socket the IPv4 option is set too
// (v4-mapped peers of a dual-stack socket). Returns 0 or the errno of the last attempt.
int setDontFragmentProbe(int fd, bool ipv6);

// The kernel's path MTU towards `address` (IP_MTU / IPV6_MTU of a connected UDP socket:
// the route's MTU, lowered by a cached "fragmentation needed" or a VXLAN device's
// learned underlay limit). Sends nothing. nullopt when there is no route or no such
// address.
std::optional<uint32_t> kernelPathMtu(const std::string& address);

// "send 1450 bytes with DF: EMSGSIZE (path MTU 1400)"; "(path MTU unknown)" when the
// kernel does not say. `ip_packet_size` is the IP packet's size.
std::string dfSendErrorText(size_t ip_packet_size, int err, std::optional<uint32_t> path_mtu);

}  // namespace meshprobe::agent
