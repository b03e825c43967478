#include "aggregator/kube/client.h"

#include <openssl/ssl.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cstdint>
#include <limits>

#include "common/version.h"

namespace meshprobe::aggregator::kube {
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

std::string trimmed(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

bool isIpLiteral(const std::string& host) {
  error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

}  // namespace

KubeClient::KubeClient(KubeConfig config, ClientOptions options) : config_(std::move(config)), options_(options) {}
KubeClient::~KubeClient() = default;

Result<std::shared_ptr<KubeClient>> KubeClient::create(KubeConfig config, ClientOptions options) {
  auto client = std::make_shared<KubeClient>(std::move(config), options);
  const KubeConfig& c = client->config_;
  Target& t = client->url_;
  std::string rest;
  if (c.server.starts_with("https://")) {
    rest = c.server.substr(8);
  } else if (c.server.starts_with("http://")) {
    t.tls = false;
    rest = c.server.substr(7);
  } else {
    return Error{"Kubernetes API server \"" + c.server + "\" is not an https:// URL"};
  }
  if (const auto slash = rest.find('/'); slash != std::string::npos) rest.resize(slash);
  t.host_header = rest;
  if (rest.starts_with("[")) {
    const auto close = rest.find(']');
    if (close == std::string::npos) return Error{"Kubernetes API server \"" + c.server + "\": unclosed ["};
    t.host = rest.substr(1, close - 1);
    t.port = rest.size() > close + 2 && rest[close + 1] == ':' ? rest.substr(close + 2) : "";
  } else if (const auto colon = rest.rfind(':'); colon != std::string::npos) {
    t.host = rest.substr(0, colon);
    t.port = rest.substr(colon + 1);
  } else {
    t.host = rest;
  }
  if (t.port.empty()) t.port = t.tls ? "443" : "80";
  if (t.host.empty()) return Error{"Kubernetes API server \"" + c.server + "\": no host"};

  if (t.tls) {
    auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
    ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                     ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    error_code ec;
    if (c.insecure_skip_tls_verify) {
      ctx->set_verify_mode(ssl::verify_none);
    } else {
      ctx->set_verify_mode(ssl::verify_peer);
      if (!c.ca_pem.empty()) {
        ctx->add_certificate_authority(asio::buffer(c.ca_pem), ec);
        if (ec) return Error{"Kubernetes CA (inline certificate-authority-data): " + ec.message()};
      }
      if (!c.ca_file.empty()) {
        ctx->load_verify_file(c.ca_file, ec);
        if (ec) return Error{"Kubernetes CA " + c.ca_file + ": " + ec.message()};
      }
      if (c.ca_pem.empty() && c.ca_file.empty()) ctx->set_default_verify_paths();
    }
    if (!c.client_cert_pem.empty()) {
      ctx->use_certificate_chain(asio::buffer(c.client_cert_pem), ec);
      if (ec) return Error{"Kubernetes client certificate (client-certificate-data): " + ec.message()};
    } else if (!c.client_cert_file.empty()) {
      ctx->use_certificate_chain_file(c.client_cert_file, ec);
      if (ec) return Error{"Kubernetes client certificate " + c.client_cert_file + ": " + ec.message()};
    }
    if (!c.client_key_pem.empty()) {
      ctx->use_private_key(asio::buffer(c.client_key_pem), ssl::context::pem, ec);
      if (ec) return Error{"Kubernetes client key (client-key-data): " + ec.message()};
    } else if (!c.client_key_file.empty()) {
      ctx->use_private_key_file(c.client_key_file, ssl::context::pem, ec);
      if (ec) return Error{"Kubernetes client key " + c.client_key_file + ": " + ec.message()};
    }
    client->ssl_ = std::move(ctx);
  }
  return client;
}

Result<std::string> KubeClient::authorization() const {
  if (!config_.token_file.empty()) {
    auto t = readFile(config_.token_file);
    if (!t) return Error{"bearer token: " + t.error().message};
    const std::string token = trimmed(*t);
    if (token.empty()) return Error{"bearer token: " + config_.token_file + " is empty"};
    return "Bearer " + token;
  }
  if (!config_.token.empty()) return "Bearer " + config_.token;
  return std::string();
}

awaitable<Result<HttpResult>> KubeClient::get(std::string target) {
  static const Outgoing kGet;
  co_return co_await request(std::move(target), false, {}, {}, {}, kGet);
}

awaitable<Result<HttpResult>> KubeClient::watch(std::string target, std::chrono::milliseconds idle_timeout,
                                                LinesHandler on_lines, std::function<void()> on_open) {
  static const Outgoing kGet;
  co_return co_await request(std::move(target), true, idle_timeout, std::move(on_lines), std::move(on_open), kGet);
}

awaitable<Result<HttpResult>> KubeClient::send(std::string method, std::string target, std::string body,
                                               std::string content_type) {
  const Outgoing out{std::move(method), std::move(body), std::move(content_type)};
  co_return co_await request(std::move(target), false, {}, {}, {}, out);
}

awaitable<Result<HttpResult>> KubeClient::request(std::string target, bool streaming,
                                                  std::chrono::milliseconds idle_timeout, LinesHandler on_lines,
                                                  std::function<void()> on_open, const Outgoing& out) {
  auto ex = co_await asio::this_coro::executor;
  const std::string where = config_.server;
  error_code ec;
  tcp::resolver resolver(ex);
  auto endpoints = co_await resolver.async_resolve(url_.host, url_.port, redirect_error(use_awaitable, ec));
  if (ec) co_return Error{"cannot resolve " + url_.host + " (" + where + "): " + ec.message()};
  beast::tcp_stream tcp_stream(ex);
  tcp_stream.expires_after(options_.connect_timeout);
  co_await tcp_stream.async_connect(endpoints, redirect_error(use_awaitable, ec));
  if (ec) {
    co_return Error{"cannot connect to " + where + ": " +
                    (ec == beast::error::timeout ? std::string("timed out") : ec.message())};
  }
  if (!url_.tls) co_return co_await exchange(tcp_stream, target, out, streaming, idle_timeout, on_lines, on_open);

  beast::ssl_stream<beast::tcp_stream> tls(std::move(tcp_stream), *ssl_);
  const std::string name = config_.tls_server_name.empty() ? url_.host : config_.tls_server_name;
  if (!isIpLiteral(name)) SSL_set_tlsext_host_name(tls.native_handle(), name.c_str());
  if (!config_.insecure_skip_tls_verify) tls.set_verify_callback(ssl::host_name_verification(name));
  beast::get_lowest_layer(tls).expires_after(options_.connect_timeout);
  co_await tls.async_handshake(ssl::stream_base::client, redirect_error(use_awaitable, ec));
  if (ec) {
    co_return Error{"TLS handshake with " + where +
                    " failed: " + (ec == beast::error::timeout ? std::string("timed out") : ec.message())};
  }
  co_return co_await exchange(tls, target, out, streaming, idle_timeout, on_lines, on_open);
}

template <class Stream>
awaitable<Result<HttpResult>> KubeClient::exchange(Stream& stream, const std::string& target, const Outgoing& out,
                                                   bool streaming,
                                                   std::chrono::milliseconds idle_timeout, const LinesHandler& on_lines,
                                                   const std::function<void()>& on_open) {
  const std::string where = out.method + " " + config_.server + target;
  auto auth = authorization();
  if (!auth) co_return auth.error();
  const http::verb verb = http::string_to_verb(out.method);
  if (verb == http::verb::unknown) co_return Error{where + ": unknown HTTP method"};
  http::request<http::string_body> req{verb, target, 11};
  req.set(http::field::host, url_.host_header);
  req.set(http::field::user_agent, std::string("meshprobe-aggregator/") + kVersion);
  req.set(http::field::accept, "application/json");
  if (!auth->empty()) req.set(http::field::authorization, *auth);
  if (!out.content_type.empty()) req.set(http::field::content_type, out.content_type);
  if (verb != http::verb::get || !out.body.empty()) {
    req.body() = out.body;
    req.prepare_payload();
  }

  auto& lowest = beast::get_lowest_layer(stream);
  error_code ec;
  lowest.expires_after(options_.request_timeout);
  co_await http::async_write(stream, req, redirect_error(use_awaitable, ec));
  if (ec) co_return Error{where + ": cannot send the request: " + ec.message()};

  beast::flat_buffer buf;
  http::response_parser<http::buffer_body> parser;
  // No limit on a watch's body (each line is bounded below). Not boost::none: Boost 1.74's
  // body_limit(optional) stores none as a limit of 0.
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  co_await http::async_read_header(stream, buf, parser, redirect_error(use_awaitable, ec));
  if (ec) {
    co_return Error{where +
                    ": no response: " + (ec == beast::error::timeout ? std::string("timed out") : ec.message())};
  }
  HttpResult result;
  result.status = static_cast<int>(parser.get().result_int());
  if (!streaming || result.status != 200) {
    http::response_parser<http::string_body> whole(std::move(parser));
    whole.body_limit(options_.max_body_bytes);
    co_await http::async_read(stream, buf, whole, redirect_error(use_awaitable, ec));
    if (ec)
      co_return Error{where + ": reading the response (HTTP " + std::to_string(result.status) + "): " + ec.message()};
    result.body = std::move(whole.get().body());
    co_return result;
  }

  if (on_open) on_open();
  std::string pending;  // a line not yet complete
  std::vector<char> chunk(64 * 1024);
  std::vector<std::string> lines;
  while (!parser.is_done()) {
    parser.get().body().data = chunk.data();
    parser.get().body().size = chunk.size();
    lowest.expires_after(idle_timeout);
    // read_some: returns as soon as some body arrived (async_read would wait for a full buffer).
    co_await http::async_read_some(stream, buf, parser, redirect_error(use_awaitable, ec));
    if (ec == http::error::need_buffer) ec = {};
    if (ec == beast::error::timeout) {
      result.idle_timeout = true;
      co_return result;
    }
    if (ec == http::error::end_of_stream || ec == asio::error::eof || ec == http::error::partial_message ||
        ec == asio::ssl::error::stream_truncated || ec == asio::error::connection_reset) {
      co_return result;  // the server (or something between) dropped the stream: a dropped watch
    }
    if (ec) co_return Error{where + ": reading the watch: " + ec.message()};
    const size_t got = chunk.size() - parser.get().body().size;
    pending.append(chunk.data(), got);
    lines.clear();
    size_t start = 0;
    for (size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1) {
      if (nl > start) lines.emplace_back(pending, start, nl - start);
    }
    pending.erase(0, start);
    if (pending.size() > options_.max_body_bytes) co_return Error{where + ": a watch event exceeds the size limit"};
    if (!lines.empty() && !on_lines(lines)) co_return result;
  }
  if (!pending.empty()) on_lines({pending});
  co_return result;
}

}  // namespace meshprobe::aggregator::kube
