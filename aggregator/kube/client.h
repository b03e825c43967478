#pragma once
// HTTP(S) requests to the Kubernetes API server with Boost.Beast over Boost.Asio SSL: a GET
// that returns the whole body (lists) and a streaming GET that hands over newline-delimited
// JSON lines as they arrive (watches: Transfer-Encoding chunked, one event per line).
//
// The server is verified against the configured CA under its URL's host (or tls-server-name),
// as client-go does; insecure-skip-tls-verify turns that off. Authentication: a bearer token
// (token_file is read again for every request, so a rotated service-account token is used as
// soon as the kubelet writes it) and/or a client certificate.
//
// Each request opens its own connection (a list is a few requests per minute at most; a
// watch holds its connection for minutes). Requests are coroutines on the caller's executor;
// a coroutine destroyed with its io_context closes its socket.

// clang-format off
#include <utility>  // before awaitable.hpp: Boost 1.74 uses std::exchange without including it
// clang-format on
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "aggregator/kube/config.h"
#include "common/result.h"

namespace meshprobe::aggregator::kube {

struct HttpResult {
  int status = 0;
  std::string body;           // the whole body (get), or the body of a non-200 watch response
  bool idle_timeout = false;  // watch only: nothing arrived for idle_timeout; the stream was closed
};

struct ClientOptions {
  std::chrono::milliseconds connect_timeout{10'000};  // TCP connect + TLS handshake
  std::chrono::milliseconds request_timeout{60'000};  // a whole GET (or a watch's response header)
  size_t max_body_bytes = 256u << 20;                 // a list page; a watch line
};

class KubeClient {
 public:
  // Builds the TLS context: CA, client certificate and key. Errors name the file or field.
  static Result<std::shared_ptr<KubeClient>> create(KubeConfig config, ClientOptions options = {});

  // GET `target` ("/api/v1/nodes?limit=500"). An error is a transport failure (resolve,
  // connect, TLS, timeout, malformed HTTP) naming the server; any HTTP status is a result.
  boost::asio::awaitable<Result<HttpResult>> get(std::string target);

  // Streaming GET. With status 200, `on_lines` gets the complete lines of each read (without
  // the newline, empty lines skipped) until the server ends the body, nothing arrives for
  // `idle_timeout` (idle_timeout=true), or on_lines returns false. Otherwise the body is read
  // whole and returned.
  // `on_open`, when set, is called once the 200 response header has arrived.
  using LinesHandler = std::function<bool(const std::vector<std::string>&)>;
  boost::asio::awaitable<Result<HttpResult>> watch(std::string target, std::chrono::milliseconds idle_timeout,
                                                   LinesHandler on_lines, std::function<void()> on_open = {});

  // A write: `method` ("POST", "PUT", "PATCH", "DELETE", or "GET") with `body` sent as
  // `content_type` (e.g. "application/json", "application/merge-patch+json",
  // "application/strategic-merge-patch+json"); the whole response body is returned. Errors
  // as get().
  boost::asio::awaitable<Result<HttpResult>> send(std::string method, std::string target, std::string body,
                                                  std::string content_type = "application/json");

  const KubeConfig& config() const { return config_; }
  // "Bearer ..." for the next request ("" without a token); reads token_file now.
  Result<std::string> authorization() const;

  KubeClient(KubeConfig config, ClientOptions options);  // use create()
  ~KubeClient();

 private:
  struct Target {
    bool tls = true;
    std::string host;  // without brackets
    std::string port;
    std::string host_header;
  };
  // What a request sends besides its target. Coroutines take it by reference to an object in
  // the caller's frame: GCC 12 destroys a class-type coroutine argument built from a
  // temporary twice.
  struct Outgoing {
    std::string method = "GET";
    std::string body;
    std::string content_type;
  };
  boost::asio::awaitable<Result<HttpResult>> request(std::string target, bool streaming,
                                                     std::chrono::milliseconds idle_timeout, LinesHandler on_lines,
                                                     std::function<void()> on_open, const Outgoing& out);
  template <class Stream>
  boost::asio::awaitable<Result<HttpResult>> exchange(Stream& stream, const std::string& target,
                                                      const Outgoing& out, bool streaming,
                                                      std::chrono::milliseconds idle_timeout,
                                                      const LinesHandler& on_lines,
                                                      const std::function<void()>& on_open);

  KubeConfig config_;
  ClientOptions options_;
  Target url_;
  std::unique_ptr<boost::asio::ssl::context> ssl_;
};

}  // namespace meshprobe::aggregator::kube
