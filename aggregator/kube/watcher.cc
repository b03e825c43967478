#include "aggregator/kube/watcher.h"

#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <random>

#include "aggregator/kube/parse.h"

namespace meshprobe::aggregator::kube {
namespace {

namespace asio = boost::asio;
using asio::awaitable;
using nlohmann::json;

std::string urlEncode(const std::string& s) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

// A failed request, classified.
struct Failure {
  ApiState state = ApiState::kUnreachable;
  std::string detail;
  bool gone = false;  // 410: list again
};

Failure classify(const std::string& verb, const std::string& resource, const HttpResult& r) {
  const ApiError e = parseStatus(r.body, r.status);
  Failure f;
  const std::string what = verb + " " + resource + " at the cluster scope: ";
  if (e.code == 410 || r.status == 410) {
    f.gone = true;
    f.detail = what + "410 " + e.reason + ": " + e.message;
  } else if (r.status == 401 || r.status == 403) {
    f.state = ApiState::kForbidden;
    std::string msg = e.message;
    // RBAC's message starts "pods is forbidden: "; the detail says it once.
    if (const std::string prefix = resource + " is forbidden: "; msg.starts_with(prefix))
      msg = msg.substr(prefix.size());
    f.detail = what + (r.status == 401 ? "unauthorized (the credentials were refused): " : "forbidden: ") + msg;
  } else {
    f.detail = what + "HTTP " + std::to_string(r.status) + (e.reason.empty() ? "" : " " + e.reason) +
               (e.message.empty() ? "" : ": " + e.message);
  }
  return f;
}

}  // namespace

const char* resourceName(Kind kind) {
  switch (kind) {
    case Kind::kNodes:
      return "nodes";
    case Kind::kNamespaces:
      return "namespaces";
    case Kind::kPods:
      return "pods";
  }
  return "?";
}

// Memory per pod (a rough estimate for capacity planning, x86-64 libstdc++): PodObject itself
// is ~330 bytes; its strings beyond the 15-byte small-string buffer, ~4 labels (~120 bytes
// each as map nodes with their strings), 4–5 conditions (~140 bytes each plus messages) and
// 1–2 pod IPs bring a typical workload pod to ~1.5 KB without container statuses; each
// ContainerStatus adds ~180 bytes plus its messages. Component pods are kept whole; other
// pods lose their containers and hostNetwork ones are not kept at all, so 10 000 workload
// pods take ~15 MB per copy. A published snapshot is a copy: while readers hold an older
// snapshot two copies can be alive.
struct KubeWatcher::Loop {
  KubeWatcher& w;
  Kind kind;
  std::string resource;
  std::string rv;
  std::chrono::milliseconds backoff;
  std::mt19937_64 rng{std::random_device{}()};

  KindCounters& counters() { return w.counters_.kinds[static_cast<size_t>(kind)]; }

  template <class F>
  void count(F f) {
    std::lock_guard lock(w.mu_);
    f(counters());
  }

  // Returns whether the state changed (the caller publishes).
  bool setState(ApiState state, const std::string& detail) {
    std::lock_guard lock(w.mu_);
    KindCounters& c = counters();
    if (c.state == state && c.detail == detail) return false;
    if (state == ApiState::kSynced) {
      spdlog::info("kube: {} synced at resourceVersion {}", resource, rv);
    } else {
      spdlog::warn("kube: {}", detail);
    }
    c.state = state;
    c.detail = detail;
    return true;
  }

  void healthy() {
    backoff = w.options_.initial_backoff;
    if (setState(ApiState::kSynced, "")) w.publish();
  }

  awaitable<void> sleep(std::chrono::milliseconds d) {
    asio::steady_timer t(co_await asio::this_coro::executor);
    t.expires_after(d);
    boost::system::error_code ec;
    co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }

  awaitable<void> fail(const Failure& f) {
    count([&](KindCounters& c) { ++c.errors; });
    if (setState(f.state, f.detail)) w.publish();
    std::uniform_real_distribution<double> jitter(0.8, 1.2);
    const auto wait =
        std::chrono::milliseconds(static_cast<int64_t>(static_cast<double>(backoff.count()) * jitter(rng)));
    backoff = std::min(backoff * 2, w.options_.max_backoff);
    co_await sleep(wait);
  }

  void keepPod(PodObject p) {
    if (!w.options_.component_namespaces.contains(p.ns)) {
      if (p.host_network) {
        w.pods_.erase(p.key());
        return;
      }
      p.containers.clear();
      p.containers.shrink_to_fit();
    }
    std::string key = p.key();
    w.pods_.insert_or_assign(std::move(key), std::move(p));
  }

