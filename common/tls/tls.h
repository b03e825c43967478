#pragma once
// TLS on the aggregator's gRPC port: the flags every binary shares, the credentials built
// from them, and who a verified client certificate says its holder is.
//
// Mutual TLS by default. The aggregator serves with --tls-cert/--tls-key and accepts only
// clients whose certificate chains to --tls-client-ca (Collector and Query alike). Agents,
// the CLI and the load generator verify the aggregator with --aggregator-ca (and the name
// in --tls-server-name, default the host of --aggregator) and present --tls-cert/--tls-key.
// Plaintext needs an explicit --insecure. Certificate, key and CA files are watched by
// gRPC's FileWatcherCertificateProvider and re-read every --tls-refresh, so a rotated
// certificate is used for new handshakes without a restart and open streams stay up.
//
// Identity (aggregator side, from the verified client certificate): its names are its DNS
// subject alternative names plus its subject common name.
//   - a name `meshprobe-reader`: a reader certificate. Query only; Collector is refused.
//   - a name `meshprobe-agent`: the shared agent certificate. May report as any node.
//   - otherwise the certificate names nodes: it may report only as one of its names.
// Any verified client certificate may call Query.

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/auth_context.h>

#include <boost/program_options.hpp>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/duration.h"
#include "common/result.h"

namespace meshprobe::tls {

inline constexpr std::string_view kReaderName = "meshprobe-reader";
inline constexpr std::string_view kSharedAgentName = "meshprobe-agent";
inline constexpr const char* kDefaultRefresh = "60s";

// The client side: agent, CLI, load generator.
struct ClientConfig {
  std::string ca_file;      // --aggregator-ca
  std::string cert_file;    // --tls-cert
  std::string key_file;     // --tls-key
  std::string server_name;  // --tls-server-name; empty = the host of the target
  std::string refresh_text = kDefaultRefresh;
  Duration refresh = std::chrono::seconds(60);  // --tls-refresh
  bool insecure = false;                        // --insecure

  bool enabled() const { return !ca_file.empty() || !cert_file.empty() || !key_file.empty(); }
};

// The aggregator's side.
struct ServerConfig {
  std::string cert_file;       // --tls-cert
  std::string key_file;        // --tls-key
  std::string client_ca_file;  // --tls-client-ca
  std::string refresh_text = kDefaultRefresh;
  Duration refresh = std::chrono::seconds(60);  // --tls-refresh
  bool insecure = false;                        // --insecure

  bool enabled() const { return !cert_file.empty() || !key_file.empty() || !client_ca_file.empty(); }
};

// Adds --aggregator-ca, --tls-cert, --tls-key, --tls-server-name, --tls-refresh, --insecure.
// `insecure_help` says what --insecure turns off in that binary.
void addClientFlags(boost::program_options::options_description& desc, ClientConfig& config,
                    const std::string& insecure_help);
// Adds --tls-cert, --tls-key, --tls-client-ca, --tls-refresh, --insecure.
void addServerFlags(boost::program_options::options_description& desc, ServerConfig& config);

// After parsing: parses --tls-refresh, refuses --insecure together with TLS flags, a
// partial set of TLS flags (naming the missing ones), and files that cannot be read or
// hold no PEM block of the expected kind (naming the flag and the file). With
// `require_choice` (a daemon), neither TLS nor --insecure is an error that names the
// missing flags; without it the caller decides (see plaintextUnacknowledged).
Status finishClientConfig(ClientConfig& config, bool require_choice);
Status finishServerConfig(ServerConfig& config);

// No TLS flags and no --insecure: a client tool that goes on in plaintext should warn.
inline bool plaintextUnacknowledged(const ClientConfig& c) { return !c.enabled() && !c.insecure; }

// Insecure credentials without TLS; otherwise mutual TLS with file watching and hostname
// verification of the aggregator's certificate.
std::shared_ptr<grpc::ChannelCredentials> channelCredentials(const ClientConfig& config);
// Sets the name checked in the server certificate when --tls-server-name is given.
void applyChannelArguments(const ClientConfig& config, grpc::ChannelArguments& args);
// CreateCustomChannel with both of the above.
std::shared_ptr<grpc::Channel> createChannel(const std::string& target, const ClientConfig& config,
                                             grpc::ChannelArguments args = {});

std::shared_ptr<grpc::ServerCredentials> serverCredentials(const ServerConfig& config);

// What the aggregator knows about the other end of a call.
struct PeerIdentity {
  enum class Kind {
    kUnauthenticated,  // plaintext (--insecure): no identity, everything allowed
    kReader,           // names meshprobe-reader
    kSharedAgent,      // names meshprobe-agent
    kNode,             // names the nodes in `names`
  };
  Kind kind = Kind::kUnauthenticated;
  std::vector<std::string> names;  // DNS SANs, then the CN (deduplicated)

  // "certificate 'a, b'" for messages; "plaintext peer" when unauthenticated.
  std::string describe() const;
};

// Classifies a certificate's names (pure; unit-tested).
PeerIdentity identityFromNames(std::vector<std::string> names);
// From a server call's auth context (an unauthenticated context gives kUnauthenticated).
PeerIdentity identityOf(const grpc::AuthContext* context);

// Whether `identity` may send Hello/Report for `node`; the error names both.
Status mayReportAs(const PeerIdentity& identity, const std::string& node);

}  // namespace meshprobe::tls
