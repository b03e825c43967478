#!/usr/bin/env bash
# The whole test suite: installs packages, builds, runs unit tests, e2e tests (real
# network namespaces, VXLAN devices, iptables rules and sockets; needs root) and then the
# unit tests and the core e2e suites (ctest label `e2e-sanitize`) again under AddressSanitizer +
# UndefinedBehaviorSanitizer, and a short libFuzzer run of every parser's fuzz target
# (ctest label `fuzz`); the last two share one clang build in build-asan/. The image tests
# (ctest -L image) build the container image from the Dockerfile with podman and run it in
# the namespace cluster; scripts/podman-setup.sh prepares podman for them.
#   sudo bash scripts/test.sh            # everything
#   SKIP_ASAN=1 bash scripts/test.sh     # skip the sanitizer pass
#   SKIP_IMAGE=1 bash scripts/test.sh    # skip the image tests (and podman-setup.sh)
#   SKIP_FUZZ=1 bash scripts/test.sh     # skip the short libFuzzer runs
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
if [ -z "${SKIP_IMAGE:-}" ]; then
  bash scripts/podman-setup.sh
fi

echo "== build (RelWithDebInfo)"
BUILD_DIR=build bash scripts/build.sh

# Unit tests need no privileges and share no port, file or name, so they run two at a time.
# The e2e and image tests run one at a time: each removes the namespaces an interrupted run
# left behind when it starts, and their time bounds assume the machine to themselves.
echo "== unit tests"
(cd build && ctest --output-on-failure --timeout 600 -j2 -L unit)
echo "== e2e tests"
(cd build && ctest --output-on-failure --timeout 600 -j1 -LE "unit${SKIP_IMAGE:+|image}")

# One clang build serves both: ASan + UBSan everywhere, coverage instrumentation for libFuzzer
# (the fuzz_* targets link it; the tests do not).
if [ -z "${SKIP_ASAN:-}" ] || [ -z "${SKIP_FUZZ:-}" ]; then
  targets=""
  [ -z "${SKIP_ASAN:-}" ] && targets="sanitize_tests"
  [ -z "${SKIP_FUZZ:-}" ] && targets="$targets fuzz"
  echo "== build (clang, ASan + UBSan: $targets)"
  CC=clang CXX=clang++ BUILD_DIR=build-asan BUILD_TYPE=Debug BUILD_TARGETS="$targets" \
    bash scripts/build.sh -DMESHPROBE_SANITIZE=ON -DMESHPROBE_FUZZ=ON -DMESHPROBE_BUILD_BENCH=OFF
fi
if [ -z "${SKIP_ASAN:-}" ]; then
  echo "== unit tests and the core e2e suites under ASan + UBSan"
  (cd build-asan && export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
     && ctest --output-on-failure --timeout 600 -j2 -L unit \
     && ctest --output-on-failure --timeout 600 -j1 -L sanitize -LE unit)
fi
if [ -z "${SKIP_FUZZ:-}" ]; then
  echo "== fuzz targets, a few seconds each (bench/fuzz.sh runs them for a million executions)"
  (cd build-asan && ctest --output-on-failure --timeout 600 -j1 -L fuzz)
fi
echo "== all tests passed"
