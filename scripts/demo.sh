#!/usr/bin/env bash
# The main job, on one machine: installs packages, builds the four programs it runs, builds
# a 4-node flannel VXLAN "cluster" out of network namespaces (istiod as a TLS pod behind
# node1's cni0, the aggregator on the underlay, and on every node istio-cni, ztunnel and one
# ambient pod, stood in for by tests/tools/fake_daemon as in the e2e tests), runs the real
# agents and aggregator, and then walks through the four rows of the ambient-mesh runbook's
# troubleshooting section, one screen each: break a node, show the matrix and
# `meshprobe diagnose` (node, layer, cause, remedy), repair, show it clear. It runs as a
# cluster should: mutual TLS on the aggregator's gRPC port (a CA and certificates made by
# scripts/meshprobe-certs.sh: one per node, so each agent may report only as its node, and a
# reader certificate for the CLI) and signed probes (one cluster probe key). Everything it
# made is removed at the end, on error and on Ctrl-C.
#
#   sudo bash scripts/demo.sh                     # builds into ./build
#   sudo BUILD_DIR=/tmp/mpbuild bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD_DIR=${BUILD_DIR:-build}
case $BUILD_DIR in /*) ;; *) BUILD_DIR=$ROOT/$BUILD_DIR ;; esac

bash scripts/setup.sh
# Only what the demo runs (scripts/build.sh builds everything, tests and benchmarks too).
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" >/dev/null
ninja -C "$BUILD_DIR" -j"$(nproc)" meshprobe-agent meshprobe-aggregator meshprobe fake_daemon >/dev/null
AGENT=$BUILD_DIR/agent/meshprobe-agent
AGGREGATOR=$BUILD_DIR/aggregator/meshprobe-aggregator
CLI=$BUILD_DIR/cli/meshprobe
FAKE_DAEMON=$BUILD_DIR/tests/tools/fake_daemon
NODES=4  # the four faults below use node1..node4

export CLUSTER_PREFIX=mpdemo-
# shellcheck source=lib/cluster.sh
source scripts/lib/cluster.sh
cluster_down   # leftovers of an interrupted run
on_exit() {
  local rc=$? f
  trap "" INT TERM  # a second signal must not cut the teardown short
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 130 ]; then
    for f in "$CLUSTER_DIR"/aggregator.log "$CLUSTER_DIR"/agent*.log; do
      [ -f "$f" ] && printf -- '---- last lines of %s\n%s\n' "${f##*/}" "$(tail -n 5 "$f")" >&2
    done
  fi
  cluster_down
}
trap on_exit EXIT
trap 'exit 130' INT TERM

T_START=$EPOCHREALTIME
bold() { printf '\n\033[1m%s\033[0m\n' "$*"; }
# One screen per runbook row starts with a rule and its title.
screen() { printf '\n\033[1m%s\n%s\033[0m\n' "$(printf '%.0s━' {1..88})" "$*"; }
say() { printf '%s\n' "$*"; }
run() { printf '\033[1m$ %s\033[0m\n' "$*"; }  # echoes a command before its output
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
# A generous deadline: on a busy machine one query can take seconds.
cli() { nsexec control "$CLI" --aggregator "$CONTROL_IP:9470" "${CLI_TLS[@]}" --timeout 15s "$@"; }

bold "Building a $NODES-node cluster: underlay 198.51.100.0/24, flannel.1 VNI 1 port 4789, istiod at 10.244.1.10:15012"
say "and on every node istio-cni, ztunnel and one ambient pod (Istio 1.24 in-pod rules, ztunnel on 15001/15006/15008)"
cluster_up "$NODES"
cluster_istiod 1
cluster_control
for n in $(seq 1 "$NODES"); do cluster_ambient "$n"; done

