// rtnetlink dump replies as the agent reads them from the kernel (RTM_NEWLINK / NEWADDR /
// NEWNEIGH / NEWROUTE, NLMSG_DONE, NLMSG_ERROR with extended ack): the same bytes go
// through every parser, so a link dump also hits the address parser's type checks.
// Seeds: the captured dumps in tests/data/netlink/*.bin.

#include "agent/kernel/netlink_parse.h"
#include "tests/fuzz/fuzz_target.h"

using namespace meshprobe::agent;

namespace {

// Nothing parsed can outnumber the netlink messages that could fit in the input.
constexpr size_t kMinMessage = 16;  // sizeof(nlmsghdr)

template <typename R>
void checkBounded(const R& result, size_t size) {
  if (result.ok()) {
    FUZZ_CHECK(result.value().size() <= size / kMinMessage);
  } else {
    FUZZ_CHECK(!result.error().message.empty());  // every error says what was wrong
  }
}

}  // namespace

MESHPROBE_FUZZ_TARGET(netlink) {
  checkBounded(parseLinkDump(data), data.size());
  checkBounded(parseAddrDump(data), data.size());
  checkBounded(parseNeighDump(data), data.size());
  checkBounded(parseFdbDump(data), data.size());
  checkBounded(parseRouteDump(data), data.size());
}
