#include "common/http_server.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <optional>
#include <map>
#include <thread>

#include "common/thread_name.h"

namespace meshprobe {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

HttpResponse HttpResponse::text(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

HttpResponse HttpResponse::json(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.content_type = "application/json";
  r.body = std::move(body);
  return r;
}

HttpResponse HttpResponse::notFound(const std::string& path) { return text(404, "no such page: " + path + "\n"); }

Result<ListenAddress> parseListenAddress(const std::string& listen) {
  const auto bad = [&](const std::string& why) {
    return Error{"bad listen address '" + listen + "': " + why + " (want ADDR:PORT, e.g. 0.0.0.0:9472)"};
  };
  std::string host, port;
  if (!listen.empty() && listen.front() == '[') {
    auto close = listen.find(']');
    if (close == std::string::npos || close + 1 >= listen.size() || listen[close + 1] != ':')
      return bad("unterminated [IPv6] address");
    host = listen.substr(1, close - 1);
    port = listen.substr(close + 2);
  } else {
    auto colon = listen.rfind(':');
    if (colon == std::string::npos) return bad("no port");
    host = listen.substr(0, colon);
    port = listen.substr(colon + 1);
    if (host.find(':') != std::string::npos) return bad("put an IPv6 address in brackets");
  }
  if (host.empty()) host = "0.0.0.0";
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value > 65535)
    return bad("port '" + port + "' is not a number in 0..65535");
  boost::system::error_code aec;
  asio::ip::make_address(host, aec);
  if (aec) return bad("'" + host + "' is not an IP address");
  return ListenAddress{host, static_cast<uint16_t>(value)};
}

std::string percentDecode(const std::string& s, bool plus_is_space) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2])));
      i += 2;
    } else if (plus_is_space && s[i] == '+') {
      out.push_back(' ');
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

namespace {

HttpRequest toRequest(const http::request<http::string_body>& req) {
  HttpRequest r;
  r.method = std::string(req.method_string());
  r.target = std::string(req.target());
  const auto q = r.target.find('?');
  r.path = percentDecode(r.target.substr(0, q), false);
  if (q != std::string::npos) {
    const std::string query = r.target.substr(q + 1);
    size_t start = 0;
    while (start <= query.size()) {
      size_t amp = query.find('&', start);
      if (amp == std::string::npos) amp = query.size();
      const std::string part = query.substr(start, amp - start);
      if (!part.empty()) {
        const auto eq = part.find('=');
        const std::string key = percentDecode(part.substr(0, eq), true);
        r.query[key] = eq == std::string::npos ? "" : percentDecode(part.substr(eq + 1), true);
      }
      start = amp + 1;
    }
  }
  return r;
}

}  // namespace

struct HttpServer::Impl {
  HttpHandler handler;
  HttpServerOptions options;
  std::atomic<uint64_t> served{0};
  std::atomic<size_t> open_connections{0};
  uint16_t port = 0;
  std::string listen;

  std::mutex mu;
  std::condition_variable cv;
  bool thread_done = false;
  bool started = false;
  bool stopped = false;
  std::thread thread;

  // Destroyed first (declared last): pending handlers may still reference the members above.
  asio::io_context ioc{1};
  tcp::acceptor acceptor{ioc};
  // io thread only: every open connection, and since when it has waited for a request
  // (kBusy while a request is handled or its response written).
  static constexpr auto kBusy = std::chrono::steady_clock::time_point::max();
  std::map<std::shared_ptr<beast::tcp_stream>, std::chrono::steady_clock::time_point> streams;

  void accept();
  bool evictLongestWaiting();
  void closeAll();
};

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(HttpServer::Impl* impl, std::shared_ptr<beast::tcp_stream> stream)
      : impl_(impl), stream_(std::move(stream)) {}

  void run() { readRequest(); }

 private:
  void readRequest() {
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(impl_->options.max_header_bytes));
    parser_->body_limit(impl_->options.max_body_bytes);
    stream_->expires_after(impl_->options.read_timeout);
    setWaiting(std::chrono::steady_clock::now());
    http::async_read(*stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->onRead(ec); });
  }

  void onRead(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == asio::error::operation_aborted || ec == beast::error::timeout ||
        ec == asio::error::connection_reset || ec == asio::error::eof) {
      return close();
    }
    if (ec) {
      const bool too_big =
          ec == http::error::body_limit || ec == http::error::header_limit || ec == http::error::buffer_overflow;
      return sendError(too_big ? 413 : 400, too_big ? "request too large\n" : "bad request: " + ec.message() + "\n");
    }
    setWaiting(HttpServer::Impl::kBusy);
    const auto& req = parser_->get();
    auto res = std::make_shared<http::response<http::string_body>>();
    res->version(req.version());
    res->keep_alive(req.keep_alive());
    res->set(http::field::server, "meshprobe");
    const bool head = req.method() == http::verb::head;
    if (req.method() != http::verb::get && !head) {
      res->result(http::status::method_not_allowed);
      res->set(http::field::allow, "GET, HEAD");
      res->set(http::field::content_type, "text/plain; charset=utf-8");
      res->body() = "method " + std::string(req.method_string()) + " not allowed; use GET or HEAD\n";
      res->prepare_payload();
      return write(res);
    }
    HttpResponse out;
    try {
      out = impl_->handler(toRequest(req));
    } catch (const std::exception& e) {
      spdlog::error("HTTP handler for {} threw: {}", std::string(req.target()), e.what());
      out = HttpResponse::text(500, "internal error\n");
    } catch (...) {
      out = HttpResponse::text(500, "internal error\n");
    }
    res->result(static_cast<unsigned>(out.status));
    res->set(http::field::content_type, out.content_type);
    res->set(http::field::cache_control, "no-store");
    const size_t length = out.body.size();
    if (!head) res->body() = std::move(out.body);
    res->content_length(length);
    ++impl_->served;
    write(res);
  }

  void sendError(int status, std::string body) {
    auto res = std::make_shared<http::response<http::string_body>>();
    res->result(static_cast<unsigned>(status));
    res->keep_alive(false);
    res->set(http::field::content_type, "text/plain; charset=utf-8");
    res->body() = std::move(body);
    res->prepare_payload();
    write(res);
  }

  void write(std::shared_ptr<http::response<http::string_body>> res) {
    stream_->expires_after(impl_->options.write_timeout);
    // A HEAD response carries the GET's Content-Length and an empty body.
    http::async_write(*stream_, *res, [self = shared_from_this(), res](beast::error_code ec, size_t) {
      if (ec || !res->keep_alive()) return self->close();
      self->readRequest();
    });
  }

  void setWaiting(std::chrono::steady_clock::time_point since) {
    if (auto it = impl_->streams.find(stream_); it != impl_->streams.end()) it->second = since;
  }

  void close() {
    beast::error_code ignored;
    stream_->socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_->close();
    impl_->streams.erase(stream_);
  }

  HttpServer::Impl* impl_;
  std::shared_ptr<beast::tcp_stream> stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
};

