#!/usr/bin/env bash
# scripts/meshprobe-certs.sh into a temporary directory, checked with openssl itself: the
# chains verify for the purpose each certificate is for (and not for the other), CN / SANs /
# EKU are as asked, keys are 0600 and belong to their certificates, existing files are
# never replaced without --force, and kube-secrets names the Secrets the manifests mount.
# Needs only bash and openssl (ctest scripts_certs, label unit).
#
#   bash tests/tools/certs_test.sh scripts/meshprobe-certs.sh
set -euo pipefail
CERTS=$(realpath "${1:?usage: certs_test.sh PATH/meshprobe-certs.sh}")
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
D=$WORK/pki
FAILED=0 PASSED=0
ok() { PASSED=$((PASSED + 1)); }
fail() { echo "FAIL: $*"; FAILED=$((FAILED + 1)); }
expect() {  # expect DESCRIPTION COMMAND...: the command succeeds
  local what=$1
  shift
  if "$@" >"$WORK/out" 2>&1; then ok; else fail "$what: $(cat "$WORK/out")"; fi
}
refuse() {  # refuse DESCRIPTION COMMAND...: the command fails
  local what=$1
  shift
  if "$@" >"$WORK/out" 2>&1; then fail "$what: succeeded"; else ok; fi
}
contains() {  # contains DESCRIPTION HAYSTACK NEEDLE
  if grep -qF -- "$3" <<<"$2"; then ok; else fail "$1: '$3' not in: $2"; fi
}
lacks() {
  if grep -qF -- "$3" <<<"$2"; then fail "$1: '$3' unexpectedly in: $2"; else ok; fi
}
ext() { openssl x509 -in "$1" -noout -ext subjectAltName,extendedKeyUsage,basicConstraints 2>&1; }
subject() { openssl x509 -in "$1" -noout -subject -nameopt RFC2253; }
mode() { stat -c %a "$1"; }
pubkey_of_cert() { openssl x509 -in "$1" -noout -pubkey; }
pubkey_of_key() { openssl pkey -in "$1" -pubout; }

expect "--help" bash "$CERTS" --help
contains "--help text" "$(cat "$WORK/out")" "kube-secrets DIR"

# --- CA
expect "ca" bash "$CERTS" ca "$D"
[ "$(mode "$D/ca.key")" = 600 ] && ok || fail "ca.key mode $(mode "$D/ca.key"), want 600"
expect "ca.crt is self-signed and verifies" openssl verify -CAfile "$D/ca.crt" "$D/ca.crt"
contains "CA basicConstraints" "$(ext "$D/ca.crt")" "CA:TRUE"
ca_text=$(openssl x509 -in "$D/ca.crt" -noout -text)
contains "CA is ECDSA P-256" "$ca_text" "NIST CURVE: P-256"
# 10 years by default: still valid in 9 years, not in 11.
expect "CA valid for 9 more years" openssl x509 -in "$D/ca.crt" -noout -checkend $((9 * 365 * 86400))
refuse "CA expires within 11 years" openssl x509 -in "$D/ca.crt" -noout -checkend $((11 * 365 * 86400))

# --- the aggregator's serving certificate
expect "server" bash "$CERTS" server "$D" meshprobe-aggregator \
  --dns meshprobe-aggregator.meshprobe,meshprobe-aggregator.meshprobe.svc --ip 192.0.2.7
S=$D/meshprobe-aggregator.crt
expect "server cert verifies as a TLS server" openssl verify -CAfile "$D/ca.crt" -purpose sslserver "$S"
refuse "server cert is no TLS client" openssl verify -CAfile "$D/ca.crt" -purpose sslclient "$S"
e=$(ext "$S")
contains "server SAN" "$e" "DNS:meshprobe-aggregator, DNS:meshprobe-aggregator.meshprobe, DNS:meshprobe-aggregator.meshprobe.svc, IP Address:192.0.2.7"
contains "server EKU" "$e" "TLS Web Server Authentication"
lacks "server EKU" "$e" "TLS Web Client Authentication"
contains "server not a CA" "$e" "CA:FALSE"
contains "server CN" "$(subject "$S")" "CN=meshprobe-aggregator"
expect "server hostname check" openssl x509 -in "$S" -noout -checkhost meshprobe-aggregator.meshprobe.svc
contains "server hostname matches" "$(cat "$WORK/out")" "does match"
[ "$(mode "$D/meshprobe-aggregator.key")" = 600 ] && ok || fail "server key mode $(mode "$D/meshprobe-aggregator.key")"
[ "$(pubkey_of_cert "$S")" = "$(pubkey_of_key "$D/meshprobe-aggregator.key")" ] && ok || fail "server key is not the certificate's"

