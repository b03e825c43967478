#!/usr/bin/env bash
# meshprobe-certs.sh: a small self-signed CA and the certificates of meshprobe's mutual TLS
# on the aggregator's gRPC port (9470), for clusters without cert-manager and for demos.
# Needs only openssl. Run with --help for the commands; docs/security.md explains which
# certificate allows what.
set -euo pipefail

PROG=${0##*/}
usage() {
  cat <<EOF
Usage:
  $PROG ca DIR
      DIR/ca.crt + DIR/ca.key: a self-signed CA (ECDSA P-256)
  $PROG server DIR NAME [--dns A,B] [--ip X,Y]
      DIR/NAME.crt + DIR/NAME.key: the aggregator's serving certificate (serverAuth;
      CN=NAME, DNS SANs NAME and --dns, IP SANs --ip), signed by DIR/ca.crt
  $PROG client DIR NAME [--dns A,B]
      DIR/NAME.crt + DIR/NAME.key: a client certificate (clientAuth; CN=NAME,
      DNS SANs NAME and --dns), signed by DIR/ca.crt
  $PROG kube-secrets DIR [--apply] [--namespace NS]
      print (or, with --apply, run) the kubectl commands that store DIR's
      certificates as the Secrets the manifests mount

Options:
  --days N      validity in days (default: 3650 for the CA, 365 for certificates)
  --force       overwrite existing files (otherwise the command refuses)
  -h, --help    this text

Client NAMEs mean something to the aggregator (docs/security.md):
  meshprobe-agent    the shared agent certificate: may report as any node
  meshprobe-reader   a reader (meshprobe CLI, grpcurl): Query only, never Collector
  any other name     a node name: the agent may report only as that node

Example (the base manifests' names):
  $PROG ca certs
  $PROG server certs meshprobe-aggregator \\
      --dns meshprobe-aggregator.meshprobe,meshprobe-aggregator.meshprobe.svc,meshprobe-aggregator.meshprobe.svc.cluster.local
  $PROG client certs meshprobe-agent
  $PROG client certs meshprobe-reader
  $PROG kube-secrets certs --apply

kube-secrets stores, in namespace meshprobe (each with ca.crt; type kubernetes.io/tls):
  meshprobe-aggregator-tls  <- DIR/meshprobe-aggregator.{crt,key}
  meshprobe-agent-tls       <- DIR/meshprobe-agent.{crt,key}
  meshprobe-reader-tls      <- DIR/meshprobe-reader.{crt,key}
Pairs whose files are missing are skipped (with a note on stderr). The commands are
"create --dry-run=client -o yaml | kubectl apply -f -", so running them again replaces the
Secrets (rotation); the agents and the aggregator re-read the files every --tls-refresh.
EOF
}

die() {
  echo "$PROG: $*" >&2
  exit 1
}

# ------------------------------------------------------------------ arguments
[ $# -gt 0 ] || { usage >&2; exit 2; }
case $1 in -h | --help) usage; exit 0 ;; esac
CMD=$1
shift
POS=() DNS='' IPS='' DAYS='' FORCE=0 APPLY=0 NAMESPACE=meshprobe
while [ $# -gt 0 ]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --dns) [ $# -ge 2 ] || die "--dns needs a value"; DNS=$2; shift 2 ;;
    --ip) [ $# -ge 2 ] || die "--ip needs a value"; IPS=$2; shift 2 ;;
    --days) [ $# -ge 2 ] || die "--days needs a value"; DAYS=$2; shift 2 ;;
    --namespace) [ $# -ge 2 ] || die "--namespace needs a value"; NAMESPACE=$2; shift 2 ;;
    --force) FORCE=1; shift ;;
    --apply) APPLY=1; shift ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) POS+=("$1"); shift ;;
  esac
done
[ -z "$DAYS" ] || [[ $DAYS =~ ^[1-9][0-9]*$ ]] || die "--days must be a positive number of days, not '$DAYS'"
command -v openssl >/dev/null || die "openssl not found (Debian: apt-get install openssl)"

