// The probe responder's ephemeral port (port 0, as tests and benchmarks run it): the kernel
// picks UDP's number and TCP must take the same one, which another socket may already hold
// on TCP. In a namespace of this test whose ephemeral range is two ports, one of them held
// by a TCP listener, the responder must land on the other one every time, whichever the
// kernel offers first; with both held it must fail with an error, not loop.

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <gtest/gtest.h>

#include "agent/probe/responder.h"
#include "tests/e2e/harness.h"

namespace meshprobe::e2e {
namespace {

constexpr uint16_t kLow = 40000;  // the namespace's whole ephemeral range: kLow, kLow + 1
constexpr int kStarts = 16;       // without the retry, each start fails with probability 1/2

// A TCP listener on 0.0.0.0:port, made by the calling thread; closed in the destructor.
class TcpListener {
 public:
  explicit TcpListener(uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || ::listen(fd_, 1) != 0) {
      std::string why = std::strerror(errno);
      if (fd_ >= 0) ::close(fd_);
      throw HarnessError("cannot listen on tcp port " + std::to_string(port) + ": " + why);
    }
  }
  ~TcpListener() { ::close(fd_); }
  TcpListener(const TcpListener&) = delete;
  TcpListener& operator=(const TcpListener&) = delete;

 private:
  int fd_;
};

agent::ResponderOptions ephemeral() {
  agent::ResponderOptions o;
  o.node_name = "port-test";
  o.bind_address = "127.0.0.1";
  o.port = 0;
  return o;
}

class ProbePortE2e : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!havePrivileges(&why)) GTEST_SKIP() << why;
    ns_ = std::make_unique<TestNetns>("pport");
    ns_->sh("ip link set lo up\nsysctl -qw net.ipv4.ip_local_port_range='" + std::to_string(kLow) + " " +
            std::to_string(kLow + 1) + "'\n");
  }
  std::unique_ptr<TestNetns> ns_;
  FakeClock clock_;
};

TEST_F(ProbePortE2e, ATcpHeldEphemeralPortIsPassedOverForOneFreeOnBoth) {
  runInNetnsThread(ns_->path(), [&] {
    TcpListener held(kLow);
    for (int i = 0; i < kStarts; ++i) {
      agent::Responder r(ephemeral(), clock_);
      Status st = r.start();
      ASSERT_TRUE(st.ok()) << "start " << i << ": " << st.error().message;
      EXPECT_EQ(r.udpPort(), kLow + 1) << "start " << i;
      EXPECT_EQ(r.tcpPort(), kLow + 1) << "start " << i;
      r.stop();
    }
  });
}

TEST_F(ProbePortE2e, WithEveryEphemeralPortHeldOnTcpStartFailsNamingTheProtocol) {
  runInNetnsThread(ns_->path(), [&] {
    TcpListener a(kLow);
    TcpListener b(kLow + 1);
    agent::Responder r(ephemeral(), clock_);
    Status st = r.start();
    ASSERT_FALSE(st.ok());
    // Both numbers were tried on TCP, then UDP has none left to offer.
    EXPECT_NE(st.error().message.find("udp 127.0.0.1:0"), std::string::npos) << st.error().message;
    EXPECT_EQ(st.error().sys_errno, EADDRINUSE) << st.error().message;
  });
}

}  // namespace
}  // namespace meshprobe::e2e
