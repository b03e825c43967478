#include "agent/firewall/ruleset_generation.h"

// glibc's netinet/in.h before the kernel's headers: it tells them what it already defines.
#include <netinet/in.h>
#include <sys/socket.h>

#include <libmnl/libmnl.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter_ipv4/ip_tables.h>
#include <linux/netfilter_ipv6/ip6_tables.h>
#include <linux/netlink.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "agent/kernel/netlink_socket.h"
#include "agent/kernel/netlink_walk.h"
#include "agent/stable_hash.h"

namespace meshprobe::agent {
namespace {

uint64_t fnv(uint64_t h, const void* data, size_t n) { return fnv1a(data, n, h); }
uint64_t fnv(uint64_t h, std::string_view s) { return fnv(fnv(h, s.data(), s.size()), "\0", 1); }
template <typename T>
uint64_t fnvValue(uint64_t h, const T& v) {
  return fnv(h, &v, sizeof(v));
}

// One address family's x_tables: ipt_* for IPv4, ip6t_* for IPv6 (same shapes, other
// entry layout and socket options).
template <typename Entry, typename GetInfo, typename GetEntries>
struct LegacyFamily {
  const char* names_file;  // under /proc/thread-self/net
  int domain;
  int level;
  int opt_info;
  int opt_entries;
};

template <typename Entry>
Result<uint64_t> hashEntries(std::span<const uint8_t> blob, uint64_t h) {
  constexpr size_t kCounters = offsetof(Entry, counters);
  constexpr size_t kNext = offsetof(Entry, next_offset);
  static_assert(offsetof(Entry, counters) + sizeof(xt_counters) <= sizeof(Entry));
  static constexpr uint8_t kZeroCounters[sizeof(xt_counters)] = {};
  size_t off = 0;
  while (off < blob.size()) {
    if (blob.size() - off < sizeof(Entry)) {
      return Error{"x_tables entry at offset " + std::to_string(off) + " cut short"};
    }
    uint16_t next = 0;
    std::memcpy(&next, blob.data() + off + kNext, sizeof(next));
    if (next < sizeof(Entry) || next > blob.size() - off) {
      return Error{"x_tables entry at offset " + std::to_string(off) + " has next_offset " + std::to_string(next)};
    }
    // The entry with its counters as zeros: they count traffic, not rules.
    const uint8_t* entry = blob.data() + off;
    h = fnv(h, entry, kCounters);
    h = fnv(h, kZeroCounters, sizeof(kZeroCounters));
    h = fnv(h, entry + kCounters + sizeof(xt_counters), next - kCounters - sizeof(xt_counters));
    off += next;
  }
  return h;
}

// The table names the kernel holds for a family ("filter", "nat", ...); none when the
// file does not exist (the family's x_tables module is not loaded).
std::vector<std::string> loadedTables(const char* names_file) {
  std::vector<std::string> names;
  std::ifstream in(std::string("/proc/thread-self/net/") + names_file);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) names.push_back(line);
  }
  std::sort(names.begin(), names.end());
  return names;
}

template <typename Entry, typename GetInfo, typename GetEntries>
Result<uint64_t> hashLegacyFamily(const LegacyFamily<Entry, GetInfo, GetEntries>& fam, uint64_t h) {
  const std::vector<std::string> tables = loadedTables(fam.names_file);
  h = fnv(h, fam.names_file);
  h = fnvValue(h, tables.size());
  if (tables.empty()) return h;
  const int fd = ::socket(fam.domain, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
  if (fd < 0) return Error::fromErrno(std::string("socket for ") + fam.names_file, errno);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  for (const auto& name : tables) {
    h = fnv(h, name);
    bool read = false;
    // The table can change between the two calls (the kernel then refuses the entries
    // with EAGAIN, their size no longer matching): ask again, a bounded number of times.
    for (int attempt = 0; attempt < 4 && !read; ++attempt) {
      GetInfo info{};
      std::strncpy(info.name, name.c_str(), sizeof(info.name) - 1);
      socklen_t len = sizeof(info);
      if (::getsockopt(fd, fam.level, fam.opt_info, &info, &len) != 0) {
        if (errno == ENOENT) break;  // unloaded since the names were read
        return Error::fromErrno("getsockopt(" + std::string(fam.names_file) + " " + name + " info)", errno);
      }
      std::vector<uint64_t> buf((sizeof(GetEntries) + info.size + 7) / 8 + 1);  // 8-byte aligned
      auto* entries = reinterpret_cast<GetEntries*>(buf.data());
      std::strncpy(entries->name, name.c_str(), sizeof(entries->name) - 1);
      entries->size = info.size;
      len = static_cast<socklen_t>(sizeof(GetEntries) + info.size);
      if (::getsockopt(fd, fam.level, fam.opt_entries, entries, &len) != 0) {
        if (errno == EAGAIN) continue;
        if (errno == ENOENT) break;
        return Error::fromErrno("getsockopt(" + std::string(fam.names_file) + " " + name + " entries)", errno);
      }
      h = fnvValue(h, info.valid_hooks);
      h = fnvValue(h, info.hook_entry);
      h = fnvValue(h, info.underflow);
      h = fnvValue(h, info.num_entries);
      auto hashed = hashEntries<Entry>(
          std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(entries->entrytable), info.size), h);
      if (!hashed) return Error{std::string(fam.names_file) + " " + name + ": " + hashed.error().message};
      h = *hashed;
      read = true;
    }
    if (!read) h = fnv(h, "unread");  // vanished, or changing faster than it could be read
  }
  return h;
}

