// flannel's /run/flannel/subnet.env (KEY=VALUE lines written by flanneld, read by the
// agent under --host-root). Seeds: tests/fuzz/corpus/subnet_env.

#include "agent/checks/vxlan_facts.h"
#include "tests/fuzz/fuzz_target.h"

using namespace meshprobe::agent;

MESHPROBE_FUZZ_TARGET(subnet_env) {
  auto env = parseFlannelSubnetEnv(meshprobe::fuzz::asText(data));
  if (!env.ok()) {
    FUZZ_CHECK(!env.error().message.empty());
    return;
  }
  FUZZ_CHECK(!env.value().subnet.empty());  // FLANNEL_SUBNET is required
  FUZZ_CHECK(env.value().subnet.size() <= data.size());
}