CERTS=$CLUSTER_DIR/certs
bold "Certificates for the gRPC port (scripts/meshprobe-certs.sh) and the cluster probe key, in $CERTS"
{
  bash scripts/meshprobe-certs.sh ca "$CERTS"
  bash scripts/meshprobe-certs.sh server "$CERTS" meshprobe-aggregator --ip "$CONTROL_IP"
  for n in $(seq 1 "$NODES"); do bash scripts/meshprobe-certs.sh client "$CERTS" "node$n"; done
  bash scripts/meshprobe-certs.sh client "$CERTS" meshprobe-reader
} >/dev/null
say "a CA, the aggregator's certificate (IP SAN $CONTROL_IP), node1..node$NODES (each may report only as itself),"
say "meshprobe-reader (the CLI: Query only)"
head -c 32 /dev/urandom >"$CERTS/probe-key"
chmod 0400 "$CERTS/probe-key"
CLI_TLS=(--aggregator-ca "$CERTS/ca.crt" --tls-cert "$CERTS/meshprobe-reader.crt" --tls-key "$CERTS/meshprobe-reader.key")

agent_args() {
  local n=$1
  echo --node-name "node$n" --node-ip "$(node_ip "$n")" --aggregator "$CONTROL_IP:9470" --interval 1s \
    --host-root "$CLUSTER_DIR/node$n" --netns-dir "$CLUSTER_DIR/node$n/netns" \
    --ztunnel-socket "$CLUSTER_DIR/node$n/ztunnel.sock" \
    --istiod "$ISTIOD_ADDR" --istiod-ca "$ISTIOD_CA" --vxlan-port 4789 --check-timeout 4s \
    --aggregator-ca "$CERTS/ca.crt" --tls-cert "$CERTS/node$n.crt" --tls-key "$CERTS/node$n.key" \
    --probe-key-file "$CERTS/probe-key"
}

bold "Starting meshprobe-aggregator on $CONTROL_IP:9470 (mutual TLS) and one meshprobe-agent per node"
# --kube off: the demo cluster lives in network namespaces and has no Kubernetes API (on a
# machine that is itself a pod, auto would find that cluster's API instead).
start_bg aggregator control "$AGGREGATOR" --grpc-listen "$CONTROL_IP:9470" --http-listen "$CONTROL_IP:9471" --stale-after 5s --kube off \
  --tls-cert "$CERTS/meshprobe-aggregator.crt" --tls-key "$CERTS/meshprobe-aggregator.key" --tls-client-ca "$CERTS/ca.crt"
wait_for "the aggregator" 20 cli nodes
for n in $(seq 1 "$NODES"); do
  # shellcheck disable=SC2046
  start_bg "agent$n" "node$n" "$AGENT" $(agent_args "$n")
done

# count PATTERN CLI-ARGS...: lines of the JSON answer matching PATTERN; fails if the query does.
count() {
  local out
  out=$(cli --output json "${@:2}") || return 1
  grep -c -- "$1" <<<"$out" || true
}
# Every cell up: OK, or DEGRADED (answered, but slow or lossy: a busy machine).
cells_up() { local c; c=$(count '"state": "\(OK\|DEGRADED\)"' matrix --layer "$1") && [ "$c" -eq "$2" ]; }
pairs=$((NODES * (NODES - 1)))
healthy() { cells_up OVERLAY "$pairs" && cells_up UNDERLAY "$pairs" && cells_up ISTIOD "$NODES"; }
no_findings() { local c; c=$(count '"code":' diagnose) && [ "$c" -eq 0 ]; }
# has_findings NODE CODE...: each CODE is active and blames NODE.
has_findings() {
  local node=$1 out code
  shift
  out=$(cli --output json diagnose --node "$node") || return 1
  for code in "$@"; do grep -q "\"code\": \"$code\"" <<<"$out" || return 1; done
}
wait_for "every UNDERLAY, OVERLAY and ISTIOD cell to be up" 60 healthy
wait_for "no active findings" 30 no_findings

bold "The cluster is healthy ($(since "$T_START") s after the start)"
run "meshprobe --aggregator-ca ca.crt --tls-cert meshprobe-reader.crt --tls-key meshprobe-reader.key nodes"
cli nodes
run "meshprobe-agent --once   (the node doctor, on node1)"
nsexec node1 "$AGENT" --once --node-name node1 --host-root "$CLUSTER_DIR/node1" --netns-dir "$CLUSTER_DIR/node1/netns" \
  --ztunnel-socket "$CLUSTER_DIR/node1/ztunnel.sock" --istiod "$ISTIOD_ADDR" --istiod-ca "$ISTIOD_CA" \
  --vxlan-port 4789 --check-timeout 4s || say "(exit code $?: a check failed)"

