#include "common/http_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>

namespace meshprobe {
namespace {

// A plain blocking socket client with a deadline on every read.
class Client {
 public:
  explicit Client(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~Client() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool connected() const { return connected_; }
  bool send(const std::string& s) {
    return ::send(fd_, s.data(), s.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(s.size());
  }

  // Reads until `complete(data)` or EOF or the deadline. Returns what arrived.
  template <typename Pred>
  std::string readUntil(Pred complete, std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!complete(buf_)) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
      char tmp[4096];
      ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
      if (n <= 0) {
        eof_ = true;
        break;
      }
      buf_.append(tmp, static_cast<size_t>(n));
    }
    std::string out = std::move(buf_);
    buf_.clear();
    return out;
  }

  // One whole response (headers + Content-Length bytes; none for HEAD).
  std::string response(bool head = false) {
    std::string got = readUntil([head](const std::string& d) {
      auto end = d.find("\r\n\r\n");
      if (end == std::string::npos) return false;
      if (head) return true;
      auto cl = d.find("Content-Length: ");
      if (cl == std::string::npos || cl > end) return true;
      size_t len = std::stoul(d.substr(cl + 16));
      return d.size() >= end + 4 + len;
    });
    return got;
  }
  bool eof() const { return eof_; }

 private:
  int fd_ = -1;
  bool connected_ = false;
  bool eof_ = false;
  std::string buf_;
};

std::string body(const std::string& response) {
  auto end = response.find("\r\n\r\n");
  return end == std::string::npos ? "" : response.substr(end + 4);
}

class HttpServerTest : public ::testing::Test {
 protected:
  void start(HttpServerOptions options = {}) {
    server_ = std::make_unique<HttpServer>(
        [this](const HttpRequest& req) {
          ++calls_;
          last_ = req;
          if (req.path == "/hello")
            return HttpResponse::text(
                200, "hello " + (req.query.count("name") ? req.query.at("name") : std::string("?")) + "\n");
          if (req.path == "/json") return HttpResponse::json(200, "{\"a\":1}");
          if (req.path == "/throw") throw std::runtime_error("boom");
          return HttpResponse::notFound(req.path);
        },
        options);
    auto port = server_->start("127.0.0.1:0");
    ASSERT_TRUE(port.ok()) << port.error().message;
    ASSERT_NE(*port, 0);
    port_ = *port;
  }

  std::unique_ptr<HttpServer> server_;
  uint16_t port_ = 0;
  std::atomic<int> calls_{0};
  HttpRequest last_;
};

TEST(ListenAddressTest, Parses) {
  auto a = parseListenAddress("198.51.100.2:9471");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->address, "198.51.100.2");
  EXPECT_EQ(a->port, 9471);
  auto b = parseListenAddress(":0");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->address, "0.0.0.0");
  auto c = parseListenAddress("[::1]:80");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->address, "::1");
  for (const char* bad : {"9472", "1.2.3.4:", "1.2.3.4:99999", "host.example:80", "::1:80", "1.2.3.4:8x"}) {
    auto r = parseListenAddress(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_NE(r.error().message.find(bad), std::string::npos) << r.error().message;
    }
  }
}

TEST(PercentDecodeTest, Decodes) {
  EXPECT_EQ(percentDecode("a%20b+c", true), "a b c");
  EXPECT_EQ(percentDecode("a%20b+c", false), "a b+c");
  EXPECT_EQ(percentDecode("%zz%4", false), "%zz%4");
  EXPECT_EQ(percentDecode("%2F%2f", false), "//");
}

TEST_F(HttpServerTest, GetWithQueryAndKeepAlive) {
  start();
  Client c(port_);
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.send("GET /hello?name=a%20b&x=1&flag HTTP/1.1\r\nHost: t\r\n\r\n"));
  std::string r = c.response();
  EXPECT_EQ(r.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << r;
  EXPECT_NE(r.find("Content-Type: text/plain; charset=utf-8"), std::string::npos) << r;
  EXPECT_EQ(body(r), "hello a b\n");
  EXPECT_EQ(last_.path, "/hello");
  EXPECT_EQ(last_.query.at("x"), "1");
  EXPECT_EQ(last_.query.at("flag"), "");
  // Same connection: keep-alive.
  ASSERT_TRUE(c.send("GET /json HTTP/1.1\r\nHost: t\r\n\r\n"));
  r = c.response();
  EXPECT_NE(r.find("Content-Type: application/json"), std::string::npos) << r;
  EXPECT_EQ(body(r), "{\"a\":1}");
  ASSERT_TRUE(c.send("GET /nope HTTP/1.1\r\nHost: t\r\n\r\n"));
  r = c.response();
  EXPECT_EQ(r.rfind("HTTP/1.1 404", 0), 0u) << r;
  EXPECT_EQ(server_->requestsServed(), 3u);
}

TEST_F(HttpServerTest, HeadHasLengthButNoBody) {
  start();
  Client c(port_);
  ASSERT_TRUE(c.send("HEAD /json HTTP/1.1\r\nHost: t\r\n\r\n"));
  std::string r = c.response(/*head=*/true);
  EXPECT_EQ(r.rfind("HTTP/1.1 200", 0), 0u) << r;
  EXPECT_NE(r.find("Content-Length: 7\r\n"), std::string::npos) << r;
  EXPECT_EQ(body(r), "");
  // The connection is still usable: the next response is not preceded by a stray body.
  ASSERT_TRUE(c.send("GET /json HTTP/1.1\r\nHost: t\r\n\r\n"));
  r = c.response();
  EXPECT_EQ(r.rfind("HTTP/1.1 200", 0), 0u) << r;
  EXPECT_EQ(body(r), "{\"a\":1}");
}

