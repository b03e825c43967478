#include "agent/kernel/netlink_walk.h"

#include <libmnl/libmnl.h>
#include <linux/netlink.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <vector>

namespace meshprobe::agent {
namespace {

int onExtAckAttr(const nlattr* attr, void* data) {
  if (mnl_attr_get_type(attr) == NLMSGERR_ATTR_MSG && mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) >= 0) {
    *static_cast<std::string*>(data) = mnl_attr_get_str(attr);
  }
  return MNL_CB_OK;
}

// What mnl_attr_parse's callback fills: the table, and where the last attribute it was
// handed ends (mnl_attr_parse stops silently at the first invalid one).
struct AttrContext {
  std::span<const nlattr*> table;
  const uint8_t* end = nullptr;
};

int onAttr(const nlattr* attr, void* data) {
  auto* ctx = static_cast<AttrContext*>(data);
  const uint16_t type = attr->nla_type & NLA_TYPE_MASK;  // mnl_attr_get_type, without a call per attribute
  if (type < ctx->table.size()) ctx->table[type] = attr;
  ctx->end = reinterpret_cast<const uint8_t*>(attr) + MNL_ALIGN(attr->nla_len);
  return MNL_CB_OK;
}

// Error unless the attributes mnl_attr_parse accepted cover [start, start + len).
Status checkAttrsCovered(const AttrContext& ctx, const uint8_t* start, size_t len) {
  const size_t used = ctx.end == nullptr ? 0 : std::min<size_t>(static_cast<size_t>(ctx.end - start), len);
  if (used >= len) return okStatus();
  const size_t left = len - used;
  if (left < sizeof(nlattr)) return Error{"truncated attribute header (" + std::to_string(left) + " bytes left)"};
  const auto* a = reinterpret_cast<const nlattr*>(start + used);
  return Error{"attribute type " + std::to_string(mnl_attr_get_type(a)) + " has bad length " +
               std::to_string(a->nla_len) + " (" + std::to_string(left) + " bytes left)"};
}

}  // namespace

int netlinkStatus(const nlmsghdr* msg) {
  const size_t need = msg->nlmsg_type == NLMSG_ERROR ? sizeof(nlmsgerr) : sizeof(int);
  if (mnl_nlmsg_get_payload_len(msg) < need) return msg->nlmsg_type == NLMSG_ERROR ? -EBADMSG : 0;
  int code = 0;
  std::memcpy(&code, mnl_nlmsg_get_payload(msg), sizeof(code));
  return code;
}

std::string extAckMessage(const nlmsghdr* msg) {
  if ((msg->nlmsg_flags & NLM_F_ACK_TLVS) == 0) return "";
  size_t offset = 0;
  if (msg->nlmsg_type == NLMSG_ERROR) {
    if (mnl_nlmsg_get_payload_len(msg) < sizeof(nlmsgerr)) return "";
    const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(msg));
    offset = sizeof(nlmsgerr);
    // Without NLM_F_CAPPED the kernel echoes the whole request after the header.
    if ((msg->nlmsg_flags & NLM_F_CAPPED) == 0) offset += mnl_nlmsg_get_payload_len(&err->msg);
  } else if (msg->nlmsg_type == NLMSG_DONE) {
    offset = sizeof(int);
  } else {
    return "";
  }
  if (MNL_ALIGN(offset) > mnl_nlmsg_get_payload_len(msg)) return "";
  std::string text;
  mnl_attr_parse(msg, static_cast<unsigned>(offset), onExtAckAttr, &text);
  return text;
}

Error netlinkError(const nlmsghdr* msg, std::string_view what) {
  const int code = netlinkStatus(msg);
  // INT_MIN has no positive counterpart (a garbled status; found by the netlink fuzz target).
  const int err = code == INT_MIN || code == 0 ? EPROTO : (code < 0 ? -code : code);
  Error e = Error::fromErrno(std::string(what), err);
  if (std::string ext = extAckMessage(msg); !ext.empty()) e.message += " (kernel: " + ext + ")";
  return e;
}