# fault ROW NODE LAYER "CODES" "TITLE" "WHAT" CMD...: runs CMD (the fault, inside the demo's
# namespaces; WHAT says it in words), waits until every finding code in CODES blames NODE,
# then shows the LAYER matrix and `meshprobe diagnose`.
fault() {
  local row=$1 node=$2 layer=$3 codes=$4 title=$5 what=$6
  shift 6
  screen "Runbook row $row of 4: $title"
  say "break:  $what"
  "$@"
  local t0=$EPOCHREALTIME
  # shellcheck disable=SC2086
  if ! wait_for "$codes on $node" 60 has_findings "$node" $codes; then
    run "meshprobe diagnose"
    cli diagnose || true
    return 1
  fi
  say "        → ${codes// / + } on $node after $(since "$t0") s"
  run "meshprobe matrix --layer $layer"
  cli matrix --layer "$layer"
  run "meshprobe diagnose"
  cli diagnose
}
# repair "WHAT" CMD...: undoes the fault, waits until no finding is left and every cell is OK.
repair() {
  say "repair: $1"
  shift
  "$@"
  local t0=$EPOCHREALTIME
  wait_for "every finding to clear" 60 no_findings
  wait_for "every cell to be up" 60 healthy
  say "        → clear after $(since "$t0") s: no active findings, no UNDERLAY, OVERLAY or ISTIOD cell failing"
}

ISTIOD_IP=${ISTIOD_ADDR%:*}
drop_istiod=(OUTPUT -p tcp -d "$ISTIOD_IP" --dport 15012 -j DROP)
fault 1 node2 ISTIOD "ISTIOD_UNREACHABLE VXLAN_PORT_FILTERED" \
  "ztunnel pods not ready (0/1): ztunnel cannot reach istiod on 15012 — here from node2 only" \
  "on node2, iptables -A ${drop_istiod[*]}   (a firewall between node2 and istiod)" \
  nsexec node2 iptables -A "${drop_istiod[@]}"
repair "on node2, iptables -D ${drop_istiod[*]}" nsexec node2 iptables -D "${drop_istiod[@]}"

drop_vxlan=(INPUT -p udp --dport 4789 -j DROP)
fault 2 node3 OVERLAY "VXLAN_PORT_FILTERED ISTIOD_UNREACHABLE" \
  "cross-node pod communication fails: the VXLAN overlay is broken on node3" \
  "on node3, iptables -A ${drop_vxlan[*]}" \
  nsexec node3 iptables -A "${drop_vxlan[@]}"
say "(UNDERLAY stays OK; istiod, behind node1, is reached through VXLAN, so node3 loses it too)"
repair "on node3, iptables -D ${drop_vxlan[*]}" nsexec node3 iptables -D "${drop_vxlan[@]}"

fault 3 node4 OVERLAY "ZTUNNEL_NOT_CONNECTED AMBIENT_REDIRECTION_BROKEN" \
  "istio-cni: \"no ztunnel connection\" — ztunnel on node4 is gone, pods are not redirected" \
  "ztunnel on node4 exits (its connection to istio-cni and its listeners in pod4 go with it)" \
  cluster_ztunnel_stop 4
say "(the probes do not go through ztunnel, so the matrix cannot show this fault: node4's own checks name it)"
repair "ztunnel on node4 starts again and reconnects" cluster_ztunnel_start 4

fault 4 node1 OVERLAY AMBIENT_REDIRECTION_BROKEN \
  "pods not showing HBONE: pod1 on node1 is not captured by ambient" \
  "the ISTIO_* redirection rules in pod1's netns are removed (ztunnel still serves it)" \
  cluster_pod_rules_flush 1
repair "istio-cni's rules restored in pod1" cluster_pod_rules_restore 1

bold "Done: four runbook rows broken, named and cleared in $(since "$T_START") s. Tearing the cluster down."
