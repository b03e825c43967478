#!/usr/bin/env bash
# Diagnosis quality : runs the e2e_diagnosis suite (tests/e2e/e2e_diagnosis_test.cc,
# one real fault per scenario on a 4-node namespace mesh) N times and tabulates, per
# scenario, the time from fault injection to the expected findings in Diagnose
# (median / p95 / max), precision and recall; then overall precision and recall, and p95
# detection over the hard faults. Builds nothing.
#
#   sudo bench/diagnosis_suite.sh [BUILD_DIR] [REPEAT] [GTEST_FILTER]
#       BUILD_DIR     a configured + built tree (default: build); needs tests/e2e/e2e_diagnosis
#       REPEAT        --gtest_repeat count (default: 1)
#       GTEST_FILTER  default '-*HealthySoak*' (the soak runs MPE2E_SOAK_SECONDS, default 120 s,
#                     per repetition; pass '*' to include it)
#   env: MPE2E_SOAK_SECONDS, MPE2E_LOGS=DIR (keep every process log), KEEP_RESULTS=FILE
#        (keep the raw JSON lines), MPE2E_VERBOSE=1.
#
# Precision = findings expected or allowed / all findings in the scored sample (3 s after
# detection); recall = expected findings present / expected. Overall values are pooled
# over every run of every fault scenario (sum of counts), not averages of ratios.
# Detection is "nan" when a scenario's expected findings never all appeared within 20 s;
# such runs count as misses in recall and are left out of the time statistics.
set -euo pipefail

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }
case "${1:-}" in -h | --help) usage; exit 0 ;; esac

BUILD=${1:-build}
REPEAT=${2:-1}
FILTER=${3:--*HealthySoak*}

if [ "$(id -u)" -ne 0 ]; then
  echo "diagnosis_suite.sh: needs root (network namespaces, VXLAN devices, iptables/nft): run it with sudo" >&2
  exit 1
fi
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || { echo "diagnosis_suite.sh: REPEAT must be a positive integer, got '$REPEAT'" >&2; exit 2; }
cd "$(dirname "$0")/.."
case $BUILD in /*) ;; *) BUILD=$PWD/$BUILD ;; esac
BIN=$BUILD/tests/e2e/e2e_diagnosis
if [ ! -x "$BIN" ]; then
  echo "diagnosis_suite.sh: $BIN not found or not executable: build it first" >&2
  echo "  (cmake -S . -B $BUILD -G Ninja && ninja -C $BUILD e2e_diagnosis)" >&2
  exit 1
fi
command -v python3 >/dev/null || { echo "diagnosis_suite.sh: python3 is required for the table" >&2; exit 1; }

RESULTS=${KEEP_RESULTS:-$(mktemp /tmp/mpdiag-results-XXXXXX.jsonl)}
: >"$RESULTS"
LOG=$(mktemp /tmp/mpdiag-log-XXXXXX.txt)
cleanup() { [ -n "${KEEP_RESULTS:-}" ] || rm -f "$RESULTS"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "running $BIN --gtest_filter='$FILTER' --gtest_repeat=$REPEAT (log: $LOG)" >&2
start=$(date +%s)
set +e
MPE2E_DIAG_RESULTS=$RESULTS "$BIN" --gtest_filter="$FILTER" --gtest_repeat="$REPEAT" >"$LOG" 2>&1
rc=$?
set -e
elapsed=$(($(date +%s) - start))
grep -E '^DIAG' "$LOG" >&2 || true
failed=$(grep -E '^\[  FAILED  \] [A-Za-z0-9_]+\.' "$LOG" | sed 's/ (.*//' | sort -u || true)
skipped=$(grep -cE '^\[  SKIPPED \] [A-Za-z0-9_]+\.' "$LOG" || true)
if [ ! -s "$RESULTS" ]; then
  echo "diagnosis_suite.sh: no results recorded (exit $rc, skipped $skipped); last lines of the log:" >&2
  tail -n 30 "$LOG" >&2
  exit 1
fi

python3 - "$RESULTS" "$REPEAT" "$elapsed" "$rc" <<'EOF'
import json, math, sys
path, repeat, elapsed, rc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rows = [json.loads(l) for l in open(path) if l.strip()]

