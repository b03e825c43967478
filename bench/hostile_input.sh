#!/usr/bin/env bash
# Hostile input on meshprobe's network ports, bounded in count and time, on loopback and in a
# network namespace of its own. Starts a real meshprobe-aggregator (--insecure, ephemeral
# gRPC and HTTP ports on 127.0.0.1) and a real standalone meshprobe-agent (--insecure, in a
# namespace with only lo) and measures, each against the quiet figure taken right before:
#
#   HTTP (aggregator, then agent):
#     idle   IDLE_CONNS connections that never send a byte, held HTTP_HOLD s, while
#            METRICS_REQUESTS GET /metrics (each on a fresh connection) are spread over
#            the hold: answered, p50/p99, what the held connections saw and when
#     slow   SLOW_CONNS slow-header clients (one header byte a second, reconnecting
#            within a second of being closed) for SLOW_HOLD s, /metrics as above
#   gRPC (aggregator):
#     (in the order below; the oversized messages last, as their memory stays with the process)
#     oversize  OVERSIZE_REPEAT Collector streams whose first message is a 64 MiB Hello,
#               and as many 64 MiB GetNode requests: each call's status and time; then
#               OVERSIZE_PARALLEL clients doing one of each at the same time
#     garbage   GARBAGE_CONNS connections of 64 KiB random bytes, as many of an HTTP/2
#               preface then random bytes: what each saw, how fast it was closed
#     silent    SILENT_STREAMS Collector streams that never send Hello, held SILENT_HOLD s,
#               ListNodes p50/p99 before, during, after; how many the server ended
#   For every phase: the daemon's RSS and thread count before, at peak, and after.
#
# Prints the machine's load average before and after, and one line per figure. Needs root
# (the namespace) and python3. Everything it starts it stops (trap), by PID. A bench, not a
# test: it is not registered with ctest.
#
# Usage: bench/hostile_input.sh [--help] [BUILD_DIR]      (default BUILD_DIR: build)
# Env:   IDLE_CONNS=10000 HTTP_HOLD=15 SLOW_CONNS=200 SLOW_HOLD=25 METRICS_REQUESTS=50
#        OVERSIZE_MIB=64 OVERSIZE_REPEAT=3 OVERSIZE_PARALLEL=8 GARBAGE_CONNS=50 SILENT_STREAMS=1000 SILENT_HOLD=60
#        PROBES=50 AGENT=1 (0: skip the agent)
set -euo pipefail

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
  exit 0
fi

BUILD=${1:-build}
HERE=$(cd "$(dirname "$0")" && pwd)
AGG=$(realpath "$BUILD/aggregator/meshprobe-aggregator")
AGENT_BIN=$(realpath "$BUILD/agent/meshprobe-agent")
GRPC_DRIVER=$(realpath "$BUILD/bench/hostile/meshprobe-hostile-grpc")
HTTP_DRIVER="$HERE/hostile/http_hostile.py"
IDLE_CONNS=${IDLE_CONNS:-10000}
HTTP_HOLD=${HTTP_HOLD:-15}
SLOW_CONNS=${SLOW_CONNS:-200}
SLOW_HOLD=${SLOW_HOLD:-25}
METRICS_REQUESTS=${METRICS_REQUESTS:-50}
OVERSIZE_MIB=${OVERSIZE_MIB:-64}
OVERSIZE_REPEAT=${OVERSIZE_REPEAT:-3}
OVERSIZE_PARALLEL=${OVERSIZE_PARALLEL:-8}
GARBAGE_CONNS=${GARBAGE_CONNS:-50}
SILENT_STREAMS=${SILENT_STREAMS:-1000}
SILENT_HOLD=${SILENT_HOLD:-60}
PROBES=${PROBES:-50}
AGENT=${AGENT:-1}

for f in "$AGG" "$AGENT_BIN" "$GRPC_DRIVER" "$HTTP_DRIVER"; do
  [[ -e $f ]] || { echo "missing $f (build meshprobe-aggregator meshprobe-agent meshprobe-hostile-grpc)" >&2; exit 1; }
done
[[ $(id -u) == 0 || $AGENT == 0 ]] || { echo "the agent phase needs root (a network namespace); AGENT=0 skips it" >&2; exit 1; }

# Every client connection is a file descriptor: raise the soft limit to the hard one.
ulimit -n "$(ulimit -Hn)"
if (($(ulimit -n) < IDLE_CONNS + 1000)); then
  echo "open-file limit $(ulimit -n) is too low for IDLE_CONNS=$IDLE_CONNS" >&2
  exit 1
fi