class KernelRulesetGeneration final : public RulesetGeneration {
 public:
  explicit KernelRulesetGeneration(std::chrono::milliseconds timeout) : timeout_(timeout) {}

  Result<uint64_t> fingerprint() override {
    auto gen = nftGeneration();
    if (!gen) return gen.error();
    uint64_t h = fnvValue(kFnv1aOffsetBasis, *gen);
    static const LegacyFamily<ipt_entry, ipt_getinfo, ipt_get_entries> kIpv4{"ip_tables_names", AF_INET, IPPROTO_IP,
                                                                            IPT_SO_GET_INFO, IPT_SO_GET_ENTRIES};
    static const LegacyFamily<ip6t_entry, ip6t_getinfo, ip6t_get_entries> kIpv6{
        "ip6_tables_names", AF_INET6, IPPROTO_IPV6, IP6T_SO_GET_INFO, IP6T_SO_GET_ENTRIES};
    auto v4 = hashLegacyFamily(kIpv4, h);
    if (!v4) return v4.error();
    return hashLegacyFamily(kIpv6, *v4);
  }

 private:
  Result<uint32_t> nftGeneration() {
    auto sock = NetlinkSocket::open(NETLINK_NETFILTER);
    if (!sock) return sock.error();
    std::array<uint8_t, 64> buf{};
    nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
    nlh->nlmsg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN;
    nlh->nlmsg_flags = NLM_F_REQUEST;
    auto* nfg = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
    nfg->nfgen_family = AF_UNSPEC;
    nfg->version = NFNETLINK_V0;
    nfg->res_id = 0;
    auto reply = sock->request(std::span<const uint8_t>(buf.data(), nlh->nlmsg_len),
                               std::chrono::steady_clock::now() + timeout_, "nf_tables generation (NFT_MSG_GETGEN)");
    if (!reply) return reply.error();
    return parseNftGeneration(*reply);
  }

  std::chrono::milliseconds timeout_;
};

}  // namespace

Result<uint32_t> parseNftGeneration(std::span<const uint8_t> reply) {
  std::optional<uint32_t> gen;
  NetlinkWalkOptions opt;
  opt.what = "NFT_MSG_NEWGEN";
  opt.data_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN;
  auto walked = walkNetlinkMessages(reply, opt, [&gen](const nlmsghdr* msg) -> Status {
    NetlinkAttrs<NFTA_GEN_MAX> tb;
    auto hdr = parseNetlinkMessage<nfgenmsg>(msg, tb);
    if (!hdr) return hdr.error();
    const nlattr* id = tb[NFTA_GEN_ID];
    if (id == nullptr || mnl_attr_get_payload_len(id) < sizeof(uint32_t)) return Error{"no NFTA_GEN_ID"};
    gen = ntohl(mnl_attr_get_u32(id));
    return okStatus();
  });
  if (!walked) return walked.error();
  if (!gen) return Error{"no NFT_MSG_NEWGEN message in the reply"};
  return *gen;
}

Result<uint64_t> hashLegacyEntries(std::span<const uint8_t> entries, bool ipv6, uint64_t seed) {
  return ipv6 ? hashEntries<ip6t_entry>(entries, seed) : hashEntries<ipt_entry>(entries, seed);
}

std::unique_ptr<RulesetGeneration> makeKernelRulesetGeneration(std::chrono::milliseconds timeout) {
  return std::make_unique<KernelRulesetGeneration>(timeout);
}

}  // namespace meshprobe::agent