bool netlinkMessageFits(const nlmsghdr* msg, int left) {
  // mnl_nlmsg_ok compares (int)nlmsg_len with what is left, so a length above INT_MAX (a
  // garbled header) reads as negative, passes, and mnl_nlmsg_next then jumps gigabytes
  // past the buffer (found by the netlink fuzz target). Compare unsigned first.
  return left >= static_cast<int>(sizeof(nlmsghdr)) && msg->nlmsg_len <= static_cast<uint32_t>(left) &&
         mnl_nlmsg_ok(msg, left);
}

Result<NetlinkWalkEnd> walkNetlinkMessages(std::span<const uint8_t> bytes, const NetlinkWalkOptions& options,
                                           const NetlinkVisitor& visit) {
  const std::string what(options.what);
  if (bytes.size() > static_cast<size_t>(INT_MAX)) {
    return Error{what + ": " + std::to_string(bytes.size()) + " bytes is more than one walk takes"};
  }
  std::vector<uint8_t> aligned;  // mnl_nlmsg_* read headers in place: they must be aligned
  const uint8_t* base = bytes.data();
  if (reinterpret_cast<uintptr_t>(base) % alignof(nlmsghdr) != 0) {
    aligned.assign(bytes.begin(), bytes.end());
    base = aligned.data();
  }
  NetlinkWalkEnd end;
  size_t index = 0;  // of the message in the buffer, for errors
  auto bad = [&](size_t offset, const std::string& why, int err = 0) {
    return Error{what + ": message " + std::to_string(index) + " at byte " + std::to_string(offset) + ": " + why,
                 err};
  };
  int left = static_cast<int>(bytes.size());
  const auto* msg = reinterpret_cast<const nlmsghdr*>(base);
  for (; netlinkMessageFits(msg, left); msg = mnl_nlmsg_next(msg, &left), ++index) {
    if ((options.seq && msg->nlmsg_seq != *options.seq) || (options.portid && msg->nlmsg_pid != *options.portid)) {
      continue;  // a stale reply to an earlier request, or another socket's
    }
    const size_t offset = static_cast<size_t>(reinterpret_cast<const uint8_t*>(msg) - base);
    if ((msg->nlmsg_flags & NLM_F_DUMP_INTR) != 0) {
      return bad(offset, "dump interrupted (NLM_F_DUMP_INTR): the table changed during the dump", EINTR);
    }
    switch (msg->nlmsg_type) {
      case NLMSG_NOOP:
        continue;
      case NLMSG_OVERRUN:
        return bad(offset, "reply overrun (NLMSG_OVERRUN)", EOVERFLOW);
      case NLMSG_ERROR:
        if (mnl_nlmsg_get_payload_len(msg) < sizeof(nlmsgerr)) return bad(offset, "truncated NLMSG_ERROR");
        if (netlinkStatus(msg) == 0) continue;  // an ACK: not part of a dump, harmless
        return netlinkError(msg, what);
      case NLMSG_DONE:
        if (netlinkStatus(msg) < 0) return netlinkError(msg, what + " ended with an error");
        if (options.visit_done) {
          if (Status st = visit(msg); !st) return bad(offset, st.error().message, st.error().sys_errno);
        }
        end.done = true;
        return end;
      default:
        break;
    }
    if (options.data_type != 0 && msg->nlmsg_type != options.data_type) {
      return bad(offset, "unexpected message type " + std::to_string(msg->nlmsg_type));
    }
    if (Status st = visit(msg); !st) return bad(offset, st.error().message, st.error().sys_errno);
    ++end.messages;
  }
  if (left > 0) {  // mnl_nlmsg_ok refused what is left: a cut or garbled message
    const size_t offset = bytes.size() - static_cast<size_t>(left);
    if (static_cast<size_t>(left) < sizeof(nlmsghdr)) {
      return bad(offset, "truncated netlink header (" + std::to_string(left) + " bytes left)");
    }
    return bad(offset, "nlmsg_len " + std::to_string(msg->nlmsg_len) + " outside the " + std::to_string(left) +
                           " bytes left (truncated or garbled)");
  }
  return end;
}

