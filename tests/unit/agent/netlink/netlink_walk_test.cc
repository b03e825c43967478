// The shared netlink message walker (agent/kernel/netlink_walk.h) on hand-built byte
// buffers: the malformed and control-message cases the kernel rarely produces.
#include "agent/kernel/netlink_walk.h"

#include <gtest/gtest.h>
#include <libmnl/libmnl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <string>
#include <vector>

using namespace meshprobe;
using namespace meshprobe::agent;

namespace {

constexpr uint16_t kData = RTM_NEWLINK;

// Messages appended one after another, as a dump's datagrams concatenate.
class Stream {
 public:
  // A data message: an ifinfomsg then the attributes `fill` adds.
  template <typename Fill>
  Stream& dataWith(uint16_t flags, Fill fill, uint32_t seq = 1, uint32_t pid = 7) {
    nlmsghdr* h = begin(kData, flags, seq, pid);
    mnl_nlmsg_put_extra_header(h, sizeof(ifinfomsg));
    fill(h);
    return end(h);
  }
  Stream& data(uint16_t flags = NLM_F_MULTI, uint32_t seq = 1, uint32_t pid = 7) {
    return dataWith(flags, [](nlmsghdr*) {}, seq, pid);
  }
  Stream& done(int status = 0, uint16_t flags = NLM_F_MULTI) {
    nlmsghdr* h = begin(NLMSG_DONE, flags, 1, 7);
    std::memcpy(mnl_nlmsg_put_extra_header(h, sizeof(int)), &status, sizeof(int));
    return end(h);
  }
  Stream& control(uint16_t type) { return end(begin(type, 0, 1, 7)); }
  // NLMSG_ERROR as the kernel sends it with NETLINK_EXT_ACK: the request header only
  // (NLM_F_CAPPED), then NLMSGERR_ATTR_MSG when `ext` is not empty.
  Stream& error(int code, const std::string& ext = "", uint32_t seq = 1, uint32_t pid = 7) {
    const uint16_t flags = NLM_F_CAPPED | (ext.empty() ? 0 : NLM_F_ACK_TLVS);
    nlmsghdr* h = begin(NLMSG_ERROR, flags, seq, pid);
    auto* e = static_cast<nlmsgerr*>(mnl_nlmsg_put_extra_header(h, sizeof(nlmsgerr)));
    e->error = code;
    e->msg.nlmsg_len = sizeof(nlmsghdr);
    e->msg.nlmsg_type = RTM_GETLINK;
    e->msg.nlmsg_seq = seq;
    if (!ext.empty()) mnl_attr_put_strz(h, NLMSGERR_ATTR_MSG, ext.c_str());
    return end(h);
  }
  std::vector<uint8_t>& bytes() { return bytes_; }

 private:
  nlmsghdr* begin(uint16_t type, uint16_t flags, uint32_t seq, uint32_t pid) {
    std::memset(buf_, 0, sizeof(buf_));
    nlmsghdr* h = mnl_nlmsg_put_header(buf_);
    h->nlmsg_type = type;
    h->nlmsg_flags = flags;
    h->nlmsg_seq = seq;
    h->nlmsg_pid = pid;
    return h;
  }
  Stream& end(nlmsghdr* h) {
    bytes_.insert(bytes_.end(), buf_, buf_ + NLMSG_ALIGN(h->nlmsg_len));
    return *this;
  }
  alignas(nlmsghdr) uint8_t buf_[512];
  std::vector<uint8_t> bytes_;
};

NetlinkWalkOptions linkWalk() {
  NetlinkWalkOptions o;
  o.what = "link dump";
  o.data_type = kData;
  return o;
}

Result<NetlinkWalkEnd> walk(std::span<const uint8_t> bytes, const NetlinkWalkOptions& o = linkWalk()) {
  return walkNetlinkMessages(bytes, o, [](const nlmsghdr*) { return okStatus(); });
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

TEST(NetlinkWalk, VisitsDataMessagesAndStopsAtDone) {
  Stream s;
  s.data().control(NLMSG_NOOP).error(0).data().done().data();  // an ACK is skipped; after DONE nothing is read
  int visited = 0;
  auto r = walkNetlinkMessages(s.bytes(), linkWalk(), [&](const nlmsghdr* h) {
    EXPECT_EQ(h->nlmsg_type, kData);
    ++visited;
    return okStatus();
  });
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->done);
  EXPECT_EQ(r->messages, 2u);
  EXPECT_EQ(visited, 2);
}

TEST(NetlinkWalk, EndWithoutDoneIsNotAnErrorButSaysSo) {
  Stream s;
  s.data().data();
  auto r = walk(s.bytes());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_FALSE(r->done);
  EXPECT_EQ(r->messages, 2u);
  auto empty = walk({});
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->messages, 0u);
}

