#!/usr/bin/env bash
# The main job, on one machine: installs packages, builds, builds a 4-node flannel VXLAN
# "cluster" out of network namespaces (istiod as a TLS pod behind node1's cni0, the
# aggregator on the underlay), runs the real agents and aggregator, prints the
# reachability matrix, breaks node3 the way the runbook's cluster broke (UDP 4789
# dropped), prints the matrix and the node doctor's verdict again, and tears everything
# down — also on error and on Ctrl-C.          Usage: sudo bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

bash scripts/setup.sh
BUILD_DIR=build bash scripts/build.sh >/dev/null
AGENT=$ROOT/build/agent/meshprobe-agent
AGGREGATOR=$ROOT/build/aggregator/meshprobe-aggregator
CLI=$ROOT/build/cli/meshprobe
NODES=${NODES:-4}

export CLUSTER_PREFIX=mpdemo-
# shellcheck source=lib/cluster.sh
source scripts/lib/cluster.sh
cluster_down   # leftovers of an interrupted run
trap cluster_down EXIT
trap 'exit 130' INT TERM

bold() { printf '\n\033[1m%s\033[0m\n' "$*"; }
cli() { nsexec control "$CLI" --aggregator "$CONTROL_IP:9470" "$@"; }

bold "Building a $NODES-node cluster: underlay 198.51.100.0/24, flannel.1 VNI 1 port 4789, istiod at 10.244.1.10:15012"
cluster_up "$NODES"
cluster_istiod 1
cluster_control

agent_args() {
  local n=$1
  echo --node-name "node$n" --node-ip "$(node_ip "$n")" --aggregator "$CONTROL_IP:9470" --interval 1s \
    --host-root "$CLUSTER_DIR/node$n" --netns-dir "$CLUSTER_DIR/node$n/netns" \
    --ztunnel-socket "$CLUSTER_DIR/node$n/ztunnel.sock" \
    --istiod "$ISTIOD_ADDR" --istiod-ca "$ISTIOD_CA" --vxlan-port 4789 --check-timeout 4s
}

bold "Starting meshprobe-aggregator on $CONTROL_IP:9470 and one meshprobe-agent per node"
start_bg aggregator control "$AGGREGATOR" --grpc-listen "$CONTROL_IP:9470" --http-listen "$CONTROL_IP:9471" --stale-after 5s
wait_for "the aggregator" 20 cli nodes
for n in $(seq 1 "$NODES"); do
  # shellcheck disable=SC2046
  start_bg "agent$n" "node$n" "$AGENT" $(agent_args "$n")
done

all_ok() { [ "$(cli matrix --layer "$1" --output json | grep -c '"state": "OK"')" -eq "$2" ]; }
pairs=$((NODES * (NODES - 1)))
wait_for "every overlay pair to be OK" 60 all_ok OVERLAY "$pairs"
wait_for "every underlay pair to be OK" 30 all_ok UNDERLAY "$pairs"

bold "meshprobe nodes"
cli nodes
bold "meshprobe matrix --layer UNDERLAY"
cli matrix --layer UNDERLAY
bold "meshprobe matrix --layer OVERLAY"
cli matrix --layer OVERLAY
bold "meshprobe matrix --layer ISTIOD"
cli matrix --layer ISTIOD

bold "Fault: on node3, iptables -A INPUT -p udp --dport 4789 -j DROP   (the runbook's 'cross-node failure')"
nsexec node3 iptables -A INPUT -p udp --dport 4789 -j DROP
t0=$SECONDS
overlay_fails() { [ "$(cli matrix --layer OVERLAY --output json | grep -c '"state": "FAIL"')" -ge $((2 * (NODES - 1))) ]; }
wait_for "the overlay cells of node3 to fail" 30 overlay_fails
echo "(visible after about $((SECONDS - t0)) s)"

bold "meshprobe matrix --layer OVERLAY   (node3's row and column fail)"
cli matrix --layer OVERLAY
bold "meshprobe matrix --layer UNDERLAY  (still fine: the network is up, VXLAN is not)"
cli matrix --layer UNDERLAY

bold "meshprobe diagnose   (which node, which layer, why — the matrix joined with each node's own evidence)"
# The firewall rule comes from node3's own check; node3's istiod check needs its connect
# timeout to run out before it fails (istiod lives behind node1, reached only via VXLAN).
wait_for "node3's firewall finding and its istiod finding" 20 bash -c "$(declare -f nsexec ns); CLUSTER_PREFIX=$CLUSTER_PREFIX; out=\$(nsexec control $CLI --aggregator $CONTROL_IP:9470 diagnose); grep -q VXLAN_PORT_FILTERED <<<\"\$out\" && grep -q ISTIOD_UNREACHABLE <<<\"\$out\""
cli diagnose

bold "The node doctor on node3:  meshprobe-agent --once"
nsexec node3 "$AGENT" --once --node-name node3 --host-root "$CLUSTER_DIR/node3" --netns-dir "$CLUSTER_DIR/node3/netns" \
  --ztunnel-socket "$CLUSTER_DIR/node3/ztunnel.sock" --istiod "$ISTIOD_ADDR" --istiod-ca "$ISTIOD_CA" \
  --vxlan-port 4789 --check-timeout 4s || echo "(exit code $?: a check failed)"

bold "Tearing the cluster down."
