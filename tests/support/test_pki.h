#pragma once
// The test PKI of the istiod TLS tests, unit and e2e: tests/data/istiod (its README.md says
// how it was made and how to regenerate it). An EC P-256 root CA, istiod's serving cert
// signed by it (SAN DNS:istiod.istio-system.svc and istiod's SPIFFE URI) with its key, and
// an unrelated root CA that chain verification must reject. The files are checked in,
// world-readable, and valid for a century: no test generates keys at run time.

#include <string>

#ifndef MESHPROBE_TEST_PKI_DIR
#error "MESHPROBE_TEST_PKI_DIR must be defined by the build (tests/CMakeLists.txt)"
#endif

namespace meshprobe::test {

inline constexpr const char* kIstiodSan = "istiod.istio-system.svc";  // in the serving cert

// A file of the test PKI by name ("ca.pem", "server.key", ...).
inline std::string testPkiFile(const std::string& name) { return std::string(MESHPROBE_TEST_PKI_DIR) + "/" + name; }

struct TestCerts {
  std::string ca;        // root CA (what --istiod-ca gets)
  std::string cert;      // istiod serving cert, SAN kIstiodSan, signed by `ca`
  std::string key;       // its private key
  std::string other_ca;  // an unrelated CA (chain verification must fail with it)
};

inline const TestCerts& testCerts() {
  static const TestCerts c{testPkiFile("ca.pem"), testPkiFile("server.pem"), testPkiFile("server.key"),
                           testPkiFile("other-ca.pem")};
  return c;
}

}  // namespace meshprobe::test
