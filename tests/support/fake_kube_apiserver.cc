#include "tests/support/fake_kube_apiserver.h"

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <boost/asio.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <algorithm>
#include <deque>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <utility>  // before awaitable.hpp: Boost 1.74 uses std::exchange without including it

#include "tests/support/mtls_pki.h"

namespace meshprobe::test {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using asio::awaitable;
using asio::redirect_error;
using asio::use_awaitable;
using boost::system::error_code;
using nlohmann::json;

const std::map<std::string, std::string> kKinds = {{"nodes", "Node"}, {"namespaces", "Namespace"}, {"pods", "Pod"}};

json status(int code, const std::string& reason, const std::string& message) {
  return json{{"kind", "Status"},    {"apiVersion", "v1"}, {"metadata", json::object()},
              {"status", "Failure"}, {"message", message}, {"reason", reason},
              {"code", code}};
}

std::string keyOf(const std::string& resource, const json& object) {
  const json& meta = object.at("metadata");
  const std::string name = meta.value("name", "");
  if (resource == "pods") return meta.value("namespace", "") + "/" + name;
  return name;
}

std::string base64(const std::string& in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::string unbase64(const std::string& in) {
  if (in.empty() || in.size() % 4 != 0) return "";
  std::string out(in.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  if (n < 0) return "";
  size_t len = static_cast<size_t>(n);
  if (in.ends_with("=="))
    len -= 2;
  else if (in.ends_with("="))
    len -= 1;
  out.resize(len);
  return out;
}

std::string percentDecode(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += s[i] == '+' ? ' ' : s[i];
    }
  }
  return out;
}

uint64_t toRv(const std::string& s) {
  try {
    return s.empty() ? 0 : std::stoull(s);
  } catch (...) {
    return 0;
  }
}

}  // namespace

// coordination.k8s.io/v1 leases: the section "Leases" at the end of this file.
constexpr const char* kLeasesPrefix = "/apis/coordination.k8s.io/v1/";
std::pair<http::status, json> leaseRequest(FakeKubeApiServer::Impl& s, const std::string& method,
                                           const std::string& path, const std::string& body, const std::string& user);

// core/v1 writes (nodes/NAME/status, events): the section "Writes" below; nullopt for any other request.
std::optional<std::pair<http::status, json>> coreWriteRequest(FakeKubeApiServer::Impl& s, const std::string& method,
                                                              const std::string& path,
                                                              const std::string& content_type,
                                                              const std::string& body, const std::string& user);

// fieldSelector as the API server takes it for these kinds: "f=v", "f==v" or "f!=v" joined
// by commas (AND), on the fields each kind registers as selectable (pods:
// PodToSelectableFields in pkg/registry/core/pod/strategy.go; nodes: metadata.name and
// spec.unschedulable; namespaces: metadata.name and status.phase). Any other field is a 400
// "field label not supported". A field absent from the object reads as "" (hostNetwork
// and unschedulable as "false", as their defaults print).
struct FieldRequirement {
  std::string field;
  bool equals = true;
  std::string value;
};
using FieldSelector = std::vector<FieldRequirement>;

const std::map<std::string, std::set<std::string>> kSelectableFields = {
    {"pods",
     {"metadata.name", "metadata.namespace", "spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
      "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"}},
    {"nodes", {"metadata.name", "spec.unschedulable"}},
    {"namespaces", {"metadata.name", "status.phase"}},
};

// nullopt + `error` set when a term names an unsupported field or is not a term.
std::optional<FieldSelector> parseFieldSelector(const std::string& resource, const std::string& text,
                                                std::string* error) {
  FieldSelector out;
  if (text.empty()) return out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    const std::string term = text.substr(start, comma - start);
    FieldRequirement r;
    size_t op = term.find("!=");
    size_t op_len = 2;
    if (op != std::string::npos) {
      r.equals = false;
    } else if ((op = term.find("==")) == std::string::npos) {
      op = term.find('=');
      op_len = 1;
    }
    if (op == std::string::npos || op == 0) {
      *error = "invalid selector: '" + text + "'; can't understand '" + term + "'";
      return std::nullopt;
    }
    r.field = term.substr(0, op);
    r.value = term.substr(op + op_len);
    const auto fields = kSelectableFields.find(resource);
    if (fields == kSelectableFields.end() || !fields->second.contains(r.field)) {
      *error = "field label not supported: " + r.field;
      return std::nullopt;
    }
    out.push_back(r);
    start = comma + 1;
  }
  return out;
}

std::string fieldValue(const json& object, const std::string& field) {
  const json* at = &object;
  size_t start = 0;
  while (start < field.size()) {
    size_t dot = field.find('.', start);
    if (dot == std::string::npos) dot = field.size();
    const std::string part = field.substr(start, dot - start);
    if (!at->is_object() || !at->contains(part)) {
      return field == "spec.hostNetwork" || field == "spec.unschedulable" ? "false" : "";
    }
    at = &(*at)[part];
    start = dot + 1;
  }
  if (at->is_string()) return at->get<std::string>();
  if (at->is_boolean()) return at->get<bool>() ? "true" : "false";
  return at->dump();
}

bool matchesFields(const FieldSelector& selector, const json& object) {
  for (const auto& r : selector) {
    if ((fieldValue(object, r.field) == r.value) != r.equals) return false;
  }
  return true;
}

