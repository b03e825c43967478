#!/usr/bin/env bash
# The real agent at scale: one meshprobe-agent daemon with PEERS peers x {UNDERLAY, OVERLAY}
# at its default --probe-budget, measured against a bare sendto/recv loop at the same probe
# rate in the same run.
#
# Topology (namespaces prefixed mpagent-<pid>-, always deleted by the trap):
#   agent ns  : lo, veth 192.0.2.1/24; the real meshprobe-aggregator on 127.0.0.1 (ephemeral
#               ports); meshprobe-loadgen simulating PEERS other nodes (their Hellos make the
#               aggregator hand the agent PEERS peers; they report rarely and
#               little: --interval 60s --probe-budget 1; they join at 100/s);
#               the real meshprobe-agent (--aggregator 127.0.0.1:<port>).
#   peers ns  : veth 192.0.2.2/24, every simulated node's underlay (198.18.0.0/15) and overlay
#               (10.128.0.0/9) address made local at once by two `local` routes on lo, one
#               Responder (bench/probe_scale_driver --mode responder) on the probe port.
# The agent's VXLAN/firewall/ztunnel checks find nothing to check in its namespace and say
# so every round; that work is part of the measured cost, as on a real node.
#
# Measured for each size after the agent reports PEERS targets per layer and WARMUP s: the
# agent's CPU over WINDOW s (utime + stime from /proc/PID/stat, plus the children it ran and
# reaped, cutime + cstime: the firewall check's iptables-save and nft; % of one core), its RSS
# (VmRSS) and peak RSS (VmHWM); probes sent per second (meshprobe_probes_sent_total); the
# rotation it runs (targets per round, coverage rounds). Baseline: probe_scale_driver
# --mode raw-prober sending the same number of probes per second (budget x 2 layers) to the
# same addresses from a bare loop.
#
# Usage: sudo bench/agent_scale.sh [BUILD_DIR]          (default: build)
# Env:   SIZES="1000 5000" WARMUP=10 WINDOW=30 BUDGET=200 (the agent's default)
#        LG_SHARDS=K: simulate the peers in K loadgen processes (--shard I/K; default 1
#        below 2,000 peers, 4 from there: one process cannot connect 5,000 in time)
#        PERF=1: also `perf record -g` the agent over the window and print its top functions
#        (perf's sampling adds a little to the measured CPU)
#        HEAPTRACK=1: run the agent under heaptrack and print where its heap was at its peak
#        (heaptrack slows every allocation: the CPU figures of such a run do not count)
# Targets: <= 1% of a core and <= 20 MiB RSS at 1,000 and 5,000 peers.
set -euo pipefail

BUILD=${1:-build}
AGENT=$(realpath "$BUILD/agent/meshprobe-agent")
AGG=$(realpath "$BUILD/aggregator/meshprobe-aggregator")
LOADGEN=$(realpath "$BUILD/bench/loadgen/meshprobe-loadgen")
DRIVER=$(realpath "$BUILD/bench/probe_scale_driver")
SIZES=${SIZES:-"1000 5000"}
WARMUP=${WARMUP:-10}
WINDOW=${WINDOW:-30}
BUDGET=${BUDGET:-200}
LG_SHARDS=${LG_SHARDS:-}

if [[ $(id -u) != 0 ]]; then
  echo "agent_scale.sh: needs root (network namespaces); skipping" >&2
  exit 77
fi
for b in "$AGENT" "$AGG" "$LOADGEN" "$DRIVER"; do
  [[ -x $b ]] || {
    echo "agent_scale.sh: $b not built (ninja meshprobe-agent meshprobe-aggregator meshprobe-loadgen probe_scale_driver)" >&2
    exit 1
  }
done
command -v curl >/dev/null || { echo "agent_scale.sh: needs curl" >&2; exit 1; }
if [[ ${PERF:-0} == 1 ]] && ! command -v perf >/dev/null; then
  echo "agent_scale.sh: PERF=1 needs perf (apt-get install linux-perf)" >&2
  exit 1
fi
if [[ ${HEAPTRACK:-0} == 1 ]] && ! command -v heaptrack >/dev/null; then
  echo "agent_scale.sh: HEAPTRACK=1 needs heaptrack (apt-get install heaptrack)" >&2
  exit 1
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true  # one TCP connection per simulated node

PREFIX="mpagent-$$-"
NS_A="${PREFIX}agent"
NS_P="${PREFIX}peers"
WORK=$(mktemp -d /tmp/mpagent-$$.XXXXXX)
PIDS=()

