# shellcheck shell=bash
# A flannel-VXLAN "cluster" built from network namespaces, the same layout as the e2e
# tests' (tests/e2e/cluster.h). Sourced by scripts/demo.sh and bench scripts. Everything it
# creates carries $CLUSTER_PREFIX, so cleanup removes exactly what it made.
#
#   CLUSTER_PREFIX=mpdemo-  cluster_up 3      # underlay + node1..node3
#   cluster_istiod 1                          # TLS istiod pod behind node1's cni0
#   FAKE_DAEMON=build/tests/tools/fake_daemon
#   cluster_ambient 2                         # istio-cni + ztunnel stand-ins, ambient pod2
#   cluster_down
#
# Addresses: underlay 198.51.100.0/24 (node N = .10+N), pod subnets 10.244.N.0/24,
# VXLAN VNI 1 dstport 4789 — TEST-NET and private ranges inside our namespaces only.

CLUSTER_PREFIX=${CLUSTER_PREFIX:-mpdemo-}
CLUSTER_DIR=${CLUSTER_DIR:-/tmp/${CLUSTER_PREFIX}state}
CLUSTER_NODES=0

ns() { echo "${CLUSTER_PREFIX}$1"; }
nsexec() { local n=$1; shift; ip netns exec "$(ns "$n")" "$@"; }
node_ip() { echo "198.51.100.$((10 + $1))"; }
node_vtep_mac() { printf '0a:58:0a:f4:%02x:00' "$1"; }

cluster_down() {
  local pidfile f
  local pids=()
  for pidfile in "$CLUSTER_DIR"/*.pid; do
    [ -e "$pidfile" ] || continue
    pids+=("$(cat "$pidfile")")
    kill "${pids[-1]}" 2>/dev/null || true
    rm -f "$pidfile"
  done
  # Our own children (started by start_bg): reap them before their namespaces go.
  [ "${#pids[@]}" -eq 0 ] || wait "${pids[@]}" 2>/dev/null || true
  # cluster_ambient's netns bind mounts keep their namespaces alive.
  for f in "$CLUSTER_DIR"/node*/netns/* "$CLUSTER_DIR"/node*/proc/1/ns/net; do
    [ -e "$f" ] || continue
    umount "$f" 2>/dev/null || true
  done
  local n
  for n in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^${CLUSTER_PREFIX}" || true); do
    ip netns del "$n" 2>/dev/null || true
  done
  rm -rf "$CLUSTER_DIR"
}

# cluster_up N: underlay bridge + N nodes with flannel.1, cni0 and every peer programmed.
cluster_up() {
  local count=$1 i j
  CLUSTER_NODES=$count
  mkdir -p "$CLUSTER_DIR"
  ip netns add "$(ns underlay)"
  nsexec underlay ip link add br0 type bridge
  nsexec underlay ip link set br0 up
  for i in $(seq 1 "$count"); do
    ip netns add "$(ns node$i)"
    nsexec "node$i" ip link set lo up
    ip link add "${CLUSTER_PREFIX}v$i" type veth peer name eth0 netns "$(ns node$i)"
    ip link set "${CLUSTER_PREFIX}v$i" netns "$(ns underlay)"
    nsexec underlay ip link set "${CLUSTER_PREFIX}v$i" master br0 up
    nsexec "node$i" ip addr add "$(node_ip "$i")/24" dev eth0
    nsexec "node$i" ip link set eth0 up
    nsexec "node$i" ip link add flannel.1 type vxlan id 1 dstport 4789 local "$(node_ip "$i")" dev eth0 nolearning
    nsexec "node$i" ip link set flannel.1 address "$(node_vtep_mac "$i")" mtu 1450 up
    nsexec "node$i" ip addr add "10.244.$i.0/32" dev flannel.1
    nsexec "node$i" ip link add cni0 type bridge
    nsexec "node$i" ip addr add "10.244.$i.1/24" dev cni0
    nsexec "node$i" ip link set cni0 up
    nsexec "node$i" sysctl -qw net.ipv4.ip_forward=1
    mkdir -p "$CLUSTER_DIR/node$i/run/flannel" "$CLUSTER_DIR/node$i/netns"
    printf 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.%d.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n' "$i" \
      > "$CLUSTER_DIR/node$i/run/flannel/subnet.env"
  done
  # What flannel programs on every node for every peer.
  for i in $(seq 1 "$count"); do
    for j in $(seq 1 "$count"); do
      [ "$i" = "$j" ] && continue
      nsexec "node$i" bridge fdb append "$(node_vtep_mac "$j")" dev flannel.1 dst "$(node_ip "$j")" self permanent
      nsexec "node$i" ip neigh replace "10.244.$j.0" lladdr "$(node_vtep_mac "$j")" dev flannel.1 nud permanent
      nsexec "node$i" ip route replace "10.244.$j.0/24" via "10.244.$j.0" dev flannel.1 onlink
    done
  done
}

