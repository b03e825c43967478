#!/usr/bin/env bash
# Probe engine at scale (benchmark c): a standalone prober probing PEERS peers x
# {UNDERLAY, OVERLAY} at 1 Hz for DURATION seconds, inside network namespaces this script
# creates (prefix mpbench-<pid>-) and always deletes (trap). Peers are 2 x PEERS addresses
# on a dummy interface in a second namespace, answered by one responder; the prober's
# namespace routes both ranges over a veth pair. Reports the prober's CPU (% of one core)
# and RSS, measured by the driver over the window after a warm-up.
#
# Usage: sudo bench/probe_scale.sh [BUILD_DIR]   (default: build)
# Env:   PEERS=1000 DURATION=30 WARMUP=5 INTERVAL=1s
# Targets: <= 1% of a core, <= 20 MiB RSS.
set -euo pipefail

BUILD=${1:-build}
DRIVER=$(realpath "$BUILD/bench/probe_scale_driver")
PEERS=${PEERS:-1000}
DURATION=${DURATION:-30}
WARMUP=${WARMUP:-5}
INTERVAL=${INTERVAL:-1s}

if [[ $(id -u) != 0 ]]; then
  echo "probe_scale.sh: needs root (network namespaces); skipping" >&2
  exit 77
fi
[[ -x $DRIVER ]] || { echo "probe_scale.sh: $DRIVER not built (ninja probe_scale_driver)" >&2; exit 1; }

PREFIX="mpbench-$$-"
NS_PROBER="${PREFIX}prober"
NS_PEERS="${PREFIX}peers"
WORK=$(mktemp -d /tmp/mpbench-$$.XXXXXX)
RESPONDER_PID=""

cleanup() {
  trap "" INT TERM  # a second signal must not cut the cleanup short
  set +e
  if [[ -n $RESPONDER_PID ]]; then
    kill "$RESPONDER_PID" 2>/dev/null
    wait "$RESPONDER_PID" 2>/dev/null
  fi
  ip netns del "$NS_PROBER" 2>/dev/null
  ip netns del "$NS_PEERS" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$NS_PROBER"
ip netns add "$NS_PEERS"
ip link add va netns "$NS_PROBER" type veth peer name vb netns "$NS_PEERS"
ip -n "$NS_PROBER" link set lo up
ip -n "$NS_PEERS" link set lo up
ip -n "$NS_PROBER" addr add 192.0.2.1/24 dev va
ip -n "$NS_PEERS" addr add 192.0.2.2/24 dev vb
ip -n "$NS_PROBER" link set va up
ip -n "$NS_PEERS" link set vb up
ip -n "$NS_PROBER" route add 10.200.0.0/16 via 192.0.2.2
ip -n "$NS_PROBER" route add 10.201.0.0/16 via 192.0.2.2

# 2 x PEERS addresses: peer i (1-based) is 10.200.0.0 + i (underlay) and 10.201.0.0 + i (overlay).
PEER_DEV=peers0
if ! ip -n "$NS_PEERS" link add "$PEER_DEV" type dummy 2>/dev/null; then
  PEER_DEV=lo  # no dummy module: the loopback of the peers' namespace works the same
fi
ip -n "$NS_PEERS" link set "$PEER_DEV" up
for ((i = 1; i <= PEERS; i++)); do
  echo "addr add 10.200.$((i / 256)).$((i % 256))/32 dev $PEER_DEV"
  echo "addr add 10.201.$((i / 256)).$((i % 256))/32 dev $PEER_DEV"
done >"$WORK/addrs.batch"
ip -n "$NS_PEERS" -batch "$WORK/addrs.batch"
echo "peers: $(ip -n "$NS_PEERS" -4 -o addr show dev "$PEER_DEV" | wc -l) addresses on $PEER_DEV in $NS_PEERS"

head -c 32 /dev/urandom | base64 >"$WORK/probe.key"

ip netns exec "$NS_PEERS" "$DRIVER" --mode responder --key-file "$WORK/probe.key" >"$WORK/responder.log" 2>&1 &
RESPONDER_PID=$!
# Readiness: the responder prints "responder ready" once bound (deadline 10 s).
for ((t = 0; t < 100; t++)); do
  grep -q "responder ready" "$WORK/responder.log" && break
  kill -0 "$RESPONDER_PID" 2>/dev/null || { cat "$WORK/responder.log" >&2; exit 1; }
  sleep 0.1
done
grep -q "responder ready" "$WORK/responder.log" || { echo "responder not ready within 10 s" >&2; exit 1; }

echo "baseline: bare sendto/recv loop, same targets and rate, warm-up ${WARMUP}s, window ${DURATION}s"
ip netns exec "$NS_PROBER" "$DRIVER" --mode raw-prober --peers "$PEERS" --interval "$INTERVAL" \
  --warmup "$WARMUP" --duration "$DURATION" --key-file "$WORK/probe.key" | tee "$WORK/baseline.out"
echo "prober: $PEERS peers x 2 layers at $INTERVAL, warm-up ${WARMUP}s, window ${DURATION}s"
ip netns exec "$NS_PROBER" "$DRIVER" --mode prober --peers "$PEERS" --interval "$INTERVAL" \
  --warmup "$WARMUP" --duration "$DURATION" --key-file "$WORK/probe.key" | tee "$WORK/prober.out"

kill "$RESPONDER_PID"
wait "$RESPONDER_PID" || true
RESPONDER_PID=""
cat "$WORK/responder.log"

field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" "$2"; }
cpu=$(field cpu_pct_of_core "$WORK/prober.out")
rss=$(field rss_mib "$WORK/prober.out")
base=$(field cpu_pct_of_core "$WORK/baseline.out")
awk -v c="$cpu" -v r="$rss" -v b="$base" 'BEGIN {
  printf "RESULT prober cpu %.3f%% of one core (target <= 1%%: %s), RSS %.1f MiB (target <= 20 MiB: %s); ",
         c, (c <= 1.0 ? "met" : "NOT met"), r, (r <= 20.0 ? "met" : "NOT met")
  printf "bare-loop baseline %.3f%% -> prober = %.2f x baseline\n", b, (b > 0 ? c / b : 0) }'
