#!/usr/bin/env bash
# The aggregator at scale: a real meshprobe-aggregator on loopback (ephemeral ports) fed by
# meshprobe-loadgen simulating N agents (full mesh, 1 s reports), for N = 100, 300 and,
# when given, a third size. For each N it measures, in this order:
#   1. ramp: the nodes' first connects spread at JOIN_RATE per second (a rolling DaemonSet
#      start); the time until all N streams are connected (first PeerList each), or, when
#      that does not happen within RAMP_TIMEOUT s, the most that were connected at once
#   2. steady state, after WARMUP s: the aggregator's CPU over WINDOW s (utime + stime from
#      /proc/PID/stat, % of one core) and its RSS (VmRSS) at the end of the window; the
#      loadgen's CPU over the same window (it shares the machine); the aggregator's message
#      handling time and diagnosis pass durations over the window (/metrics histograms)
#   3. /metrics: p50 of METRICS_SAMPLES scrapes (curl time_total) and the series count
#   4. Query API p50/p99 over QUERY_COUNT calls each (meshprobe-loadgen --query-bench)
#   5. detection: SIGUSR1 makes the loadgen fail every UNDERLAY probe to and from sim-0001;
#      the time from its `injected` line until Diagnose shows a finding naming sim-0001 on
#      UNDERLAY (polled every 100 ms by the loadgen, --watch-diagnose), and the finding's
#      onset_time after the injection (when the diagnosis first saw it; the rest until it
#      shows is the onset hold and the polling), and what happened in between: when the
#      simulated nodes wrote their first failing reports (the loadgen's stderr), and the
#      aggregator's message handling time and diagnosis pass durations between a /metrics
#      scrape just before the injection and one just after the finding showed. FAULTS=K
#      repeats it K times (SIGUSR2 heals the fault; the next injection waits until Diagnose
#      no longer shows it) and prints the median (detect_s, onset_s) and the nearest-rank
#      95th percentile (detect_p95_s) of the detection times
#   6. membership: the aggregator's meshprobe_aggregator_membership_{messages,bytes}_total by
#      kind (full PeerLists, PeerDeltas) over the whole run, scraped just before it stops
# and prints one result line per N plus the machine's load average before the run. The
# simulated agents are current ones (they accept membership deltas) unless
# LEGACY_MEMBERSHIP=1, which passes --legacy-membership (agents that predate deltas).
# SHARDS=K splits the simulated nodes over K loadgen processes (--shard I/K), for sizes one
# process cannot drive; their CPU, stream errors and membership bytes are summed, the ramp
# is the slowest shard's, and shard 0 watches Diagnose.
# PIN=1 gives the aggregator core 0 to itself and the loadgen processes the other cores
# (taskset), as on a cluster where the aggregator has its own node: otherwise the simulation
# of thousands of agents takes most of a shared machine's CPU away from the aggregator.
# WHOLE_DIGESTS=1 passes --whole-digests (agents whose digest is a whole report per digest
# period, as an earlier release's); EVERY_INTERVAL=1 passes --every-interval (agents that
# report every interval even with nothing new, as the previous release's).
# PROBE_BUDGET (default 200, the agent's default) is the simulated agents' --probe-budget:
# with delta reports it only sets their coverage period, which decides how their first
# report's results follow it (report_delta.h); WHOLE_FIRST_REPORTS=1 passes
# --whole-first-reports (every result in a stream's first report, as the previous release's).
# AGG_ARGS adds flags to the aggregator's command line (e.g. AGG_ARGS="--grpc-memory-limit
# 64Mi"). Everything it starts it stops (trap), by PID.
#
# Usage: bench/aggregator_scale.sh [BUILD_DIR] [THIRD_N]      (default BUILD_DIR: build)
# Env:   SIZES="100 300" WARMUP=10 WINDOW=20 METRICS_SAMPLES=20 QUERY_COUNT=20 THREADS=2 JOIN_RATE=50
#        RAMP_TIMEOUT=60 LEGACY_MEMBERSHIP=0 WHOLE_DIGESTS=0 EVERY_INTERVAL=0 SHARDS=1 PIN=0
#        PROBE_BUDGET=200 WHOLE_FIRST_REPORTS=0 FAULTS=1
#        AGG_ARGS=
set -euo pipefail