  void upsert(const json& object) {
    switch (kind) {
      case Kind::kNodes: {
        NodeObject n = parseNode(object);
        if (!n.name.empty()) w.nodes_.insert_or_assign(n.name, std::move(n));
        break;
      }
      case Kind::kNamespaces: {
        NamespaceObject n = parseNamespace(object);
        if (!n.name.empty()) w.namespaces_.insert_or_assign(n.name, std::move(n));
        break;
      }
      case Kind::kPods: {
        PodObject p = parsePod(object);
        if (!p.name.empty()) keepPod(std::move(p));
        break;
      }
    }
  }

  void erase(const json& object) {
    const json meta = object.is_object() ? object.value("metadata", json::object()) : json::object();
    const std::string name = meta.is_object() ? meta.value("name", "") : "";
    switch (kind) {
      case Kind::kNodes:
        w.nodes_.erase(name);
        break;
      case Kind::kNamespaces:
        w.namespaces_.erase(name);
        break;
      case Kind::kPods:
        w.pods_.erase((meta.is_object() ? meta.value("namespace", "") : "") + "/" + name);
        break;
    }
  }

  void clearStore() {
    switch (kind) {
      case Kind::kNodes:
        w.nodes_.clear();
        break;
      case Kind::kNamespaces:
        w.namespaces_.clear();
        break;
      case Kind::kPods:
        w.pods_.clear();
        break;
    }
  }

  // "&fieldSelector=..." for this kind, or "".
  std::string selector() const {
    if (resource != "pods" || w.options_.pod_field_selector.empty()) return "";
    return "&fieldSelector=" + urlEncode(w.options_.pod_field_selector);
  }

  // Lists every page; on success the store is replaced and rv is the list's.
  awaitable<std::optional<Failure>> list() {
    std::vector<json> items;
    std::string cont, list_rv;
    uint64_t pages = 0;
    while (true) {
      std::string target = "/api/v1/" + resource + "?limit=" + std::to_string(w.options_.page_size) + selector();
      if (!cont.empty()) target += "&continue=" + urlEncode(cont);
      auto r = co_await w.client_->get(target);
      if (!r) co_return Failure{ApiState::kUnreachable, "list " + resource + ": " + r.error().message, false};
      if (r->status != 200) co_return classify("list", resource, *r);
      auto page = parseList(r->body);
      if (!page) co_return Failure{ApiState::kUnreachable, "list " + resource + ": " + page.error().message, false};
      ++pages;
      if (list_rv.empty()) list_rv = page->resource_version;
      for (auto& i : page->items) items.push_back(std::move(i));
      cont = page->continue_token;
      if (cont.empty()) break;
    }
    clearStore();
    for (const json& i : items) upsert(i);
    rv = list_rv;
    w.listed_[static_cast<size_t>(kind)] = true;
    count([&](KindCounters& c) {
      ++c.lists;
      c.list_pages += pages;
      c.resource_version = rv;
    });
    healthy();
    w.publish();
    co_return std::nullopt;
  }

  // One watch from rv. Returns a failure, or nullopt when the stream ended (watch again).
  awaitable<std::optional<Failure>> watch() {
    std::uniform_int_distribution<int64_t> pick(
        w.options_.min_watch_timeout.count(),
        std::max(w.options_.min_watch_timeout, w.options_.max_watch_timeout).count());
    const auto timeout = std::chrono::seconds(pick(rng));
    const std::string target = "/api/v1/" + resource + "?watch=1&resourceVersion=" + urlEncode(rv) +
                               "&allowWatchBookmarks=true&timeoutSeconds=" + std::to_string(timeout.count()) +
                               selector();
    std::optional<Failure> stream_failure;
    auto on_lines = [&](const std::vector<std::string>& lines) {
      bool changed = false;
      uint64_t events = 0, bookmarks = 0;
      for (const std::string& line : lines) {
        auto ev = parseWatchEvent(line);
        if (!ev) {
          spdlog::warn("kube: watch {}: {}", resource, ev.error().message);
          continue;
        }
        switch (ev->type) {
          case EventType::kAdded:
          case EventType::kModified:
            upsert(ev->object);
            break;
          case EventType::kDeleted:
            erase(ev->object);
            break;
          case EventType::kBookmark:
            if (!ev->resource_version.empty()) rv = ev->resource_version;
            ++bookmarks;
            continue;
          case EventType::kError: {
            Failure f;
            f.gone = ev->error.code == 410;
            f.state = ApiState::kUnreachable;
            f.detail = "watch " + resource + " at the cluster scope: " + std::to_string(ev->error.code) + " " +
                       ev->error.reason + ": " + ev->error.message;
            stream_failure = f;
            break;
          }
        }
        if (stream_failure) break;
        if (!ev->resource_version.empty()) rv = ev->resource_version;
        ++events;
        changed = true;
      }
      count([&](KindCounters& c) {
        c.events += events;
        c.bookmarks += bookmarks;
        c.resource_version = rv;
      });
      if (changed) w.publish();
      return !stream_failure;
    };
    auto on_open = [&] {
      count([&](KindCounters& c) { ++c.watches; });
      healthy();
    };
    auto r = co_await w.client_->watch(target, timeout + w.options_.idle_margin, on_lines, on_open);
    if (!r) co_return Failure{ApiState::kUnreachable, "watch " + resource + ": " + r.error().message, false};
    if (r->status != 200) co_return classify("watch", resource, *r);
    co_return stream_failure;
  }