// What a watch with `selector` sees of a change, as the watch cache's cacheWatcher
// (k8s.io/apiserver pkg/storage/cacher, convertToWatchEvent) filters it: the object before
// (`prev`, null when added) and after (`object`, null when deleted) are both matched; an
// object that starts matching is ADDED, one that stops matching is DELETED carrying its
// previous content with the event's resourceVersion, and nothing when neither matches.
std::optional<std::string> watchLine(const FieldSelector& selector, const std::string& type, const json& object,
                                     const json& prev) {
  if (selector.empty()) return json{{"type", type}, {"object", type == "DELETED" ? prev : object}}.dump() + "\n";
  const bool now_passes = type != "DELETED" && matchesFields(selector, object);
  const bool before_passed = !prev.is_null() && matchesFields(selector, prev);
  if (now_passes && !before_passed) return json{{"type", "ADDED"}, {"object", object}}.dump() + "\n";
  if (now_passes && before_passed) return json{{"type", "MODIFIED"}, {"object", object}}.dump() + "\n";
  if (!now_passes && before_passed) {
    json gone = prev;
    const json& after = type == "DELETED" ? prev : object;
    gone["metadata"]["resourceVersion"] = after["metadata"]["resourceVersion"];
    return json{{"type", "DELETED"}, {"object", gone}}.dump() + "\n";
  }
  return std::nullopt;
}

struct WatchState {
  explicit WatchState(asio::any_io_executor ex) : timer(ex) {}
  std::string resource;
  bool bookmarks = false;
  // Guarded by Impl::mu:
  std::deque<std::string> queue;  // event lines to send
  bool signaled = false;
  bool dropped = false;
  bool bookmark_due = false;
  FieldSelector fields;  // the watch's fieldSelector (set before it is registered)
  // io thread only:
  asio::steady_timer timer;
};

struct FakeKubeApiServer::Impl : std::enable_shared_from_this<FakeKubeApiServer::Impl> {
  Options opt;
  mutable std::mutex mu;
  // Store (guarded by mu).
  uint64_t rv = 0;
  uint64_t compacted_rv = 0;                                   // watches from an RV below this get 410
  std::map<std::string, std::map<std::string, json>> objects;  // resource -> key -> object
  struct Event {
    uint64_t rv;
    std::string resource;
    std::string type;
    json object;  // after the change (for DELETED: as deleted, with the new resourceVersion)
    json prev;    // before it; null when added
  };
  std::deque<Event> history;
  std::string token;
  std::set<std::pair<std::string, std::string>> forbidden;
  std::vector<std::shared_ptr<WatchState>> watches;
  Stats stats;
  std::function<void()> after_continued_page;
  std::function<void()> before_lease_update;  // Leases section: run once before the next PUT

  // Server (owner thread + io thread).
  std::unique_ptr<asio::io_context> ioc;
  std::unique_ptr<ssl::context> ssl_ctx;
  std::thread thread;
  uint16_t port = 0;

  // Wakes every watch (any thread).
  void notifyLocked() {
    for (auto& w : watches) w->signaled = true;
    if (!ioc) return;
    std::vector<std::shared_ptr<WatchState>> ws = watches;
    asio::post(*ioc, [ws] {
      for (auto& w : ws) w->timer.cancel();
    });
  }

  // `prev`: the object before the change (null when added); for DELETED `object` is the
  // deleted object and `prev` the same.
  void recordLocked(const std::string& resource, const std::string& type, const json& object, const json& prev) {
    history.push_back(Event{rv, resource, type, object, prev});
    for (auto& w : watches) {
      if (w->resource != resource) continue;
      if (auto line = watchLine(w->fields, type, object, prev)) w->queue.push_back(std::move(*line));
    }
    notifyLocked();
  }

  std::string userOf(const std::string& authz, SSL* ssl) {
    if (authz == "Bearer " + token && !token.empty()) return opt.user;
    if (ssl != nullptr && !opt.client_ca_file.empty()) {
      X509* cert = SSL_get1_peer_certificate(ssl);
      if (cert != nullptr && SSL_get_verify_result(ssl) == X509_V_OK) {
        char cn[256] = {0};
        X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
        X509_free(cert);
        return cn;
      }
      if (cert != nullptr) X509_free(cert);
    }
    return "";
  }

  template <class Stream>
  awaitable<void> writeJson(Stream& s, http::status code, const json& body, bool keep_alive) {
    http::response<http::string_body> res{code, 11};
    res.set(http::field::content_type, "application/json");
    res.body() = body.dump();
    res.keep_alive(keep_alive);
    res.prepare_payload();
    error_code ec;
    co_await http::async_write(s, res, redirect_error(use_awaitable, ec));
  }