BUILD=${1:-build}
THIRD=${2:-}
AGG=$(realpath "$BUILD/aggregator/meshprobe-aggregator")
LOADGEN=$(realpath "$BUILD/bench/loadgen/meshprobe-loadgen")
WARMUP=${WARMUP:-10}
WINDOW=${WINDOW:-20}
METRICS_SAMPLES=${METRICS_SAMPLES:-20}
QUERY_COUNT=${QUERY_COUNT:-20}
THREADS=${THREADS:-2}
JOIN_RATE=${JOIN_RATE:-50}
RAMP_TIMEOUT=${RAMP_TIMEOUT:-60}
SHARDS=${SHARDS:-1}
FAULTS=${FAULTS:-1}
AGG_CPUS=()
LG_CPUS=()
if [[ ${PIN:-0} == 1 ]]; then
  (($(nproc) >= 2)) || { echo "aggregator_scale.sh: PIN=1 needs at least 2 cores" >&2; exit 1; }
  command -v taskset >/dev/null || { echo "aggregator_scale.sh: PIN=1 needs taskset (util-linux)" >&2; exit 1; }
  AGG_CPUS=(taskset -c 0)
  LG_CPUS=(taskset -c "1-$(($(nproc) - 1))")
fi
MEMBERSHIP_ARGS=()
[[ ${LEGACY_MEMBERSHIP:-0} == 1 ]] && MEMBERSHIP_ARGS=(--legacy-membership)
[[ ${WHOLE_DIGESTS:-0} == 1 ]] && MEMBERSHIP_ARGS+=(--whole-digests)
[[ ${EVERY_INTERVAL:-0} == 1 ]] && MEMBERSHIP_ARGS+=(--every-interval)
[[ ${WHOLE_FIRST_REPORTS:-0} == 1 ]] && MEMBERSHIP_ARGS+=(--whole-first-reports)
MEMBERSHIP_ARGS+=(--probe-budget "${PROBE_BUDGET:-200}")

for b in "$AGG" "$LOADGEN"; do
  [[ -x $b ]] || { echo "aggregator_scale.sh: $b not built (ninja meshprobe-aggregator meshprobe-loadgen)" >&2; exit 1; }
