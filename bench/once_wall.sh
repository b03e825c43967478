#!/usr/bin/env bash
# Wall time of `meshprobe-agent --once` on a healthy node (target: <= 200 ms,
# probe timeouts aside), against a baseline measured in the same run and the same netns:
# one `ip -d link show` process.
#
#   sudo bench/once_wall.sh [AGENT_BINARY] [RUNS]
#
# Builds a two-node flannel-VXLAN cluster in network namespaces (prefix mpbench-<pid>-)
# with a TLS istiod pod behind node1, and runs the agent on node2 (so istiod is reached
# through VXLAN). Not an ambient node: ztunnel is SKIP, no pod netns. Everything it made
# is removed by the trap.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
agent=${1:-${AGENT:-$repo/build/agent/meshprobe-agent}}
runs=${2:-20}

if [ "$(id -u)" != 0 ]; then echo "once_wall.sh: needs root (network namespaces)" >&2; exit 2; fi
if [ ! -x "$agent" ]; then echo "once_wall.sh: agent binary not found: $agent" >&2; exit 2; fi
agent=$(cd "$(dirname "$agent")" && pwd)/$(basename "$agent")

prefix="mpbench-$$-"
state=$(mktemp -d "/tmp/${prefix}XXXXXX")
pids=()
ns() { echo "${prefix}$1"; }
nsexec() { local n=$1; shift; ip netns exec "$(ns "$n")" "$@"; }
node_ip() { echo "198.51.100.$((10 + $1))"; }
vtep_mac() { printf '0a:58:0a:f4:%02x:00' "$1"; }
cleanup() {
  trap "" INT TERM  # a second signal must not cut the cleanup short
  local p n
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  for n in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^${prefix}" || true); do ip netns del "$n" || true; done
  rm -rf "$state"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The cluster: underlay bridge; per node eth0, flannel.1 (VNI 1, 4789), cni0,
# and what flannel programs per peer. Interfaces are created inside our namespaces only.
ip netns add "$(ns underlay)"
nsexec underlay ip link set lo up
nsexec underlay ip link add br0 type bridge
nsexec underlay ip link set br0 up
for i in 1 2; do
  ip netns add "$(ns node$i)"
  nsexec "node$i" ip link set lo up
  ip -n "$(ns underlay)" link add "v$i" type veth peer name eth0 netns "$(ns node$i)"
  nsexec underlay ip link set "v$i" master br0 up
  nsexec "node$i" ip addr add "$(node_ip $i)/24" dev eth0
  nsexec "node$i" ip link set eth0 up
  nsexec "node$i" ip link add flannel.1 type vxlan id 1 dstport 4789 local "$(node_ip $i)" dev eth0 nolearning
  nsexec "node$i" ip link set flannel.1 address "$(vtep_mac $i)" mtu 1450 up
  nsexec "node$i" ip addr add "10.244.$i.0/32" dev flannel.1
  nsexec "node$i" ip link add cni0 type bridge
  nsexec "node$i" ip addr add "10.244.$i.1/24" dev cni0
  nsexec "node$i" ip link set cni0 up
  nsexec "node$i" sysctl -qw net.ipv4.ip_forward=1
  mkdir -p "$state/node$i/run/flannel" "$state/node$i/netns" "$state/node$i/proc"
  printf 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.%d.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n' "$i" \
    > "$state/node$i/run/flannel/subnet.env"
done
for i in 1 2; do
  j=$((3 - i))
  nsexec "node$i" bridge fdb append "$(vtep_mac $j)" dev flannel.1 dst "$(node_ip $j)" self permanent
  nsexec "node$i" ip neigh replace "10.244.$j.0" lladdr "$(vtep_mac $j)" dev flannel.1 nud permanent
  nsexec "node$i" ip route replace "10.244.$j.0/24" via "10.244.$j.0" dev flannel.1 onlink
done

# istiod: TLS (ALPN h2, test CA, SAN istiod.istio-system.svc) on 15012 in a pod behind node1's cni0.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj "/CN=bench root" \
  -keyout "$state/ca.key" -out "$state/ca.pem" 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/O=cluster.local" \
  -keyout "$state/server.key" -out "$state/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:istiod.istio-system.svc\n' > "$state/ext.cnf"
openssl x509 -req -in "$state/server.csr" -CA "$state/ca.pem" -CAkey "$state/ca.key" -CAcreateserial -days 2 \
  -extfile "$state/ext.cnf" -out "$state/server.pem" 2>/dev/null
ip netns add "$(ns istiod)"
nsexec istiod ip link set lo up
ip -n "$(ns node1)" link add vistiod type veth peer name eth0 netns "$(ns istiod)"
nsexec node1 ip link set vistiod master cni0 up
nsexec istiod ip addr add 10.244.1.10/24 dev eth0
nsexec istiod ip link set eth0 up
nsexec istiod ip route add default via 10.244.1.1
ip netns exec "$(ns istiod)" openssl s_server -accept 15012 -alpn h2 -www -cert "$state/server.pem" \
  -key "$state/server.key" </dev/null >"$state/s_server.log" 2>&1 &
pids+=($!)
deadline=$((SECONDS + 10))
until nsexec istiod ss -Htln 'sport = :15012' | grep -q LISTEN; do
  if [ $SECONDS -ge $deadline ]; then echo "istiod listener did not come up" >&2; exit 1; fi
  sleep 0.05  # poll interval, bounded by the deadline
done

node=$(ns node2)
host="$state/node2"
args=(--once --output json --node-name bench-node2 --node-ip "$(node_ip 2)" --vxlan-port 4789
      --istiod 10.244.1.10:15012 --istiod-ca "$state/ca.pem" --host-root "$host" --netns-dir "$host/netns"
      --ztunnel-socket "$host/ztunnel.sock" --flannel-subnet-file /run/flannel/subnet.env)

now_ns() { date +%s%N; }

# time_runs N CMD...: prints N wall times in microseconds, one per line.
time_runs() {
  local n=$1 i t0 t1
  shift
  for ((i = 0; i < n; i++)); do
    t0=$(now_ns)
    "$@" >/dev/null 2>&1 || true
    t1=$(now_ns)
    echo $(((t1 - t0) / 1000))
  done
}

# stats: min median p95 (ms, from microseconds on stdin).
stats() {
  sort -n | awk '{v[NR] = $1} END {
    p95 = int(NR * 0.95 + 0.999); if (p95 < 1) p95 = 1; if (p95 > NR) p95 = NR;
    med = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
    printf "%.1f %.1f %.1f\n", v[1] / 1000, med / 1000, v[p95] / 1000 }'
}