TEST_F(HttpServerTest, OtherMethodsAre405AndNeverReachTheHandler) {
  start();
  Client c(port_);
  ASSERT_TRUE(c.send("POST /hello HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"));
  std::string r = c.response();
  EXPECT_EQ(r.rfind("HTTP/1.1 405", 0), 0u) << r;
  EXPECT_NE(r.find("Allow: GET, HEAD"), std::string::npos) << r;
  EXPECT_EQ(calls_, 0);
}

TEST_F(HttpServerTest, OversizedRequestIsRefused) {
  HttpServerOptions o;
  o.max_header_bytes = 1024;
  start(o);
  Client c(port_);
  ASSERT_TRUE(c.send("GET /hello HTTP/1.1\r\nHost: t\r\nX-Big: " + std::string(4000, 'a') + "\r\n\r\n"));
  std::string r = c.response();
  EXPECT_EQ(r.rfind("HTTP/1.1 413", 0), 0u) << r;
  EXPECT_EQ(calls_, 0);
  Client d(port_);
  ASSERT_TRUE(d.send("GET /hello HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n0123456789"));
  r = d.response();
  EXPECT_EQ(r.rfind("HTTP/1.1 413", 0), 0u) << r;
  EXPECT_EQ(calls_, 0);
}

TEST_F(HttpServerTest, GarbageIs400) {
  start();
  Client c(port_);
  ASSERT_TRUE(c.send("NOT HTTP AT ALL\r\n\r\n"));
  std::string r = c.response();
  EXPECT_EQ(r.rfind("HTTP/1.1 400", 0), 0u) << r;
}

TEST_F(HttpServerTest, HandlerExceptionIs500) {
  start();
  Client c(port_);
  ASSERT_TRUE(c.send("GET /throw HTTP/1.1\r\nHost: t\r\n\r\n"));
  std::string r = c.response();
  EXPECT_EQ(r.rfind("HTTP/1.1 500", 0), 0u) << r;
}

TEST_F(HttpServerTest, SlowClientIsDisconnectedAfterReadTimeout) {
  HttpServerOptions o;
  o.read_timeout = std::chrono::milliseconds(200);
  start(o);
  Client c(port_);
  ASSERT_TRUE(c.send("GET /hel"));  // never finishes the request
  const auto t0 = std::chrono::steady_clock::now();
  c.readUntil([](const std::string&) { return false; }, std::chrono::milliseconds(3000));
  EXPECT_TRUE(c.eof());
  // A real I/O deadline (the server's read timer on a real socket): EOF must come from the
  // 200 ms read timeout, not from the client's own 3 s wait. Generous bound for a loaded box.
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(2500));
}

TEST_F(HttpServerTest, StopClosesIdleConnectionsQuickly) {
  start();
  Client c(port_);
  ASSERT_TRUE(c.send("GET /json HTTP/1.1\r\nHost: t\r\n\r\n"));
  ASSERT_FALSE(c.response().empty());
  const auto t0 = std::chrono::steady_clock::now();
  server_->stop();
  // A real deadline: stop() cancels the idle keep-alive connection instead of waiting for
  // its read timeout (seconds); it allows itself 500 ms for stuck handlers, so 1 s is generous.
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1));
  c.readUntil([](const std::string&) { return false; }, std::chrono::milliseconds(2000));
  EXPECT_TRUE(c.eof());
  Client d(port_);
  EXPECT_FALSE(d.connected());
  server_->stop();  // idempotent
}

// At the cap, connections that never send a request cannot lock out a real one: the new
// connection replaces the one that has waited longest (the others keep their place).
TEST_F(HttpServerTest, AtTheCapANewConnectionReplacesTheLongestWaiting) {
  HttpServerOptions o;
  o.max_connections = 2;  // read_timeout stays 10 s: far beyond every wait below
  start(o);
  Client a(port_);
  Client b(port_);
  ASSERT_TRUE(a.connected() && b.connected());
  // The io thread accepts in connect order, so `a` has waited longest once `c` arrives.
  Client c(port_);
  ASSERT_TRUE(c.send("GET /hello?name=c HTTP/1.1\r\nHost: t\r\n\r\n"));
  const std::string res = c.response();
  EXPECT_NE(res.find("200 OK"), std::string::npos) << res;
  EXPECT_EQ(body(res), "hello c\n");
  // A real deadline well under the 10 s read timeout: `a` is closed because of `c`.
  a.readUntil([](const std::string&) { return false; }, std::chrono::milliseconds(3000));
  EXPECT_TRUE(a.eof());
  // `b` still has its place: its request is answered.
  ASSERT_TRUE(b.send("GET /hello?name=b HTTP/1.1\r\nHost: t\r\n\r\n"));
  EXPECT_EQ(body(b.response()), "hello b\n");
}

TEST_F(HttpServerTest, AddressInUseNamesTheAddress) {
  start();
  HttpServer second([](const HttpRequest&) { return HttpResponse::text(200, ""); });
  const std::string listen = "127.0.0.1:" + std::to_string(port_);
  auto r = second.start(listen);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "cannot listen for HTTP on " + listen + ": Address already in use");
}

TEST(HttpServerErrors, BadAddressIsAnError) {
  HttpServer s([](const HttpRequest&) { return HttpResponse::text(200, ""); });
  auto r = s.start("not-an-address");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("not-an-address"), std::string::npos);
  auto r2 = s.start("203.0.113.77:0");  // TEST-NET-3: not an address of this host
  ASSERT_FALSE(r2.ok());
  EXPECT_NE(r2.error().message.find("cannot listen for HTTP on 203.0.113.77:0: "), std::string::npos)
      << r2.error().message;
}

}  // namespace
}  // namespace meshprobe