# cluster_istiod N: a pod netns behind node N's cni0 (10.244.N.10) serving TLS on 15012
# with ALPN h2 and a certificate for istiod.istio-system.svc from a fresh test CA.
cluster_istiod() {
  local n=$1 dir="$CLUSTER_DIR/istiod"
  mkdir -p "$dir"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/O=meshprobe demo/CN=Root CA" \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=istiod" -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:istiod.istio-system.svc,DNS:istiod.istio-system.svc.cluster.local\n' > "$dir/ext.cnf"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial -days 2 \
    -extfile "$dir/ext.cnf" -out "$dir/server.pem" 2>/dev/null
  ip netns add "$(ns istiod)"
  nsexec istiod ip link set lo up
  ip link add "${CLUSTER_PREFIX}istiod" type veth peer name eth0 netns "$(ns istiod)"
  ip link set "${CLUSTER_PREFIX}istiod" netns "$(ns node$n)"
  nsexec "node$n" ip link set "${CLUSTER_PREFIX}istiod" master cni0 up
  nsexec istiod ip addr add "10.244.$n.10/24" dev eth0
  nsexec istiod ip link set eth0 up
  nsexec istiod ip route add default via "10.244.$n.1"
  # A simple command (not the nsexec function) so that $! is s_server's own PID.
  ip netns exec "$(ns istiod)" openssl s_server -quiet -accept 15012 -alpn h2 -cert "$dir/server.pem" \
    -key "$dir/server.key" </dev/null >"$dir/s_server.log" 2>&1 &
  echo $! > "$CLUSTER_DIR/istiod.pid"
  # Ready when the port accepts (poll with a deadline).
  local deadline=$((SECONDS + 10))
  until nsexec istiod bash -c 'exec 3<>/dev/tcp/127.0.0.1/15012' 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then echo "istiod listener did not come up" >&2; return 1; fi
    sleep 0.1  # poll interval, bounded by the deadline above
  done
  ISTIOD_ADDR="10.244.$n.10:15012"
  ISTIOD_CA="$dir/ca.pem"
}

# cluster_control: a netns on the underlay (198.51.100.2) for the aggregator — the
# diagnostic path must not depend on the overlay it diagnoses.
cluster_control() {
  ip netns add "$(ns control)"
  nsexec control ip link set lo up
  ip link add "${CLUSTER_PREFIX}vc" type veth peer name eth0 netns "$(ns control)"
  ip link set "${CLUSTER_PREFIX}vc" netns "$(ns underlay)"
  nsexec underlay ip link set "${CLUSTER_PREFIX}vc" master br0 up
  nsexec control ip addr add 198.51.100.2/24 dev eth0
  nsexec control ip link set eth0 up
  CONTROL_IP=198.51.100.2
}

# start_bg NAME NETNS CMD...: runs CMD in NETNS in the background, logging to
# $CLUSTER_DIR/NAME.log, and records its PID in $CLUSTER_DIR/NAME.pid.
start_bg() {
  local name=$1 where=$2; shift 2
  # A simple command, not the nsexec function: a backgrounded function runs in a subshell
  # whose PID ($!) is not the process's, so stop_bg's signal would miss it. `ip netns exec`
  # execs CMD, so $! is CMD's own PID.
  ip netns exec "$(ns "$where")" "$@" >"$CLUSTER_DIR/$name.log" 2>&1 &
  echo $! > "$CLUSTER_DIR/$name.pid"
}

# stop_bg NAME [SIGNAL]: ends the process started as NAME (by its recorded PID only).
stop_bg() {
  local pidfile="$CLUSTER_DIR/$1.pid"
  [ -f "$pidfile" ] || return 0
  kill "-${2:-TERM}" "$(cat "$pidfile")" 2>/dev/null || true
  wait "$(cat "$pidfile")" 2>/dev/null || true
  rm -f "$pidfile"
}

# wait_for DESCRIPTION TIMEOUT_S CMD...: polls CMD until it succeeds or the deadline passes.
wait_for() {
  local what=$1 timeout=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then echo "timed out after ${timeout}s waiting for $what" >&2; return 1; fi
    sleep 0.2  # poll interval, bounded by the deadline above
  done
}