  // One HTTP connection; `ssl` is null for plain HTTP.
  template <class Stream>
  awaitable<void> serve(Stream& s, SSL* ssl) {
    beast::flat_buffer buf;
    while (true) {
      http::request<http::string_body> req;
      error_code ec;
      co_await http::async_read(s, buf, req, redirect_error(use_awaitable, ec));
      if (ec) co_return;
      const std::string target(req.target());
      const std::string authz(req[http::field::authorization]);
      std::string path = target, query;
      if (const auto q = target.find('?'); q != std::string::npos) {
        path = target.substr(0, q);
        query = target.substr(q + 1);
      }
      std::map<std::string, std::string> params;
      for (size_t start = 0; start <= query.size() && !query.empty();) {
        size_t amp = query.find('&', start);
        if (amp == std::string::npos) amp = query.size();
        const std::string kv = query.substr(start, amp - start);
        const auto eq = kv.find('=');
        params[percentDecode(kv.substr(0, eq))] = eq == std::string::npos ? "" : percentDecode(kv.substr(eq + 1));
        start = amp + 1;
      }
      std::string user;
      {
        std::lock_guard lock(mu);
        stats.targets.push_back(target);
        stats.tokens.push_back(authz.starts_with("Bearer ") ? authz.substr(7) : "");
        user = userOf(authz, ssl);
        if (user.empty()) ++stats.unauthorized;
      }
      if (user.empty()) {
        co_await writeJson(s, http::status::unauthorized, status(401, "Unauthorized", "Unauthorized"),
                           req.keep_alive());
        continue;
      }
      if (path.starts_with(kLeasesPrefix)) {
        auto [code, body] = leaseRequest(*this, std::string(req.method_string()), path, req.body(), user);
        co_await writeJson(s, code, body, req.keep_alive());
        continue;
      }
      if (req.method() != http::verb::get && path.starts_with("/api/v1/")) {
        if (auto written = coreWriteRequest(*this, std::string(req.method_string()), path,
                                            std::string(req[http::field::content_type]), req.body(), user)) {
          co_await writeJson(s, written->first, written->second, req.keep_alive());
          continue;
        }
      }
      const std::string prefix = "/api/v1/";
      const std::string resource = path.starts_with(prefix) ? path.substr(prefix.size()) : "";
      if (!kKinds.contains(resource)) {
        co_await writeJson(s, http::status::not_found,
                           status(404, "NotFound", "the server could not find the requested resource"),
                           req.keep_alive());
        continue;
      }
      const bool is_watch = params["watch"] == "1" || params["watch"] == "true";
      const std::string verb = is_watch ? "watch" : "list";
      bool denied;
      {
        std::lock_guard lock(mu);
        denied = forbidden.contains({verb, resource});
        if (denied) ++stats.forbidden;
      }
      if (denied) {
        // k8s.io/apiserver's forbidden message for RBAC (authorization.ForbiddenStatusError).
        json st = status(403, "Forbidden",
                         resource + " is forbidden: User \"" + user + "\" cannot " + verb + " resource \"" + resource +
                             "\" in API group \"\" at the cluster scope");
        st["details"] = json{{"kind", resource}};
        co_await writeJson(s, http::status::forbidden, st, req.keep_alive());
        continue;
      }
      if (!is_watch) {
        auto [code, body] = list(resource, params);
        co_await writeJson(s, code, body, req.keep_alive());
        std::function<void()> hook;
        {
          std::lock_guard lock(mu);
          if (body["metadata"].contains("continue") && after_continued_page) {
            hook = std::move(after_continued_page);
            after_continued_page = nullptr;
          }
        }
        if (hook) hook();
        continue;
      }
      co_await watch(s, resource, params);
      co_return;  // a watch ends its connection
    }
  }

  std::pair<http::status, json> list(const std::string& resource, std::map<std::string, std::string>& params) {
    std::lock_guard lock(mu);
    uint64_t list_rv = rv;
    std::string start;
    if (const std::string cont = params["continue"]; !cont.empty()) {
      const json token = json::parse(unbase64(cont), nullptr, false);
      if (!token.is_object() || !token.contains("rv") || !token.contains("start")) {
        return {http::status::bad_request, status(400, "BadRequest", "continue key is not valid")};
      }
      list_rv = token["rv"].get<uint64_t>();
      if (list_rv < compacted_rv) {
        // etcd3 store: a compacted continue revision is 410 Expired.
        return {http::status::gone,
                status(410, "Expired",
                       "The provided continue parameter is too old to display a consistent list result. You can "
                       "start a new list without the continue parameter.")};
      }
      start = token["start"].get<std::string>();
    }
    std::string selector_error;
    const auto fields = parseFieldSelector(resource, params["fieldSelector"], &selector_error);
    if (!fields) return {http::status::bad_request, status(400, "BadRequest", selector_error)};
    const size_t limit = params["limit"].empty() ? 0 : std::stoul(params["limit"]);
    json items = json::array();
    auto& store = objects[resource];
    std::string last;
    size_t remaining = 0;
    for (auto it = store.lower_bound(start); it != store.end(); ++it) {
      if (limit != 0 && items.size() == limit) {
        remaining = static_cast<size_t>(std::distance(it, store.end()));
        break;
      }
      last = it->first;
      if (!matchesFields(*fields, it->second)) continue;
      items.push_back(it->second);
    }
    json meta{{"resourceVersion", std::to_string(list_rv)}};
    if (remaining > 0) {
      meta["continue"] =
          base64(json{{"v", "meta.k8s.io/v1"}, {"rv", list_rv}, {"start", last + std::string(1, '\0')}}.dump());
      // Not with a selector: the server cannot count what would match.
      if (fields->empty()) meta["remainingItemCount"] = remaining;
    }
    ++stats.lists;
    return {http::status::ok,
            json{{"kind", kKinds.at(resource) + "List"}, {"apiVersion", "v1"}, {"metadata", meta}, {"items", items}}};
  }

