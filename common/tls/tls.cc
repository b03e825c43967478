#include "common/tls/tls.h"

#include <grpc/grpc_security_constants.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace meshprobe::tls {
namespace po = boost::program_options;

namespace {

constexpr size_t kMaxPemFile = 1 << 20;  // certificate bundles are kilobytes

Result<std::string> readFile(const std::string& flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{"--" + flag + " " + path + ": cannot read: " + std::strerror(errno)};
  std::string data;
  data.resize(kMaxPemFile + 1);
  in.read(data.data(), static_cast<std::streamsize>(data.size()));
  data.resize(static_cast<size_t>(in.gcount()));
  if (data.size() > kMaxPemFile) return Error{"--" + flag + " " + path + ": larger than 1 MiB, not a PEM file"};
  return data;
}

std::string opensslError() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "no PEM block found";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

using BioPtr = std::unique_ptr<BIO, decltype(&BIO_free)>;
using X509Ptr = std::unique_ptr<X509, decltype(&X509_free)>;
using KeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

Result<X509Ptr> loadCertificate(const std::string& flag, const std::string& path) {
  auto data = readFile(flag, path);
  if (!data.ok()) return data.error();
  BioPtr bio(BIO_new_mem_buf(data->data(), static_cast<int>(data->size())), BIO_free);
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr), X509_free);
  if (!cert) return Error{"--" + flag + " " + path + ": not a PEM certificate (" + opensslError() + ")"};
  return cert;
}

Result<KeyPtr> loadKey(const std::string& flag, const std::string& path) {
  auto data = readFile(flag, path);
  if (!data.ok()) return data.error();
  BioPtr bio(BIO_new_mem_buf(data->data(), static_cast<int>(data->size())), BIO_free);
  KeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr), EVP_PKEY_free);
  if (!key) return Error{"--" + flag + " " + path + ": not an unencrypted PEM private key (" + opensslError() + ")"};
  return key;
}

// The certificate/key pair as gRPC will load it: both readable, and the key belongs to
// the certificate (gRPC would otherwise fail every handshake with a log line only).
Status checkPair(const std::string& cert_flag, const std::string& cert_path, const std::string& key_flag,
                 const std::string& key_path) {
  auto cert = loadCertificate(cert_flag, cert_path);
  if (!cert.ok()) return cert.error();
  auto key = loadKey(key_flag, key_path);
  if (!key.ok()) return key.error();
  if (X509_check_private_key(cert->get(), key->get()) != 1) {
    ERR_clear_error();
    return Error{"--" + key_flag + " " + key_path + " is not the private key of --" + cert_flag + " " + cert_path};
  }
  return okStatus();
}

Result<Duration> parseRefresh(const std::string& text) {
  auto d = parseDuration(text);
  if (!d || *d < std::chrono::seconds(1))
    return Error{"--tls-refresh: invalid duration '" + text + "' (at least 1s, e.g. 60s)"};
  return *d;
}

unsigned refreshSeconds(Duration d) {
  auto s = std::chrono::ceil<std::chrono::seconds>(d).count();
  return static_cast<unsigned>(std::clamp<int64_t>(s, 1, 86400));
}

std::string joinMissing(const std::vector<std::string>& missing) {
  std::string out;
  for (size_t i = 0; i < missing.size(); ++i) {
    if (i) out += i + 1 == missing.size() ? " and " : ", ";
    out += missing[i];
  }
  return out;
}

}  // namespace

void addClientFlags(po::options_description& desc, ClientConfig& c, const std::string& insecure_help) {
  // clang-format off
  desc.add_options()
      ("aggregator-ca", po::value(&c.ca_file), "PEM CA certificate(s) that signed the aggregator's certificate (mutual TLS with --tls-cert, --tls-key)")
      ("tls-cert", po::value(&c.cert_file), "PEM client certificate presented to the aggregator")
      ("tls-key", po::value(&c.key_file), "PEM private key of --tls-cert")
      ("tls-server-name", po::value(&c.server_name), "name verified in the aggregator's certificate (default: the host part of the aggregator address)")
      ("tls-refresh", po::value(&c.refresh_text)->default_value(kDefaultRefresh), "how often the TLS files are re-read (rotation without a restart)")
      ("insecure", po::bool_switch(&c.insecure), insecure_help.c_str());
  // clang-format on
}

void addServerFlags(po::options_description& desc, ServerConfig& c) {
  // clang-format off
  desc.add_options()
      ("tls-cert", po::value(&c.cert_file), "PEM certificate the gRPC port serves (mutual TLS with --tls-key, --tls-client-ca)")
      ("tls-key", po::value(&c.key_file), "PEM private key of --tls-cert")
      ("tls-client-ca", po::value(&c.client_ca_file), "PEM CA certificate(s) whose client certificates may call Collector and Query")
      ("tls-refresh", po::value(&c.refresh_text)->default_value(kDefaultRefresh), "how often the TLS files are re-read (rotation without a restart)")
      ("insecure", po::bool_switch(&c.insecure), "serve gRPC in plaintext without client authentication (tests and demos only)");
  // clang-format on
}