# One verdict first: the node must be healthy, or the timing means nothing.
set +e
verdict=$(ip netns exec "$node" "$agent" "${args[@]}" 2>&1)
code=$?
set -e
if [ "$code" != 0 ]; then
  echo "warning: the agent's verdict on the healthy bench node is exit $code:" >&2
  echo "$verdict" | grep -E '"(name|status|summary)"' | paste - - - | sed 's/^ */  /' >&2 || true
fi

# Warm-up (page cache), then the measured runs.
time_runs 2 ip netns exec "$node" "$agent" "${args[@]}" >/dev/null
read -r a_min a_med a_p95 < <(time_runs "$runs" ip netns exec "$node" "$agent" "${args[@]}" | stats)
read -r b_min b_med b_p95 < <(time_runs "$runs" ip netns exec "$node" ip -d link show | stats)

printf '%-44s %8s %8s %8s\n' "command ($runs runs, wall ms)" min median p95
printf '%-44s %8s %8s %8s\n' "meshprobe-agent --once (node2, healthy)" "$a_min" "$a_med" "$a_p95"
printf '%-44s %8s %8s %8s\n' "baseline: ip netns exec ... ip -d link show" "$b_min" "$b_med" "$b_p95"
awk -v a="$a_med" -v b="$b_med" -v p="$a_p95" 'BEGIN {
  printf "agent median = %.1fx one `ip -d link show`; target <= 200 ms: %s (p95 %.1f ms)\n",
         a / b, (p <= 200 ? "met" : "NOT met"), p }'
echo "agent exit code on this node: $code"
