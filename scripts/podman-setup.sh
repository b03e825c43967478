#!/usr/bin/env bash
# Prepares podman on a Debian 12 machine to build and run the meshprobe image without a
# Docker engine and without a container registry (as root):
#
#   1. installs podman, runc and debootstrap (Debian packages; only the missing ones);
#   2. writes one containers.conf drop-in, /etc/containers/containers.conf.d/50-meshprobe.conf,
#      and only when its content changes (it says so):
#        runtime = "runc"   crun refuses cgroup v1 / hybrid hosts ("cgroups in hybrid mode
#                           not supported"); runc runs on every layout;
#        default_ulimits    podman's own default nofile/nproc (1048576) cannot be set by a
#                           process whose hard limits are lower: use this shell's limits
#                           (nproc at most kernel.pid_max, podman's own nproc limit);
#   3. makes the two base images the Dockerfile names, docker.io/library/debian:bookworm
#      and docker.io/library/debian:bookworm-slim, from `debootstrap --variant=minbase`
#      against this machine's Debian mirror (no registry needed), once: they are remade
#      only when the debootstrap inputs change (their checksum is kept with the image IDs
#      in /var/lib/meshprobe/podman-base-images) or an image is missing. Images pulled
#      from a registry under those names are left alone (MESHPROBE_PODMAN_BASE=1 replaces
#      them with local ones).
#
# Idempotent; safe to run before every test run. Nothing else under /etc/containers is
# touched. Storage stays podman's default (overlay where the kernel allows, else vfs).
#   sudo bash scripts/podman-setup.sh
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "podman-setup.sh: must run as root (apt-get, /etc/containers, root podman storage)" >&2
  exit 1
fi

log() { echo "podman-setup.sh: $*"; }

# ---- 1. packages
PACKAGES=(podman runc debootstrap)
missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ---- 2. containers.conf drop-in
limit() {  # soft:hard of `ulimit -<flag>`, at most $2 ("unlimited" counts as podman's 1048576)
  local soft hard
  soft=$(ulimit -S"$1"); hard=$(ulimit -H"$1")
  [ "$soft" = unlimited ] && soft=1048576
  [ "$hard" = unlimited ] && hard=1048576
  [ "$hard" -gt "$2" ] && hard=$2
  [ "$soft" -gt "$hard" ] && soft=$hard
  echo "$soft:$hard"
}
# podman itself runs with its nproc limit lowered to kernel.pid_max, and a container
# cannot get more than podman has.
pid_max=$(cat /proc/sys/kernel/pid_max)
dropin_dir=/etc/containers/containers.conf.d
dropin=$dropin_dir/50-meshprobe.conf
want_conf="# Written by meshprobe's scripts/podman-setup.sh (rewritten when the values change).
[containers]
# The process limits of the shell that ran podman-setup.sh (nproc at most kernel.pid_max):
# podman's default (1048576) is above what this host lets a process raise its limits to.
default_ulimits = [
  \"nofile=$(limit n 1048576)\",
  \"nproc=$(limit u "$pid_max")\",
]

[engine]
# crun refuses hybrid cgroup hierarchies; runc handles them.
runtime = \"runc\"
"
if [ "$(cat "$dropin" 2>/dev/null)" != "$(printf '%s' "$want_conf")" ]; then
  mkdir -p "$dropin_dir"
  printf '%s' "$want_conf" >"$dropin"
  log "wrote $dropin (runtime = runc; default_ulimits nofile=$(limit n 1048576) nproc=$(limit u "$pid_max"))"
fi

