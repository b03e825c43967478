#pragma once
// The one walker over netlink message streams, shared by the rtnetlink parsers
// (netlink_parse.h) and the sock_diag parsers (sock_diag_parse.h). Pure functions over
// bytes, built on libmnl's own iteration (mnl_nlmsg_ok / mnl_nlmsg_next, mnl_attr_parse):
//
//  - every message and attribute length is validated against the buffer: a truncated or
//    garbled stream is an Error naming the message index and byte offset, never a crash
//    or a partial read;
//  - control messages are handled the same way for every bus: NLMSG_NOOP and ACKs
//    (NLMSG_ERROR with error 0) are skipped, NLMSG_ERROR is an Error carrying the errno
//    and the kernel's extended-ack text (NLMSGERR_ATTR_MSG), NLMSG_DONE ends the walk (a
//    negative status is an Error), NLMSG_OVERRUN is an Error, and a message marked
//    NLM_F_DUMP_INTR is an Error (the table changed mid-dump: the transport retries
//    those, netlink_socket.h, so a parser never accepts a half-consistent dump);
//  - attributes are split into a table indexed by type (later duplicates win, as in the
//    kernel) with mnl_attr_parse, and an attribute whose length is shorter than its header
//    or runs past its parent is an Error.

#include <linux/netlink.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "common/result.h"