# A Kubernetes node name is a lowercase RFC 1123 subdomain; the same rule keeps names out of
# openssl's -subj syntax.
DNS_NAME='^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'
valid_name() {
  if ! [[ $1 =~ $DNS_NAME ]] || [ ${#1} -gt 253 ]; then
    die "'$1' is not a DNS name (lowercase letters, digits, '-', '.')"
  fi
}

# Refuses to replace existing files without --force.
writable() {
  local f
  for f in "$@"; do
    [ ! -e "$f" ] || [ "$FORCE" = 1 ] || die "$f exists (use --force to overwrite)"
  done
}

# New ECDSA P-256 private key (PKCS#8 PEM), mode 0600 from the start.
new_key() {
  (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null) ||
    die "openssl could not write a key to $1"
  chmod 600 "$1"
}

# Files are made under temporary names in DIR and renamed at the end, so a failure leaves
# no half-written pair behind.
TMP=''
cleanup() { [ -z "$TMP" ] || rm -rf "$TMP"; }
trap cleanup EXIT
scratch() {
  TMP=$(mktemp -d "$1/.meshprobe-certs.XXXXXX")
}

# ------------------------------------------------------------------ ca DIR
cmd_ca() {
  [ ${#POS[@]} -eq 1 ] || die "usage: $PROG ca DIR"
  local dir=${POS[0]}
  mkdir -p "$dir"
  writable "$dir/ca.crt" "$dir/ca.key"
  scratch "$dir"
  cat >"$TMP/ca.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = meshprobe CA
[ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
  new_key "$TMP/ca.key"
  openssl req -x509 -new -key "$TMP/ca.key" -config "$TMP/ca.cnf" -extensions ca -sha256 \
    -days "${DAYS:-3650}" -set_serial "0x$(openssl rand -hex 16)" -out "$TMP/ca.crt" ||
    die "openssl could not make the CA certificate"
  mv -f "$TMP/ca.key" "$dir/ca.key"
  mv -f "$TMP/ca.crt" "$dir/ca.crt"
  echo "$dir/ca.crt, $dir/ca.key (keep ca.key offline: it can issue any meshprobe identity)"
}

# ------------------------------------------------------------------ server|client DIR NAME
cmd_leaf() {  # $1 = serverAuth | clientAuth
  local eku=$1
  [ ${#POS[@]} -eq 2 ] || die "usage: $PROG $CMD DIR NAME [--dns A,B]$([ "$eku" = serverAuth ] && echo ' [--ip X,Y]')"
  local dir=${POS[0]} name=${POS[1]} san d ip list
  valid_name "$name"
  [ "$eku" = serverAuth ] || [ -z "$IPS" ] || die "--ip is for server certificates"
  if [ ! -f "$dir/ca.crt" ] || [ ! -f "$dir/ca.key" ]; then
    die "$dir/ca.crt or $dir/ca.key missing: run '$PROG ca $dir' first"
  fi
  writable "$dir/$name.crt" "$dir/$name.key"
  san="DNS:$name"
  if [ -n "$DNS" ]; then
    IFS=, read -ra list <<<"$DNS"
    for d in "${list[@]}"; do
      valid_name "$d"
      [ "$d" = "$name" ] || san+=",DNS:$d"
    done
  fi
  if [ -n "$IPS" ]; then
    IFS=, read -ra list <<<"$IPS"
    for ip in "${list[@]}"; do
      [[ $ip =~ ^[0-9.]+$ || $ip =~ ^[0-9a-fA-F:]+$ ]] || die "'$ip' is not an IP address"
      san+=",IP:$ip"
    done
  fi
  scratch "$dir"
  cat >"$TMP/leaf.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = $name
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = $eku
subjectAltName = $san
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
  new_key "$TMP/leaf.key"
  openssl req -new -key "$TMP/leaf.key" -config "$TMP/leaf.cnf" -out "$TMP/leaf.csr" ||
    die "openssl could not make the request for $name"
  openssl x509 -req -in "$TMP/leaf.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days "${DAYS:-365}" -sha256 \
    -extfile "$TMP/leaf.cnf" -extensions leaf -out "$TMP/leaf.crt" 2>"$TMP/x509.err" ||
    die "openssl could not sign $name: $(cat "$TMP/x509.err")"
  mv -f "$TMP/leaf.key" "$dir/$name.key"
  mv -f "$TMP/leaf.crt" "$dir/$name.crt"
  echo "$dir/$name.crt, $dir/$name.key ($eku; $san)"
}

# ------------------------------------------------------------------ kube-secrets DIR
cmd_kube_secrets() {
  [ ${#POS[@]} -eq 1 ] || die "usage: $PROG kube-secrets DIR [--apply] [--namespace NS]"
  local dir=${POS[0]} name cmd n=0
  [ -f "$dir/ca.crt" ] || die "$dir/ca.crt missing: run '$PROG ca $dir' first"
  if [ "$APPLY" = 1 ]; then command -v kubectl >/dev/null || die "kubectl not found"; fi
  for name in meshprobe-aggregator meshprobe-agent meshprobe-reader; do
    if [ ! -f "$dir/$name.crt" ] || [ ! -f "$dir/$name.key" ]; then
      echo "$PROG: skipping Secret $name-tls: $dir/$name.crt or .key missing" >&2
      continue
    fi
    cmd=$(printf 'kubectl -n %q create secret generic %q --type=kubernetes.io/tls --from-file=tls.crt=%q --from-file=tls.key=%q --from-file=ca.crt=%q --dry-run=client -o yaml | kubectl apply -f -' \
      "$NAMESPACE" "$name-tls" "$dir/$name.crt" "$dir/$name.key" "$dir/ca.crt")
    n=$((n + 1))
    if [ "$APPLY" = 1 ]; then
      echo "+ $cmd" >&2
      bash -o pipefail -c "$cmd" || die "kubectl failed for Secret $name-tls"
    else
      echo "$cmd"
    fi
  done
  [ "$n" -gt 0 ] || die "no certificate pair in $dir (expected meshprobe-aggregator, meshprobe-agent or meshprobe-reader .crt/.key)"
}

case $CMD in
  ca) cmd_ca ;;
  server) cmd_leaf serverAuth ;;
  client) cmd_leaf clientAuth ;;
  kube-secrets) cmd_kube_secrets ;;
  *) usage >&2; die "unknown command '$CMD'" ;;
esac