# ---- 3. base images
# The host's Debian mirror and security mirror (deb822 .sources or one-line sources.list).
host_uri() {  # $1: suite to look for (bookworm | bookworm-security)
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v suite="$1" '
      function emit() { if (!done && u != "" && (" " s " ") ~ (" " suite " ")) { print u; done = 1 } }
      /^[[:space:]]*$/ { emit(); u = ""; s = ""; next }
      /^URIs:/ { u = $2 } /^Suites:/ { $1 = ""; s = substr($0, 2) }
      END { emit() }' "$f"
  done
  if [ -f /etc/apt/sources.list ]; then
    awk -v suite="$1" '$1 == "deb" && $3 == suite { print $2 }' /etc/apt/sources.list
  fi
  return 0
}
MIRROR=${MESHPROBE_DEBIAN_MIRROR:-$(host_uri bookworm | head -n1)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY=${MESHPROBE_DEBIAN_SECURITY:-$(host_uri bookworm-security | head -n1)}
SECURITY=${SECURITY:-http://deb.debian.org/debian-security}

FULL=docker.io/library/debian:bookworm
SLIM=docker.io/library/debian:bookworm-slim
stamp_dir=/var/lib/meshprobe
stamp=$stamp_dir/podman-base-images

# >>> image recipe: everything between these markers, with the mirrors and the
# debootstrap version, is checksummed; the images are remade when the checksum changes.
changes=(--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' --change 'CMD ["bash"]')
shape_like_official() {  # $1: rootfs
  local root=$1
  # Shape it like Debian's official image (debuerreotype): deb822 sources with updates and
  # security, apt that keeps no .debs and no translations, and nothing left from the build.
  rm -f "$root/etc/apt/sources.list"
  cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
  echo 'APT::AutoRemove::SuggestsImportant "false";' >"$root/etc/apt/apt.conf.d/docker-autoremove-suggests"
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/tmp/* "$root"/etc/hostname "$root"/etc/machine-id
  : >"$root/etc/resolv.conf"
}
slimify() {  # $1: rootfs, already shaped
  local root=$1
  # The slim variant: what debuerreotype's slimify drops (documentation, man pages,
  # translations, info pages), kept out of later installs by a dpkg path-exclude file.
  cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
# Slim image: no documentation or translations (copyright files stay).
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
EOF
  find "$root/usr/share/doc" -mindepth 1 -not -type d -not -name copyright -delete
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$root"/usr/share/{info,linda,lintian/overrides,locale,man,groff}/*
}
# <<< image recipe
inputs="suite=bookworm variant=minbase arch=$(dpkg --print-architecture) mirror=$MIRROR security=$SECURITY
debootstrap=$(dpkg-query -W -f='${Version}' debootstrap)
$(sed -n '/^# >>> image recipe/,/^# <<< image recipe/p' "$0")"
sum=$(printf '%s' "$inputs" | sha256sum | cut -d' ' -f1)

image_id() { podman image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }
if [ "${MESHPROBE_PODMAN_BASE:-}" != 1 ] && [ ! -f "$stamp" ] && [ -n "$(image_id $FULL)" ] && [ -n "$(image_id $SLIM)" ]; then
  log "base images $FULL and $SLIM exist (not made by this script): kept"
  exit 0
fi
if [ "$(cat "$stamp" 2>/dev/null)" = "$sum $(image_id $FULL) $(image_id $SLIM)" ]; then
  log "base images up to date ($FULL, $SLIM; inputs ${sum:0:12})"
  exit 0
fi
old_ids="$(image_id $FULL) $(image_id $SLIM)"

work=$(mktemp -d /var/tmp/meshprobe-debootstrap-XXXXXX)
trap 'rm -rf --one-file-system "$work"' EXIT
root=$work/rootfs
log "debootstrap --variant=minbase bookworm from $MIRROR"
t0=$(date +%s)
if ! debootstrap --variant=minbase bookworm "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1; then
  tail -n 30 "$work/debootstrap.log" >&2
  exit 1
fi
shape_like_official "$root"
tar --numeric-owner --xattrs -C "$root" -c . | podman import --quiet "${changes[@]}" - "$FULL" >/dev/null
slimify "$root"
tar --numeric-owner --xattrs -C "$root" -c . | podman import --quiet "${changes[@]}" - "$SLIM" >/dev/null
# The images these replace, unless something still uses them.
for id in $old_ids; do
  if [ "$id" != "$(image_id $FULL)" ] && [ "$id" != "$(image_id $SLIM)" ]; then
    podman rmi "$id" >/dev/null 2>&1 || true
  fi
done

mkdir -p "$stamp_dir"
echo "$sum $(image_id $FULL) $(image_id $SLIM)" >"$stamp"
size() { podman image inspect --format '{{.Size}}' "$1" | awk '{ printf "%.0f MB", $1 / 1e6 }'; }
log "made $FULL ($(size $FULL)) and $SLIM ($(size $SLIM)) in $(($(date +%s) - t0)) s"