  template <class Stream>
  awaitable<void> watch(Stream& s, const std::string& resource, std::map<std::string, std::string>& params) {
    auto ex = co_await asio::this_coro::executor;
    auto w = std::make_shared<WatchState>(ex);
    w->resource = resource;
    w->bookmarks = params["allowWatchBookmarks"] == "true";
    const auto timeout =
        std::chrono::seconds(params["timeoutSeconds"].empty() ? 1800 : std::stoul(params["timeoutSeconds"]));
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    const std::string rv_text = params["resourceVersion"];
    const uint64_t from = toRv(rv_text);
    bool expired = false;
    std::string selector_error;
    const auto fields = parseFieldSelector(resource, params["fieldSelector"], &selector_error);
    if (!fields) {
      co_await writeJson(s, http::status::bad_request, status(400, "BadRequest", selector_error), false);
      co_return;
    }
    w->fields = *fields;
    {
      std::lock_guard lock(mu);
      ++stats.watches;
      if (rv_text.empty() || rv_text == "0") {
        for (const auto& [k, obj] : objects[resource]) {
          if (matchesFields(w->fields, obj)) w->queue.push_back(json{{"type", "ADDED"}, {"object", obj}}.dump() + "\n");
        }
      } else if (from < compacted_rv) {
        expired = true;
        ++stats.watch_expired;
        // The watch cache's answer (storage.NewTooLargeResourceVersionError's sibling, errors.NewResourceExpired).
        w->queue.push_back(json{{"type", "ERROR"},
                                {"object", status(410, "Expired",
                                                  "too old resource version: " + std::to_string(from) + " (" +
                                                      std::to_string(compacted_rv) + ")")}}
                               .dump() +
                           "\n");
      } else {
        for (const auto& e : history) {
          if (e.rv <= from || e.resource != resource) continue;
          if (auto line = watchLine(w->fields, e.type, e.object, e.prev)) w->queue.push_back(std::move(*line));
        }
      }
      if (!expired) watches.push_back(w);
    }
    http::response<http::empty_body> res{http::status::ok, 11};
    res.set(http::field::content_type, "application/json");
    res.chunked(true);
    http::response_serializer<http::empty_body> sr{res};
    error_code ec;
    co_await http::async_write_header(s, sr, redirect_error(use_awaitable, ec));
    bool cut = false;
    auto last_bookmark = std::chrono::steady_clock::now();
    while (!ec) {
      std::deque<std::string> lines;
      bool dropped;
      {
        std::lock_guard lock(mu);
        lines.swap(w->queue);
        dropped = w->dropped;
        w->signaled = false;
        const auto now = std::chrono::steady_clock::now();
        if (w->bookmarks &&
            (w->bookmark_due || (opt.bookmark_interval.count() > 0 && now - last_bookmark >= opt.bookmark_interval))) {
          lines.push_back(json{{"type", "BOOKMARK"},
                               {"object",
                                {{"kind", kKinds.at(resource).c_str()},
                                 {"apiVersion", "v1"},
                                 {"metadata", {{"resourceVersion", std::to_string(rv)}}}}}}
                              .dump() +
                          "\n");
          last_bookmark = now;
        }
        w->bookmark_due = false;
      }
      if (dropped) {
        cut = true;
        break;
      }
      for (const std::string& line : lines) {
        co_await asio::async_write(s, http::make_chunk(asio::buffer(line)), redirect_error(use_awaitable, ec));
        if (ec) break;
      }
      if (ec || expired || std::chrono::steady_clock::now() >= deadline) break;
      {
        std::lock_guard lock(mu);
        if (w->signaled) continue;
        auto wait = deadline - std::chrono::steady_clock::now();
        if (opt.bookmark_interval.count() > 0 && w->bookmarks)
          wait = std::min<std::chrono::steady_clock::duration>(wait, opt.bookmark_interval);
        w->timer.expires_after(wait);
      }
      error_code timer_ec;
      co_await w->timer.async_wait(redirect_error(use_awaitable, timer_ec));
    }
    {
      std::lock_guard lock(mu);
      std::erase(watches, w);
    }
    if (!cut && !ec) co_await asio::async_write(s, http::make_chunk_last(), redirect_error(use_awaitable, ec));
    // A cut watch returns without the last chunk; the socket closes when the stream goes.
  }

  awaitable<void> connection(tcp::socket sock) {
    if (!opt.tls) {
      beast::tcp_stream s(std::move(sock));
      co_await serve(s, nullptr);
      co_return;
    }
    beast::ssl_stream<beast::tcp_stream> s(std::move(sock), *ssl_ctx);
    beast::get_lowest_layer(s).expires_after(std::chrono::seconds(10));
    error_code ec;
    co_await s.async_handshake(ssl::stream_base::server, redirect_error(use_awaitable, ec));
    if (ec) co_return;
    beast::get_lowest_layer(s).expires_never();
    co_await serve(s, s.native_handle());
  }

  awaitable<void> accept(tcp::acceptor& acceptor) {
    while (true) {
      error_code ec;
      tcp::socket sock = co_await acceptor.async_accept(redirect_error(use_awaitable, ec));
      if (ec) co_return;
      asio::co_spawn(acceptor.get_executor(), connection(std::move(sock)), asio::detached);
    }
  }
};

