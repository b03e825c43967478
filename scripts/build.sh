#!/usr/bin/env bash
# Configures and builds meshprobe into ./build (or $BUILD_DIR). Extra args go to cmake;
# $BUILD_TARGETS (space-separated ninja targets) builds only those instead of everything.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo} "$@" >/dev/null
# shellcheck disable=SC2086  # BUILD_TARGETS is a list
ninja -C "$BUILD_DIR" -j"$(nproc)" ${BUILD_TARGETS:-}
