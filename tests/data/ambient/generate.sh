#!/usr/bin/env bash
# Regenerates the captures in this directory from a real kernel: each pod ruleset (as
# istio-cni / istio-init install it) is loaded into a fresh network namespace
# (mph-ambient-gen) with iptables-restore and read back with the save tool the file name
# says. Needs root and iptables (nft + legacy). Run from anywhere:
#   sudo tests/data/ambient/generate.sh
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
ns=mph-ambient-gen

cleanup() { ip netns del "$ns" 2>/dev/null || true; }
trap cleanup EXIT

fresh() {
  cleanup
  ip netns add "$ns"
  ip -n "$ns" link set lo up
}
inns() { ip netns exec "$ns" "$@"; }

# $1 = output file, $2 = restore tool, $3... = save tool; stdin = ruleset
capture() {
  local out="$1" restore="$2"
  shift 2
  fresh
  inns "$restore"
  inns "$@" >"$here/$out"
  echo "wrote $out"
}

# Istio 1.24 in-pod rules (istio-cni, ambient): nat REDIRECT to 15001 (out) / 15006 (in).
read -r -d '' ISTIO_124 <<'EOF' || true
*mangle
:ISTIO_OUTPUT - [0:0]
:ISTIO_PRERT - [0:0]
-A PREROUTING -j ISTIO_PRERT
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_OUTPUT -m connmark --mark 0x111/0xfff -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff
-A ISTIO_PRERT -m mark --mark 0x539/0xfff -j CONNMARK --set-xmark 0x111/0xfff
COMMIT
*nat
:ISTIO_OUTPUT - [0:0]
:ISTIO_PRERT - [0:0]
-A PREROUTING -j ISTIO_PRERT
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_OUTPUT -d 169.254.7.127/32 -p tcp -m tcp -j ACCEPT
-A ISTIO_OUTPUT ! -o lo -p udp -m udp --dport 53 -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15053
-A ISTIO_OUTPUT -p tcp -m mark --mark 0x111/0xfff -j ACCEPT
-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -j ACCEPT
-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -p tcp -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15001
-A ISTIO_PRERT -s 169.254.7.127/32 -p tcp -m tcp -j ACCEPT
-A ISTIO_PRERT ! -d 127.0.0.1/32 -p tcp -m tcp ! --dport 15008 -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15006
COMMIT
EOF

# Istio 1.22-1.23 in-pod rules: mangle TPROXY to 15008/15006 in, nat REDIRECT to 15001 out.
read -r -d '' ISTIO_123 <<'EOF' || true
*mangle
:ISTIO_OUTPUT - [0:0]
:ISTIO_PRERT - [0:0]
-A PREROUTING -j ISTIO_PRERT
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_OUTPUT -m connmark --mark 0x111/0xfff -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff
-A ISTIO_PRERT -m mark --mark 0x539/0xfff -j CONNMARK --set-xmark 0x111/0xfff
-A ISTIO_PRERT -s 169.254.7.127/32 -p tcp -m tcp -j ACCEPT
-A ISTIO_PRERT ! -d 127.0.0.1/32 -i lo -p tcp -j ACCEPT
-A ISTIO_PRERT -p tcp -m tcp --dport 15008 -m mark ! --mark 0x539/0xfff -j TPROXY --on-port 15008 --on-ip 0.0.0.0 --tproxy-mark 0x111/0xfff
-A ISTIO_PRERT -p tcp -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A ISTIO_PRERT ! -d 127.0.0.1/32 -p tcp -m mark ! --mark 0x539/0xfff -j TPROXY --on-port 15006 --on-ip 0.0.0.0 --tproxy-mark 0x111/0xfff
COMMIT
*nat
:ISTIO_OUTPUT - [0:0]
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_OUTPUT -d 169.254.7.127/32 -p tcp -m tcp -j ACCEPT
-A ISTIO_OUTPUT ! -o lo -p udp -m udp --dport 53 -j REDIRECT --to-ports 15053
-A ISTIO_OUTPUT -p tcp -m mark --mark 0x111/0xfff -j ACCEPT
-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -j ACCEPT
-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -p tcp -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15001
COMMIT
EOF

# Sidecar pod (istio-init): ISTIO_INBOUND / ISTIO_OUTPUT to Envoy on 15006 / 15001.
read -r -d '' SIDECAR <<'EOF' || true
*nat
:ISTIO_INBOUND - [0:0]
:ISTIO_IN_REDIRECT - [0:0]
:ISTIO_OUTPUT - [0:0]
:ISTIO_REDIRECT - [0:0]
-A PREROUTING -p tcp -j ISTIO_INBOUND
-A OUTPUT -p tcp -j ISTIO_OUTPUT
-A ISTIO_INBOUND -p tcp -m tcp --dport 15008 -j RETURN
-A ISTIO_INBOUND -p tcp -m tcp --dport 15090 -j RETURN
-A ISTIO_INBOUND -p tcp -m tcp --dport 15021 -j RETURN
-A ISTIO_INBOUND -p tcp -m tcp --dport 15020 -j RETURN
-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT
-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A ISTIO_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN
-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
-A ISTIO_OUTPUT -j ISTIO_REDIRECT
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
COMMIT
EOF

capture inpod_1_24_redirect_nft.txt iptables-nft-restore iptables-nft-save <<<"$ISTIO_124"
capture inpod_1_24_redirect_legacy.txt iptables-legacy-restore iptables-legacy-save <<<"$ISTIO_124"
capture inpod_1_23_tproxy_nft.txt iptables-nft-restore iptables-nft-save <<<"$ISTIO_123"
capture inpod_1_23_tproxy_legacy.txt iptables-legacy-restore iptables-legacy-save <<<"$ISTIO_123"
capture sidecar_istio_init_nft.txt iptables-nft-restore iptables-nft-save <<<"$SIDECAR"
# A pod with no rules at all, as each save tool prints it.
fresh
inns iptables-nft-save >"$here/empty_nft.txt"
inns iptables-legacy-save >"$here/empty_legacy.txt"
echo "wrote empty_nft.txt empty_legacy.txt"