# ---- Istio ambient on a node: istio-cni, ztunnel and one ambient pod ----
# Stand-ins are tests/tools/fake_daemon ($FAKE_DAEMON), as in the e2e tests:
#   istio-cni  its ZDS server: a SOCK_SEQPACKET listener at the agent's --ztunnel-socket
#              ($CLUSTER_DIR/nodeN/ztunnel.sock) in the node's netns, which holds ztunnel's
#              connection and, like current istio-cni releases, reads it every 5 s
#              (defaultZTunnelKeepAliveCheckInterval) and closes it once ztunnel is gone;
#   ztunnel    its ZDS client connected to that socket, and its in-pod listeners (15001
#              outbound, 15006 inbound, 15008 HBONE) inside each ambient pod's netns, which
#              ztunnel opens after istio-cni hands it the pod and which die with ztunnel;
#   the pod    netns podN with istio-cni's in-pod iptables rules (Istio 1.24, REDIRECT mode:
#              the e2e tests' copy in tests/e2e/harness.h), bind-mounted under the agent's
#              --netns-dir as containerd's /var/run/netns entry would be;
#   /proc      the agent's --host-root/proc holds just 1/ns/net, the node's own netns (PID 1
#              of a host /proc), so the agent tells the host's netns from pods' as it does on
#              a node, and finds no other process to look at.

# The Istio 1.24 in-pod rules (iptables-restore input), read from the e2e harness so that
# the demo and the tests restore the same rules.
istio_inpod_rules() {
  local header
  header="$(dirname "${BASH_SOURCE[0]}")/../../tests/e2e/harness.h"
  sed -n '/kIstio124InPodRules = R"(/,/^)";/p' "$header" | sed -e '1s/.*R"(//' -e '$d'
}

# cluster_ambient N: istio-cni, a connected ztunnel and ambient pod podN on node N. Call it
# before the agents start: each agent's mount namespace (made by `ip netns exec`) copies
# the bind mounts that exist when it starts.
cluster_ambient() {
  local n=$1 dir="$CLUSTER_DIR/node$1" pod
  pod=$(ns "pod$n")
  ip netns add "$pod"
  nsexec "pod$n" ip link set lo up
  cluster_pod_rules_restore "$n"
  mkdir -p "$dir/netns" "$dir/proc/1/ns"
  : > "$dir/netns/pod$n"
  mount --bind "/run/netns/$pod" "$dir/netns/pod$n"
  : > "$dir/proc/1/ns/net"
  mount --bind "/run/netns/$(ns "node$n")" "$dir/proc/1/ns/net"
  cluster_istio_cni_start "$n"
  cluster_ztunnel_start "$n"
}

# The node-N istio-cni listener (replacing a previous one's socket file, as istio-cni does).
cluster_istio_cni_start() {
  local n=$1 dir="$CLUSTER_DIR/node$1"
  rm -f "$dir/istio-cni.ready"
  start_bg "istio-cni$n" "node$n" "$FAKE_DAEMON" seqpacket-listen "$dir/ztunnel.sock" --keepalive 5000 \
    --ready-file "$dir/istio-cni.ready"
  wait_for "istio-cni on node$n to listen" 10 test -s "$dir/istio-cni.ready"
}

# ztunnel on node N: connects to istio-cni, then opens its listeners in podN.
cluster_ztunnel_start() {
  local n=$1 dir="$CLUSTER_DIR/node$1"
  rm -f "$dir/ztunnel.ready" "$dir/ztunnel-inpod.ready"
  start_bg "ztunnel$n" "node$n" "$FAKE_DAEMON" seqpacket-connect "$dir/ztunnel.sock" --ready-file "$dir/ztunnel.ready"
  wait_for "ztunnel on node$n to connect to istio-cni" 10 test -s "$dir/ztunnel.ready"
  start_bg "ztunnel$n-inpod" "pod$n" "$FAKE_DAEMON" tcp-listen 15001 15006 15008 --ready-file "$dir/ztunnel-inpod.ready"
  wait_for "ztunnel's listeners in pod$n" 10 test -s "$dir/ztunnel-inpod.ready"
}

# ztunnel on node N exits: its ZDS connection and its in-pod listeners go with it.
cluster_ztunnel_stop() {
  stop_bg "ztunnel$1"
  stop_bg "ztunnel$1-inpod"
}

# istio-cni's in-pod rules in podN: restored (the pod is captured) or flushed (it is not).
cluster_pod_rules_restore() {
  local rules
  rules=$(istio_inpod_rules)
  if ! grep -q -- '-j REDIRECT --to-ports 15001' <<<"$rules"; then
    echo "cannot read the in-pod rules from tests/e2e/harness.h" >&2
    return 1
  fi
  nsexec "pod$1" iptables-restore <<<"$rules"
}
cluster_pod_rules_flush() { printf '*raw\nCOMMIT\n*mangle\nCOMMIT\n*nat\nCOMMIT\n' | nsexec "pod$1" iptables-restore; }