// Counts an open connection for as long as the session's stream lives.
struct ConnectionSlot {
  explicit ConnectionSlot(std::atomic<size_t>& n) : n_(n) { ++n_; }
  ~ConnectionSlot() { --n_; }
  std::atomic<size_t>& n_;
};

}  // namespace

void HttpServer::Impl::accept() {
  acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
    if (!ec) {
      if (open_connections >= options.max_connections && !evictLongestWaiting()) {
        beast::error_code ignored;
        socket.close(ignored);
      } else {
        auto slot = std::make_shared<ConnectionSlot>(open_connections);
        auto* raw = new beast::tcp_stream(std::move(socket));
        auto stream = std::shared_ptr<beast::tcp_stream>(raw, [slot](beast::tcp_stream* s) { delete s; });
        streams.emplace(stream, std::chrono::steady_clock::now());
        std::make_shared<Session>(this, stream)->run();
      }
    }
    accept();
  });
}

// At the cap, a new connection takes the place of the one that has waited longest for its
// request (an idle keep-alive or a client that never finishes its headers), so such
// connections cannot keep /metrics and the health probes from being answered for their whole
// read timeout. A connection whose request is being handled is never closed for another.
bool HttpServer::Impl::evictLongestWaiting() {
  auto oldest = streams.end();
  for (auto it = streams.begin(); it != streams.end(); ++it)
    if (it->second != kBusy && (oldest == streams.end() || it->second < oldest->second)) oldest = it;
  if (oldest == streams.end()) return false;
  beast::error_code ignored;
  oldest->first->socket().shutdown(tcp::socket::shutdown_both, ignored);
  oldest->first->socket().close(ignored);  // its pending read ends with operation_aborted
  streams.erase(oldest);
  return true;
}

void HttpServer::Impl::closeAll() {
  beast::error_code ignored;
  acceptor.close(ignored);
  for (const auto& [s, since] : streams) s->socket().close(ignored);
  streams.clear();
}

HttpServer::HttpServer(HttpHandler handler, HttpServerOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->handler = std::move(handler);
  impl_->options = options;
}

HttpServer::~HttpServer() { stop(); }

Result<uint16_t> HttpServer::start(const std::string& listen) {
  auto& m = *impl_;
  if (m.started) return Error{"HTTP server already started"};
  auto addr = parseListenAddress(listen);
  if (!addr.ok()) return addr.error();
  const auto fail = [&](const boost::system::error_code& ec) {
    beast::error_code ignored;
    m.acceptor.close(ignored);
    return Error{"cannot listen for HTTP on " + listen + ": " + ec.message(), ec.value()};
  };
  boost::system::error_code ec;
  tcp::endpoint endpoint(asio::ip::make_address(addr->address), addr->port);
  m.acceptor.open(endpoint.protocol(), ec);
  if (ec) return fail(ec);
  m.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (ec) return fail(ec);
  m.acceptor.bind(endpoint, ec);
  if (ec) return fail(ec);
  m.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fail(ec);
  m.port = m.acceptor.local_endpoint(ec).port();
  if (ec) return fail(ec);
  m.listen = listen;
  m.started = true;
  m.accept();
  m.thread = std::thread([&m] {
    nameThisThread("mp-http");
    for (;;) {
      try {
        m.ioc.run();
        break;
      } catch (const std::exception& e) {
        spdlog::error("HTTP server on {}: {}", m.listen, e.what());
      }
    }
    std::lock_guard lock(m.mu);
    m.thread_done = true;
    m.cv.notify_all();
  });
  return m.port;
}

void HttpServer::stop() {
  auto& m = *impl_;
  {
    std::lock_guard lock(m.mu);
    if (!m.started || m.stopped) return;
    m.stopped = true;
  }
  asio::post(m.ioc, [&m] { m.closeAll(); });
  {
    // Closing cancels every pending operation, so run() returns once their handlers
    // ran; a stuck connection must not hold shutdown past ~half a second.
    std::unique_lock lock(m.mu);
    m.cv.wait_for(lock, std::chrono::milliseconds(500), [&m] { return m.thread_done; });
  }
  m.ioc.stop();
  if (m.thread.joinable()) m.thread.join();
}

uint16_t HttpServer::port() const { return impl_->port; }
uint64_t HttpServer::requestsServed() const { return impl_->served; }

}  // namespace meshprobe
