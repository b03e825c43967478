#include "agent/kernel/netlink_reader.h"

namespace meshprobe::agent {
namespace {
class Unimplemented final : public NetlinkReader {
 public:
  Result<NetlinkSnapshot> snapshot() override { return Error{"netlink reader not implemented"}; }
};
}  // namespace

std::unique_ptr<NetlinkReader> makeKernelNetlinkReader(std::chrono::milliseconds) {
  return std::make_unique<Unimplemented>();
}

}  // namespace meshprobe::agent
