#!/usr/bin/env bash
# The whole test suite: installs packages, builds, runs unit tests, e2e tests (real
# network namespaces, VXLAN devices, iptables rules and sockets; needs root) and then the
# unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer.
#   sudo bash scripts/test.sh            # everything
#   SKIP_ASAN=1 bash scripts/test.sh     # skip the sanitizer pass
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

echo "== build (RelWithDebInfo)"
BUILD_DIR=build bash scripts/build.sh

echo "== unit and e2e tests"
(cd build && ctest --output-on-failure --timeout 600 -j1)

if [ -z "${SKIP_ASAN:-}" ]; then
  echo "== build (ASan + UBSan)"
  BUILD_DIR=build-asan BUILD_TYPE=Debug bash scripts/build.sh -DMESHPROBE_SANITIZE=ON -DMESHPROBE_BUILD_BENCH=OFF
  echo "== unit and e2e tests under ASan + UBSan"
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
     ctest --output-on-failure --timeout 600 -j1)
fi
echo "== all tests passed"
