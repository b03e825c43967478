#!/usr/bin/env bash
# Regenerates the captures in this directory from real kernels: each ruleset is loaded
# into a fresh network namespace (mph-firewall-gen) with iptables-restore / nft -f and
# read back with iptables-save / iptables-legacy-save / ip6tables-save / nft -j list
# ruleset. Needs root, iptables (nft + legacy), nftables and ipset. Run from anywhere:
#   sudo tests/data/firewall/generate.sh
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
ns=mph-firewall-gen

cleanup() { ip netns del "$ns" 2>/dev/null || true; }
trap cleanup EXIT

fresh() {
  cleanup
  ip netns add "$ns"
  ip -n "$ns" link set lo up
}
inns() { ip netns exec "$ns" "$@"; }

# $1 = output file, $2 = restore tool, $3 = save tool (+args), stdin = ruleset
capture_ipt() {
  local out="$1" restore="$2"
  shift 2
  fresh
  inns "$restore"
  inns "$@" >"$here/$out"
  echo "wrote $out"
}

# $1 = output file, stdin = nft script
capture_nft() {
  local out="$1"
  fresh
  inns nft -f -
  inns nft -j list ruleset >"$here/$out"
  echo >>"$here/$out"
  echo "wrote $out"
}

# --- flannel host chains + Istio host probe SNAT + kube hint, healthy (iptables-nft) ---
fresh
inns ipset create istio-inpod-probes-v4 hash:ip
inns iptables-nft-restore <<'EOF'
*mangle
:KUBE-IPTABLES-HINT - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
COMMIT
*nat
:ISTIO_POSTRT - [0:0]
:FLANNEL-POSTRTG - [0:0]
-A POSTROUTING -j ISTIO_POSTRT
-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
-A ISTIO_POSTRT -m owner --socket-exists -p tcp -m set --match-set istio-inpod-probes-v4 dst -j SNAT --to-source 169.254.7.127
-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 10.244.1.0/24 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 10.244.0.0/16 -d 10.244.1.0/24 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.1.0/24 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully
-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully
COMMIT
*filter
:FLANNEL-FWD - [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -m conntrack --ctstate INVALID -j DROP
-A INPUT -p udp -m udp --dport 4789 -j ACCEPT
-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD
-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT
-A FLANNEL-FWD -d 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT
COMMIT
EOF
inns iptables-nft-save >"$here/host_flannel_istio_nft.txt"
inns iptables-nft-save -t mangle >"$here/mangle_hint_nft.txt"
inns nft -j list ruleset >"$here/nft_from_iptables_nft.json"
echo >>"$here/nft_from_iptables_nft.json"
echo "wrote host_flannel_istio_nft.txt mangle_hint_nft.txt nft_from_iptables_nft.json"

# --- the same hint in legacy mode (mode detection: legacy) ---
capture_ipt mangle_hint_legacy.txt iptables-legacy-restore iptables-legacy-save -t mangle <<'EOF'
*mangle
:KUBE-IPTABLES-HINT - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
COMMIT
EOF

# --- Istio 1.24 in-pod rules: nat REDIRECT to 15001 / 15006 ---
capture_ipt istio_1_24_inpod_redirect.txt iptables-nft-restore iptables-nft-save <<'EOF'
*mangle
:ISTIO_PRERT - [0:0]
:ISTIO_OUTPUT - [0:0]
-A PREROUTING -j ISTIO_PRERT
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_PRERT -m mark --mark 0x539/0xfff -j CONNMARK --set-xmark 0x111/0xfff
-A ISTIO_OUTPUT -m connmark --mark 0x111/0xfff -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff
COMMIT
*nat
:ISTIO_PRERT - [0:0]
:ISTIO_OUTPUT - [0:0]
-A PREROUTING -j ISTIO_PRERT
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_PRERT -s 169.254.7.127/32 -p tcp -m tcp -j ACCEPT
-A ISTIO_PRERT ! -d 127.0.0.1/32 -i lo -p tcp -j ACCEPT
-A ISTIO_PRERT -p tcp -m tcp --dport 15008 -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15008
-A ISTIO_PRERT ! -d 127.0.0.1/32 -p tcp -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15006
-A ISTIO_OUTPUT -d 169.254.7.127/32 -p tcp -m tcp -j ACCEPT
-A ISTIO_OUTPUT ! -o lo -p udp -m udp --dport 53 -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15053
-A ISTIO_OUTPUT -p tcp -m mark --mark 0x111/0xfff -j ACCEPT
-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -j ACCEPT
-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -p tcp -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15001
COMMIT
EOF

# --- Istio 1.22-1.23 in-pod rules: mangle TPROXY to 15008 / 15006 with marks ---
capture_ipt istio_1_23_inpod_tproxy.txt iptables-legacy-restore iptables-legacy-save <<'EOF'
*mangle
:ISTIO_PRERT - [0:0]
:ISTIO_OUTPUT - [0:0]
-A PREROUTING -j ISTIO_PRERT
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_PRERT -m mark --mark 0x539/0xfff -j CONNMARK --set-xmark 0x111/0xfff
-A ISTIO_PRERT -s 169.254.7.127/32 -p tcp -m tcp -j ACCEPT
-A ISTIO_PRERT ! -d 127.0.0.1/32 -i lo -p tcp -j ACCEPT
-A ISTIO_PRERT -p tcp -m tcp --dport 15008 -m mark ! --mark 0x539/0xfff -j TPROXY --on-port 15008 --on-ip 0.0.0.0 --tproxy-mark 0x111/0xfff
-A ISTIO_PRERT -p tcp -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A ISTIO_PRERT ! -d 127.0.0.1/32 -p tcp -m mark ! --mark 0x539/0xfff -j TPROXY --on-port 15006 --on-ip 0.0.0.0 --tproxy-mark 0x111/0xfff
-A ISTIO_OUTPUT -m connmark --mark 0x111/0xfff -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff
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

# --- kube-proxy-sized ruleset (iptables-nft), generated ---
fresh
python3 "$here/gen_kube_proxy.py" 800 | inns iptables-nft-restore
inns iptables-nft-save >"$here/kube_proxy_large_nft.txt"
echo "wrote kube_proxy_large_nft.txt"

# --- faults ---
capture_ipt drop_udp_4789_legacy.txt iptables-legacy-restore iptables-legacy-save <<'EOF'
*filter
-A INPUT -p udp -m udp --dport 4789 -j DROP
COMMIT
EOF

capture_ipt drop_udp_4789_nft.txt iptables-nft-restore iptables-nft-save <<'EOF'
*filter
-A INPUT -p udp -m udp --dport 4789 -j DROP
COMMIT
EOF

capture_ipt drop_multiport.txt iptables-nft-restore iptables-nft-save <<'EOF'
*filter
-A INPUT -p udp -m multiport --dports 53,4789,8472 -m comment --comment "block overlay" -j DROP
COMMIT
EOF

capture_ipt drop_port_range.txt iptables-legacy-restore iptables-legacy-save <<'EOF'
*filter
-A INPUT -p udp -m udp --dport 4000:5000 -j DROP
COMMIT
EOF

capture_ipt drop_udp_protocol_wide.txt iptables-nft-restore iptables-nft-save <<'EOF'
*raw
-A PREROUTING -p udp -j DROP
COMMIT
EOF

capture_ipt reject_tcp_15012_output.txt iptables-nft-restore iptables-nft-save <<'EOF'
*filter
-A OUTPUT -p tcp -m tcp --dport 15012 -j REJECT --reject-with tcp-reset
COMMIT
EOF

capture_ipt drop_via_jump.txt iptables-nft-restore iptables-nft-save <<'EOF'
*filter
:BLOCK-OVERLAY - [0:0]
:UNUSED - [0:0]
-A INPUT -i eth0 -j BLOCK-OVERLAY
-A BLOCK-OVERLAY -p udp -m udp --dport 4789 -m comment --comment "say \"no\" to vxlan" -j DROP
-A BLOCK-OVERLAY -j RETURN
-A UNUSED -p tcp -m tcp --dport 15012 -j DROP
COMMIT
EOF

capture_ipt negated_no_match.txt iptables-nft-restore iptables-nft-save <<'EOF'
*filter
-A INPUT -p udp -m udp ! --dport 4789 -j DROP
-A INPUT -p tcp -m tcp ! --dport 15012 -j DROP
-A INPUT -p icmp -j DROP
-A OUTPUT -p udp -m multiport ! --dports 4789,8472 -j REJECT --reject-with icmp-port-unreachable
-A OUTPUT -p tcp -m multiport ! --dports 15010:15014 -j REJECT --reject-with tcp-reset
-A FORWARD ! -p udp -j DROP
COMMIT
EOF

capture_ipt accept_then_drop.txt iptables-nft-restore iptables-nft-save <<'EOF'
*filter
:INPUT DROP [0:0]
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p udp -m udp --dport 4789 -j ACCEPT
-A INPUT -s 198.51.100.0/24 -j DROP
-A OUTPUT -j DROP
COMMIT
EOF

capture_ipt ip6_drop_udp_4789.txt ip6tables-nft-restore ip6tables-nft-save <<'EOF'
*filter
-A INPUT -p udp -m udp --dport 4789 -j DROP
COMMIT
EOF

# --- native nftables ---
capture_nft nft_drop_udp_single.json <<'EOF'
table inet filter {
  chain input {
    type filter hook input priority 0; policy accept;
    udp dport 4789 counter drop
  }
}
EOF

capture_nft nft_drop_udp_set.json <<'EOF'
table inet filter {
  set vxlan_ports {
    type inet_service
    elements = { 4789, 8472 }
  }
  chain input {
    type filter hook input priority 0; policy accept;
    udp dport { 4789, 8472 } drop
  }
  chain forward {
    type filter hook forward priority 0; policy accept;
    udp dport @vxlan_ports drop
  }
}
EOF

capture_nft nft_drop_udp_range.json <<'EOF'
table ip talos {
  chain ingress {
    type filter hook input priority 0; policy accept;
    iifname "lo" accept
    meta l4proto udp udp dport 4000-5000 counter drop comment "no overlay"
  }
}
EOF

capture_nft nft_reject_and_jump.json <<'EOF'
table inet fw {
  chain block_overlay {
    udp dport 4789 drop
    return
  }
  chain input {
    type filter hook input priority 0; policy accept;
    ip saddr 198.51.100.0/24 jump block_overlay
  }
  chain output {
    type filter hook output priority 0; policy accept;
    tcp dport 15012 reject with tcp reset
  }
  chain forward {
    type filter hook forward priority 0; policy drop;
    meta l4proto udp drop
  }
}
EOF

capture_nft nft_negated_no_match.json <<'EOF'
table inet fw {
  chain input {
    type filter hook input priority 0; policy accept;
    udp dport != 4789 drop
    tcp dport != 15012 drop
    udp dport != { 4789, 8472 } drop
    meta l4proto icmp drop
    ct state invalid drop
  }
}
EOF

# --- a legacy filter rule plus an nft one in the same namespace (mixed mode) ---
fresh
inns iptables-legacy-restore <<'EOF'
*filter
-A INPUT -p udp -m udp --dport 4789 -j DROP
COMMIT
EOF
inns iptables-legacy-save >"$here/mixed_legacy.txt"
inns iptables-nft-save >"$here/mixed_nft_empty.txt"
echo "wrote mixed_legacy.txt mixed_nft_empty.txt"

# --- what a non-root caller sees ---
np() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
{ np iptables-nft-save -t mangle 2>&1 || echo "exit=$?"; } >"$here/eperm_iptables_nft_save.txt"
{ np iptables-legacy-save 2>&1 || echo "exit=$?"; } >"$here/eperm_iptables_legacy_save.txt"
{ np nft -j list ruleset 2>&1 || echo "exit=$?"; } >"$here/eperm_nft.txt"
echo "wrote eperm_*.txt"
