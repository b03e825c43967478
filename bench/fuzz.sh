#!/usr/bin/env bash
# Long fuzz runs: every libFuzzer target (tests/fuzz) for at least RUNS executions (default
# one million) from its seed corpus, in a clang build with ASan + UBSan. Prints one line per
# target — executions, wall time, executions per second, coverage (edges) and features,
# corpus size — and keeps any crash input under BUILD_DIR/fuzz-artifacts/. New corpus
# entries go to a scratch directory in the build tree, not into the repository.
#
# Usage: bench/fuzz.sh [BUILD_DIR] [TARGET...]     (default: build-fuzz, every target)
# Env:   RUNS=1000000 JOBS=1 MAX_LEN=0 (0: libFuzzer's default)
#        TIMEOUT=10 (seconds one input may take before libFuzzer calls it a hang; raise it
#        on a loaded machine, where a slow input is the scheduler, not the parser)
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${1:-build-fuzz}
shift || true
RUNS=${RUNS:-1000000}
MAX_LEN=${MAX_LEN:-0}
TIMEOUT=${TIMEOUT:-10}
TARGETS=("$@")
if [[ ${#TARGETS[@]} -eq 0 ]]; then
  TARGETS=(netlink sock_diag iptables_save nft_json probe_packet subnet_env flags agent_message kube_json)
fi

command -v clang++ >/dev/null || { echo "fuzz.sh: needs clang (apt-get install clang libclang-rt-14-dev)" >&2; exit 1; }
CC=clang CXX=clang++ cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMESHPROBE_FUZZ=ON \
  -DMESHPROBE_BUILD_BENCH=OFF >/dev/null
ninja -C "$BUILD" -j"$(nproc)" "${TARGETS[@]/#/fuzz_}"

# The seed directories of each target, as its ctest run uses them (written by cmake).
seeds_of() { grep -v '^$' "$BUILD/tests/fuzz/seeds/$1.txt"; }

mkdir -p "$BUILD/fuzz-artifacts"
printf "%-14s %10s %8s %10s %8s %9s %7s %s\n" target executions wall_s exec_per_s cov features corpus crashes
for t in "${TARGETS[@]}"; do
  bin="$BUILD/tests/fuzz/fuzz_$t"
  [[ -x $bin ]] || { echo "fuzz.sh: $bin not built" >&2; exit 1; }
  scratch="$BUILD/tests/fuzz/long/$t"
  mkdir -p "$scratch"
  mapfile -t seeds < <(seeds_of "$t")
  log="$BUILD/tests/fuzz/long/$t.log"
  start=$(date +%s.%N)
  touch "$scratch.start"  # crash inputs newer than this are this run's
  rc=0
  extra=()
  [[ $MAX_LEN != 0 ]] && extra+=(-max_len="$MAX_LEN")
  "$bin" -runs="$RUNS" -timeout="$TIMEOUT" -rss_limit_mb=2048 -print_final_stats=1 "${extra[@]}" \
    -artifact_prefix="$BUILD/fuzz-artifacts/$t-" "$scratch" "${seeds[@]}" >"$log" 2>&1 || rc=$?
  end=$(date +%s.%N)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -oE "cov: [0-9]+" "$log" | tail -1 | awk '{print $2}')
  ft=$(grep -oE "ft: [0-9]+" "$log" | tail -1 | awk '{print $2}')
  corpus=$(find "$scratch" -type f | wc -l)
  crashes=$(find "$BUILD/fuzz-artifacts" -name "$t-*" -type f -newer "$scratch.start" | wc -l)
  awk -v t="$t" -v e="${execs:-0}" -v s="$start" -v f="$end" -v c="${cov:-0}" -v ft="${ft:-0}" -v co="$corpus" \
    -v cr="$crashes" -v rc="$rc" 'BEGIN {
    w = f - s; printf "%-14s %10d %8.1f %10.0f %8d %9d %7d %d%s\n", t, e, w, (w > 0 ? e / w : 0), c, ft, co, cr,
      (rc != 0 ? "  (exit " rc ", see log)" : "") }'
done