done
command -v curl >/dev/null || { echo "aggregator_scale.sh: needs curl" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true  # one TCP connection per simulated agent

WORK=$(mktemp -d /tmp/mp-aggscale-$$.XXXXXX)
AGG_PID=""
LG_PIDS=()
cleanup() {
  trap "" INT TERM  # a second signal must not cut the cleanup short
  set +e
  for pid in "${LG_PIDS[@]}" $AGG_PID; do
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

TICKS=$(getconf CLK_TCK)
# hist_delta FAMILY BEFORE AFTER: the observations of a histogram between two /metrics
# scrapes: their count, mean, and the bucket bounds (le) that hold half, 95 % and all.
hist_delta() {
  awk -v f="$1" '
    FNR == 1 { file++ }
    index($0, f "_bucket{le=") == 1 {
      le = $1; sub(/.*le="/, "", le); sub(/".*/, "", le)
      v[file, le] = $2
      if (file == 1) order[++k] = le
    }
    index($0, f "_sum ") == 1 { sum[file] = $2 }
    index($0, f "_count ") == 1 { cnt[file] = $2 }
    END {
      n = cnt[2] - cnt[1]
      if (n <= 0) { print "count=0"; exit }
      out = sprintf("count=%d mean_ms=%.1f", n, 1000 * (sum[2] - sum[1]) / n)
      split("0.5 0.95 1", qs, " "); split("p50 p95 max", qn, " ")
      for (q = 1; q <= 3; q++) {
        for (i = 1; i < k; i++) if (v[2, order[i]] - v[1, order[i]] >= qs[q] * n) break
        out = out sprintf(" %s_le_s=%s", qn[q], order[i])
      }
      print out
    }' "$2" "$3"
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # utime + stime (after the comm field)
rss_mib() { awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

# Polls (every 100 ms, at most $2 s) until file $1 matches regex $3.
# wait_for_line FILE SECS RE [COUNT]: until FILE has COUNT (default 1) lines matching RE.
wait_for_line() {
  local file=$1 secs=$2 re=$3 count=${4:-1} i
  for ((i = 0; i < secs * 10; i++)); do
    (($(grep -Ec "$re" "$file" 2>/dev/null) >= count)) && return 0
    sleep 0.1
  done
  echo "aggregator_scale.sh: no '$re' in $file within ${secs}s:" >&2
  tail -5 "$file" >&2
  return 1
}

run_size() {
  local n=$1
  local agg_log=$WORK/agg-$n.log lg_out=$WORK/lg-$n-0.out
  local load
  load=$(cut -d' ' -f1-3 /proc/loadavg)

  # shellcheck disable=SC2086  # AGG_ARGS is a list of flags
  "${AGG_CPUS[@]}" "$AGG" --insecure --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 ${AGG_ARGS:-} >"$agg_log" 2>&1 &
  AGG_PID=$!
  wait_for_line "$agg_log" 20 "serving HTTP" || return 1
  local grpc_port http_port
  grpc_port=$(grep -oE "serving gRPC on .* \(port [0-9]+\)" "$agg_log" | grep -oE "[0-9]+\)$" | tr -d ')')
  http_port=$(grep -oE "serving HTTP .* \(port [0-9]+\)" "$agg_log" | grep -oE "[0-9]+\)$" | tr -d ')')

  local ramp_arg
  ramp_arg=$(awk -v n="$n" -v r="$JOIN_RATE" 'BEGIN {printf "%dms", 1000 * n / r}')
  local k watch
  LG_PIDS=()
  for ((k = 0; k < SHARDS; k++)); do
    watch=()
    [[ $k == 0 ]] && watch=(--watch-diagnose)
    "${LG_CPUS[@]}" "$LOADGEN" --insecure --aggregator "127.0.0.1:$grpc_port" --nodes "$n" --interval 1s --threads "$THREADS" --ramp "$ramp_arg" \
      --shard "$k/$SHARDS" --fault-node sim-0001:underlay --fault-after 1h "${watch[@]}" "${MEMBERSHIP_ARGS[@]}" \
      >"$WORK/lg-$n-$k.out" 2>"$WORK/lg-$n-$k.err" &
    LG_PIDS+=($!)
  done
  local ramp=0 r t0 left
  t0=$(date +%s)
  for ((k = 0; k < SHARDS; k++)); do
    left=$((RAMP_TIMEOUT - ($(date +%s) - t0)))
    ((left < 1)) && left=1
    if wait_for_line "$WORK/lg-$n-$k.err" "$left" "all [0-9]+ streams connected"; then
      r=$(grep -oE "connected after [0-9.]+" "$WORK/lg-$n-$k.err" | awk '{print $3}')
      [[ $ramp == never* ]] || ramp=$(awk -v a="$ramp" -v b="$r" 'BEGIN {print (b > a) ? b : a}')
    else
      ramp="never"
    fi
  done
  if [[ $ramp == never ]]; then  # the most connected at once, summed over the shards' last progress lines
    ramp="never(max_$(for ((k = 0; k < SHARDS; k++)); do grep -oE "connected [0-9]+/" "$WORK/lg-$n-$k.err" | tr -dc '0-9\n' | sort -n | tail -1; done | awk '{s += $1} END {print s}'))"
  fi

  sleep "$WARMUP"  # warm-up before the measurement window (not synchronisation)
  local a0 l0 w0 a1 l1 w1
  lg_ticks() { local pid sum=0; for pid in "${LG_PIDS[@]}"; do sum=$((sum + $(cpu_ticks "$pid"))); done; echo "$sum"; }
  curl -s -o "$WORK/metrics-w0-$n.txt" "http://127.0.0.1:$http_port/metrics" || true
  a0=$(cpu_ticks "$AGG_PID"); l0=$(lg_ticks); w0=$(date +%s.%N)
  sleep "$WINDOW"  # the measurement window
  a1=$(cpu_ticks "$AGG_PID"); l1=$(lg_ticks); w1=$(date +%s.%N)
  curl -s -o "$WORK/metrics-w1-$n.txt" "http://127.0.0.1:$http_port/metrics" || true
  local agg_cpu lg_cpu rss
  agg_cpu=$(awk -v a="$a0" -v b="$a1" -v s="$w0" -v e="$w1" -v t="$TICKS" 'BEGIN {printf "%.1f", 100 * (b - a) / t / (e - s)}')
  lg_cpu=$(awk -v a="$l0" -v b="$l1" -v s="$w0" -v e="$w1" -v t="$TICKS" 'BEGIN {printf "%.1f", 100 * (b - a) / t / (e - s)}')
  rss=$(rss_mib "$AGG_PID")

  local mfile=$WORK/metrics-$n.txt
  for ((i = 0; i < METRICS_SAMPLES; i++)); do
    curl -s -o "$mfile" -w '%{time_total}\n' "http://127.0.0.1:$http_port/metrics"
  done >"$WORK/mtimes-$n"
  local metrics_p50 series
  metrics_p50=$(sort -n "$WORK/mtimes-$n" | awk '{v[NR] = $1} END {printf "%.1f", 1000 * v[int((NR + 1) / 2)]}')
  series=$(grep -cv '^#' "$mfile")

  # Exit 1 when a call failed or took over 10 s; the line still has the figures.
  "$LOADGEN" --insecure --aggregator "127.0.0.1:$grpc_port" --query-bench --count "$QUERY_COUNT" >"$WORK/q-$n" 2>&1 || true
  local ln dg gm
  ln=$(awk '$2 == "ListNodes" {print $4, $5, $6}' "$WORK/q-$n" | sed 's/[a-z0-9_]*=/ /g' | awk '{print $2 "/" $3 (($1 > 0) ? "(" $1 "err)" : "")}')
  dg=$(awk '$2 == "Diagnose" {print $4, $5, $6}' "$WORK/q-$n" | sed 's/[a-z0-9_]*=/ /g' | awk '{print $2 "/" $3 (($1 > 0) ? "(" $1 "err)" : "")}')
  gm=$(awk '$2 == "GetMatrix(UNDERLAY)" {print $4, $5, $6}' "$WORK/q-$n" | sed 's/[a-z0-9_]*=/ /g' | awk '{print $2 "/" $3 (($1 > 0) ? "(" $1 "err)" : "")}')

  # FAULTS injections: each waits for the finding, then (but the last) heals the fault and
  # waits until Diagnose no longer shows it.
  local f
  for ((f = 1; f <= FAULTS; f++)); do
    curl -s -o "$WORK/metrics-fault0-$n-$f.txt" "http://127.0.0.1:$http_port/metrics" || true
    kill -USR1 "${LG_PIDS[@]}"
    wait_for_line "$lg_out" 60 "^visible " "$f" || break
    curl -s -o "$WORK/metrics-fault1-$n-$f.txt" "http://127.0.0.1:$http_port/metrics" || true
    ((f < FAULTS)) || break
    kill -USR2 "${LG_PIDS[@]}"
    wait_for_line "$lg_out" 120 "^cleared " "$f" || break
  done
  local detect="timeout" onset="-" detect_p95="-" detected
  detected=$(grep -c "^visible " "$lg_out" || true)
  if ((detected > 0)); then
    # Median and nearest-rank 95th percentile over the injections that showed.
    detect=$(awk '/^visible / {print $4}' "$lg_out" | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')
    detect_p95=$(awk '/^visible / {print $4}' "$lg_out" | sort -n |
      awk '{v[NR] = $1} END {i = int(0.95 * NR); if (i < 0.95 * NR) i++; print v[i]}')
    onset=$(sed -n 's/^visible .*(onset after \([-0-9.]*\) s).*/\1/p' "$lg_out" | sort -n |
      awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')
  fi

  kill "${LG_PIDS[@]}"
  for pid in "${LG_PIDS[@]}"; do wait "$pid" || true; done
  LG_PIDS=()
  # The aggregator's membership counters over the whole run (ramp, steady state, detection).
  curl -s -o "$WORK/metrics-end-$n.txt" "http://127.0.0.1:$http_port/metrics" || true
  local agg_membership
  agg_membership=$(awk '
    /^meshprobe_aggregator_membership_(messages|bytes)_total\{/ {
      kind = $1; sub(/.*kind="/, "", kind); sub(/".*/, "", kind)
      if ($1 ~ /messages/) m[kind] = $2; else b[kind] = $2
    }
    END { printf "full=%d msgs/%.2f MiB delta=%d msgs/%.2f MiB total=%.2f MiB",
          m["full"], b["full"] / 1048576, m["delta"], b["delta"] / 1048576, (b["full"] + b["delta"]) / 1048576 }
  ' "$WORK/metrics-end-$n.txt")
  local summary membership errors
  summary=$(cat "$WORK"/lg-"$n"-*.err | grep "summary:" || true)
  membership=$(grep -oE "membership_bytes=[0-9]+" <<<"$summary" | cut -d= -f2 | awk '{s += $1} END {print s}')
  errors=$(grep -oE "stream_errors=[0-9]+" <<<"$summary" | cut -d= -f2 | awk '{s += $1} END {print s}')
  kill "$AGG_PID"
  wait "$AGG_PID" || true
  AGG_PID=""

  printf '%-6s ramp_s=%-6s agg_cpu_pct=%-6s agg_rss_mib=%-7s loadgen_cpu_pct=%-6s metrics_p50_ms=%-6s series=%-6s listnodes_p50/p99_ms=%-13s diagnose_p50/p99_ms=%-13s getmatrix_p50/p99_ms=%-15s detect_s=%-6s detect_p95_s=%-6s detected=%s/%s onset_s=%-6s membership_mib=%s stream_errors=%s load_before=%s\n' \
    "$n" "$ramp" "$agg_cpu" "$rss" "$lg_cpu" "$metrics_p50" "$series" "$ln" "$dg" "$gm" "$detect" "$detect_p95" \
    "$detected" "$FAULTS" "${onset:--}" \
    "$(awk -v b="${membership:-0}" 'BEGIN {printf "%.1f", b / 1048576}')" "${errors:-?}" "$load"
  echo "       aggregator membership sent: $agg_membership"
  sed 's/meshprobe-loadgen summary: /       loadgen: /' <<<"$summary"
  # Why streams ended: each loadgen's first and last stream error, and the streams the
  # aggregator itself ended, by reason.
  grep -h "stream error:" "$WORK"/lg-"$n"-*.err | sed 's/^meshprobe-loadgen: /       loadgen /' || true
  echo "       aggregator ingest errors: $(awk '/^meshprobe_aggregator_ingest_errors_total\{/ && $2 > 0 {printf "%s ", $0}' "$WORK/metrics-end-$n.txt")"
  sed 's/^/       /' "$WORK/q-$n"
  echo "       steady state (the window): message handling $(hist_delta meshprobe_aggregator_message_handling_seconds \
    "$WORK/metrics-w0-$n.txt" "$WORK/metrics-w1-$n.txt")"
  echo "       steady state (the window): diagnosis passes $(hist_delta meshprobe_aggregator_diagnosis_pass_duration_seconds \
    "$WORK/metrics-w0-$n.txt" "$WORK/metrics-w1-$n.txt")"
  # Where each detection's time went: when the simulated nodes wrote their first failing
  # reports (the latest witness over the shards, and the faulted node), and the aggregator's
  # message handling and diagnosis passes between the injection and the finding.
  local lines
  for ((f = 1; f <= detected; f++)); do
    lines=$(for e in "$WORK"/lg-"$n"-*.err; do grep "fault reports written" "$e" | sed -n "${f}p"; done)
    echo "       fault $f: detect $(awk '/^visible / {print $4}' "$lg_out" | sed -n "${f}p") s," \
      "onset $(sed -n 's/^visible .*(onset after \([-0-9.]*\) s).*/\1/p' "$lg_out" | sed -n "${f}p") s;" \
      "reports written: last witness $(grep -oE 'last_s=[0-9.]+' <<<"$lines" | cut -d= -f2 | sort -n | tail -1) s," \
      "faulted node $(grep -oE 'faulted_node_s=[0-9.]+' <<<"$lines" | cut -d= -f2 | sort -n | tail -1) s" \
      "($(grep -oE 'faulted_node_bytes=[1-9][0-9]*' <<<"$lines" | cut -d= -f2 | tail -1) bytes)"
    echo "         message handling $(hist_delta meshprobe_aggregator_message_handling_seconds \
      "$WORK/metrics-fault0-$n-$f.txt" "$WORK/metrics-fault1-$n-$f.txt")"
    echo "         diagnosis passes $(hist_delta meshprobe_aggregator_diagnosis_pass_duration_seconds \
      "$WORK/metrics-fault0-$n-$f.txt" "$WORK/metrics-fault1-$n-$f.txt")"
  done
}

echo "aggregator_scale.sh: warm-up ${WARMUP}s, window ${WINDOW}s, $(nproc) cores, PIN=${PIN:-0}; $(date -u +%FT%TZ)"
for n in ${SIZES:-100 300} $THIRD; do
  run_size "$n"
done