// ---- Writes: Node status and Events (core/v1) ----
// PATCH /api/v1/nodes/NAME/status as the apiserver applies it to the status subresource (only
// `status` of the patch counts), by Content-Type:
//   - application/strategic-merge-patch+json: maps merge, null deletes a key, and lists with a
//     patchMergeKey in core/v1 merge entry by entry — NodeStatus.conditions and .addresses by
//     `type` (an entry's fields left out keep their value); other lists are replaced;
//   - application/merge-patch+json (RFC 7386): maps merge, every list is replaced wholesale —
//     a client that patches conditions this way erases the kubelet's Ready;
//   - anything else: 415 (json-patch and apply are not modelled).
// The node gets a new resourceVersion and watchers a MODIFIED event; an unknown node is 404
// `nodes "NAME" not found`.
// Events: POST /api/v1/namespaces/NS/events (201; metadata.generateName gets five characters
// of the apiserver's alphabet; a taken name is 409 AlreadyExists; no name is 422) and PATCH
// /api/v1/namespaces/NS/events/NAME (merge or strategic merge: an Event has no list either
// would treat differently). Stored in objects["events"] under "NS/NAME", not watched.
// forbid("patch", "nodes/status"), forbid("create"|"patch", "events") deny with RBAC's message.

namespace {

// core/v1 patchMergeKeys of the lists this fake merges (NodeStatus).
const std::map<std::string, std::string> kMergeKeys = {{"conditions", "type"}, {"addresses", "type"}};

void mergePatch(json& target, const json& patch, bool strategic) {
  if (!patch.is_object()) {
    target = patch;
    return;
  }
  if (!target.is_object()) target = json::object();
  for (const auto& [k, v] : patch.items()) {
    if (v.is_null()) {
      target.erase(k);
    } else if (v.is_object()) {
      mergePatch(target[k], v, strategic);
    } else if (strategic && v.is_array() && kMergeKeys.contains(k) && target.contains(k) && target[k].is_array()) {
      const std::string& key = kMergeKeys.at(k);
      for (const json& entry : v) {
        auto it = std::find_if(target[k].begin(), target[k].end(), [&](const json& e) {
          return e.is_object() && entry.is_object() && e.value(key, "") == entry.value(key, "");
        });
        if (it == target[k].end()) {
          target[k].push_back(entry);
        } else {
          mergePatch(*it, entry, strategic);
        }
      }
    } else {
      target[k] = v;
    }
  }
}

std::vector<std::string> splitPath(const std::string& path) {
  std::vector<std::string> parts;
  for (size_t start = 0; start <= path.size();) {
    size_t slash = path.find('/', start);
    if (slash == std::string::npos) slash = path.size();
    parts.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  return parts;
}

json namedStatus(int code, const std::string& reason, const std::string& message, const std::string& kind,
                 const std::string& name) {
  json st = status(code, reason, message);
  st["details"] = json{{"kind", kind}};
  if (!name.empty()) st["details"]["name"] = name;
  return st;
}

}  // namespace

std::optional<std::pair<http::status, json>> coreWriteRequest(FakeKubeApiServer::Impl& s, const std::string& method,
                                                              const std::string& path,
                                                              const std::string& content_type,
                                                              const std::string& body, const std::string& user) {
  const std::vector<std::string> p = splitPath(path.substr(std::string("/api/v1/").size()));
  const bool node_status = p.size() == 3 && p[0] == "nodes" && p[2] == "status" && method == "PATCH";
  const bool events = (p.size() == 3 || p.size() == 4) && p[0] == "namespaces" && p[2] == "events" &&
                      (p.size() == 3 ? method == "POST" : method == "PATCH");
  if (!node_status && !events) return std::nullopt;
  const std::string verb = method == "POST" ? "create" : "patch";
  const std::string resource = node_status ? "nodes/status" : "events";
  std::string name = node_status ? p[1] : p.size() == 4 ? p[3] : "";
  const std::string ns = node_status ? "" : p[1];
  const json patch = json::parse(body, nullptr, false);

  std::lock_guard lock(s.mu);
  if (s.forbidden.contains({verb, resource})) {
    ++s.stats.forbidden;
    // RBAC (authorization.ForbiddenStatusError): a named object is quoted; a namespaced
    // resource says "in the namespace".
    const std::string plural = node_status ? "nodes" : "events";
    const std::string what = name.empty() ? plural : plural + " \"" + name + "\"";
    const std::string scope = node_status ? "at the cluster scope" : "in the namespace \"" + ns + "\"";
    return std::pair{http::status::forbidden,
                     namedStatus(403, "Forbidden",
                                 what + " is forbidden: User \"" + user + "\" cannot " + verb + " resource \"" +
                                     resource + "\" in API group \"\" " + scope,
                                 plural, name)};
  }
  const bool strategic = content_type.starts_with("application/strategic-merge-patch+json");
  if (verb == "patch" && !strategic && !content_type.starts_with("application/merge-patch+json")) {
    return std::pair{http::status::unsupported_media_type,
                     status(415, "UnsupportedMediaType",
                            "the body of the request was in an unknown format - accepted media types include: "
                            "application/json-patch+json, application/merge-patch+json, "
                            "application/apply-patch+yaml, application/strategic-merge-patch+json")};
  }
  if (!patch.is_object()) {
    return std::pair{http::status::bad_request, status(400, "BadRequest", "the body of the request was not JSON")};
  }

  if (node_status) {
    auto& nodes = s.objects["nodes"];
    auto it = nodes.find(name);
    if (it == nodes.end()) {
      return std::pair{http::status::not_found,
                       namedStatus(404, "NotFound", "nodes \"" + name + "\" not found", "nodes", name)};
    }
    json& node = it->second;
    const json before = node;
    if (patch.contains("status")) mergePatch(node["status"], patch["status"], strategic);
    ++s.rv;
    node["metadata"]["resourceVersion"] = std::to_string(s.rv);
    s.recordLocked("nodes", "MODIFIED", node, before);
    return std::pair{http::status::ok, node};
  }

  auto& store = s.objects["events"];
  if (verb == "patch") {
    auto it = store.find(ns + "/" + name);
    if (it == store.end()) {
      return std::pair{http::status::not_found,
                       namedStatus(404, "NotFound", "events \"" + name + "\" not found", "events", name)};
    }
    mergePatch(it->second, patch, strategic);
    ++s.rv;
    it->second["metadata"]["resourceVersion"] = std::to_string(s.rv);
    return std::pair{http::status::ok, it->second};
  }
  json event = patch;
  const json meta = event.value("metadata", json::object());
  if (meta.contains("namespace") && meta["namespace"] != ns) {
    return std::pair{http::status::bad_request,
                     status(400, "BadRequest",
                            "the namespace of the provided object does not match the namespace sent on the request")};
  }
  name = meta.value("name", "");
  ++s.rv;
  if (name.empty() && !meta.value("generateName", "").empty()) {
    // k8s.io/apimachinery's utilrand.String alphabet (no vowels, no 0/1/3); derived from the
    // revision here so names are unique without randomness.
    static const std::string kAlphabet = "bcdfghjklmnpqrstvwxz2456789";
    std::string suffix;
    for (uint64_t v = s.rv * 2654435761u, i = 0; i < 5; ++i, v /= kAlphabet.size())
      suffix += kAlphabet[v % kAlphabet.size()];
    name = meta["generateName"].get<std::string>() + suffix;
  }
  if (name.empty()) {
    return std::pair{http::status::unprocessable_entity,
                     status(422, "Invalid", "Event \"\" is invalid: metadata.name: Required value: name or "
                                            "generateName is required")};
  }
  if (store.contains(ns + "/" + name)) {
    return std::pair{http::status::conflict,
                     namedStatus(409, "AlreadyExists", "events \"" + name + "\" already exists", "events", name)};
  }
  event["apiVersion"] = "v1";
  event["kind"] = "Event";
  event["metadata"]["name"] = name;
  event["metadata"]["namespace"] = ns;
  event["metadata"]["uid"] = "event-" + std::to_string(s.rv);
  event["metadata"]["resourceVersion"] = std::to_string(s.rv);
  event["metadata"].erase("generateName");
  store[ns + "/" + name] = event;
  return std::pair{http::status::created, event};
}

nlohmann::json FakeKubeApiServer::nodeConditions(const std::string& name) const {
  std::lock_guard lock(impl_->mu);
  const auto& nodes = impl_->objects["nodes"];
  auto it = nodes.find(name);
  if (it == nodes.end() || !it->second.contains("status")) return json::array();
  return it->second["status"].value("conditions", json::array());
}

std::vector<nlohmann::json> FakeKubeApiServer::events() const {
  std::lock_guard lock(impl_->mu);
  std::vector<json> out;
  for (const auto& [key, e] : impl_->objects["events"]) out.push_back(e);
  std::sort(out.begin(), out.end(), [](const json& a, const json& b) {
    return std::stoull(a["metadata"]["uid"].get<std::string>().substr(6)) <
           std::stoull(b["metadata"]["uid"].get<std::string>().substr(6));
  });
  return out;
}

FakeKubeApiServer::FakeKubeApiServer() : FakeKubeApiServer(Options{}) {}

FakeKubeApiServer::FakeKubeApiServer(Options options) : impl_(std::make_shared<Impl>()) {
  if (options.cert_file.empty()) options.cert_file = mtlsFile("aggregator.pem");
  if (options.key_file.empty()) options.key_file = mtlsFile("aggregator.key");
  impl_->opt = options;
  impl_->rv = options.first_resource_version;
  impl_->token = options.token;
}

FakeKubeApiServer::~FakeKubeApiServer() { stop(); }

bool FakeKubeApiServer::start(uint16_t port) {
  Impl& s = *impl_;
  if (s.thread.joinable()) return true;
  try {
    if (s.opt.tls) {
      s.ssl_ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
      s.ssl_ctx->use_certificate_chain_file(s.opt.cert_file);
      s.ssl_ctx->use_private_key_file(s.opt.key_file, ssl::context::pem);
      if (!s.opt.client_ca_file.empty()) {
        s.ssl_ctx->load_verify_file(s.opt.client_ca_file);
        // Request, do not require, a client certificate (the apiserver's --client-ca-file).
        s.ssl_ctx->set_verify_mode(ssl::verify_peer);
        s.ssl_ctx->set_verify_callback([](bool, ssl::verify_context&) { return true; });
      }
    }
    auto ioc = std::make_unique<asio::io_context>(1);
    auto acceptor = std::make_shared<tcp::acceptor>(*ioc);
    const tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), port);
    acceptor->open(ep.protocol());
    acceptor->set_option(asio::socket_base::reuse_address(true));
    acceptor->bind(ep);
    acceptor->listen();
    s.port = acceptor->local_endpoint().port();
    {
      std::lock_guard lock(s.mu);
      s.ioc = std::move(ioc);
    }
    asio::co_spawn(
        *s.ioc, [impl = impl_, acceptor]() -> awaitable<void> { co_await impl->accept(*acceptor); }, asio::detached);
    s.thread = std::thread([ioc = s.ioc.get()] { ioc->run(); });
    return true;
  } catch (const std::exception& e) {
    std::cerr << "fake kube-apiserver: cannot start on 127.0.0.1:" << port << ": " << e.what() << "\n";
    return false;
  }
}

