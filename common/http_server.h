#pragma once
// A small HTTP/1.1 server (Boost.Beast) for /metrics, health and page routes of both
// daemons. GET and HEAD only (anything else: 405 with Allow), bounded request size, a read
// timeout per request, keep-alive, a cap on open connections (at the cap, a new connection
// replaces the one that has waited longest for its request). One io thread of its own;
// the handler runs on it and must not block for long. No exception crosses into Asio: a
// handler that throws becomes a 500.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "common/result.h"

namespace meshprobe {

struct HttpRequest {
  std::string method;                        // "GET" or "HEAD" (others never reach the handler)
  std::string target;                        // as sent: "/metrics?x=1"
  std::string path;                          // percent-decoded path without the query: "/metrics"
  std::map<std::string, std::string> query;  // decoded; a repeated key keeps the last value
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;

  static HttpResponse text(int status, std::string body);
  static HttpResponse json(int status, std::string body);
  static HttpResponse notFound(const std::string& path);
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

struct HttpServerOptions {
  size_t max_header_bytes = 8 * 1024;               // request line + headers
  size_t max_body_bytes = 0;                        // GET/HEAD carry no body
  std::chrono::milliseconds read_timeout{10'000};   // a whole request must arrive within this
  std::chrono::milliseconds write_timeout{10'000};  // a response must drain within this
  // Beyond this many open connections a new one replaces the one that has waited longest
  // for its request; with none waiting (every one busy) it is closed at once.
  size_t max_connections = 64;
};

// "ADDR:PORT" (IPv4 literal, "[IPv6]:PORT", or ":PORT" for every address) -> address + port.
// Port 0 asks the kernel for one. The error names the whole string.
struct ListenAddress {
  std::string address;
  uint16_t port = 0;
};
Result<ListenAddress> parseListenAddress(const std::string& listen);

// Decodes %XX (and '+' as space when `plus_is_space`). Invalid escapes are kept as written.
std::string percentDecode(const std::string& s, bool plus_is_space);

class HttpServer {
 public:
  explicit HttpServer(HttpHandler handler, HttpServerOptions options = {});
  ~HttpServer();  // stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts the io thread; returns the bound port. Errors name the address:
  // "cannot listen for HTTP on 1.2.3.4:9472: Address already in use". Once only.
  Result<uint16_t> start(const std::string& listen);
  // Closes the listener and every connection and joins the io thread (well within a
  // second; a handler already running finishes first). Idempotent.
  void stop();

  uint16_t port() const;  // valid after start()
  uint64_t requestsServed() const;

  struct Impl;  // internal (public only so the .cc's connection class can name it)

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace meshprobe
