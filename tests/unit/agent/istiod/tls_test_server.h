#pragma once
// An in-process stand-in for istiod on 127.0.0.1, port 0 (never any other address).
// The listening socket is bound and listening when the constructor returns, so a probe
// started afterwards cannot race it; the server's io_context runs on its own thread
// and stops in the destructor.

#include <openssl/ssl.h>

#include <array>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/test_pki.h"

namespace meshprobe::agent::testing {

// The shared test PKI (tests/support/test_pki.h), by file name.
inline std::string istiodTestData(const std::string& file) { return meshprobe::test::testPkiFile(file); }

enum class ServerMode {
  kTlsH2,      // TLS with the test istiod cert; selects ALPN h2
  kTlsNoAlpn,  // TLS with the test istiod cert; ignores ALPN (selects nothing)
  kGarbage,    // plain TCP: reads the ClientHello, answers with HTTP text, closes
  kClose,      // plain TCP: accepts and closes at once
  kSilent,     // plain TCP: accepts and never sends a byte
};

class TestIstiodServer {
 public:
  explicit TestIstiodServer(ServerMode mode)
      : mode_(mode),
        ssl_ctx_(boost::asio::ssl::context::tls_server),
        acceptor_(io_, boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0)) {
    if (mode_ == ServerMode::kTlsH2 || mode_ == ServerMode::kTlsNoAlpn) {
      ssl_ctx_.use_certificate_chain_file(istiodTestData("server.pem"));
      ssl_ctx_.use_private_key_file(istiodTestData("server.key"), boost::asio::ssl::context::pem);
      if (mode_ == ServerMode::kTlsH2) SSL_CTX_set_alpn_select_cb(ssl_ctx_.native_handle(), &selectH2, nullptr);
    }
    port_ = acceptor_.local_endpoint().port();
    accept();
    thread_ = std::thread([this] { io_.run(); });
  }

  ~TestIstiodServer() {
    io_.stop();
    thread_.join();
  }

  TestIstiodServer(const TestIstiodServer&) = delete;
  TestIstiodServer& operator=(const TestIstiodServer&) = delete;

  uint16_t port() const { return port_; }
  std::string endpoint() const { return "127.0.0.1:" + std::to_string(port_); }
  int accepted() const {
    std::lock_guard lock(mu_);
    return accepted_;
  }
  // The server finishes its side of a TLS 1.3 handshake after the client does, and
  // accepts on its own thread: wait (bounded) instead of reading a racy counter.
  bool waitForAccepted(int n, std::chrono::milliseconds timeout = std::chrono::seconds(5)) const {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return accepted_ >= n; });
  }
  bool waitForHandshakes(int n, std::chrono::milliseconds timeout = std::chrono::seconds(5)) const {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return handshakes_ >= n; });
  }

 private:
  using tcp = boost::asio::ip::tcp;

  static int selectH2(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                      unsigned int inlen, void*) {
    static const unsigned char kH2[] = {2, 'h', '2'};
    unsigned char* selected = nullptr;
    if (SSL_select_next_proto(&selected, outlen, kH2, sizeof kH2, in, inlen) != OPENSSL_NPN_NEGOTIATED) {
      return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
  }

  void bump(int& counter) {
    std::lock_guard lock(mu_);
    ++counter;
    cv_.notify_all();
  }

  void accept() {
    acceptor_.async_accept([this](const boost::system::error_code& ec, tcp::socket sock) {
      if (ec) return;
      bump(accepted_);
      handle(std::move(sock));
      accept();
    });
  }

  void handle(tcp::socket sock) {
    switch (mode_) {
      case ServerMode::kTlsH2:
      case ServerMode::kTlsNoAlpn: {
        auto stream = std::make_shared<boost::asio::ssl::stream<tcp::socket>>(std::move(sock), ssl_ctx_);
        stream->async_handshake(boost::asio::ssl::stream_base::server,
                                [this, stream](const boost::system::error_code& ec) {
                                  if (!ec) bump(handshakes_);
                                  // Keep the connection until the client closes it.
                                  auto buf = std::make_shared<std::array<char, 512>>();
                                  stream->async_read_some(boost::asio::buffer(*buf),
                                                          [stream, buf](const boost::system::error_code&, size_t) {});
                                });
        break;
      }
      case ServerMode::kGarbage: {
        auto s = std::make_shared<tcp::socket>(std::move(sock));
        auto buf = std::make_shared<std::array<char, 512>>();
        s->async_read_some(boost::asio::buffer(*buf), [s, buf](const boost::system::error_code&, size_t) {
          static const std::string kReply = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
          boost::asio::async_write(*s, boost::asio::buffer(kReply), [s](const boost::system::error_code&, size_t) {
            boost::system::error_code ignored;
            s->close(ignored);
          });
        });
        break;
      }
      case ServerMode::kClose: {
        boost::system::error_code ignored;
        sock.close(ignored);
        break;
      }
      case ServerMode::kSilent:
        held_.push_back(std::move(sock));
        break;
    }
  }

  ServerMode mode_;
  boost::asio::io_context io_;
  boost::asio::ssl::context ssl_ctx_;
  tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  std::vector<tcp::socket> held_;  // touched only on the server thread
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  int accepted_ = 0;    // guarded by mu_
  int handshakes_ = 0;  // guarded by mu_
  std::thread thread_;
};

// A TCP port on 127.0.0.1 that is bound but not listening: connecting to it is refused,
// and no other process can take the port while this object lives.
class ClosedPort {
 public:
  ClosedPort() : sock_(io_) {
    sock_.open(boost::asio::ip::tcp::v4());
    sock_.bind(boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
    port_ = sock_.local_endpoint().port();
  }
  uint16_t port() const { return port_; }
  std::string endpoint() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  boost::asio::io_context io_;
  boost::asio::ip::tcp::socket sock_;
  uint16_t port_ = 0;
};

// A listener on 127.0.0.1 whose accept queue is full (backlog 0, one connection queued
// and never accepted): the kernel drops further SYNs, so a connect times out — the
// loopback stand-in for a firewall that drops packets to 15012.
class FullBacklogListener {
 public:
  FullBacklogListener() : acceptor_(io_), filler_(io_) {
    acceptor_.open(boost::asio::ip::tcp::v4());
    acceptor_.bind(boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
    acceptor_.listen(0);
    port_ = acceptor_.local_endpoint().port();
    filler_.connect(acceptor_.local_endpoint());  // completes at once: the queue had room for one
  }
  uint16_t port() const { return port_; }
  std::string endpoint() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::ip::tcp::socket filler_;
  uint16_t port_ = 0;
};

}  // namespace meshprobe::agent::testing
