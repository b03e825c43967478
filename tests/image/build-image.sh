#!/usr/bin/env bash
# ctest fixture `meshprobe_image` (label image): prepares podman (scripts/podman-setup.sh,
# idempotent: runc, the containers.conf drop-in, local debian:bookworm{,-slim} base images)
# and builds the image from the Dockerfile as a Docker user would:
#   podman build -t IMAGE -f Dockerfile .
# plus --network host, so the build's `RUN apt-get` uses the host's network rather than a
# bridge podman would add to the host. podman keeps the layers: a rerun with unchanged
# sources takes seconds; a source change recompiles (the build stage's last layer).
#   bash tests/image/build-image.sh SOURCE_DIR IMAGE
# Prints `IMAGE image=... id=... size_mb=... build_s=...`. Exit 77 (ctest SKIP) without root.
set -euo pipefail
src=$1
image=$2
if [ "$(id -u)" -ne 0 ]; then
  echo "build-image.sh: needs root (root podman storage, apt-get in podman-setup.sh)"
  exit 77
fi
bash "$src/scripts/podman-setup.sh"

old=$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
# Untagged images nothing builds on (e.g. the build stage of an earlier build): removed
# after a successful build unless this build used them (then they have children now).
dangling=$(podman images --filter dangling=true --quiet --no-trunc)
t0=$(date +%s)
podman build --network host -t "$image" -f "$src/Dockerfile" "$src"
build_s=$(($(date +%s) - t0))
id=$(podman image inspect --format '{{.Id}}' "$image")
# The image this build replaced (now untagged) and the stale build stages, unless a
# container or a newer layer still uses them (podman rmi without --force refuses then).
for stale in $old $dangling; do
  if [ "$stale" != "$id" ]; then
    podman rmi "$stale" >/dev/null 2>&1 || true
  fi
done
size=$(podman image inspect --format '{{.Size}}' "$image")
echo "IMAGE image=$image id=${id:0:12} size_mb=$(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1e6 }') build_s=$build_s"
