#!/usr/bin/env bash
# ctest `image_contents` (label image, needs the `meshprobe_image` fixture): what the built
# image holds, checked inside the image itself.
#   - its default user is the aggregator Deployment's runAsUser (65532:65532), and the
#     three binaries in /usr/local/bin run (--help) as that user;
#   - `ldd` inside the image resolves every library of the three binaries;
#   - the packages the runtime stage added over debian:bookworm-slim (apt-mark showmanual)
#     are exactly the packages owning those libraries (dpkg -S inside the image) plus
#     iptables and nftables, whose iptables-{nft,legacy}-save, ip6tables-{nft,legacy}-save,
#     iptables-save and nft (what agent/ execs) are all present;
#   - prints the image size.
#   bash tests/image/check-image.sh SOURCE_DIR IMAGE
set -euo pipefail
src=$1
image=$2
base=docker.io/library/debian:bookworm-slim
failures=0
check() {  # check CONDITION_EXIT_CODE MESSAGE
  if [ "$1" -eq 0 ]; then echo "ok   $2"; else echo "FAIL $2"; failures=$((failures + 1)); fi
}
# Runs a command in the image: no network, its default user unless --user comes first.
in_image() { podman run --rm --network none "$@"; }

bins="/usr/local/bin/meshprobe-agent /usr/local/bin/meshprobe-aggregator /usr/local/bin/meshprobe"
uid=$(sed -n 's/^ *runAsUser: *\([0-9]*\).*/\1/p' "$src/manifests/base/aggregator-deployment.yaml" | head -n1)
user=$(podman image inspect --format '{{.Config.User}}' "$image")
[ "$user" = "$uid:$uid" ]; check $? "default user is $user (aggregator runAsUser $uid)"
for b in $bins; do
  in_image --entrypoint "$b" "$image" --help >/dev/null 2>&1; check $? "$b --help runs as $user"
done
in_image "$image" >/dev/null 2>&1; check $? "the default command (meshprobe --help) runs"

ldd_out=$(in_image --entrypoint /usr/bin/ldd "$image" $bins)
! grep -q "not found" <<<"$ldd_out"; check $? "ldd inside the image resolves every library"
grep "not found" <<<"$ldd_out" || true
libs=$(awk '/=> \// { print $3 }' <<<"$ldd_out" | sort -u)
# Library -> package inside the image (its real path, and the /usr-merged twin).
lib_pkgs=$(in_image --entrypoint /bin/sh "$image" -c '
  for f in "$@"; do
    r=$(readlink -f "$f"); dpkg -S "$r" 2>/dev/null || dpkg -S "${r#/usr}" 2>/dev/null || echo "UNOWNED: $f"
  done' sh $libs | sed 's/:.*//' | sed 's/,.*//' | sort -u)
! grep -q UNOWNED <<<"$lib_pkgs"; check $? "every library belongs to a Debian package"
lib_pkgs=$(grep -v UNOWNED <<<"$lib_pkgs" | sed 's/:amd64$//' | sort -u)

added=$(comm -13 <(in_image --entrypoint apt-mark "$base" showmanual | sort -u) \
                 <(in_image --entrypoint apt-mark "$image" showmanual | sort -u))
base_pkgs=$(in_image --entrypoint dpkg-query "$base" -W -f '${Package}\n' | sort -u)
# What the libraries need beyond the base image, plus the two tool packages.
needed=$(comm -23 <(echo "$lib_pkgs") <(echo "$base_pkgs"))
needed=$(printf '%s\niptables\nnftables\n' "$needed" | sed '/^$/d' | sort -u)
[ "$added" = "$needed" ]; check $? "runtime stage installs exactly the libraries' packages + iptables + nftables"
if [ "$added" != "$needed" ]; then
  echo "  installed over $base: $(echo $added)"
  echo "  needed:               $(echo $needed)"
fi
echo "libraries from: $(echo $lib_pkgs)"

for t in iptables-nft-save iptables-legacy-save ip6tables-nft-save ip6tables-legacy-save iptables-save nft; do
  in_image --entrypoint /bin/sh "$image" -c "command -v $t" >/dev/null; check $? "$t is in the image"
done

size=$(podman image inspect --format '{{.Size}}' "$image")
base_size=$(podman image inspect --format '{{.Size}}' "$base")
image_pkgs=$(in_image --entrypoint dpkg-query "$image" -W -f '${Package}\n' | wc -l)
mb() { awk -v s="$1" 'BEGIN { printf "%.1f", s / 1e6 }'; }
echo "IMAGE size_mb=$(mb "$size") base_mb=$(mb "$base_size")" \
     "packages=$image_pkgs base_packages=$(echo "$base_pkgs" | wc -l) installed_explicitly=$(echo $added)"
[ "$failures" -eq 0 ] || { echo "$failures checks failed"; exit 1; }
echo "all image checks passed"