WORK=$(mktemp -d /tmp/meshprobe-hostile.XXXXXX)
NS=mphostile-$$
PIDS=()      # the daemons
CMD_PID=""   # the running driver, if any
NS_MADE=0
cleanup() {
  local rc=$?
  [[ -n $CMD_PID ]] && PIDS+=("$CMD_PID")
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  ((NS_MADE)) && ip netns del "$NS" 2>/dev/null
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT INT TERM

# Waits (polling, 10 s deadline) for a regex in a log; prints the first capture group.
wait_log() {
  local log=$1 re=$2 i
  for ((i = 0; i < 100; i++)); do
    if grep -qE "$re" "$log" 2>/dev/null; then
      grep -oE "$re" "$log" | head -1 | grep -oE '[0-9]+\)?$' | tr -d ')'
      return 0
    fi
    sleep 0.1
  done
  echo "timed out waiting for /$re/ in $log:" >&2
  cat "$log" >&2
  return 1
}

proc_stat() {  # "RSS_KB THREADS" of a PID
  awk '/^VmRSS:/ {r=$2} /^Threads:/ {t=$2} END {print r, t}' "/proc/$1/status"
}

# phase NAME PID CMD...: runs CMD (its output to stdout), sampling PID's RSS and threads
# every 0.5 s; prints the figures before, at peak, and 2 s after CMD ended.
phase() {
  local name=$1 pid=$2
  shift 2
  local before peak_r peak_t r t after
  before=$(proc_stat "$pid")
  peak_r=${before% *}
  peak_t=${before#* }
  "$@" >"$WORK/$name.out" &
  CMD_PID=$!
  while kill -0 "$CMD_PID" 2>/dev/null; do
    read -r r t < <(proc_stat "$pid")
    ((r > peak_r)) && peak_r=$r
    ((t > peak_t)) && peak_t=$t
    sleep 0.5
  done
  local rc=0
  wait "$CMD_PID" || rc=$?
  CMD_PID=""
  sleep 2
  after=$(proc_stat "$pid")
  sed "s/^/[$name] /" "$WORK/$name.out"
  echo "[$name] daemon rss_kb before=${before% *} peak=$peak_r after=${after% *}" \
    "threads before=${before#* } peak=$peak_t after=${after#* } driver_exit=$rc"
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) (nproc $(nproc))"

"$AGG" --insecure --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 >"$WORK/aggregator.log" 2>&1 &
AGG_PID=$!
PIDS+=("$AGG_PID")
GRPC_PORT=$(wait_log "$WORK/aggregator.log" 'serving gRPC on [^ ]+ \(port [0-9]+')
HTTP_PORT=$(wait_log "$WORK/aggregator.log" 'serving HTTP .* \(port [0-9]+\)')
echo "aggregator pid $AGG_PID: gRPC 127.0.0.1:$GRPC_PORT, HTTP 127.0.0.1:$HTTP_PORT"

http_phases() {  # PREFIX PID PORT [netns exec prefix...]
  local prefix=$1 pid=$2 port=$3
  shift 3
  phase "$prefix-metrics-baseline" "$pid" "$@" python3 "$HTTP_DRIVER" metrics --port "$port" \
    --requests "$METRICS_REQUESTS"
  phase "$prefix-idle" "$pid" "$@" python3 "$HTTP_DRIVER" idle --port "$port" --conns "$IDLE_CONNS" \
    --hold "$HTTP_HOLD" --requests "$METRICS_REQUESTS"
  phase "$prefix-metrics-baseline2" "$pid" "$@" python3 "$HTTP_DRIVER" metrics --port "$port" \
    --requests "$METRICS_REQUESTS"
  phase "$prefix-slow" "$pid" "$@" python3 "$HTTP_DRIVER" slow --port "$port" --conns "$SLOW_CONNS" \
    --hold "$SLOW_HOLD" --requests "$METRICS_REQUESTS"
}

http_phases aggregator-http "$AGG_PID" "$HTTP_PORT"

if ((AGENT)); then
  ip netns add "$NS"
  NS_MADE=1
  ip -n "$NS" link set lo up
  # Standalone (no --aggregator): its checks fail in this bare namespace, its HTTP port serves.
  ip netns exec "$NS" "$AGENT_BIN" --insecure --node-name hostile-node --node-ip 127.0.0.1 \
    --http-listen 127.0.0.1:0 --probe-port 19473 --interval 5s >"$WORK/agent.log" 2>&1 &
  AGENT_PID=$!
  PIDS+=("$AGENT_PID")
  AGENT_PORT=$(wait_log "$WORK/agent.log" 'serving /metrics.* \(port [0-9]+\)')
  echo "agent pid $AGENT_PID in netns $NS: HTTP 127.0.0.1:$AGENT_PORT"
  http_phases agent-http "$AGENT_PID" "$AGENT_PORT" ip netns exec "$NS"
fi

phase grpc-listnodes-baseline "$AGG_PID" "$GRPC_DRIVER" --target "127.0.0.1:$GRPC_PORT" --mode listnodes \
  --count "$PROBES"
phase grpc-garbage "$AGG_PID" python3 "$HTTP_DRIVER" garbage --port "$GRPC_PORT" --conns "$GARBAGE_CONNS"
phase grpc-listnodes-after-garbage "$AGG_PID" "$GRPC_DRIVER" --target "127.0.0.1:$GRPC_PORT" \
  --mode listnodes --count "$PROBES"
phase grpc-silent-streams "$AGG_PID" "$GRPC_DRIVER" --target "127.0.0.1:$GRPC_PORT" --mode idle-streams \
  --count "$SILENT_STREAMS" --hold "$SILENT_HOLD" --probes "$PROBES"

phase grpc-oversize "$AGG_PID" "$GRPC_DRIVER" --target "127.0.0.1:$GRPC_PORT" --mode oversize \
  --mib "$OVERSIZE_MIB" --repeat "$OVERSIZE_REPEAT"
phase grpc-oversize-parallel "$AGG_PID" "$GRPC_DRIVER" --target "127.0.0.1:$GRPC_PORT" --mode oversize \
  --mib "$OVERSIZE_MIB" --repeat 1 --parallel "$OVERSIZE_PARALLEL"
kill -0 "$AGG_PID" && echo "aggregator still running after every phase"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
