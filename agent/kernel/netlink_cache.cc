#include "agent/kernel/netlink_cache.h"

#include <libmnl/libmnl.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "agent/kernel/netlink_dump.h"
#include "agent/kernel/netlink_parse.h"
#include "agent/kernel/netlink_socket.h"
#include "common/thread_name.h"

namespace meshprobe::agent {
namespace {

using SteadyClock = std::chrono::steady_clock;

// One message, with its type rewritten to `as` (the dump parsers take RTM_NEW* only;
// a RTM_DEL* carries the same body).
std::vector<uint8_t> asType(const nlmsghdr* nlh, uint16_t as) {
  const auto* p = reinterpret_cast<const uint8_t*>(nlh);
  std::vector<uint8_t> copy(p, p + nlh->nlmsg_len);
  nlmsghdr h;
  std::memcpy(&h, copy.data(), sizeof(h));
  h.nlmsg_type = as;
  std::memcpy(copy.data(), &h, sizeof(h));
  return copy;
}

template <typename T, typename Parse>
Result<std::vector<T>> parseOne(const nlmsghdr* nlh, uint16_t as, Parse parse) {
  return parse(asType(nlh, as));
}

template <typename T, typename Same>
bool eraseIf(std::vector<T>& v, Same same) {
  const auto before = v.size();
  std::erase_if(v, same);
  return v.size() != before;
}

template <typename T, typename Same>
void upsert(std::vector<T>& v, T entry, Same same) {
  for (auto& e : v) {
    if (same(e)) {
      e = std::move(entry);
      return;
    }
  }
  v.push_back(std::move(entry));
}

bool zeroMac(const std::string& mac) { return mac.empty() || mac == "00:00:00:00:00:00"; }

}  // namespace

// ---- NetlinkCacheState ----------------------------------------------------------------

void NetlinkCacheState::reset(NetlinkSnapshot dumped) {
  state_ = std::move(dumped);
  needs_dump_ = false;
  changed_ = true;
}

SnapshotPtr NetlinkCacheState::publish() {
  changed_ = false;
  return std::make_shared<const NetlinkSnapshot>(state_);
}

void NetlinkCacheState::applyLink(uint16_t type, const LinkInfo& link) {
  const LinkInfo* old = state_.linkByIndex(link.ifindex);
  if (type == RTM_DELLINK) {
    // Its addresses, neighbours and routes go with it, not all of them announced.
    needs_dump_ = true;
    return;
  }
  if (old != nullptr && (old->admin_up != link.admin_up || old->lower_up != link.lower_up)) {
    needs_dump_ = true;  // routes through a link going down are flushed without notice
  }
  upsert(state_.links, link, [&](const LinkInfo& l) { return l.ifindex == link.ifindex; });
}

Status NetlinkCacheState::apply(std::span<const uint8_t> datagram) {
  // The shared walker (netlink_walk.h) validates lengths and handles the control messages
  // (an NLMSG_ERROR on the notification socket is an Error); every other message type
  // reaches applyMessage.
  NetlinkWalkOptions options;
  options.what = "notification datagram";
  auto walked = walkNetlinkMessages(datagram, options, [&](const nlmsghdr* nlh) { return applyMessage(nlh); });
  if (!walked) return walked.error();
  return okStatus();
}

Status NetlinkCacheState::applyMessage(const nlmsghdr* nlh) {
  {
    const uint16_t type = nlh->nlmsg_type;
    switch (type) {
      case RTM_NEWLINK:
      case RTM_DELLINK: {
        if (mnl_nlmsg_get_payload_len(nlh) < sizeof(ifinfomsg)) return Error{"link notification truncated"};
        // AF_BRIDGE link messages describe bridge ports, not links.
        if (static_cast<const ifinfomsg*>(mnl_nlmsg_get_payload(nlh))->ifi_family != AF_UNSPEC) return okStatus();
        auto links = parseOne<LinkInfo>(nlh, RTM_NEWLINK, parseLinkDump);
        if (!links) return links.error();
        for (const auto& l : *links) applyLink(type, l);
        break;
      }
      case RTM_NEWADDR:
      case RTM_DELADDR: {
        auto addrs = parseOne<AddressInfo>(nlh, RTM_NEWADDR, parseAddrDump);
        if (!addrs) return addrs.error();
        for (auto& a : *addrs) {
          auto same = [&](const AddressInfo& e) {
            return e.ifindex == a.ifindex && e.family == a.family && e.prefixlen == a.prefixlen &&
                   e.address == a.address;
          };
          if (type == RTM_DELADDR) {
            eraseIf(state_.addresses, same);
          } else {
            upsert(state_.addresses, a, same);
          }
        }
        break;
      }
      case RTM_NEWNEIGH:
      case RTM_DELNEIGH: {
        if (mnl_nlmsg_get_payload_len(nlh) < sizeof(ndmsg)) return Error{"neighbour notification truncated"};
        const auto family = static_cast<const ndmsg*>(mnl_nlmsg_get_payload(nlh))->ndm_family;
        if (family == AF_BRIDGE) {
          auto fdb = parseOne<FdbEntry>(nlh, RTM_NEWNEIGH, parseFdbDump);
          if (!fdb) return fdb.error();
          for (auto& f : *fdb) {
            auto same = [&](const FdbEntry& e) {
              return e.ifindex == f.ifindex && e.mac == f.mac && e.dst == f.dst && e.vni == f.vni;
            };
            if (type == RTM_DELNEIGH) {
              eraseIf(state_.fdb, same);
              continue;
            }
            // A MAC now at another remote: replaced in place (only the new one is
            // announced) or appended — only a dump tells.
            const bool moved =
                !zeroMac(f.mac) && std::any_of(state_.fdb.begin(), state_.fdb.end(), [&](const FdbEntry& e) {
                  return e.ifindex == f.ifindex && e.mac == f.mac && e.vni == f.vni && e.dst != f.dst;
                });
            if (moved) needs_dump_ = true;
            upsert(state_.fdb, f, same);
          }
        } else {
          auto neigh = parseOne<NeighbourEntry>(nlh, RTM_NEWNEIGH, parseNeighDump);
          if (!neigh) return neigh.error();
          for (auto& n : *neigh) {
            auto same = [&](const NeighbourEntry& e) {
              return e.ifindex == n.ifindex && e.family == n.family && e.dst == n.dst;
            };
            if (type == RTM_DELNEIGH) {
              eraseIf(state_.neighbours, same);
            } else {
              upsert(state_.neighbours, n, same);
            }
          }
        }
        break;
      }
      case RTM_NEWROUTE:
      case RTM_DELROUTE: {
        if (mnl_nlmsg_get_payload_len(nlh) < sizeof(rtmsg)) return Error{"route notification truncated"};
        // Cached (cloned) routes are not part of a dump.
        if ((static_cast<const rtmsg*>(mnl_nlmsg_get_payload(nlh))->rtm_flags & RTM_F_CLONED) != 0) return okStatus();
        auto routes = parseOne<RouteEntry>(nlh, RTM_NEWROUTE, parseRouteDump);
        if (!routes) return routes.error();
        for (auto& r : *routes) {
          auto same = [&](const RouteEntry& e) {
            return e.family == r.family && e.table == r.table && e.dst == r.dst && e.oif == r.oif &&
                   e.gateway == r.gateway && e.type == r.type;
          };
          if (type == RTM_DELROUTE) {
            eraseIf(state_.routes, same);
            continue;
          }
          if ((nlh->nlmsg_flags & NLM_F_REPLACE) != 0) {  // `ip route replace`: the old route is gone
            eraseIf(state_.routes,
                    [&](const RouteEntry& e) { return e.family == r.family && e.table == r.table && e.dst == r.dst; });
          }
          upsert(state_.routes, r, same);
        }
        break;
      }
      default:
        return okStatus();  // other rtnetlink families (rules, netconf, ...) are not cached
    }
    ++applied_;
    changed_ = true;
  }
  return okStatus();
}

// ---- NetlinkCache ---------------------------------------------------------------------

struct NetlinkCache::Impl {
  Options options;
  NetlinkSocket events;
  int wake_fd = -1;
  NetlinkCacheState state;  // the cache thread's (start() before the thread exists)