namespace meshprobe::agent {

// "what: <strerror> (kernel: <extended-ack message>)" for an NLMSG_ERROR or NLMSG_DONE
// message (ext-ack attributes read when NLM_F_ACK_TLVS is set). Pure, over the message.
Error netlinkError(const nlmsghdr* msg, std::string_view what);
// The NLMSGERR_ATTR_MSG text of an NLMSG_ERROR / NLMSG_DONE message; empty when none.
std::string extAckMessage(const nlmsghdr* msg);
// The status word of NLMSG_ERROR (nlmsgerr.error) or NLMSG_DONE (int): 0 when absent from
// a DONE, -EBADMSG for an NLMSG_ERROR too short to hold one.
int netlinkStatus(const nlmsghdr* msg);
// Whether a whole message starts at `msg` with `left` bytes left: mnl_nlmsg_ok plus an
// unsigned length check (libmnl lets a length above INT_MAX through).
bool netlinkMessageFits(const nlmsghdr* msg, int left);

struct NetlinkWalkOptions {
  std::string_view what;       // names the stream in errors: "link dump", "sock_diag dump"
  uint16_t data_type = 0;      // the one data message type expected (any other is an Error); 0: any type
  std::optional<uint32_t> seq;  // set: messages of another sequence number are skipped unseen
  std::optional<uint32_t> portid;  // set: messages from another port id are skipped unseen
  bool visit_done = false;     // also hand the NLMSG_DONE message to the visitor
};

struct NetlinkWalkEnd {
  bool done = false;    // NLMSG_DONE seen (the walk stops there)
  size_t messages = 0;  // data messages visited
};

// Calls visit(msg) for every data message of `bytes` (a concatenation of netlink
// messages, any alignment: a misaligned buffer is copied once). An Error from the visitor
// stops the walk and is returned with the message index and byte offset prefixed (errno
// kept). Reaching the end of the buffer without NLMSG_DONE is not an error here
// (notifications and a datagram's worth of a dump have none): callers that need the
// whole dump check `done`.
using NetlinkVisitor = std::function<Status(const nlmsghdr* msg)>;
Result<NetlinkWalkEnd> walkNetlinkMessages(std::span<const uint8_t> bytes, const NetlinkWalkOptions& options,
                                           const NetlinkVisitor& visit);

// Attributes of one level, indexed by type; later duplicates win, as in the kernel.
template <size_t Max>
struct NetlinkAttrs {
  std::array<const nlattr*, Max + 1> tb{};
  const nlattr* operator[](size_t type) const { return type <= Max ? tb[type] : nullptr; }
};

// Splits `len` bytes of attributes at `payload` (4-byte aligned, as inside a message)
// into `table` (types beyond its size are ignored) with mnl_attr_parse_payload. Error
// when an attribute header is cut short or an attribute's length is shorter than its
// header or runs past the end.
Status parseNetlinkAttrs(const void* payload, size_t len, std::span<const nlattr*> table);
template <size_t Max>
Status parseNetlinkAttrs(const void* payload, size_t len, NetlinkAttrs<Max>& table) {
  return parseNetlinkAttrs(payload, len, std::span<const nlattr*>(table.tb));
}
// The attributes nested in `nest`.
Status parseNestedAttrs(const nlattr* nest, std::span<const nlattr*> table);
template <size_t Max>
Status parseNestedAttrs(const nlattr* nest, NetlinkAttrs<Max>& table) {
  return parseNestedAttrs(nest, std::span<const nlattr*>(table.tb));
}

// The family header that follows nlmsghdr (ifinfomsg, rtmsg, inet_diag_msg, ...). Error
// when the payload is shorter than the header.
Result<const void*> netlinkFamilyHeader(const nlmsghdr* msg, size_t header_size);
template <typename Hdr>
Result<const Hdr*> netlinkHeader(const nlmsghdr* msg) {
  auto hdr = netlinkFamilyHeader(msg, sizeof(Hdr));
  if (!hdr) return hdr.error();
  return static_cast<const Hdr*>(*hdr);
}
// The attributes after a `header_size`-byte family header, with mnl_attr_parse.
Status parseMessageAttrs(const nlmsghdr* msg, size_t header_size, std::span<const nlattr*> table);
template <typename Hdr, size_t Max>
Status parseMessageAttrs(const nlmsghdr* msg, NetlinkAttrs<Max>& table) {
  return parseMessageAttrs(msg, sizeof(Hdr), std::span<const nlattr*>(table.tb));
}
// Both: the family header (nullptr on error), and its attributes into `table`.
const void* parseFamilyMessage(const nlmsghdr* msg, size_t header_size, std::span<const nlattr*> table,
                               std::optional<Error>& error);
template <typename Hdr, size_t Max>
Result<const Hdr*> parseNetlinkMessage(const nlmsghdr* msg, NetlinkAttrs<Max>& table) {
  std::optional<Error> error;
  const void* hdr = parseFamilyMessage(msg, sizeof(Hdr), std::span<const nlattr*>(table.tb), error);
  if (hdr == nullptr) return std::move(*error);
  return static_cast<const Hdr*>(hdr);
}

// Typed reads of optional attributes that record the first error instead of failing at
// once; a message with any error is rejected as a whole. An absent attribute (nullptr)
// reads as the default.
class NetlinkAttrReader {
 public:
  bool ok() const { return err_.empty(); }
  const std::string& error() const { return err_; }
  void fail(std::string e) {
    if (err_.empty()) err_ = std::move(e);
  }

  // The first sizeof(T) bytes of the payload: an integer or a trivially copyable struct.
  template <typename T>
  T value(const nlattr* a, const char* name, T def = T{}) {
    if (a == nullptr) return def;
    const auto bytes = payload(a);
    if (bytes.size() < sizeof(T)) {
      fail(std::string(name) + " shorter than " + std::to_string(sizeof(T)) + " bytes");
      return def;
    }
    T v;
    std::memcpy(&v, bytes.data(), sizeof(T));
    return v;
  }
  template <typename T>
  T integer(const nlattr* a, const char* name, T def = 0) {
    return value<T>(a, name, def);
  }
  // A NUL-terminated string (the NUL not included).
  std::string string(const nlattr* a, const char* name);
  // mnl_attr_get_payload / _len, inline: called for every attribute read.
  static std::span<const uint8_t> payload(const nlattr* a) {
    return {reinterpret_cast<const uint8_t*>(a) + NLA_HDRLEN, static_cast<size_t>(a->nla_len - NLA_HDRLEN)};
  }

 private:
  std::string err_;
};

}  // namespace meshprobe::agent
