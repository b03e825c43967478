// sock_diag replies as the agent reads them (inet_diag for UDP/TCP sockets, unix_diag for
// the ztunnel socket), and the reader's chunk collector that filters replies by sequence
// number and port id. Seeds: the captured dumps in tests/data/sockdiag/*.bin.

#include <vector>

#include "agent/kernel/sock_diag_parse.h"
#include "tests/fuzz/fuzz_target.h"

using namespace meshprobe::agent;

MESHPROBE_FUZZ_TARGET(sock_diag) {
  constexpr size_t kMinMessage = 16;  // sizeof(nlmsghdr)
  for (int protocol : {0, 6, 17}) {
    auto inet = parseInetDiagDump(data, protocol);
    if (inet.ok()) FUZZ_CHECK(inet.value().size() <= data.size() / kMinMessage);
  }
  auto unix_sockets = parseUnixDiagDump(data);
  if (unix_sockets.ok()) FUZZ_CHECK(unix_sockets.value().size() <= data.size() / kMinMessage);

  // The collector keeps whole messages only (each padded to 4 bytes), never more than it was
  // given plus the last message's padding. The
  // captures use seq 1 and the kernel's port id 0 for the reply's nlmsg_pid.
  std::vector<uint8_t> kept;
  auto progress = collectDumpChunk(data, 1, 0, kept);
  FUZZ_CHECK(kept.size() <= data.size() + 3);
  if (progress.ok()) FUZZ_CHECK(progress.value().messages <= data.size() / kMinMessage);
}