  awaitable<void> run() {
    bool need_list = true;
    while (true) {
      if (need_list) {
        auto f = co_await list();
        if (f && f->gone) {  // an expired continue token: list from the start
          count([&](KindCounters& c) { ++c.relists_after_410; });
          continue;
        }
        if (f) {
          co_await fail(*f);
          continue;
        }
        need_list = false;
      }
      const auto started = std::chrono::steady_clock::now();
      const uint64_t events_before = counters_snapshot().events + counters_snapshot().bookmarks;
      auto f = co_await watch();
      if (f && f->gone) {
        spdlog::info("kube: {}; listing {} again", f->detail, resource);
        count([&](KindCounters& c) { ++c.relists_after_410; });
        need_list = true;
        continue;
      }
      if (f) {
        co_await fail(*f);
        continue;
      }
      count([&](KindCounters& c) { ++c.watch_restarts; });
      // A watch that ends at once with nothing in it (a proxy closing every stream) must
      // not spin: wait as after a failure, without changing the state.
      if (std::chrono::steady_clock::now() - started < std::chrono::seconds(1) &&
          counters_snapshot().events + counters_snapshot().bookmarks == events_before) {
        co_await sleep(backoff);
        backoff = std::min(backoff * 2, w.options_.max_backoff);
      }
    }
  }

  KindCounters counters_snapshot() {
    std::lock_guard lock(w.mu_);
    return counters();
  }
};

KubeWatcher::KubeWatcher(std::shared_ptr<KubeClient> client, WatcherOptions options)
    : client_(std::move(client)), options_(std::move(options)) {
  auto initial = std::make_shared<KubeObjects>();
  initial->status = ApiStatus{ApiState::kConnecting, "not started"};
  snapshot_ = std::move(initial);
}

KubeWatcher::~KubeWatcher() { stop(); }

void KubeWatcher::start() {
  if (ioc_) return;
  ioc_ = std::make_unique<asio::io_context>(1);
  for (Kind k : {Kind::kNodes, Kind::kNamespaces, Kind::kPods}) {
    auto loop = std::make_shared<Loop>(Loop{*this, k, resourceName(k), "", options_.initial_backoff});
    asio::co_spawn(
        *ioc_, [loop]() -> awaitable<void> { co_await loop->run(); }, asio::detached);
  }
  ioc_->post([this] { publish(); });
  thread_ = std::thread([ioc = ioc_.get()] { ioc->run(); });
}

void KubeWatcher::stop() {
  if (!ioc_) return;
  ioc_->stop();
  if (thread_.joinable()) thread_.join();
  ioc_.reset();  // destroys the suspended coroutines: their sockets and timers close
}

std::shared_ptr<const KubeObjects> KubeWatcher::objects() const {
  std::lock_guard lock(mu_);
  return snapshot_;
}

WatcherCounters KubeWatcher::counters() const {
  std::lock_guard lock(mu_);
  return counters_;
}

void KubeWatcher::publish() {
  auto next = std::make_shared<KubeObjects>();
  next->nodes = nodes_;
  next->namespaces = namespaces_;
  next->pods = pods_;
  next->synced = listed_[0] && listed_[1] && listed_[2];
  std::lock_guard lock(mu_);
  // The worst kind names the state: forbidden, then unreachable, then still connecting.
  ApiStatus status{ApiState::kSynced, ""};
  for (ApiState want : {ApiState::kForbidden, ApiState::kUnreachable, ApiState::kConnecting}) {
    for (const KindCounters& c : counters_.kinds) {
      if (c.state == want && status.state == ApiState::kSynced) {
        status = ApiStatus{want,
                           c.detail.empty() && want == ApiState::kConnecting ? "waiting for the first list" : c.detail};
      }
    }
  }
  next->status = status;
  next->generation = snapshot_->generation + 1;
  ++counters_.publishes;
  snapshot_ = std::move(next);
}

}  // namespace meshprobe::aggregator::kube