TEST(NetlinkWalk, TruncatedMessageIsAnErrorNamingWhere) {
  Stream s;
  s.data().data().done();
  const size_t second = NLMSG_ALIGN(NLMSG_HDRLEN + sizeof(ifinfomsg));
  // Cut inside the second message: its nlmsg_len runs past the buffer.
  auto cut = walk(std::span<const uint8_t>(s.bytes()).first(second + 20));
  ASSERT_FALSE(cut.ok());
  EXPECT_TRUE(contains(cut.error().message, "link dump: message 1 at byte " + std::to_string(second)))
      << cut.error().message;
  EXPECT_TRUE(contains(cut.error().message, "nlmsg_len")) << cut.error().message;
  // Cut inside the second message's header.
  auto header = walk(std::span<const uint8_t>(s.bytes()).first(second + 6));
  ASSERT_FALSE(header.ok());
  EXPECT_TRUE(contains(header.error().message, "truncated netlink header (6 bytes left)")) << header.error().message;
  // nlmsg_len shorter than a header.
  auto garbled = s.bytes();
  const uint32_t tiny = 8;
  std::memcpy(garbled.data() + second, &tiny, sizeof(tiny));
  EXPECT_FALSE(walk(garbled).ok());
}

// Found by the netlink fuzz target: libmnl's mnl_nlmsg_ok compares (int)nlmsg_len, so a
// length above INT_MAX passed and the walk jumped far past the buffer.
TEST(NetlinkWalk, LengthAboveIntMaxIsAnErrorNotAJump) {
  Stream s;
  s.data().data().done();
  const size_t second = NLMSG_ALIGN(NLMSG_HDRLEN + sizeof(ifinfomsg));
  for (uint32_t huge : {0x80000000u, 0xda000044u, 0xffffffffu}) {
    auto garbled = s.bytes();
    std::memcpy(garbled.data() + second, &huge, sizeof(huge));
    auto r = walk(garbled);
    ASSERT_FALSE(r.ok()) << huge;
    EXPECT_TRUE(contains(r.error().message, "message 1 at byte " + std::to_string(second))) << r.error().message;
    EXPECT_TRUE(contains(r.error().message, "nlmsg_len " + std::to_string(huge))) << r.error().message;
  }
}

// Found by the netlink fuzz target: -INT_MIN overflowed turning the status into an errno.
TEST(NetlinkWalk, NlmsgErrorWithStatusIntMinIsEproto) {
  Stream s;
  s.error(INT_MIN);
  auto r = walk(s.bytes());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().sys_errno, EPROTO);
}

TEST(NetlinkWalk, MisalignedBufferWalksTheSame) {
  Stream s;
  s.data().data().done();
  std::vector<uint8_t> shifted(s.bytes().size() + 1);
  std::memcpy(shifted.data() + 1, s.bytes().data(), s.bytes().size());
  auto r = walk(std::span<const uint8_t>(shifted).subspan(1));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->done);
  EXPECT_EQ(r->messages, 2u);
}

TEST(NetlinkWalk, NlmsgErrorCarriesErrnoAndTheKernelsExtAckText) {
  Stream s;
  s.data().error(-EINVAL, "Invalid values in header for link dump request");
  auto r = walk(s.bytes());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().sys_errno, EINVAL);
  EXPECT_TRUE(contains(r.error().message, "link dump")) << r.error().message;
  EXPECT_TRUE(contains(r.error().message, "(kernel: Invalid values in header for link dump request)"))
      << r.error().message;

  Stream plain;
  plain.error(-EPERM);
  auto p = walk(plain.bytes());
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().sys_errno, EPERM);
  EXPECT_FALSE(contains(p.error().message, "kernel:")) << p.error().message;
}

TEST(NetlinkWalk, TruncatedNlmsgErrorIsAnError) {
  Stream s;
  s.control(NLMSG_ERROR);  // no nlmsgerr at all
  auto r = walk(s.bytes());
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.error().message, "truncated NLMSG_ERROR")) << r.error().message;
}

