#!/usr/bin/env bash
# Regenerates this test PKI (run from this directory). Test material only: these keys
# protect nothing. EC P-256, valid for a century, so no test generates keys at run time.
set -euo pipefail
days=36500
ca() {  # NAME CN
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days $days \
    -keyout "$1.key" -out "$1.pem" -subj "/O=meshprobe test/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}
leaf() {  # NAME CA CN EKU SAN
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$1.key" -out "$1.csr" -subj "/O=meshprobe test/CN=$3" 2>/dev/null
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=$4" "subjectAltName=$5" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -days $days \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
ca ca "meshprobe test CA"
ca other-ca "some other CA"
san_server="DNS:meshprobe-aggregator,DNS:localhost,IP:127.0.0.1"
leaf aggregator ca meshprobe-aggregator serverAuth "$san_server"
leaf aggregator-rotated ca meshprobe-aggregator serverAuth "$san_server"
leaf aggregator-other-ca other-ca meshprobe-aggregator serverAuth "$san_server"
for n in 1 2 3 4; do leaf "node$n" ca "node$n" clientAuth "DNS:node$n"; done
leaf meshprobe-agent ca meshprobe-agent clientAuth "DNS:meshprobe-agent"
leaf meshprobe-reader ca meshprobe-reader clientAuth "DNS:meshprobe-reader"
leaf untrusted-node2 other-ca node2 clientAuth "DNS:node2"
rm -f ./*.srl
chmod 0644 ./*.pem ./*.key
