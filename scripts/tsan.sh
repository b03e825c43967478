#!/usr/bin/env bash
# The unit tests (ctest label `unit`) under ThreadSanitizer, in their own build directory
# (-DMESHPROBE_TSAN=ON, gcc's -fsanitize=thread -g -O1). Not part of scripts/test.sh: run it
# on its own, e.g. after touching threads, locks or gRPC callbacks.
#   bash scripts/tsan.sh                 # configure build-tsan, build the unit_* executables, run them
#   bash scripts/tsan.sh -R 'Stream'     # extra arguments go to ctest
#   BUILD_DIR=/tmp/b JOBS=1 bash scripts/tsan.sh
# A race report stops the test (halt_on_error=1) and fails it. Debian's gRPC, protobuf,
# abseil and Boost are not instrumented: the reports that lie wholly inside them are
# suppressed in tests/tsan.supp, each with the reason it is not meshprobe's race.
set -euo pipefail

usage() {
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
  cat <<EOF

Environment: BUILD_DIR (default build-tsan), BUILD_TYPE (default Debug; -O1 is added),
JOBS (parallel compile jobs, default 2), TSAN_OPTIONS (appended to the script's options).
EOF
}
case "${1:-}" in
  -h | --help) usage; exit 0 ;;
esac

cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD_DIR=${BUILD_DIR:-build-tsan}
JOBS=${JOBS:-2}

launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  export CCACHE_NOHASHDIR=1 CCACHE_BASEDIR="$ROOT"
fi

echo "== configure $BUILD_DIR (ThreadSanitizer)"
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Debug}" -DMESHPROBE_TSAN=ON \
  -DMESHPROBE_BUILD_BENCH=OFF "${launcher[@]}" >/dev/null

# The unit test executables are the targets named unit_* (tests/CMakeLists.txt, tests/fuzz).
mapfile -t targets < <(ninja -C "$BUILD_DIR" -t targets all | sed -n 's/^\(unit_[A-Za-z0-9_]*\): phony$/\1/p' | sort -u)
if [ "${#targets[@]}" -eq 0 ]; then
  echo "no unit_* targets in $BUILD_DIR" >&2
  exit 1
fi
echo "== build ${targets[*]} (-j$JOBS)"
ninja -C "$BUILD_DIR" -j"$JOBS" "${targets[@]}"

echo "== ctest -L unit under ThreadSanitizer"
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$ROOT/tests/tsan.supp ${TSAN_OPTIONS:-}"
if (cd "$BUILD_DIR" && ctest --output-on-failure --timeout 600 -j1 -L unit "$@"); then
  echo "== ThreadSanitizer: all unit tests passed"
else
  echo "== ThreadSanitizer: failures above (a race report names both stacks)" >&2
  exit 1
fi
