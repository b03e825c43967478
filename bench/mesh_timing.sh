#!/usr/bin/env bash
# Mesh timings , measured through the Query API on a namespace cluster:
#   detection — iptables DROP of udp/4789 on one node until every overlay cell to and
#               from it is FAIL (target p95 <= 3 s at a 1 s interval);
#   recovery  — rule deleted until the overlay matrix is all OK again;
#   reconnect — aggregator killed with SIGKILL and restarted until the matrix is complete.
# The baseline printed beside each is the probe interval of the same run (ratio = time /
# interval), since a fault cannot be seen faster than probes are sent.
#
#   sudo bench/mesh_timing.sh [BUILD_DIR] [ROUNDS]     (defaults: build, 10)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
ROUNDS=${2:-10}
NODES=${NODES:-4}
INTERVAL_S=1
AGENT=$PWD/$BUILD/agent/meshprobe-agent
AGGREGATOR=$PWD/$BUILD/aggregator/meshprobe-aggregator
CLI=$PWD/$BUILD/cli/meshprobe

export CLUSTER_PREFIX=mpbt-
# shellcheck source=../scripts/lib/cluster.sh
source scripts/lib/cluster.sh
cluster_down
trap 'trap "" INT TERM; cluster_down' EXIT  # a second signal must not cut the teardown short
trap 'exit 130' INT TERM

cluster_up "$NODES"
cluster_istiod 1
cluster_control
cli() { nsexec control "$CLI" --aggregator "$CONTROL_IP:9470" --timeout 2s "$@"; }
start_aggregator() {
  start_bg aggregator control "$AGGREGATOR" --insecure --grpc-listen "$CONTROL_IP:9470" --http-listen "$CONTROL_IP:9471" --stale-after 5s
}
start_aggregator
wait_for "aggregator" 20 cli nodes
for n in $(seq 1 "$NODES"); do
  start_bg "agent$n" "node$n" "$AGENT" --insecure --node-name "node$n" --node-ip "$(node_ip "$n")" \
    --aggregator "$CONTROL_IP:9470" --interval "${INTERVAL_S}s" --host-root "$CLUSTER_DIR/node$n" \
    --netns-dir "$CLUSTER_DIR/node$n/netns" --ztunnel-socket "$CLUSTER_DIR/node$n/ztunnel.sock" \
    --istiod "$ISTIOD_ADDR" --istiod-ca "$ISTIOD_CA" --log-level warn
done
pairs=$((NODES * (NODES - 1)))
count() { cli matrix --layer "$1" --output json 2>/dev/null | grep -c "\"state\": \"$2\"" || true; }
all_ok() { [ "$(count OVERLAY OK)" -eq "$pairs" ] && [ "$(count UNDERLAY OK)" -eq "$pairs" ]; }
node3_fails() { [ "$(count OVERLAY FAIL)" -eq $((2 * (NODES - 1))) ]; }
wait_for "a healthy matrix" 60 all_ok

now() { date +%s.%N; }
# elapsed_until START CONDITION...: seconds from START until CONDITION holds (polled every 50 ms, 60 s deadline)
elapsed_until() {
  local start=$1; shift
  local deadline=$(( $(date +%s) + 60 ))
  until "$@"; do
    [ "$(date +%s)" -ge $deadline ] && { echo "NaN"; return; }
    sleep 0.05  # poll interval, bounded by the deadline above
  done
  awk -v a="$(now)" -v b="$start" 'BEGIN { printf "%.3f", a - b }'
}
stats() {  # prints "p50 p95 max" of the numbers on stdin
  sort -g | awk '{v[NR]=$1} END {p50=v[int((NR+1)*0.5)]; i95=int(NR*0.95+0.999); if(i95<1)i95=1; printf "%.2f %.2f %.2f\n", p50, v[i95], v[NR]}'
}

det=(); rec=()
for r in $(seq 1 "$ROUNDS"); do
  t=$(now); nsexec node3 iptables -A INPUT -p udp --dport 4789 -j DROP
  det+=("$(elapsed_until "$t" node3_fails)")
  t=$(now); nsexec node3 iptables -D INPUT -p udp --dport 4789 -j DROP
  rec+=("$(elapsed_until "$t" all_ok)")
  echo "round $r: detection ${det[-1]}s recovery ${rec[-1]}s"
done
recon=()
for r in $(seq 1 3); do
  stop_bg aggregator KILL
  t=$(now); start_aggregator
  recon+=("$(elapsed_until "$t" all_ok)")
  echo "restart $r: matrix complete after ${recon[-1]}s"
done

echo
printf '%-34s %8s %8s %8s %10s\n' "mesh timing (${NODES} nodes, ${INTERVAL_S}s interval)" p50 p95 max "p95/interval"
for name in detection recovery reconnect; do
  case $name in detection) vals=("${det[@]}");; recovery) vals=("${rec[@]}");; reconnect) vals=("${recon[@]}");; esac
  read -r p50 p95 max < <(printf '%s\n' "${vals[@]}" | stats)
  printf '%-34s %7ss %7ss %7ss %9.1fx\n' "$name (n=${#vals[@]})" "$p50" "$p95" "$max" "$(awk -v a="$p95" -v b="$INTERVAL_S" 'BEGIN { print a / b }')"
done
