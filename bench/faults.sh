#!/usr/bin/env bash
# meshprobe under faults, each part against a baseline taken in the same run. Needs root
# (network namespaces); all traffic stays on loopback or inside namespaces this script
# makes (prefix mpfault-<pid>-, always deleted by the trap). Everything it starts it stops
# by PID. Parts (default: all three, in this order):
#
#   unreachable  Two agents in two namespaces on a veth (192.0.2.1 <-> 192.0.2.2, each
#                probing the other and answering its probes), an aggregator in the first.
#                Baseline: agent A connected to the real aggregator for BASELINE s. Fault
#                (B now standalone, still probing A): a fresh agent A, same flags, whose
#                --aggregator is a port where the aggregator's packets are dropped
#                (FAULT=drop: an iptables DROP of the SYNs inside the namespace, so connects
#                hang) or refused (FAULT=refused: a loopback port nobody listens on), for
#                DURATION s. Every SAMPLE s: VmRSS,
#                threads, open fds and child processes from /proc, and from its /metrics the
#                report buffer's drop counter, the stream gauge, probes sent and timed out,
#                and probe requests its responder received. At the end the aggregator comes
#                back on that address: the time until the stream is up again and the reports
#                that arrive in the next RECOVERY s (the buffered ones first: at most the
#                buffer's 120, the newest, plus the new ones: one per interval and one per
#                finished check round).
#   restarts     In a namespace of its own (loopback; the simulated nodes' addresses routed
#                to lo so the real agent's probes stay in it): an aggregator, meshprobe-
#                loadgen with NODES simulated agents (--interval 1s, full mesh) and one real
#                agent. ROUNDS times: stop the aggregator (SIGKILL every KILL_EVERY-th round,
#                else SIGTERM), start it again on the same ports, and time how long until
#                meshprobe_aggregator_connected_agents is NODES + 1 again (polled every
#                100 ms, at most RECONNECT_TIMEOUT s); then VmRSS, threads and fds of the
#                loadgen, the agent and the new aggregator. Baseline: the same figures
#                before the first restart, and every SAMPLE s for STEADY s of the same load
#                without restarts (what grows with time alone).
#   hang         A standalone daemon-mode agent (--check-timeout CHECK_TIMEOUT, --interval 1s,
#                probing its own responder on loopback) in a namespace of its own, with a
#                directory of fake iptables-save / ip6tables-save / iptables-{nft,legacy}-save
#                / nft first on PATH that start a `sleep` and never exit. Baseline: the same
#                agent with fakes that print an empty ruleset and exit, for HANG_SAMPLES
#                samples. Fault: HANG_SAMPLES samples every HANG_SAMPLE s: VmRSS, threads,
#                fds, live and zombie descendants, fakes started so far, the firewall
#                check's status and message from /checks, probes sent from /metrics.
#
# Output: one line per sample and a summary per part on stdout; the samples also go to
# OUT/<part>.tsv (OUT defaults to a new /tmp/mpfault-results.XXXXXX, kept).
#
# Usage: sudo bench/faults.sh [--build DIR] [PART...]        (default DIR: build)
# Env:   DURATION=600 BASELINE=60 SAMPLE=10 FAULT=drop RECOVERY=10
#        ROUNDS=20 KILL_EVERY=4 NODES=200 RECONNECT_TIMEOUT=120 SETTLE=5 STEADY=120
#        HANG_SAMPLES=24 HANG_SAMPLE=5 CHECK_TIMEOUT=2s OUT=DIR
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

BUILD=build
PARTS=()
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --build) BUILD=${2:?--build needs a directory}; shift 2 ;;
    unreachable | restarts | hang) PARTS+=("$1"); shift ;;
    *) echo "faults.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
