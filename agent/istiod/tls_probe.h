#pragma once
// Staged probe of istiod's xDS endpoint: `dns` (bounded resolution, skipped
// for an IP literal), `connect` (TCP; refused vs timeout vs unreachable), `tls` (handshake
// with SNI and ALPN "h2", optional chain + server-name verification against a CA file).
// Istio 1.24 rejects connections that do not negotiate h2, so a handshake that ends
// without ALPN h2 fails the tls stage. Every stage is bounded by one probe deadline; the
// probe never throws: failures are values naming the stage.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/duration.h"
#include "common/result.h"

namespace meshprobe::agent {

inline constexpr std::string_view kDefaultIstiodSni = "istiod.istio-system.svc";
inline constexpr std::string_view kIstiodAlpn = "h2";

enum class ProbeStage { kDns, kConnect, kTls };
std::string_view stageName(ProbeStage stage);  // "dns" | "connect" | "tls"

struct HostPort {
  std::string host;  // name or IP literal (IPv6 without brackets)
  uint16_t port = 0;
};

// "host:port", "1.2.3.4:port", "[::1]:port". The port is required and must be 1..65535.
Result<HostPort> parseHostPort(std::string_view text);

// "host:port", with brackets for an IPv6 literal.
std::string formatHostPort(const std::string& host, uint16_t port);

bool isIpLiteral(const std::string& host);

// Resolution seam: returns the host's addresses as IP literals (e.g. "10.96.0.10",
// "fd00::1"), or an Error whose message says why ("no such host", "timed out after 1s").
// Must return within `timeout`. Tests inject a fake so no DNS server is ever queried.
using Resolver = std::function<Result<std::vector<std::string>>(const std::string& host, Duration timeout)>;

// The default: asio's resolver (getaddrinfo) on a helper thread, abandoned (left to
// finish on its own) when `timeout` passes, so a hung resolver never blocks the probe.
Resolver systemResolver();

struct TlsProbeOptions {
  std::string endpoint;                        // HOST:PORT
  std::string sni;                             // empty: host when it is a name, else istiod.istio-system.svc
  std::string ca_file;                         // PEM roots; empty: the chain is not verified
  Duration timeout = std::chrono::seconds(3);  // the whole probe, all stages
  Resolver resolver;                           // empty: systemResolver()
};

struct StageLatency {
  ProbeStage stage;
  Duration latency{};
  bool ok = false;
};

struct TlsProbeResult {
  bool ok = false;
  std::string endpoint;  // as given
  std::string host;
  uint16_t port = 0;
  std::optional<ProbeStage> failed_stage;  // set when !ok
  std::string error;                       // "connection refused", "server did not negotiate ALPN h2", ...
  bool local_error = false;                // failed before any traffic (bad endpoint, unreadable CA file)
  std::vector<StageLatency> stages;        // stages run, in order (dns absent for an IP literal)
  std::vector<std::string> addresses;      // resolved (or literal) addresses
  std::string peer_address;                // "ip:port" the TCP connection reached
  std::string sni;                         // server name sent (and verified against with a CA)
  std::string alpn;                        // negotiated protocol, empty when none
  std::string tls_version;                 // "TLSv1.3"
  std::string cipher;
  std::string peer_subject;            // RFC 2253 text of the leaf's subject
  std::vector<std::string> peer_sans;  // "DNS:istiod.istio-system.svc", "URI:spiffe://..."
  bool chain_verified = false;         // true only when a CA file was given and verification passed
  std::string ca_file;
  Duration total{};
};

// The server name the probe sends: `sni` if set, else the host when it is a name, else
// istiod.istio-system.svc.
std::string chooseSni(const std::string& sni, const std::string& host);

TlsProbeResult probeIstiod(const TlsProbeOptions& options) noexcept;

}  // namespace meshprobe::agent
