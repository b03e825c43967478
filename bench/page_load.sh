#!/usr/bin/env bash
# The matrix page at scale in headless Chromium: meshprobe-page-bench serves the real page
# routes over a synthetic cluster (NODES nodes, one broken node, a few DEGRADED pairs, two
# stale nodes) on loopback, and bench/page_load.js loads the page over the DevTools
# protocol and prints the page's own timings (first render, one render, heatmap, a cell's
# details from /api/v1/cell). The document sizes and build times come first.
#
#   BUILD=build NODES=1000 RUNS=3 bench/page_load.sh
# Needs /usr/bin/chromium and node (Debian: chromium, nodejs).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
BUILD=${BUILD:-$here/../build}
NODES=${NODES:-1000}
RUNS=${RUNS:-3}
bench=$BUILD/bench/meshprobe-page-bench
[[ -x $bench ]] || { echo "no $bench (ninja -C $BUILD meshprobe-page-bench)" >&2; exit 1; }
command -v node >/dev/null || { echo "node is missing (apt-get install nodejs)" >&2; exit 1; }

log=$(mktemp)
"$bench" --nodes "$NODES" --repeat 3 --serve 127.0.0.1:0 --serve-seconds 600 >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$log"' EXIT
# Poll (bounded) until the server says where it listens.
url=
for _ in $(seq 600); do
  url=$(sed -n 's/^serving \(http[^ ]*\) .*/\1/p' "$log")
  [[ -n $url ]] && break
  kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.1
done
[[ -n $url ]] || { echo "meshprobe-page-bench did not start serving" >&2; cat "$log" >&2; exit 1; }
grep -v '^serving' "$log"
printf -v src 'node-%05d' 1
printf -v dst 'node-%05d' 2
node "$here/page_load.js" "$url" "$src" "$dst" "$RUNS"
