#!/usr/bin/env bash
# The main job, on one machine: installs packages, builds, builds a 3-node flannel VXLAN
# "cluster" out of network namespaces (istiod as a TLS pod behind node1's cni0), runs the
# node doctor (`meshprobe-agent --once`) on a healthy node, breaks node2 the way the
# runbook's cluster broke (UDP 4789 dropped), and runs the doctor there. Everything is torn
# down at the end, on error and on Ctrl-C.   Usage: sudo bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

bash scripts/setup.sh
BUILD_DIR=build bash scripts/build.sh >/dev/null
AGENT=$ROOT/build/agent/meshprobe-agent

export CLUSTER_PREFIX=mpdemo-
# shellcheck source=lib/cluster.sh
source scripts/lib/cluster.sh
cluster_down   # leftovers of an interrupted run
trap cluster_down EXIT
trap 'exit 130' INT TERM

bold() { printf '\n\033[1m%s\033[0m\n' "$*"; }

bold "Building a 3-node cluster: underlay 198.51.100.0/24, flannel.1 VNI 1 port 4789, istiod at 10.244.1.10:15012"
cluster_up 3
cluster_istiod 1

doctor() {
  local n=$1; shift
  nsexec "node$n" "$AGENT" --once --node-name "node$n" \
    --host-root "$CLUSTER_DIR/node$n" --netns-dir "$CLUSTER_DIR/node$n/netns" \
    --ztunnel-socket "$CLUSTER_DIR/node$n/ztunnel.sock" \
    --istiod "$ISTIOD_ADDR" --istiod-ca "$ISTIOD_CA" --vxlan-port 4789 --check-timeout 4s "$@"
}

bold "node2, healthy:  meshprobe-agent --once"
doctor 2 && echo "(exit code 0)"

bold "Fault: on node2, iptables -A INPUT -p udp --dport 4789 -j DROP  (the runbook's 'cross-node failure')"
nsexec node2 iptables -A INPUT -p udp --dport 4789 -j DROP

bold "node2, broken:  meshprobe-agent --once"
set +e
doctor 2
rc=$?
set -e
echo "(exit code $rc: a check failed)"

bold "The same verdict as JSON (meshprobe-agent --once --output json), findings only:"
doctor 2 --output json | sed -n '/"findings"/,$p' || true
bold "Tearing the cluster down."
