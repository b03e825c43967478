#pragma once
// The test PKI of meshprobe's own mutual TLS: tests/data/mtls (its README.md lists the
// files; make.sh regenerates them). Checked in: no test generates keys at run time.

#include <string>

#ifndef MESHPROBE_TEST_MTLS_DIR
#error "MESHPROBE_TEST_MTLS_DIR must be defined by the build (tests/CMakeLists.txt)"
#endif

#include "common/tls/tls.h"

namespace meshprobe::test {

inline std::string mtlsFile(const std::string& name) { return std::string(MESHPROBE_TEST_MTLS_DIR) + "/" + name; }

// The aggregator's side: serving certificate `serving` ("aggregator", "aggregator-rotated",
// "aggregator-other-ca"), client certificates from ca.pem.
inline tls::ServerConfig mtlsServer(const std::string& serving = "aggregator") {
  tls::ServerConfig c;
  c.cert_file = mtlsFile(serving + ".pem");
  c.key_file = mtlsFile(serving + ".key");
  c.client_ca_file = mtlsFile("ca.pem");
  return c;
}

// A client presenting `identity` ("node2", "meshprobe-agent", "meshprobe-reader", ...),
// verifying the aggregator against ca.pem under the name meshprobe-aggregator.
inline tls::ClientConfig mtlsClient(const std::string& identity, const std::string& ca = "ca.pem") {
  tls::ClientConfig c;
  c.ca_file = mtlsFile(ca);
  c.cert_file = mtlsFile(identity + ".pem");
  c.key_file = mtlsFile(identity + ".key");
  c.server_name = "meshprobe-aggregator";
  return c;
}

}  // namespace meshprobe::test