void FakeKubeApiServer::stop() {
  Impl& s = *impl_;
  if (!s.thread.joinable()) return;
  s.ioc->stop();
  s.thread.join();
  std::unique_ptr<asio::io_context> ioc;
  {
    std::lock_guard lock(s.mu);
    ioc = std::move(s.ioc);
    s.watches.clear();
  }
  ioc.reset();  // destroys the pending coroutines: every socket closes
}

uint16_t FakeKubeApiServer::port() const { return impl_->port; }
std::string FakeKubeApiServer::url() const {
  return std::string(impl_->opt.tls ? "https" : "http") + "://127.0.0.1:" + std::to_string(impl_->port);
}

uint64_t FakeKubeApiServer::upsert(const std::string& resource, nlohmann::json object) {
  Impl& s = *impl_;
  std::lock_guard lock(s.mu);
  const std::string key = keyOf(resource, object);
  auto& store = s.objects[resource];
  const auto before_it = store.find(key);
  const bool exists = before_it != store.end();
  const json before = exists ? before_it->second : json();
  ++s.rv;
  object["kind"] = kKinds.at(resource);
  object["apiVersion"] = "v1";
  object["metadata"]["resourceVersion"] = std::to_string(s.rv);
  store[key] = object;
  s.recordLocked(resource, exists ? "MODIFIED" : "ADDED", object, before);
  return s.rv;
}