Status parseNetlinkAttrs(const void* payload, size_t len, std::span<const nlattr*> table) {
  AttrContext ctx{table};
  mnl_attr_parse_payload(payload, len, onAttr, &ctx);
  return checkAttrsCovered(ctx, static_cast<const uint8_t*>(payload), len);
}

Status parseNestedAttrs(const nlattr* nest, std::span<const nlattr*> table) {
  AttrContext ctx{table};
  mnl_attr_parse_nested(nest, onAttr, &ctx);
  return checkAttrsCovered(ctx, static_cast<const uint8_t*>(mnl_attr_get_payload(nest)),
                           mnl_attr_get_payload_len(nest));
}

// The message's payload length and its attributes' place are computed here rather than
// with mnl_nlmsg_get_payload_len / mnl_attr_parse(msg, ...): the same arithmetic, without
// four library calls per message on the snapshot's hot path (~15,000 messages).
Result<const void*> netlinkFamilyHeader(const nlmsghdr* msg, size_t header_size) {
  const size_t payload_len = msg->nlmsg_len - MNL_NLMSG_HDRLEN;
  if (payload_len < MNL_ALIGN(header_size)) {
    return Error{"payload of " + std::to_string(payload_len) + " bytes too short for its " +
                 std::to_string(header_size) + "-byte family header"};
  }
  return reinterpret_cast<const uint8_t*>(msg) + MNL_NLMSG_HDRLEN;
}

const void* parseFamilyMessage(const nlmsghdr* msg, size_t header_size, std::span<const nlattr*> table,
                               std::optional<Error>& error) {
  const size_t payload_len = msg->nlmsg_len - MNL_NLMSG_HDRLEN;
  if (payload_len < MNL_ALIGN(header_size)) {
    error = Error{"payload of " + std::to_string(payload_len) + " bytes too short for its " +
                  std::to_string(header_size) + "-byte family header"};
    return nullptr;
  }
  const auto* payload = reinterpret_cast<const uint8_t*>(msg) + MNL_NLMSG_HDRLEN;
  AttrContext ctx{table};
  const size_t attrs_len = payload_len - MNL_ALIGN(header_size);
  mnl_attr_parse_payload(payload + MNL_ALIGN(header_size), attrs_len, onAttr, &ctx);
  if (ctx.end != payload + payload_len) {  // not the fast path: say what is wrong, if anything
    if (Status st = checkAttrsCovered(ctx, payload + MNL_ALIGN(header_size), attrs_len); !st) {
      error = st.error();
      return nullptr;
    }
  }
  return payload;
}

Status parseMessageAttrs(const nlmsghdr* msg, size_t header_size, std::span<const nlattr*> table) {
  const size_t payload_len = msg->nlmsg_len - MNL_NLMSG_HDRLEN;
  if (payload_len < MNL_ALIGN(header_size)) return Error{"no room for attributes after the family header"};
  const auto* attrs = reinterpret_cast<const uint8_t*>(msg) + MNL_NLMSG_HDRLEN + MNL_ALIGN(header_size);
  return parseNetlinkAttrs(attrs, payload_len - MNL_ALIGN(header_size), table);
}

std::string NetlinkAttrReader::string(const nlattr* a, const char* name) {
  if (a == nullptr) return "";
  const auto bytes = payload(a);
  const auto* s = reinterpret_cast<const char*>(bytes.data());
  const size_t n = strnlen(s, bytes.size());
  if (n == bytes.size()) {
    fail(std::string(name) + " is not NUL-terminated");
    return "";
  }
  return std::string(s, n);
}

}  // namespace meshprobe::agent
