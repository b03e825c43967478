#include "agent/kernel/netlink_reader.h"

#include "agent/kernel/netlink_dump.h"

namespace meshprobe::agent {
namespace {

// Each snapshot opens its own sockets, so concurrent checks may share one reader, and the
// namespace read is the one of the thread that calls snapshot().
class KernelNetlinkReader final : public NetlinkReader {
 public:
  explicit KernelNetlinkReader(std::chrono::milliseconds timeout) : timeout_(timeout) {}

  Result<NetlinkSnapshot> snapshot() override { return readSnapshot(timeout_); }

 private:
  std::chrono::milliseconds timeout_;
};

}  // namespace

std::unique_ptr<NetlinkReader> makeKernelNetlinkReader(std::chrono::milliseconds timeout) {
  return std::make_unique<KernelNetlinkReader>(timeout);
}

}  // namespace meshprobe::agent