TEST(NetlinkWalk, NegativeDoneStatusIsAnError) {
  Stream s;
  s.data().done(-ENOMEM);
  auto r = walk(s.bytes());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().sys_errno, ENOMEM);
  EXPECT_TRUE(contains(r.error().message, "ended with an error")) << r.error().message;
}

TEST(NetlinkWalk, DumpInterruptedFlagIsAnErrorOnAnyMessage) {
  for (bool on_done : {false, true}) {
    Stream s;
    s.data();
    if (on_done) {
      s.done(0, NLM_F_MULTI | NLM_F_DUMP_INTR);
    } else {
      s.data(NLM_F_MULTI | NLM_F_DUMP_INTR).done();
    }
    auto r = walk(s.bytes());
    ASSERT_FALSE(r.ok()) << "on_done=" << on_done;
    EXPECT_EQ(r.error().sys_errno, EINTR);
    EXPECT_TRUE(contains(r.error().message, "NLM_F_DUMP_INTR")) << r.error().message;
  }
}

TEST(NetlinkWalk, OverrunAndUnexpectedTypesAreErrors) {
  Stream overrun;
  overrun.data().control(NLMSG_OVERRUN);
  auto o = walk(overrun.bytes());
  ASSERT_FALSE(o.ok());
  EXPECT_TRUE(contains(o.error().message, "NLMSG_OVERRUN")) << o.error().message;

  Stream s;
  s.data().done();
  NetlinkWalkOptions routes = linkWalk();
  routes.data_type = RTM_NEWROUTE;
  auto r = walk(s.bytes(), routes);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.error().message, "unexpected message type " + std::to_string(kData))) << r.error().message;
}

// A notification stream mixes message types (links, addresses, neighbours, routes): with
// no data_type every data message reaches the visitor, control messages are still handled.
TEST(NetlinkWalk, NoDataTypeVisitsEveryTypeButStillHandlesControlMessages) {
  Stream s;
  s.data().control(NLMSG_NOOP).control(RTM_NEWROUTE).data();
  NetlinkWalkOptions any = linkWalk();
  any.data_type = 0;
  std::vector<uint16_t> types;
  auto r = walkNetlinkMessages(s.bytes(), any, [&](const nlmsghdr* h) {
    types.push_back(h->nlmsg_type);
    return okStatus();
  });
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(types, (std::vector<uint16_t>{kData, RTM_NEWROUTE, kData}));

  Stream failed;
  failed.data().error(-EPERM, "denied");
  auto e = walk(failed.bytes(), any);
  ASSERT_FALSE(e.ok());
  EXPECT_TRUE(contains(e.error().message, "denied")) << e.error().message;
}

TEST(NetlinkWalk, SequenceAndPortFilterSkipOtherMessagesBeforeLookingAtThem) {
  Stream s;
  s.data(NLM_F_MULTI | NLM_F_DUMP_INTR, /*seq=*/0).error(-EPERM, "", 1, /*pid=*/8).data().done();
  NetlinkWalkOptions o = linkWalk();
  o.seq = 1;
  o.portid = 7;
  o.visit_done = true;
  std::vector<uint16_t> types;
  auto r = walkNetlinkMessages(s.bytes(), o, [&](const nlmsghdr* h) {
    types.push_back(h->nlmsg_type);
    return okStatus();
  });
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->done);
  EXPECT_EQ(r->messages, 1u);
  EXPECT_EQ(types, (std::vector<uint16_t>{kData, NLMSG_DONE}));
}

TEST(NetlinkWalk, VisitorErrorStopsTheWalkWithPlaceAndErrno) {
  Stream s;
  s.data().data().done();
  int visited = 0;
  auto r = walkNetlinkMessages(s.bytes(), linkWalk(), [&](const nlmsghdr*) -> Status {
    if (++visited == 2) return Error{"no IFLA_IFNAME", ENODATA};
    return okStatus();
  });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(visited, 2);
  EXPECT_EQ(r.error().sys_errno, ENODATA);
  EXPECT_TRUE(contains(r.error().message, "link dump: message 1 at byte ")) << r.error().message;
  EXPECT_TRUE(contains(r.error().message, "no IFLA_IFNAME")) << r.error().message;
}