uint64_t FakeKubeApiServer::remove(const std::string& resource, const std::string& key) {
  Impl& s = *impl_;
  std::lock_guard lock(s.mu);
  auto& store = s.objects[resource];
  auto it = store.find(key);
  if (it == store.end()) return 0;
  ++s.rv;
  json object = std::move(it->second);
  store.erase(it);
  object["metadata"]["resourceVersion"] = std::to_string(s.rv);
  s.recordLocked(resource, "DELETED", object, object);
  return s.rv;
}

void FakeKubeApiServer::compact() {
  std::lock_guard lock(impl_->mu);
  impl_->compacted_rv = impl_->rv;
  impl_->history.clear();
}

void FakeKubeApiServer::dropWatches() {
  std::lock_guard lock(impl_->mu);
  for (auto& w : impl_->watches) w->dropped = true;
  impl_->notifyLocked();
}

void FakeKubeApiServer::sendBookmarks() {
  std::lock_guard lock(impl_->mu);
  for (auto& w : impl_->watches) w->bookmark_due = true;
  impl_->notifyLocked();
}

void FakeKubeApiServer::setToken(const std::string& token) {
  std::lock_guard lock(impl_->mu);
  impl_->token = token;
}

void FakeKubeApiServer::forbid(const std::string& verb, const std::string& resource) {
  std::lock_guard lock(impl_->mu);
  impl_->forbidden.insert({verb, resource});
}

void FakeKubeApiServer::allowAll() {
  std::lock_guard lock(impl_->mu);
  impl_->forbidden.clear();
}

void FakeKubeApiServer::afterNextContinuedPage(std::function<void()> hook) {
  std::lock_guard lock(impl_->mu);
  impl_->after_continued_page = std::move(hook);
}

uint64_t FakeKubeApiServer::resourceVersion() const {
  std::lock_guard lock(impl_->mu);
  return impl_->rv;
}

size_t FakeKubeApiServer::activeWatches() const {
  std::lock_guard lock(impl_->mu);
  return impl_->watches.size();
}

FakeKubeApiServer::Stats FakeKubeApiServer::stats() const {
  std::lock_guard lock(impl_->mu);
  return impl_->stats;
}


// ---- Leases (coordination.k8s.io/v1, namespaced) ----
// GET, POST (create) and PUT (update) of /apis/coordination.k8s.io/v1/namespaces/NS/leases[/NAME],
// as the apiserver answers them (k8s.io/apimachinery/pkg/api/errors): NotFound
// `leases.coordination.k8s.io "NAME" not found`, AlreadyExists on a second create, and on an
// update whose metadata.resourceVersion is not the stored one the optimistic-concurrency
// Conflict `Operation cannot be fulfilled on leases.coordination.k8s.io "NAME": the object has
// been modified; please apply your changes to the latest version and try again`. An update
// without a resourceVersion is unconditional (the Lease strategy's AllowUnconditionalUpdate).
// Stored in objects["leases"] under "NS/NAME"; resourceVersion from the global counter; no
// watch or list of leases. forbid("get"|"create"|"update", "leases") denies as RBAC does.

namespace {

json leaseStatus(int code, const std::string& reason, const std::string& message, const std::string& name) {
  json st = status(code, reason, message);
  st["details"] = json{{"group", "coordination.k8s.io"}, {"kind", "leases"}};
  if (!name.empty()) st["details"]["name"] = name;
  return st;
}

}  // namespace