((${#PARTS[@]})) || PARTS=(unreachable restarts hang)

DURATION=${DURATION:-600}
BASELINE=${BASELINE:-60}
SAMPLE=${SAMPLE:-10}
FAULT=${FAULT:-drop}
RECOVERY=${RECOVERY:-10}
ROUNDS=${ROUNDS:-20}
KILL_EVERY=${KILL_EVERY:-4}
NODES=${NODES:-200}
RECONNECT_TIMEOUT=${RECONNECT_TIMEOUT:-120}
SETTLE=${SETTLE:-5}
STEADY=${STEADY:-120}
HANG_SAMPLES=${HANG_SAMPLES:-24}
HANG_SAMPLE=${HANG_SAMPLE:-5}
CHECK_TIMEOUT=${CHECK_TIMEOUT:-2s}

if [[ $(id -u) != 0 ]]; then
  echo "faults.sh: needs root (network namespaces)" >&2
  exit 1
fi
AGENT=$(realpath "$BUILD/agent/meshprobe-agent")
AGG=$(realpath "$BUILD/aggregator/meshprobe-aggregator")
LOADGEN=$(realpath "$BUILD/bench/loadgen/meshprobe-loadgen")
for b in "$AGENT" "$AGG" "$LOADGEN"; do
  [[ -x $b ]] || { echo "faults.sh: $b not built (ninja meshprobe-agent meshprobe-aggregator meshprobe-loadgen)" >&2; exit 1; }
done
command -v curl >/dev/null || { echo "faults.sh: needs curl" >&2; exit 1; }
[[ $FAULT == drop || $FAULT == refused ]] || { echo "faults.sh: FAULT is drop or refused" >&2; exit 2; }
if [[ $FAULT == drop ]] && ! command -v iptables >/dev/null; then
  echo "faults.sh: FAULT=drop needs iptables; using FAULT=refused" >&2
  FAULT=refused
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true  # one TCP connection per simulated agent

PREFIX="mpfault-$$-"
WORK=$(mktemp -d /tmp/mpfault-$$.XXXXXX)
OUT=${OUT:-$(mktemp -d /tmp/mpfault-results.XXXXXX)}
mkdir -p "$OUT"
declare -A PIDS=()  # name -> pid of everything running that this script started
NSS=()

stop() {  # stop NAME [SIGNAL]: signal it (default TERM), wait at most 10 s, then SIGKILL
  local name=$1 sig=${2:-TERM} pid i
  pid=${PIDS[$name]:-}
  [[ -n $pid ]] || return 0
  kill -s "$sig" "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -s KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "PIDS[$name]"
}
cleanup() {
  trap "" INT TERM  # a second signal must not cut the cleanup short
  set +e
  local name ns
  for name in "${!PIDS[@]}"; do stop "$name"; done
  for ns in "${NSS[@]}"; do ip netns del "$ns" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkns() {  # mkns NAME: a namespace with lo up, deleted by the trap
  ip netns add "$1"
  NSS+=("$1")
  ip -n "$1" link set lo up
}

# Polls (every 100 ms, at most $2 s) until command "$3..." succeeds.
wait_until() {
  local what=$1 secs=$2 i
  shift 2
  for ((i = 0; i < secs * 10; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "faults.sh: not within ${secs}s: $what" >&2
  return 1
}
port_of() { grep -oE "$2 .* \(port [0-9]+\)" "$1" | head -1 | grep -oE "[0-9]+\)$" | tr -d ')'; }

# /proc figures of a PID: "rss_kib threads fds"
proc_fig() {
  local pid=$1
  [[ -d /proc/$pid ]] || { echo "- - -"; return; }
  local rss thr fds
  rss=$(awk '$1 == "VmRSS:" {print $2}' "/proc/$pid/status")
  thr=$(awk '$1 == "Threads:" {print $2}' "/proc/$pid/status")
  fds=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  echo "$rss $thr $fds"
}
# Descendants of PID: "live zombies" (the process itself not counted).
descendants() {
  ps -e -o pid=,ppid=,stat= | awk -v root="$1" '
    {par[$1] = $2; st[$1] = $3}
    END {
      for (p in par) {
        q = par[p]; d = 0
        for (i = 0; i < 64 && q > 1; i++) { if (q == root) { d = 1; break } q = par[q] }
        if (d) { if (st[p] ~ /^Z/) z++; else l++ }
      }
      printf "%d %d\n", l, z
    }'
}
# The value of sample $3 (name with labels, exact) on the /metrics at $2, fetched in namespace $1.
metric() {
  # awk reads to the end: exiting early would fail curl's write (exit 23) under pipefail.
  { ip netns exec "$1" curl -s -m 2 "http://$2/metrics" || true; } | awk -v s="$3" '$1 == s && !f {print $2; f = 1}'
}
num() { awk -v v="${1:-}" 'BEGIN {if (v == "" || v == "-") print "-"; else printf "%.0f", v}'; }
mib() { awk -v k="$1" 'BEGIN {if (k == "-") print "-"; else printf "%.1f", k / 1024}'; }

# ---------------------------------------------------------------------------------------
# Part a: the aggregator unreachable for DURATION s.

AGENT_PROBE_FLAGS=(--insecure --interval 1s --istiod 127.0.0.1:15012 --netns-dir "$WORK/no-netns"
  --ztunnel-socket "$WORK/no-ztunnel.sock" --flannel-subnet-file "$WORK/no-subnet.env" --log-level warn)

# One sample of agent A (name $1) at elapsed $2 s: appended to $3 and printed.
sample_a() {
  local name=$1 t=$2 file=$3 pid fig desc m
  pid=${PIDS[$name]}
  fig=$(proc_fig "$pid")
  desc=$(descendants "$pid")
  m=$(ip netns exec "$NS_A" curl -s -m 2 "http://127.0.0.1:9482/metrics" || true)
  local dropped conn reconn sent tmo resp
  dropped=$(awk '$1 == "meshprobe_report_buffer_dropped_total" {print $2}' <<<"$m")
  conn=$(awk '$1 == "meshprobe_stream_connected" {print $2}' <<<"$m")
  reconn=$(awk '$1 == "meshprobe_stream_reconnects_total" {print $2}' <<<"$m")
  sent=$(awk '$1 == "meshprobe_probes_sent_total" {print $2}' <<<"$m")
  tmo=$(awk '$1 == "meshprobe_probe_errors_total{reason=\"timeout\"}" {print $2}' <<<"$m")
  resp=$(awk '$1 == "meshprobe_responder_requests_total" {print $2}' <<<"$m")
  local line
  line=$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$t" $fig "${desc%% *}" \
    "$(num "$dropped")" "$(num "$conn")" "$(num "$reconn")" "$(num "$sent")" "$(num "$tmo")" "$(num "$resp")")
  echo "$line" >>"$file"
  echo "$line"
}

part_unreachable() {
  local tsv=$OUT/unreachable.tsv
  NS_A="${PREFIX}a"
  NS_B="${PREFIX}b"
  mkns "$NS_A"
  mkns "$NS_B"
  ip link add va netns "$NS_A" type veth peer name vb netns "$NS_B"
  ip -n "$NS_A" addr add 192.0.2.1/24 dev va
  ip -n "$NS_B" addr add 192.0.2.2/24 dev vb
  ip -n "$NS_A" link set va up
  ip -n "$NS_B" link set vb up

  ip netns exec "$NS_A" "$AGG" --insecure --grpc-listen 192.0.2.1:9470 --http-listen 127.0.0.1:9471 \
    --log-level warn >"$WORK/agg-a.log" 2>&1 &
  PIDS[agg_a]=$!
  wait_until "aggregator serving" 20 ip netns exec "$NS_A" curl -sf -m 1 http://127.0.0.1:9471/healthz
  ip netns exec "$NS_B" "$AGENT" "${AGENT_PROBE_FLAGS[@]}" --aggregator 192.0.2.1:9470 --node-name fault-b \
    --node-ip 192.0.2.2 --peers 192.0.2.1 --http-listen 127.0.0.1:9482 >"$WORK/agent-b.log" 2>&1 &
  PIDS[agent_b]=$!

  printf 'who\tt_s\trss_kib\tthreads\tfds\tchildren\tbuffer_dropped\tstream_up\treconnects\tprobes_sent\tprobe_timeouts\tresponder_requests\n' >"$tsv"
  echo "== unreachable: baseline (connected) ${BASELINE}s, then fault (FAULT=$FAULT) ${DURATION}s, sample every ${SAMPLE}s; load $(cut -d' ' -f1-3 /proc/loadavg)"
  head -1 "$tsv"

  # Baseline: connected to the real aggregator.
  ip netns exec "$NS_A" "$AGENT" "${AGENT_PROBE_FLAGS[@]}" --aggregator 192.0.2.1:9470 --node-name fault-a \
    --node-ip 192.0.2.1 --peers 192.0.2.2 --http-listen 127.0.0.1:9482 >"$WORK/agent-a-base.log" 2>&1 &
  PIDS[base]=$!
  local start t
  start=$(date +%s)
  for ((t = SAMPLE; t <= BASELINE; t += SAMPLE)); do
    sleep $((start + t - $(date +%s)))  # sampling period (not synchronisation)
    sample_a base "$t" "$tsv"
  done
  stop base

  # B turns standalone (static peer A): connected, the aggregator would drop A from B's
  # peers once A is gone from the membership, and nothing would probe A's responder.
  stop agent_b
  ip netns exec "$NS_B" "$AGENT" "${AGENT_PROBE_FLAGS[@]}" --node-name fault-b \
    --node-ip 192.0.2.2 --peers 192.0.2.1 --http-listen 127.0.0.1:9482 >"$WORK/agent-b2.log" 2>&1 &
  PIDS[agent_b]=$!

  # Fault: the same agent, its aggregator address dropping or refusing.
  local fault_addr
  if [[ $FAULT == drop ]]; then
    fault_addr=192.0.2.1:9479
    ip netns exec "$NS_A" iptables -I INPUT -p tcp --dport 9479 -j DROP
  else
    fault_addr=127.0.0.1:9479
  fi
  ip netns exec "$NS_A" "$AGENT" "${AGENT_PROBE_FLAGS[@]}" --aggregator "$fault_addr" --node-name fault-a \
    --node-ip 192.0.2.1 --peers 192.0.2.2 --http-listen 127.0.0.1:9482 >"$WORK/agent-a-fault.log" 2>&1 &
  PIDS[fault]=$!
  start=$(date +%s)
  for ((t = SAMPLE; t <= DURATION; t += SAMPLE)); do
    sleep $((start + t - $(date +%s)))
    sample_a fault "$t" "$tsv"
  done

  # Recovery: an aggregator on the fault address, reachable again.
  ip netns exec "$NS_A" "$AGG" --insecure --grpc-listen "$fault_addr" --http-listen 127.0.0.1:9478 \
    --log-level warn >"$WORK/agg-r.log" 2>&1 &
  PIDS[agg_r]=$!
  wait_until "recovery aggregator serving" 20 ip netns exec "$NS_A" curl -sf -m 1 http://127.0.0.1:9478/healthz
  local t0 up=never
  t0=$(date +%s.%N)
  [[ $FAULT == drop ]] && ip netns exec "$NS_A" iptables -D INPUT -p tcp --dport 9479 -j DROP
  if wait_until "agent A reconnected" 120 \
    bash -c "[[ \$(ip netns exec $NS_A curl -s -m 1 http://127.0.0.1:9482/metrics | awk '\$1 == \"meshprobe_stream_connected\" {print \$2}') == 1 ]]"; then
    up=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
  fi
  sleep "$RECOVERY"  # the window the delivered reports are counted over
  local received
  received=$(metric "$NS_A" 127.0.0.1:9478 meshprobe_aggregator_reports_received_total)
  sample_a fault "$((DURATION + RECOVERY))" "$tsv"

  # Summary: the baseline's last sample against the fault's sample at the same time and its last.
  awk -F'\t' -v dur="$DURATION" -v base="$BASELINE" -v up="$up" -v rec="$RECOVERY" -v recv="$received" \
    -v fault="$FAULT" '
    $1 == "base" {b = $0; bt = $2; brss = $3; bthr = $4; bfd = $5; bsent = $10; bresp = $12}
    $1 == "fault" && $2 == base {frss60 = $3; fthr60 = $4; ffd60 = $5}
    $1 == "fault" && $2 <= dur {
      if (maxrss == "" || $3 > maxrss) maxrss = $3
      if (maxthr == "" || $4 > maxthr) maxthr = $4
      if (maxfd == "" || $5 > maxfd) maxfd = $5
      if ($2 == 2 * base) {rss2 = $3}
      if (first_drop == "" && $7 > 0) first_drop = $2
      lrss = $3; lthr = $4; lfd = $5; lch = $6; ldrop = $7; lconn = $8; lrec = $9; lsent = $10; ltmo = $11; lresp = $12; lt = $2
    }
    END {
      printf "unreachable (FAULT=%s): baseline at %ss rss=%.1fMiB threads=%s fds=%s probes/s=%.1f responder req/s=%.1f\n", \
        fault, bt, brss / 1024, bthr, bfd, bsent / bt, bresp / bt
      printf "  fault at %ss: rss=%.1fMiB threads=%s fds=%s; at %ss: rss=%.1fMiB threads=%s fds=%s children=%s; max rss=%.1fMiB threads=%s fds=%s\n", \
        base, frss60 / 1024, fthr60, ffd60, lt, lrss / 1024, lthr, lfd, lch, maxrss / 1024, maxthr, maxfd
      printf "  buffer: first drop seen by %ss, %s dropped at %ss (stream_up=%s, reconnect attempts counted=%s); probes/s=%.1f timeouts=%s responder req/s=%.1f\n", \
        first_drop, ldrop, lt, lconn, lrec, lsent / lt, ltmo, lresp / lt
      printf "  recovery: stream up %ss after the aggregator came back; %s reports received in the next %ss\n", up, recv, rec
    }' "$tsv"
  stop fault
  stop agg_r
  stop agent_b
  stop agg_a
}

# ---------------------------------------------------------------------------------------
# Part b: the aggregator restarted ROUNDS times under load.

part_restarts() {
  local tsv=$OUT/restarts.tsv
  NS_R="${PREFIX}r"
  mkns "$NS_R"
  # The simulated nodes' addresses (bench/loadgen/sim_model.cc) are local in this
  # namespace: the real agent's probes to them end on its loopback.
  ip -n "$NS_R" route add local 198.18.0.0/15 dev lo
  ip -n "$NS_R" route add local 10.128.0.0/9 dev lo

  ip netns exec "$NS_R" "$AGG" --insecure --grpc-listen 127.0.0.1:9470 --http-listen 127.0.0.1:9471 \
    --log-level warn >"$WORK/agg-r0.log" 2>&1 &
  PIDS[agg]=$!
  wait_until "aggregator serving" 20 ip netns exec "$NS_R" curl -sf -m 1 http://127.0.0.1:9471/healthz
  ip netns exec "$NS_R" "$LOADGEN" --insecure --aggregator 127.0.0.1:9470 --nodes "$NODES" --interval 1s \
    --threads 2 --ramp 4s >"$WORK/lg.out" 2>"$WORK/lg.err" &
  PIDS[lg]=$!
  ip netns exec "$NS_R" "$AGENT" "${AGENT_PROBE_FLAGS[@]}" --aggregator 127.0.0.1:9470 --node-name real-1 \
    --node-ip 127.0.0.1 --http-listen 127.0.0.1:9482 >"$WORK/agent-r.log" 2>&1 &
  PIDS[agent]=$!
  local want=$((NODES + 1))
  connected() { [[ $(metric "$NS_R" 127.0.0.1:9471 meshprobe_aggregator_connected_agents) == "$want" ]]; }
  local t0 secs
  t0=$(date +%s.%N)
  wait_until "all $want connected at the start" "$RECONNECT_TIMEOUT" connected
  secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')

  printf 'round\tsignal\treconnect_s\tlg_rss_kib\tlg_threads\tlg_fds\tagent_rss_kib\tagent_threads\tagent_fds\tagg_rss_kib\tagg_threads\tagg_fds\tagent_reconnects\n' >"$tsv"
  echo "== restarts: $ROUNDS rounds, SIGKILL every ${KILL_EVERY}th, $NODES simulated + 1 real agent; load $(cut -d' ' -f1-3 /proc/loadavg)"
  head -1 "$tsv"
  row() {
    local line
    line=$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$(proc_fig "${PIDS[lg]}")" "$(proc_fig "${PIDS[agent]}")" \
      "$(proc_fig "${PIDS[agg]}")" "$(num "$(metric "$NS_R" 127.0.0.1:9482 meshprobe_stream_reconnects_total)")" | tr ' ' '\t')
    echo "$line" >>"$tsv"
    echo "$line"
  }
  sleep "$SETTLE"  # steady state before the figures (not synchronisation)
  row 0 start "$secs"
  # Control: the same load without restarts for STEADY s, so growth that comes with time
  # alone is told apart from growth per restart.
  local t start
  start=$(date +%s)
  for ((t = SAMPLE; t <= STEADY; t += SAMPLE)); do
    sleep $((start + t - $(date +%s)))  # sampling period (not synchronisation)
    row "t+$t" steady -
  done

  local r sig
  for ((r = 1; r <= ROUNDS; r++)); do
    sig=TERM
    ((r % KILL_EVERY == 0)) && sig=KILL
    stop agg "$sig"
    t0=$(date +%s.%N)
    ip netns exec "$NS_R" "$AGG" --insecure --grpc-listen 127.0.0.1:9470 --http-listen 127.0.0.1:9471 \
      --log-level warn >"$WORK/agg-r$r.log" 2>&1 &
    PIDS[agg]=$!
    if wait_until "round $r: all $want connected" "$RECONNECT_TIMEOUT" connected; then
      secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
    else
      secs="never($(metric "$NS_R" 127.0.0.1:9471 meshprobe_aggregator_connected_agents))"
    fi
    sleep "$SETTLE"
    row "$r" "$sig" "$secs"
  done
  local median
  median=$(awk -F'\t' '$2 == "TERM" || $2 == "KILL" {print $3 + 0}' "$tsv" | sort -n | awk '{v[NR] = $1} END {printf "%.1f", v[int((NR + 1) / 2)]}')
  awk -F'\t' -v rounds="$ROUNDS" -v median="$median" '
    NR == 1 {next}
    $1 == 0 {for (i = 4; i <= 12; i++) b[i] = $i; next}
    $2 == "steady" {st = substr($1, 3); for (i = 4; i <= 12; i++) sd[i] = $i; next}
    {
      n++; s = $3 + 0; if (s > mx) mx = s; if (mn == "" || s < mn) mn = s
      if ($1 == 3) for (i = 4; i <= 12; i++) r3[i] = $i
      for (i = 4; i <= 12; i++) last[i] = $i
    }
    END {
      printf "restarts: reconnect of all agents: median %ss min %.1fs max %.1fs over %d rounds\n", median, mn, mx, n
      split("loadgen agent aggregator", who, " ")
      for (k = 0; k < 3; k++) {
        i = 4 + 3 * k
        printf "  %s: rss %.1f -> %.1f (%ss without restarts) -> %.1f (round 3) -> %.1f MiB (round %d); threads %s -> %s -> %s -> %s; fds %s -> %s -> %s -> %s\n", \
          who[k + 1], b[i] / 1024, sd[i] / 1024, st, r3[i] / 1024, last[i] / 1024, rounds, b[i + 1], sd[i + 1], r3[i + 1], \
          last[i + 1], b[i + 2], sd[i + 2], r3[i + 2], last[i + 2]
      }
    }' "$tsv"
  stop agent
  stop lg
  stop agg
}

# ---------------------------------------------------------------------------------------
# Part c: firewall tools that hang forever.

FAKES=(iptables-save ip6tables-save iptables-nft-save ip6tables-nft-save iptables-legacy-save ip6tables-legacy-save nft)

part_hang() {
  local tsv=$OUT/hang.tsv
  NS_H="${PREFIX}h"
  mkns "$NS_H"
  local hang=$WORK/fake-hang ok=$WORK/fake-ok f
  mkdir -p "$hang" "$ok"
  for f in "${FAKES[@]}"; do
    # Hangs the way a wedged tool does: a child of its own that never exits, so killing
    # only the direct child would leave the sleep holding the pipes.
    printf '#!/bin/sh\necho "$$ %s" >>%s\nsleep 2147483647\n' "$f" "$WORK/hang-started" >"$hang/$f"
    if [[ $f == nft ]]; then
      printf '#!/bin/sh\necho %s\n' "'{\"nftables\": [{\"metainfo\": {\"json_schema_version\": 1}}]}'" >"$ok/$f"
    else
      printf '#!/bin/sh\necho "# empty"\n' >"$ok/$f"
    fi
    chmod +x "$hang/$f" "$ok/$f"
  done
  : >"$WORK/hang-started"

  printf 'phase\tt_s\trss_kib\tthreads\tfds\tchildren\tzombies\tfakes_started\tfirewall_status\tchecks_running\tprobes_sent\tfirewall_message\n' >"$tsv"
  echo "== hang: --check-timeout $CHECK_TIMEOUT, $HANG_SAMPLES samples every ${HANG_SAMPLE}s per phase; load $(cut -d' ' -f1-3 /proc/loadavg)"
  head -1 "$tsv"
  local phase dir t start
  for phase in baseline hang; do
    dir=$ok
    [[ $phase == hang ]] && dir=$hang
    ip netns exec "$NS_H" env PATH="$dir:$PATH" "$AGENT" "${AGENT_PROBE_FLAGS[@]}" --check-timeout "$CHECK_TIMEOUT" \
      --node-name hang-1 --node-ip 127.0.0.1 --peers 127.0.0.1 --http-listen 127.0.0.1:9482 >"$WORK/agent-$phase.log" 2>&1 &
    PIDS[$phase]=$!
    start=$(date +%s)
    for ((t = HANG_SAMPLE; t <= HANG_SAMPLES * HANG_SAMPLE; t += HANG_SAMPLE)); do
      sleep $((start + t - $(date +%s)))
      local pid=${PIDS[$phase]} checks status msg running sent line
      checks=$(ip netns exec "$NS_H" curl -s -m 2 http://127.0.0.1:9482/checks || true)
      status=$(jq -r '[.checks[] | select(.name | test("firewall"))][0].status // "-"' <<<"$checks" 2>/dev/null || echo -)
      msg=$(jq -r '[.checks[] | select(.name | test("firewall"))][0].summary // "-"' <<<"$checks" 2>/dev/null | tr '\t\n' '  ' | cut -c1-160 || echo -)
      running=$(num "$(metric "$NS_H" 127.0.0.1:9482 meshprobe_agent_checks_running)")
      sent=$(num "$(metric "$NS_H" 127.0.0.1:9482 meshprobe_probes_sent_total)")
      line=$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$phase" "$t" "$(proc_fig "$pid" | tr ' ' '\t')" \
        "$(descendants "$pid" | tr ' ' '\t')" "$(wc -l <"$WORK/hang-started")" "$status" "$running" "$sent" "$msg")
      echo "$line" >>"$tsv"
      echo "$line"
    done
    stop "$phase"
  done
  awk -F'\t' '
    NR == 1 {next}
    {p = $1; n[p]++
     if (n[p] == 3) {t3[p] = $2; rss3[p] = $3; thr3[p] = $4; fd3[p] = $5}
     if ($3 > maxrss[p]) maxrss[p] = $3; if ($4 > maxthr[p]) maxthr[p] = $4; if ($5 > maxfd[p]) maxfd[p] = $5
     if ($6 > maxch[p]) maxch[p] = $6; if ($7 > maxz[p]) maxz[p] = $7
     lt[p] = $2; rss[p] = $3; thr[p] = $4; fd[p] = $5; fakes[p] = $8; st[p] = $9; sent[p] = $11; msg[p] = $12}
    END {
      for (p in n) {
        printf "hang %s: at %ss rss=%.1fMiB threads=%s fds=%s; at %ss rss=%.1fMiB threads=%s fds=%s; max rss=%.1fMiB threads=%s fds=%s live children=%s zombies=%s; fakes started=%s; probes/s=%.1f\n", \
          p, t3[p], rss3[p] / 1024, thr3[p], fd3[p], lt[p], rss[p] / 1024, thr[p], fd[p], maxrss[p] / 1024, maxthr[p], maxfd[p], maxch[p] + 0, maxz[p] + 0, fakes[p], sent[p] / lt[p]
        printf "  firewall check: %s: %s\n", st[p], msg[p]
      }
    }' "$tsv"
  # Any fake still alive after its agent stopped is a leak: count it, then end it by its PID.
  local left=0 fpid
  for fpid in $(awk '{print $1}' "$WORK/hang-started"); do
    if kill -0 "$fpid" 2>/dev/null; then
      left=$((left + 1))
      kill -KILL -- "-$fpid" 2>/dev/null || kill -KILL "$fpid" 2>/dev/null || true
    fi
  done
  echo "  fake tools still running after the agent stopped: $left"
}

echo "faults.sh: $(nproc) cores, load before $(cut -d' ' -f1-3 /proc/loadavg); results in $OUT"
for part in "${PARTS[@]}"; do
  "part_$part"
done
