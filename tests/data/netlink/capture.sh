#!/usr/bin/env bash
# Rebuilds the rtnetlink fixtures in this directory (see README.md). Needs root.
# usage: capture.sh PATH/TO/capture_netlink [OUTDIR]
set -euo pipefail
CAPTURE=${1:?usage: capture.sh PATH/TO/capture_netlink [OUTDIR]}
OUT=${2:-$(cd "$(dirname "$0")" && pwd)}
NS=mph-netlink-cap-$$
trap 'ip netns del "$NS" 2>/dev/null || true' EXIT
ip netns add "$NS"
n() { ip -n "$NS" "$@"; }
b() { ip netns exec "$NS" bridge "$@"; }

n link set lo up
# Underlay: eth0 (veth, MTU 1500) on a TEST-NET address, as a node's primary interface.
n link add eth0 mtu 1500 address 02:00:c6:33:64:0b type veth peer name eth0-peer
n addr add 198.51.100.11/24 dev eth0
n addr add 2001:db8::11/64 dev eth0 nodad
n link set eth0 up
n link set eth0-peer up
n route add default via 198.51.100.1 dev eth0

# flannel.1 exactly as flannel's vxlan backend creates it (port set to 4789 as in the runbook).
n link add flannel.1 address 6e:1f:00:00:01:00 mtu 1450 type vxlan id 1 local 198.51.100.11 dev eth0 \
  dstport 4789 nolearning
n addr add 10.244.1.0/32 dev flannel.1
n link set flannel.1 up
# cni0 bridge with the pod subnet's .1
n link add cni0 type bridge
n addr add 10.244.1.1/24 dev cni0
n link set cni0 up
# A second VXLAN device, admin down, kernel default port, learning on.
n link add vxlan42 type vxlan id 42 local 198.51.100.11 dev eth0 dstport 8472

peer() {  # peer N MAC NODE_IP : what flannel programs for a healthy peer
  b fdb append "$2" dev flannel.1 dst "$3" self permanent
  n neigh replace "10.244.$1.0" lladdr "$2" dev flannel.1 nud permanent
  n route replace "10.244.$1.0/24" via "10.244.$1.0" dev flannel.1 onlink
}
# Healthy peers: node2, node3.
peer 2 6e:1f:00:00:02:00 198.51.100.12
peer 3 6e:1f:00:00:03:00 198.51.100.13
# Broken 4: flannel on node4 recreated its device (new MAC 04:01); the FDB still has the old MAC.
b fdb append 6e:1f:00:00:04:00 dev flannel.1 dst 198.51.100.14 self permanent
n neigh replace 10.244.4.0 lladdr 6e:1f:00:00:04:01 dev flannel.1 nud permanent
n route replace 10.244.4.0/24 via 10.244.4.0 dev flannel.1 onlink
# Broken 5: route only, no neighbour, no FDB entry.
n route replace 10.244.5.0/24 via 10.244.5.0 dev flannel.1 onlink
# Broken 6: neighbour learned (REACHABLE, not PERMANENT), FDB entry with no usable dst (0.0.0.0).
b fdb append 6e:1f:00:00:06:00 dev flannel.1 dst 0.0.0.0 self permanent
n neigh replace 10.244.6.0 lladdr 6e:1f:00:00:06:00 dev flannel.1 nud reachable
n route replace 10.244.6.0/24 via 10.244.6.0 dev flannel.1 onlink

mkdir -p "$OUT"
ip netns exec "$NS" "$CAPTURE" "$OUT"
# Human-readable views of the same state, for reviewers of the fixtures.
{
  echo "# ip -d link show"; n -d link show
  echo "# ip addr show"; n addr show
  echo "# ip neigh show"; n neigh show
  echo "# bridge fdb show"; b fdb show
  echo "# ip route show table all"; n route show table all
} > "$OUT/state.txt"

# Notifications, each captured while SCRIPT changes the namespace above, in order
# (tests/unit/agent/netlink/netlink_cache_test.cc applies them to the dumps):
ev() { ip netns exec "$NS" "$CAPTURE" --events "$OUT/$1" "$2"; }
# A new healthy peer 7: FDB entry, PERMANENT neighbour, onlink route.
ev events_add.bin "bridge fdb append 6e:1f:00:00:07:00 dev flannel.1 dst 198.51.100.17 self permanent
ip neigh replace 10.244.7.0 lladdr 6e:1f:00:00:07:00 dev flannel.1 nud permanent
ip route replace 10.244.7.0/24 via 10.244.7.0 dev flannel.1 onlink"
# Changes: peer 4's neighbour gets the MAC its FDB entry has; peer 6's neighbour turns PERMANENT.
ev events_change.bin "ip neigh replace 10.244.4.0 lladdr 6e:1f:00:00:04:00 dev flannel.1 nud permanent
ip neigh replace 10.244.6.0 lladdr 6e:1f:00:00:06:00 dev flannel.1 nud permanent"
# Peer 3 removed, as flannel does when a node leaves.
ev events_delete.bin "ip route del 10.244.3.0/24 dev flannel.1
ip neigh del 10.244.3.0 dev flannel.1
bridge fdb del 6e:1f:00:00:03:00 dev flannel.1 dst 198.51.100.13 self"
# Peer 2's FDB entry moved to another node IP in place (announced only as the new entry).
ev events_fdb_replace.bin "bridge fdb replace 6e:1f:00:00:02:00 dev flannel.1 dst 198.51.100.22 self permanent"