std::pair<http::status, json> leaseRequest(FakeKubeApiServer::Impl& s, const std::string& method,
                                           const std::string& path, const std::string& body,
                                           const std::string& user) {
  // namespaces/NS/leases[/NAME]
  const std::string rest = path.substr(std::string(kLeasesPrefix).size());
  std::vector<std::string> parts;
  for (size_t start = 0; start <= rest.size();) {
    size_t slash = rest.find('/', start);
    if (slash == std::string::npos) slash = rest.size();
    parts.push_back(rest.substr(start, slash - start));
    start = slash + 1;
  }
  const bool collection = parts.size() == 3 && parts[0] == "namespaces" && parts[2] == "leases";
  const bool item = parts.size() == 4 && parts[0] == "namespaces" && parts[2] == "leases" && !parts[3].empty();
  if (!collection && !item) {
    return {http::status::not_found, status(404, "NotFound", "the server could not find the requested resource")};
  }
  const std::string ns = parts[1];
  std::string name = item ? parts[3] : "";
  const std::string verb = method == "GET" ? "get" : method == "POST" ? "create" : method == "PUT" ? "update" : "";
  if (verb.empty() || (verb == "create") != collection) {
    return {http::status::method_not_allowed,
            status(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")};
  }
  json object;
  if (verb != "get") {
    object = json::parse(body, nullptr, false);
    if (!object.is_object()) {
      return {http::status::bad_request, status(400, "BadRequest", "the body of the request was not JSON")};
    }
    if (verb == "create") name = object.value("metadata", json::object()).value("name", "");
  }
  if (verb == "update") {
    std::function<void()> hook;
    {
      std::lock_guard lock(s.mu);
      hook = std::move(s.before_lease_update);
      s.before_lease_update = nullptr;
    }
    if (hook) hook();
  }
  std::lock_guard lock(s.mu);
  if (s.forbidden.contains({verb, "leases"})) {
    ++s.stats.forbidden;
    // RBAC's message for a namespaced resource (authorization.ForbiddenStatusError).
    const std::string what = name.empty() || verb == "create" ? "leases.coordination.k8s.io"
                                                              : "leases.coordination.k8s.io \"" + name + "\"";
    return {http::status::forbidden,
            leaseStatus(403, "Forbidden",
                        what + " is forbidden: User \"" + user + "\" cannot " + verb +
                            " resource \"leases\" in API group \"coordination.k8s.io\" in the namespace \"" + ns +
                            "\"",
                        verb == "create" ? "" : name)};
  }
  auto& store = s.objects["leases"];
  const std::string key = ns + "/" + name;
  const std::string quoted = "leases.coordination.k8s.io \"" + name + "\"";
  if (verb == "get") {
    auto it = store.find(key);
    if (it == store.end()) return {http::status::not_found, leaseStatus(404, "NotFound", quoted + " not found", name)};
    return {http::status::ok, it->second};
  }
  if (name.empty()) {
    return {http::status::unprocessable_entity,
            status(422, "Invalid", "Lease.coordination.k8s.io \"\" is invalid: metadata.name: Required value: name or "
                                   "generateName is required")};
  }
  if (verb == "create") {
    if (store.contains(key)) {
      return {http::status::conflict, leaseStatus(409, "AlreadyExists", quoted + " already exists", name)};
    }
    ++s.rv;
    object["apiVersion"] = "coordination.k8s.io/v1";
    object["kind"] = "Lease";
    object["metadata"]["namespace"] = ns;
    object["metadata"]["uid"] = "lease-" + std::to_string(s.rv);
    object["metadata"]["resourceVersion"] = std::to_string(s.rv);
    store[key] = object;
    return {http::status::created, object};
  }
  // update
  auto it = store.find(key);
  if (it == store.end()) return {http::status::not_found, leaseStatus(404, "NotFound", quoted + " not found", name)};
  const std::string want = object.value("metadata", json::object()).value("resourceVersion", "");
  if (!want.empty() && want != it->second["metadata"].value("resourceVersion", "")) {
    return {http::status::conflict,
            leaseStatus(409, "Conflict",
                        "Operation cannot be fulfilled on " + quoted +
                            ": the object has been modified; please apply your changes to the latest version and try "
                            "again",
                        name)};
  }
  ++s.rv;
  object["apiVersion"] = "coordination.k8s.io/v1";
  object["kind"] = "Lease";
  object["metadata"]["name"] = name;
  object["metadata"]["namespace"] = ns;
  object["metadata"]["uid"] = it->second["metadata"].value("uid", "");
  object["metadata"]["resourceVersion"] = std::to_string(s.rv);
  it->second = object;
  return {http::status::ok, object};
}

nlohmann::json FakeKubeApiServer::lease(const std::string& ns, const std::string& name) const {
  std::lock_guard lock(impl_->mu);
  auto& store = impl_->objects["leases"];
  auto it = store.find(ns + "/" + name);
  return it == store.end() ? nlohmann::json() : it->second;
}

void FakeKubeApiServer::beforeNextLeaseUpdate(std::function<void()> hook) {
  std::lock_guard lock(impl_->mu);
  impl_->before_lease_update = std::move(hook);
}

uint64_t FakeKubeApiServer::putLease(nlohmann::json lease) {
  std::lock_guard lock(impl_->mu);
  const json& meta = lease["metadata"];
  const std::string key = meta.value("namespace", "") + "/" + meta.value("name", "");
  ++impl_->rv;
  lease["apiVersion"] = "coordination.k8s.io/v1";
  lease["kind"] = "Lease";
  lease["metadata"]["resourceVersion"] = std::to_string(impl_->rv);
  impl_->objects["leases"][key] = lease;
  return impl_->rv;
}

}  // namespace meshprobe::test
