// The shared netlink transport against the test process's own network namespace
// (rtnetlink and sock_diag dumps need no privileges), and its error formatting over
// hand-built messages.

#include "agent/kernel/netlink_socket.h"

#include <gtest/gtest.h>
#include <libmnl/libmnl.h>
#include <linux/inet_diag.h>
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>

#include "agent/kernel/netlink_dump.h"
#include "agent/kernel/netlink_parse.h"
#include "agent/kernel/sock_diag_io.h"
#include "agent/kernel/sock_diag_parse.h"

using namespace meshprobe;
using namespace meshprobe::agent;
using namespace std::chrono_literals;

namespace {

auto soon() { return std::chrono::steady_clock::now() + 2s; }

// An NLMSG_ERROR as the kernel sends it with NETLINK_EXT_ACK: capped, with NLMSGERR_ATTR_MSG.
std::vector<uint8_t> extAckError(int error, const char* text) {
  alignas(nlmsghdr) char buf[512] = {};
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = NLMSG_ERROR;
  nlh->nlmsg_flags = NLM_F_CAPPED | NLM_F_ACK_TLVS;
  auto* err = static_cast<nlmsgerr*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nlmsgerr)));
  err->error = error;
  err->msg.nlmsg_len = sizeof(nlmsghdr);
  if (text != nullptr) mnl_attr_put_strz(nlh, NLMSGERR_ATTR_MSG, text);
  return {reinterpret_cast<uint8_t*>(buf), reinterpret_cast<uint8_t*>(buf) + nlh->nlmsg_len};
}

}  // namespace

TEST(NetlinkError, CarriesTheKernelsExtendedAckText) {
  auto bytes = extAckError(-EINVAL, "Invalid values in header for neighbor dump request");
  const auto* nlh = reinterpret_cast<const nlmsghdr*>(bytes.data());
  EXPECT_EQ(extAckMessage(nlh), "Invalid values in header for neighbor dump request");
  Error e = netlinkError(nlh, "neighbours dump");
  EXPECT_EQ(e.sys_errno, EINVAL);
  EXPECT_NE(e.message.find("neighbours dump"), std::string::npos) << e.message;
  EXPECT_NE(e.message.find("(kernel: Invalid values in header"), std::string::npos) << e.message;
}

TEST(NetlinkError, WithoutAckTlvsThereIsNoKernelText) {
  auto bytes = extAckError(-EPERM, nullptr);
  auto* nlh = reinterpret_cast<nlmsghdr*>(bytes.data());
  nlh->nlmsg_flags = NLM_F_CAPPED;
  EXPECT_EQ(extAckMessage(nlh), "");
  Error e = netlinkError(nlh, "x");
  EXPECT_EQ(e.sys_errno, EPERM);
  EXPECT_EQ(e.message.find("kernel:"), std::string::npos) << e.message;
}

TEST(NetlinkSocket, RouteSocketHasStrictChecking) {
  auto sock = NetlinkSocket::open(NETLINK_ROUTE);
  ASSERT_TRUE(sock.ok()) << sock.error().message;
  EXPECT_TRUE(sock->strictChecking());  // every kernel since 4.20
  EXPECT_GT(sock->portid(), 0u);
}

TEST(NetlinkSocket, KernelRefusalCarriesItsExtendedAckMessage) {
  // Under strict checking a neighbour dump request with a state in its header is refused,
  // and the kernel says why.
  auto sock = NetlinkSocket::open(NETLINK_ROUTE);
  ASSERT_TRUE(sock.ok());
  auto req = buildDumpRequest(DumpKind::kNeighbours, 0);
  auto* nd = reinterpret_cast<ndmsg*>(req.data() + NLMSG_HDRLEN);
  nd->ndm_state = NUD_PERMANENT;
  auto r = sock->dump(req, soon(), "neighbours dump");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().sys_errno, EINVAL);
  EXPECT_NE(r.error().message.find("(kernel: "), std::string::npos) << r.error().message;
  // The socket is not reused after a failed dump.
  auto again = sock->dump(buildDumpRequest(DumpKind::kLinks, 0), soon(), "links dump");
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().sys_errno, EBUSY);
}

TEST(NetlinkSocket, DumpEndsWithDoneAndParses) {
  auto sock = NetlinkSocket::open(NETLINK_ROUTE);
  ASSERT_TRUE(sock.ok());
  auto bytes = sock->dump(buildDumpRequest(DumpKind::kLinks, 0), soon(), "links dump");
  ASSERT_TRUE(bytes.ok()) << bytes.error().message;
  // The last message is NLMSG_DONE; everything before it parses as links.
  const nlmsghdr* last = nullptr;
  const auto* nlh = reinterpret_cast<const nlmsghdr*>(bytes->data());
  int left = static_cast<int>(bytes->size());
  for (; mnl_nlmsg_ok(nlh, left); nlh = mnl_nlmsg_next(nlh, &left)) last = nlh;
  ASSERT_NE(last, nullptr);
  EXPECT_EQ(last->nlmsg_type, NLMSG_DONE);
  EXPECT_EQ(left, 0);
  auto links = parseLinkDump(*bytes);
  ASSERT_TRUE(links.ok()) << links.error().message;
  EXPECT_FALSE(links->empty());
  // The same socket serves the next dump.
  EXPECT_TRUE(sock->dump(buildDumpRequest(DumpKind::kRoutes, 0), soon(), "routes dump").ok());
}

TEST(NetlinkSocket, KernelFiltersNeighboursAndFdbByInterface) {
  auto dumper = RtnetlinkDumper::open();
  ASSERT_TRUE(dumper.ok());
  auto links = parseLinkDump(*dumper->dump(DumpKind::kLinks, soon()));
  ASSERT_TRUE(links.ok());
  for (const LinkInfo& l : *links) {
    auto neigh = dumper->dump(DumpKind::kNeighbours, soon(), l.ifindex);
    ASSERT_TRUE(neigh.ok()) << neigh.error().message;
    auto n = parseNeighDump(*neigh);
    ASSERT_TRUE(n.ok());
    for (const auto& e : *n) EXPECT_EQ(e.ifindex, l.ifindex) << l.name;
    auto fdb = dumper->dump(DumpKind::kFdb, soon(), l.ifindex);
    ASSERT_TRUE(fdb.ok()) << fdb.error().message;
    auto f = parseFdbDump(*fdb);
    ASSERT_TRUE(f.ok());
    for (const auto& e : *f) EXPECT_EQ(e.ifindex, l.ifindex) << l.name;
  }
}

TEST(NetlinkSocket, SockDiagDumpsOverTheSameTransport) {
  auto bytes = sockDiagDump(buildUnixDiagRequest(defaultUnixDiagShow(), 0), 2000ms);
  ASSERT_TRUE(bytes.ok()) << bytes.error().message;
  auto sockets = parseUnixDiagDump(*bytes);  // needs the trailing NLMSG_DONE
  ASSERT_TRUE(sockets.ok()) << sockets.error().message;
  auto udp = sockDiagDump(buildInetDiagRequest(AF_INET, IPPROTO_UDP, ~0u, 0), 2000ms);
  ASSERT_TRUE(udp.ok()) << udp.error().message;
  EXPECT_TRUE(parseInetDiagDump(*udp, IPPROTO_UDP).ok());
}

TEST(NetlinkSocket, ExpiredDeadlineOnSockDiagIsATimeout) {
  auto r = sockDiagDump(buildUnixDiagRequest(defaultUnixDiagShow(), 0), 0ms);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().sys_errno, ETIMEDOUT);
}