stop_pids() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
}
cleanup() {
  trap "" INT TERM  # a second signal must not cut the cleanup short
  set +e
  stop_pids
  if [[ -n ${RESPONDER_PID:-} ]]; then
    kill "$RESPONDER_PID" 2>/dev/null
    wait "$RESPONDER_PID" 2>/dev/null
  fi
  ip netns del "$NS_A" 2>/dev/null
  ip netns del "$NS_P" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

TICKS=$(getconf CLK_TCK)
# utime + stime + cutime + cstime (after the comm field): the agent and the tools it ran
# (iptables-save, nft: reaped children count), as its pod's cgroup would account them.
cpu_ticks() { awk '{print $14 + $15 + $16 + $17}' "/proc/$1/stat"; }
tool_ticks() { awk '{print $16 + $17}' "/proc/$1/stat"; }
# "name ticks" per thread name (utime + stime of every thread of that name; the agent
# names its own threads mp-*).
thread_ticks() {
  local t
  for t in /proc/"$1"/task/*; do
    [[ -r $t/stat ]] || continue
    printf '%s %s\n' "$(tr ' ' '_' <"$t/comm")" "$(sed 's/.*) //' "$t/stat" | awk '{print $12 + $13}')"
  done 2>/dev/null | awk '{s[$1] += $2} END {for (k in s) print k, s[k]}' | sort
}
status_mib() { awk -v f="$2:" '$1 == f {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

# Polls (every 100 ms, at most $2 s) until command "$3..." succeeds.
wait_until() {
  local what=$1 secs=$2 i
  shift 2
  for ((i = 0; i < secs * 10; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "agent_scale.sh: not within ${secs}s: $what" >&2
  return 1
}

ip netns add "$NS_A"
ip netns add "$NS_P"
ip link add va netns "$NS_A" type veth peer name vb netns "$NS_P"
ip -n "$NS_A" link set lo up
ip -n "$NS_P" link set lo up
ip -n "$NS_A" addr add 192.0.2.1/24 dev va
ip -n "$NS_P" addr add 192.0.2.2/24 dev vb
ip -n "$NS_A" link set va up
ip -n "$NS_P" link set vb up
# The simulated nodes' addresses (bench/loadgen/sim_model.cc): underlay 198.18.0.0/15,
# overlay subnets 10.128.0.0/9. The peers' namespace accepts all of them as local.
ip -n "$NS_A" route add 198.18.0.0/15 via 192.0.2.2
ip -n "$NS_A" route add 10.128.0.0/9 via 192.0.2.2
ip -n "$NS_P" route add local 198.18.0.0/15 dev lo
ip -n "$NS_P" route add local 10.128.0.0/9 dev lo

ip netns exec "$NS_P" "$DRIVER" --mode responder >"$WORK/responder.log" 2>&1 &
RESPONDER_PID=$!
wait_until "responder ready" 10 grep -q "responder ready" "$WORK/responder.log"

# The value of sample $2 (name with labels) on the agent's /metrics at $1, from its namespace.
metric() {
  ip netns exec "$NS_A" curl -s "http://$1/metrics" | awk -v s="$2" '$1 == s {print $2; exit}'
}

run_size() {
  local n=$1
  local agg_log=$WORK/agg-$n.log agent_log=$WORK/agent-$n.log
  ip netns exec "$NS_A" "$AGG" --insecure --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 >"$agg_log" 2>&1 &
  PIDS+=($!)
  wait_until "aggregator serving HTTP" 20 grep -q "serving HTTP" "$agg_log"
  local grpc_port
  grpc_port=$(grep -oE "serving gRPC on .* \(port [0-9]+\)" "$agg_log" | grep -oE "[0-9]+\)$" | tr -d ')')

  local shards=${LG_SHARDS:-$((n >= 2000 ? 4 : 1))} k
  for ((k = 0; k < shards; k++)); do
    ip netns exec "$NS_A" "$LOADGEN" --insecure --aggregator "127.0.0.1:$grpc_port" --nodes "$n" --interval 60s \
      --probe-budget 1 --threads 1 --ramp "$((n / 100))s" --shard "$k/$shards" >/dev/null 2>"$WORK/lg-$n-$k.log" &
    PIDS+=($!)
  done
  # Every simulated node a member (it said Hello; a member stays one for 100 s after its
  # stream drops, so a simulated node that reconnects meanwhile is still a peer).
  local agg_http
  agg_http=127.0.0.1:$(grep -oE "serving HTTP .* \(port [0-9]+\)" "$agg_log" | grep -oE "[0-9]+\)$" | tr -d ')')
  members_are() { [[ $(metric "$agg_http" meshprobe_aggregator_nodes) == "$1" ]]; }
  wait_until "all $n simulated nodes members" $((n / 100 + 120)) members_are "$n" ||
    { tail -n 2 "$WORK"/lg-"$n"-*.log >&2; return 1; }

  local http=127.0.0.1:19472
  local wrap=() heap_pid=
  [[ ${HEAPTRACK:-0} == 1 ]] && wrap=(heaptrack -o "$WORK/heap-$n")
  ip netns exec "$NS_A" "${wrap[@]}" "$AGENT" --insecure --aggregator "127.0.0.1:$grpc_port" --node-name bench-agent \
    --node-ip 192.0.2.1 --http-listen "$http" --netns-dir "$WORK/no-netns" --log-level warn >"$agent_log" 2>&1 &
  local agent_pid=$!
  if [[ ${HEAPTRACK:-0} == 1 ]]; then
    # heaptrack's script runs the agent as its child: measure and stop the agent itself,
    # then wait for heaptrack to write its data.
    heap_pid=$agent_pid
    agent_child() { pgrep -x -P "$heap_pid" meshprobe-agent; }
    wait_until "the agent started under heaptrack" 20 agent_child
    agent_pid=$(agent_child)
  fi
  PIDS+=("$agent_pid" ${heap_pid:+"$heap_pid"})
  local under="meshprobe_probe_targets{layer=\"UNDERLAY\"}" over="meshprobe_probe_targets{layer=\"OVERLAY\"}"
  targets_are() { [[ $(metric "$http" "$under") == "$1" ]]; }
  wait_until "agent probes $n peers per layer" $((${HEAPTRACK:-0} == 1 ? 300 : 60)) targets_are "$n"

  sleep "$WARMUP"  # warm-up before the measurement window (not synchronisation)
  local c0 c1 t0 t1 w0 w1 s0 s1
  s0=$(metric "$http" meshprobe_probes_sent_total)
  thread_ticks "$agent_pid" >"$WORK/threads0-$n"
  c0=$(cpu_ticks "$agent_pid"); t0=$(tool_ticks "$agent_pid"); w0=$(date +%s.%N)
  if [[ ${PERF:-0} == 1 ]]; then
    perf record -q -F 997 -g -p "$agent_pid" -o "$WORK/perf-$n.data" -- sleep "$WINDOW" 2>/dev/null
  else
    sleep "$WINDOW"  # the measurement window
  fi
  c1=$(cpu_ticks "$agent_pid"); t1=$(tool_ticks "$agent_pid"); w1=$(date +%s.%N)
  thread_ticks "$agent_pid" >"$WORK/threads1-$n"
  # CPU per thread name over the window (% of a core), largest first.
  echo "agent threads at $n peers (% of a core over the window):" \
    $(join -a 2 "$WORK/threads0-$n" "$WORK/threads1-$n" |
      awk -v s="$w0" -v e="$w1" -v t="$TICKS" '{b = (NF == 3 ? $2 : 0); c = (NF == 3 ? $3 : $2);
        if (c > b) printf "%.3f %s\n", 100 * (c - b) / t / (e - s), $1}' | sort -rn | awk '{printf "%s=%s%% ", $2, $1}')
  s1=$(metric "$http" meshprobe_probes_sent_total)
  local cpu tools rss hwm rate per_round coverage targets_o
  cpu=$(awk -v a="$c0" -v b="$c1" -v s="$w0" -v e="$w1" -v t="$TICKS" 'BEGIN {printf "%.2f", 100 * (b - a) / t / (e - s)}')
  tools=$(awk -v a="$t0" -v b="$t1" -v s="$w0" -v e="$w1" -v t="$TICKS" 'BEGIN {printf "%.2f", 100 * (b - a) / t / (e - s)}')
  rate=$(awk -v a="$s0" -v b="$s1" -v s="$w0" -v e="$w1" 'BEGIN {printf "%.0f", (b - a) / (e - s)}')
  rss=$(status_mib "$agent_pid" VmRSS)
  hwm=$(status_mib "$agent_pid" VmHWM)
  # Where the RSS is: anonymous (heap, stacks) vs file-backed (the shared libraries' pages,
  # shared with every other process that maps them), and the largest mappings.
  echo "rss breakdown at $n peers: anon $(status_mib "$agent_pid" RssAnon) MiB, file $(status_mib "$agent_pid" RssFile) MiB, threads $(awk '/^Threads:/ {print $2}' "/proc/$agent_pid/status")"
  awk '/^[0-9a-f]+-[0-9a-f]+ / {name = (NF >= 6 ? $6 : "[anon]")} /^Rss:/ {rss[name] += $2}
       END {for (k in rss) if (rss[k] >= 256) printf "  %6.1f MiB  %s\n", rss[k] / 1024, k}' "/proc/$agent_pid/smaps" | sort -rn | head -12
  per_round=$(metric "$http" 'meshprobe_probe_targets_per_round{layer="UNDERLAY"}')
  coverage=$(metric "$http" meshprobe_probe_coverage_rounds)
  targets_o=$(metric "$http" "$over")
  if [[ -n $heap_pid ]]; then
    kill "$agent_pid"
    agent_gone() { ! kill -0 "$agent_pid"; }
    wait_until "the agent exited" 30 agent_gone
    wait "$heap_pid" || true  # heaptrack writes its data once the agent is gone
  fi
  stop_pids
  if [[ ${HEAPTRACK:-0} == 1 ]]; then
    echo "heaptrack: the agent's heap at its peak, by allocation site (largest first)"
    heaptrack_print -f "$WORK/heap-$n.zst" --print-peaks --print-allocators 0 --print-temporary 0 -n 25 -s 3 \
      >"$WORK/heap-$n.txt" 2>&1 || true
    cp "$WORK/heap-$n.zst" "/tmp/agent_scale-heap-$n.zst" 2>/dev/null || true  # kept for heaptrack_print -f
    grep -E "^(peak heap memory consumption|peak RSS|calls to allocation functions)" "$WORK/heap-$n.txt"
    # Each peak consumer with the first frame in the project's own code under it.
    awk '/peak memory consumed over/ {if (site != "") print site; site = $0; fn = ""; found = 0; next}
         site != "" && !found && /^ *at / && match($0, /(agent|common|proto)\/[a-z0-9_\/]+\.(cc|h):[0-9]+/) {
           sub(/^ */, "", fn); site = site " " fn " (" substr($0, RSTART, RLENGTH) ")"; found = 1}
         {fn = $0} END {if (site != "") print site}' "$WORK/heap-$n.txt" | cut -c1-200
  fi
  if [[ ${PERF:-0} == 1 ]]; then
    echo "perf: the agent's top functions at $n peers (self time, % of its samples)"
    perf report -q --stdio --no-children --sort dso,symbol -g none -i "$WORK/perf-$n.data" >"$WORK/perf-$n.txt" 2>/dev/null || true
    cp "$WORK/perf-$n.data" "/tmp/agent_scale-perf-$n.data"  # kept for perf report -i
    head -40 "$WORK/perf-$n.txt" | cut -c1-150 | sed 's/ *$//'
    echo "perf: by component (dso)"
    perf report -q --stdio --no-children --sort dso -g none -i "$WORK/perf-$n.data" 2>/dev/null | head -12 | sed 's/ *$//' || true
  fi

  # Baseline: the same probes per second from a bare loop (raw-prober probes PEERS x 2
  # layers per interval, so PEERS = BUDGET gives BUDGET x 2 probes/s).
  ip netns exec "$NS_A" "$DRIVER" --mode raw-prober --peers "$BUDGET" --underlay-base 198.18.0.0 \
    --overlay-base 10.128.0.0 --interval 1s --warmup "$WARMUP" --duration "$WINDOW" >"$WORK/base-$n.out"
  local base
  base=$(sed -n 's/.* cpu_pct_of_core=\([0-9.]*\).*/\1/p' "$WORK/base-$n.out")
  awk -v n="$n" -v c="$cpu" -v tl="$tools" -v r="$rss" -v h="$hwm" -v b="$base" -v rate="$rate" -v k="$per_round" \
    -v cov="$coverage" -v to="$targets_o" 'BEGIN {
    printf "RESULT peers=%d targets(UNDERLAY/OVERLAY)=%d/%s per_round=%s coverage_rounds=%s probes_per_s=%s ", n, n, to, k, cov, rate
    printf "agent_cpu=%.2f%% (target <= 1%%: %s; tools it ran %.2f%%) rss=%.1fMiB peak=%.1fMiB (target <= 20 MiB: %s) ", c, (c <= 1.0 ? "met" : "NOT met"), tl, r, h, (h <= 20.0 ? "met" : "NOT met")
    printf "bare_loop_baseline=%.2f%% agent/baseline=%.2fx\n", b, (b > 0 ? c / b : 0) }'
}

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); budget $BUDGET probes/s per layer; warm-up ${WARMUP}s, window ${WINDOW}s"
for n in $SIZES; do
  run_size "$n"
done
kill "$RESPONDER_PID" 2>/dev/null || true
wait "$RESPONDER_PID" 2>/dev/null || true