TEST(NetlinkAttrs, TableByTypeLaterDuplicatesWinOthersIgnored) {
  Stream s;
  s.dataWith(NLM_F_MULTI, [](nlmsghdr* h) {
    mnl_attr_put_u32(h, IFLA_MTU, 1500);
    mnl_attr_put_strz(h, IFLA_IFNAME, "eth0");
    mnl_attr_put_u32(h, IFLA_MTU, 1450);
    mnl_attr_put_u32(h, IFLA_MAX + 5, 1);  // beyond the table: ignored
  });
  const auto* h = reinterpret_cast<const nlmsghdr*>(s.bytes().data());
  NetlinkAttrs<IFLA_MAX> t;
  auto hdr = parseNetlinkMessage<ifinfomsg>(h, t);
  ASSERT_TRUE(hdr.ok()) << hdr.error().message;
  NetlinkAttrReader r;
  EXPECT_EQ(r.integer<uint32_t>(t[IFLA_MTU], "IFLA_MTU"), 1450u);
  EXPECT_EQ(r.string(t[IFLA_IFNAME], "IFLA_IFNAME"), "eth0");
  EXPECT_EQ(t[IFLA_MAX + 5], nullptr);
  EXPECT_EQ(r.integer<uint32_t>(t[IFLA_LINK], "IFLA_LINK", 9), 9u);  // absent: the default
  EXPECT_TRUE(r.ok());
}

TEST(NetlinkAttrs, BadAttributeLengthIsAnError) {
  auto withLen = [](uint16_t len) {
    Stream s;
    s.dataWith(NLM_F_MULTI, [](nlmsghdr* h) {
      mnl_attr_put_u32(h, IFLA_MTU, 1500);
      mnl_attr_put_u32(h, IFLA_LINK, 2);
    });
    // The second attribute's nla_len.
    const size_t second = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(ifinfomsg)) + NLA_ALIGN(NLA_HDRLEN + 4);
    std::memcpy(s.bytes().data() + second, &len, sizeof(len));
    NetlinkAttrs<IFLA_MAX> t;
    return parseNetlinkMessage<ifinfomsg>(reinterpret_cast<const nlmsghdr*>(s.bytes().data()), t);
  };
  auto past = withLen(64);  // runs past the message
  ASSERT_FALSE(past.ok());
  EXPECT_TRUE(contains(past.error().message, "attribute type " + std::to_string(IFLA_LINK) + " has bad length 64"))
      << past.error().message;
  auto shorter = withLen(2);  // shorter than its own header
  ASSERT_FALSE(shorter.ok());
  EXPECT_TRUE(contains(shorter.error().message, "bad length 2")) << shorter.error().message;
  EXPECT_TRUE(withLen(8).ok());
}

TEST(NetlinkAttrs, TruncatedAttributeHeaderAndShortFamilyHeaderAreErrors) {
  alignas(nlattr) uint8_t attrs[12] = {};
  const uint16_t len = 8, type = 3;
  std::memcpy(attrs, &len, 2);
  std::memcpy(attrs + 2, &type, 2);  // one 8-byte attribute, then 4 bytes: a cut header needs 4
  NetlinkAttrs<8> t;
  EXPECT_TRUE(parseNetlinkAttrs(attrs, 8, t).ok());
  EXPECT_NE(t[3], nullptr);
  auto cut = parseNetlinkAttrs(attrs, 10, t);
  ASSERT_FALSE(cut.ok());
  EXPECT_TRUE(contains(cut.error().message, "truncated attribute header (2 bytes left)")) << cut.error().message;

  Stream s;
  s.control(kData);  // no ifinfomsg
  NetlinkAttrs<IFLA_MAX> lt;
  auto hdr = parseNetlinkMessage<ifinfomsg>(reinterpret_cast<const nlmsghdr*>(s.bytes().data()), lt);
  ASSERT_FALSE(hdr.ok());
  EXPECT_TRUE(contains(hdr.error().message, "family header")) << hdr.error().message;
}

TEST(NetlinkAttrs, ReaderRejectsShortIntegersAndUnterminatedStrings) {
  alignas(nlattr) uint8_t buf[16] = {};
  auto* a = reinterpret_cast<nlattr*>(buf);
  a->nla_len = NLA_HDRLEN + 2;
  a->nla_type = IFLA_MTU;
  buf[4] = 'a';
  buf[5] = 'b';
  NetlinkAttrReader r;
  EXPECT_EQ(r.integer<uint32_t>(a, "IFLA_MTU", 7), 7u);
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.error(), "IFLA_MTU shorter than 4 bytes")) << r.error();
  NetlinkAttrReader s;
  EXPECT_EQ(s.string(a, "IFLA_IFNAME"), "");
  EXPECT_TRUE(contains(s.error(), "IFLA_IFNAME is not NUL-terminated")) << s.error();
}

}  // namespace