# --- client certificates: the shared agent one, a reader, a node
for name in meshprobe-agent meshprobe-reader node-1; do
  expect "client $name" bash "$CERTS" client "$D" "$name"
  C=$D/$name.crt
  expect "$name verifies as a TLS client" openssl verify -CAfile "$D/ca.crt" -purpose sslclient "$C"
  refuse "$name is no TLS server" openssl verify -CAfile "$D/ca.crt" -purpose sslserver "$C"
  e=$(ext "$C")
  contains "$name SAN" "$e" "DNS:$name"
  contains "$name EKU" "$e" "TLS Web Client Authentication"
  lacks "$name EKU" "$e" "TLS Web Server Authentication"
  contains "$name CN" "$(subject "$C")" "CN=$name"
  [ "$(mode "$D/$name.key")" = 600 ] && ok || fail "$name key mode $(mode "$D/$name.key")"
  [ "$(pubkey_of_cert "$C")" = "$(pubkey_of_key "$D/$name.key")" ] && ok || fail "$name key is not the certificate's"
done
expect "client with extra names" bash "$CERTS" client "$D" node-2 --dns node-2.example.com
contains "extra SAN" "$(ext "$D/node-2.crt")" "DNS:node-2, DNS:node-2.example.com"
expect "--days" bash "$CERTS" client "$D" short --days 2
refuse "--days 2 expires within 3 days" openssl x509 -in "$D/short.crt" -noout -checkend $((3 * 86400))

# A certificate from another CA does not verify against this one.
expect "second CA" bash "$CERTS" ca "$WORK/other"
expect "client of the second CA" bash "$CERTS" client "$WORK/other" node-1
refuse "foreign client rejected" openssl verify -CAfile "$D/ca.crt" -purpose sslclient "$WORK/other/node-1.crt"

# --- never overwrite without --force
before=$(sha256sum "$D/node-1.crt" "$D/node-1.key" "$D/ca.crt" "$D/ca.key")
refuse "client over an existing pair" bash "$CERTS" client "$D" node-1
contains "refusal names the file" "$(cat "$WORK/out")" "node-1.crt exists (use --force to overwrite)"
refuse "ca over an existing CA" bash "$CERTS" ca "$D"
[ "$before" = "$(sha256sum "$D/node-1.crt" "$D/node-1.key" "$D/ca.crt" "$D/ca.key")" ] && ok || fail "refused commands changed files"
expect "client --force" bash "$CERTS" client "$D" node-1 --force
[ "$(sha256sum "$D/node-1.key")" != "$(sed -n 2p <<<"$before")" ] && ok || fail "--force did not replace node-1.key"
expect "replaced cert verifies" openssl verify -CAfile "$D/ca.crt" -purpose sslclient "$D/node-1.crt"
[ -z "$(find "$D" -name '.meshprobe-certs.*')" ] && ok || fail "scratch directories left in $D"

# --- bad input is refused with a message
refuse "name with a slash" bash "$CERTS" client "$D" "a/b"
contains "name error" "$(cat "$WORK/out")" "is not a DNS name"
refuse "--ip on a client" bash "$CERTS" client "$D" node-3 --ip 192.0.2.1
refuse "server without a CA" bash "$CERTS" server "$WORK/none" meshprobe-aggregator
contains "missing CA error" "$(cat "$WORK/out")" "run 'meshprobe-certs.sh ca"
refuse "unknown command" bash "$CERTS" frobnicate "$D"

# --- kube-secrets: the manifests' Secret names, type kubernetes.io/tls, with ca.crt
expect "kube-secrets" bash "$CERTS" kube-secrets "$D"
out=$(cat "$WORK/out")
for secret in meshprobe-aggregator meshprobe-agent meshprobe-reader; do
  contains "Secret $secret-tls" "$out" "kubectl -n meshprobe create secret generic $secret-tls --type=kubernetes.io/tls --from-file=tls.crt=$D/$secret.crt --from-file=tls.key=$D/$secret.key --from-file=ca.crt=$D/ca.crt"
done
lacks "no Secret for node certs" "$out" "node-1"
for f in manifests/base/aggregator-deployment.yaml manifests/base/agent-daemonset.yaml; do
  src=$(dirname "$CERTS")/../$f
  [ -f "$src" ] || continue
  for secret in $(grep -o 'secretName: meshprobe-[a-z]*-tls' "$src" | awk '{print $2}'); do
    contains "$f's $secret is one kube-secrets makes" "$out" "secret generic $secret "
  done
done
refuse "kube-secrets without certificates" bash "$CERTS" kube-secrets "$WORK/other/none"

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