  std::atomic<std::shared_ptr<const NetlinkSnapshot>> current;
  mutable std::mutex error_mu;
  std::string error;  // why current is null

  std::atomic<uint64_t> dumps{0}, dump_failures{0}, notifications{0}, losses{0}, published{0};

  Impl(Options o, NetlinkSocket s) : options(o), events(std::move(s)) {}
  ~Impl() {
    if (wake_fd >= 0) ::close(wake_fd);
  }

  void publish() {
    current.store(state.publish());
    ++published;
  }

  Status dump() {
    auto dumper = RtnetlinkDumper::open();
    if (!dumper) return dumper.error();
    auto snap = readSnapshot(*dumper, SteadyClock::now() + options.dump_timeout);
    if (!snap) return snap.error();
    ++dumps;
    state.reset(std::move(snap).value());
    return okStatus();
  }

  // Re-dump; on failure readers get the error (the state is not trusted any more).
  bool resync() {
    if (Status st = dump(); !st) {
      ++dump_failures;
      current.store(nullptr);
      std::lock_guard lock(error_mu);
      error = "rtnetlink cache out of sync, re-dump failed: " + st.error().message;
      return false;
    }
    publish();
    return true;
  }

  // Waits for notifications, the wake fd or the timeout; false when asked to stop.
  bool wait(std::stop_token& stop, std::chrono::milliseconds timeout) {
    pollfd fds[2] = {{events.fd(), POLLIN, 0}, {wake_fd, POLLIN, 0}};
    const int ms = static_cast<int>(std::clamp<long long>(timeout.count(), 0, 60'000));
    if (::poll(fds, 2, ms) < 0 && errno != EINTR) return !stop.stop_requested();
    return !stop.stop_requested() && (fds[1].revents & POLLIN) == 0;
  }

  void drain() {
    for (;;) {
      auto datagram = events.receive(SteadyClock::now());
      if (!datagram) {  // ENOBUFS: the kernel dropped notifications; any other error alike
        ++losses;
        state.lose();
        if (datagram.error().sys_errno == ENOBUFS) continue;  // later notifications still arrive
        return;
      }
      if (datagram->empty()) return;
      const uint64_t before = state.applied();
      if (Status st = state.apply(*datagram); !st) {
        ++losses;
        state.lose();
      }
      notifications += state.applied() - before;
    }
  }

  void run(std::stop_token stop) {
    auto next_resync = SteadyClock::now() + options.resync_interval;
    while (!stop.stop_requested()) {
      if (state.needsDump()) {
        if (!resync()) {  // retry in a second (or at stop)
          if (!wait(stop, std::chrono::seconds(1))) return;
          drain();
          state.lose();
          continue;
        }
        next_resync = SteadyClock::now() + options.resync_interval;
      }
      const auto until = std::chrono::ceil<std::chrono::milliseconds>(next_resync - SteadyClock::now());
      if (!wait(stop, std::max(until, std::chrono::milliseconds(0)))) return;
      if (SteadyClock::now() >= next_resync) state.lose();  // periodic safety re-dump
      drain();
      if (!state.needsDump() && state.changedSincePublish()) publish();
    }
  }
};

NetlinkCache::NetlinkCache(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::shared_ptr<NetlinkCache>> NetlinkCache::start(Options options) {
  // Subscribe before the dump: a change made during the dump is then queued and applied
  // on top of it (applying NEW/DEL is idempotent, so one already in the dump is harmless).
  static constexpr unsigned kGroups[] = {RTNLGRP_LINK,        RTNLGRP_NEIGH,      RTNLGRP_IPV4_IFADDR,
                                         RTNLGRP_IPV6_IFADDR, RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_ROUTE};
  auto events = NetlinkSocket::open(NETLINK_ROUTE, kGroups);
  if (!events) return Error{"rtnetlink notifications: " + events.error().message, events.error().sys_errno};
  auto impl = std::make_unique<Impl>(options, std::move(events).value());
  impl->wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (impl->wake_fd < 0) return Error::fromErrno("eventfd", errno);
  if (Status st = impl->dump(); !st) return st.error();
  impl->drain();  // what changed during the dump
  if (impl->state.needsDump()) {
    if (Status st = impl->dump(); !st) return st.error();
  }
  impl->publish();
  std::shared_ptr<NetlinkCache> cache(new NetlinkCache(std::move(impl)));
  Impl* raw = cache->impl_.get();
  cache->thread_ = std::jthread([raw](std::stop_token stop) {
    nameThisThread("mp-netlink");
    raw->run(stop);
  });
  return cache;
}

NetlinkCache::~NetlinkCache() {
  if (thread_.joinable()) {
    thread_.request_stop();
    const uint64_t one = 1;
    (void)!::write(impl_->wake_fd, &one, sizeof(one));
    thread_.join();
  }
}

Result<SnapshotPtr> NetlinkCache::current() const {
  if (auto snap = impl_->current.load()) return SnapshotPtr(std::move(snap));
  std::lock_guard lock(impl_->error_mu);
  return Error{impl_->error.empty() ? "rtnetlink cache has no state" : impl_->error};
}

NetlinkCacheStats NetlinkCache::stats() const {
  NetlinkCacheStats s;
  s.dumps = impl_->dumps;
  s.dump_failures = impl_->dump_failures;
  s.notifications = impl_->notifications;
  s.losses = impl_->losses;
  s.published = impl_->published;
  return s;
}

std::unique_ptr<NetlinkReader> makeCachedNetlinkReader(std::shared_ptr<NetlinkCache> cache) {
  return std::make_unique<SharedSnapshotReader>([cache = std::move(cache)] { return cache->current(); });
}

}  // namespace meshprobe::agent