Status finishClientConfig(ClientConfig& c, bool require_choice) {
  auto refresh = parseRefresh(c.refresh_text);
  if (!refresh.ok()) return refresh.error();
  c.refresh = *refresh;
  if (c.insecure && c.enabled())
    return Error{"--insecure cannot be combined with --aggregator-ca, --tls-cert or --tls-key: choose TLS or plaintext"};
  if (!c.enabled()) {
    if (require_choice && !c.insecure)
      return Error{
          "no TLS for the aggregator connection: pass --aggregator-ca, --tls-cert and --tls-key (mutual TLS), or "
          "--insecure for plaintext"};
    if (!c.server_name.empty()) return Error{"--tls-server-name needs --aggregator-ca, --tls-cert and --tls-key"};
    return okStatus();
  }
  std::vector<std::string> missing;
  if (c.ca_file.empty()) missing.push_back("--aggregator-ca");
  if (c.cert_file.empty()) missing.push_back("--tls-cert");
  if (c.key_file.empty()) missing.push_back("--tls-key");
  if (!missing.empty())
    return Error{"mutual TLS needs --aggregator-ca, --tls-cert and --tls-key together: missing " + joinMissing(missing)};
  if (auto ca = loadCertificate("aggregator-ca", c.ca_file); !ca.ok()) return ca.error();
  return checkPair("tls-cert", c.cert_file, "tls-key", c.key_file);
}

Status finishServerConfig(ServerConfig& c) {
  auto refresh = parseRefresh(c.refresh_text);
  if (!refresh.ok()) return refresh.error();
  c.refresh = *refresh;
  if (c.insecure && c.enabled())
    return Error{"--insecure cannot be combined with --tls-cert, --tls-key or --tls-client-ca: choose TLS or plaintext"};
  if (c.insecure) return okStatus();
  std::vector<std::string> missing;
  if (c.cert_file.empty()) missing.push_back("--tls-cert");
  if (c.key_file.empty()) missing.push_back("--tls-key");
  if (c.client_ca_file.empty()) missing.push_back("--tls-client-ca");
  if (!c.enabled())
    return Error{"no TLS for the gRPC port: pass --tls-cert, --tls-key and --tls-client-ca (mutual TLS), or --insecure "
                 "for plaintext"};
  if (!missing.empty())
    return Error{"mutual TLS needs --tls-cert, --tls-key and --tls-client-ca together: missing " +
                 joinMissing(missing)};
  if (auto ca = loadCertificate("tls-client-ca", c.client_ca_file); !ca.ok()) return ca.error();
  return checkPair("tls-cert", c.cert_file, "tls-key", c.key_file);
}

std::shared_ptr<grpc::ChannelCredentials> channelCredentials(const ClientConfig& c) {
  if (!c.enabled()) return grpc::InsecureChannelCredentials();
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      c.key_file, c.cert_file, c.ca_file, refreshSeconds(c.refresh));
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(provider);
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_verify_server_certs(true);
  options.set_certificate_verifier(std::make_shared<grpc::experimental::HostNameCertificateVerifier>());
  return grpc::experimental::TlsCredentials(options);
}

void applyChannelArguments(const ClientConfig& c, grpc::ChannelArguments& args) {
  if (c.enabled() && !c.server_name.empty()) args.SetSslTargetNameOverride(c.server_name);
}

std::shared_ptr<grpc::Channel> createChannel(const std::string& target, const ClientConfig& c,
                                             grpc::ChannelArguments args) {
  applyChannelArguments(c, args);
  return grpc::CreateCustomChannel(target, channelCredentials(c), args);
}

std::shared_ptr<grpc::ServerCredentials> serverCredentials(const ServerConfig& c) {
  if (!c.enabled()) return grpc::InsecureServerCredentials();
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      c.key_file, c.cert_file, c.client_ca_file, refreshSeconds(c.refresh));
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  return grpc::experimental::TlsServerCredentials(options);
}

std::string PeerIdentity::describe() const {
  if (kind == Kind::kUnauthenticated) return "plaintext peer";
  std::string out = "certificate '";
  for (size_t i = 0; i < names.size(); ++i) out += (i ? ", " : "") + names[i];
  return out + "'";
}

PeerIdentity identityFromNames(std::vector<std::string> names) {
  std::vector<std::string> unique;
  for (auto& n : names) {
    if (!n.empty() && std::find(unique.begin(), unique.end(), n) == unique.end()) unique.push_back(std::move(n));
  }
  PeerIdentity id;
  id.names = std::move(unique);
  auto has = [&](std::string_view name) { return std::find(id.names.begin(), id.names.end(), name) != id.names.end(); };
  if (has(kReaderName))
    id.kind = PeerIdentity::Kind::kReader;
  else if (has(kSharedAgentName))
    id.kind = PeerIdentity::Kind::kSharedAgent;
  else
    id.kind = PeerIdentity::Kind::kNode;
  return id;
}

PeerIdentity identityOf(const grpc::AuthContext* context) {
  if (context == nullptr || !context->IsPeerAuthenticated()) return {};
  std::vector<std::string> names;
  for (const auto& v : context->FindPropertyValues(GRPC_PEER_DNS_PROPERTY_NAME)) names.emplace_back(v.data(), v.size());
  for (const auto& v : context->FindPropertyValues(GRPC_X509_CN_PROPERTY_NAME)) names.emplace_back(v.data(), v.size());
  return identityFromNames(std::move(names));
}

Status mayReportAs(const PeerIdentity& id, const std::string& node) {
  switch (id.kind) {
    case PeerIdentity::Kind::kUnauthenticated:
    case PeerIdentity::Kind::kSharedAgent:
      return okStatus();
    case PeerIdentity::Kind::kReader:
      return Error{id.describe() + " is a reader certificate: it may call Query, not report as node '" + node + "'"};
    case PeerIdentity::Kind::kNode:
      if (std::find(id.names.begin(), id.names.end(), node) != id.names.end()) return okStatus();
      return Error{id.describe() + " may report only as " +
                   (id.names.size() == 1 ? "node '" + id.names.front() + "'" : "the nodes it names") +
                   ", not as node '" + node + "'"};
  }
  return Error{"unknown identity"};
}

}  // namespace meshprobe::tls
