#!/usr/bin/env bash
# Installs every Debian 12 package that building, running and testing meshprobe needs.
# Idempotent: packages already present are skipped; safe to run on every invocation.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config git
  # libraries the binaries link
  libmnl-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libboost-dev libboost-program-options-dev
  nlohmann-json3-dev libspdlog-dev libssl-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  # what the agent execs, and what the e2e tests drive
  iproute2 iptables nftables openssl util-linux procps kmod
)
# Test-only tools (skipped with MESHPROBE_SETUP_TEST_TOOLS=0, e.g. the Dockerfile's build
# stage): promtool + a real Prometheus, headless Chromium for the matrix page, and kubectl
# (for `kubectl kustomize`): Debian's kubernetes-client unless some kubectl is already
# installed (another package owning /usr/bin/kubectl would make dpkg fail).
if [ "${MESHPROBE_SETUP_TEST_TOOLS:-1}" != 0 ]; then
  PACKAGES+=(prometheus chromium fonts-dejavu-core)
  if ! command -v kubectl >/dev/null 2>&1; then
    PACKAGES+=(kubernetes-client)
  fi
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: must run as root (it installs Debian packages)" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Deploy tests (tests/deploy, ctest -L deploy): pinned npm modules for offline manifest
# schema validation (kubernetes-models) and Dockerfile lint (dockerfilelint), installed
# from tests/deploy/package-lock.json into tests/deploy/node_modules (not in git).
# Skipped with MESHPROBE_SETUP_NPM=0 or MESHPROBE_SETUP_TEST_TOOLS=0. Reinstalled only
# when the lock file changes.
if [ "${MESHPROBE_SETUP_NPM:-1}" != 0 ] && [ "${MESHPROBE_SETUP_TEST_TOOLS:-1}" != 0 ]; then
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "setup.sh: installing nodejs npm (for tests/deploy)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
  fi
  deploy_dir="$(cd "$(dirname "$0")/.." && pwd)/tests/deploy"
  stamp="$deploy_dir/node_modules/.meshprobe-lock.sha256"
  want="$(sha256sum "$deploy_dir/package-lock.json" | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup.sh: npm ci in tests/deploy"
    (cd "$deploy_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    echo "$want" >"$stamp"
  fi
fi
echo "setup.sh: all ${#PACKAGES[@]} packages present"