def pct(vals, p):
    # nearest-rank percentile
    if not vals: return float("nan")
    v = sorted(vals)
    return v[max(1, math.ceil(p / 100 * len(v))) - 1]

def f(x, d=2):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{d}f}"

faults = [r for r in rows if r.get("kind") == "fault"]
order = []
for r in faults:
    if r["scenario"] not in order: order.append(r["scenario"])

print(f"\ndiagnosis suite: {len(faults)} fault runs over {len(order)} scenarios, "
      f"--gtest_repeat {repeat}, {elapsed} s, gtest exit {rc}\n")
hdr = f"{'scenario':<32} {'runs':>4} {'det':>4} {'median s':>9} {'p95 s':>7} {'max s':>7} {'precision':>9} {'recall':>7}  extra findings"
print(hdr); print("-" * len(hdr))
tot = {"exp": 0, "found": 0, "all": 0, "acc": 0}
hard_times = []
for name in order:
    rs = [r for r in faults if r["scenario"] == name]
    times = [r["detect_s"] for r in rs if r.get("detect_s") is not None]
    exp = sum(r["expected"] for r in rs); found = sum(r["found"] for r in rs)
    allf = sum(r["findings"] for r in rs); extra = sum(len(r["extra"]) for r in rs)
    acc = allf - extra
    tot["exp"] += exp; tot["found"] += found; tot["all"] += allf; tot["acc"] += acc
    if any(r.get("hard", True) for r in rs): hard_times += times
    prec = acc / allf if allf else 1.0
    rec = found / exp if exp else 1.0
    extras = sorted({e for r in rs for e in r["extra"]})
    print(f"{name:<32} {len(rs):>4} {len(times):>4} {f(pct(times, 50)):>9} {f(pct(times, 95)):>7} "
          f"{f(max(times) if times else None):>7} {f(prec):>9} {f(rec):>7}  {', '.join(extras) or '-'}")
print("-" * len(hdr))
P = tot["acc"] / tot["all"] if tot["all"] else 1.0
R = tot["found"] / tot["exp"] if tot["exp"] else 1.0
print(f"{'overall':<32} {len(faults):>4} {sum(1 for r in faults if r.get('detect_s') is not None):>4} "
      f"{f(pct(hard_times, 50)):>9} {f(pct(hard_times, 95)):>7} {f(max(hard_times) if hard_times else None):>7} "
      f"{f(P):>9} {f(R):>7}")
print(f"\noverall precision {f(P, 3)} ({tot['acc']}/{tot['all']} findings expected or allowed), "
      f"recall {f(R, 3)} ({tot['found']}/{tot['exp']} expected findings present)")
print(f"p95 detection over hard faults: {f(pct(hard_times, 95))} s (n={len(hard_times)} detected runs; "
      f"median {f(pct(hard_times, 50))} s, max {f(max(hard_times) if hard_times else None)} s)")

rec = [r for r in rows if r.get("kind") == "recovery"]
if rec:
    print(f"\n{'recovery (fault removed -> finding gone)':<42} {'runs':>4} {'cleared':>7} {'median s':>9} {'p95 s':>7} {'max s':>7}")
    for name in dict.fromkeys(r["scenario"] for r in rec):
        rs = [r for r in rec if r["scenario"] == name]
        t = [r["clear_s"] for r in rs if r.get("clear_s") is not None]
        print(f"{name:<42} {len(rs):>4} {len(t):>7} {f(pct(t, 50)):>9} {f(pct(t, 95)):>7} {f(max(t) if t else None):>7}")
soak = [r for r in rows if r.get("kind") == "soak"]
for r in soak:
    print(f"\nsoak: {r['seconds']} s, {r['polls']} polls, {r['nonempty']} with findings, "
          f"{r['failed_queries']} failed queries; jitter: {r['mechanism']}")
EOF

if [ -n "$failed" ]; then
  echo
  echo "failed tests (details in $LOG):"
  echo "$failed" | sed 's/^\[  FAILED  \] /  /'
fi
[ "$skipped" -gt 0 ] && echo "skipped tests: $skipped (see $LOG)"
exit "$rc"
