#include "agent/istiod/tls_probe.h"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>

namespace meshprobe::agent {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using SteadyClock = std::chrono::steady_clock;
using boost::system::error_code;

constexpr size_t kMaxCaFileBytes = 4 * 1024 * 1024;
// The wire form of the ALPN list the probe offers: one protocol, "h2".
constexpr std::array<unsigned char, 3> kAlpnWire = {2, 'h', '2'};

std::string errnoText(int err) { return std::strerror(err); }

// Everything a stage needs to fail: the stage, its error, and whether nothing was sent.
void fail(TlsProbeResult& r, ProbeStage stage, std::string error, bool local = false) {
  r.ok = false;
  r.failed_stage = stage;
  r.error = std::move(error);
  r.local_error = local;
}

void recordStage(TlsProbeResult& r, ProbeStage stage, SteadyClock::time_point start, bool ok) {
  r.stages.push_back(StageLatency{stage, SteadyClock::now() - start, ok});
}

Duration remaining(SteadyClock::time_point deadline) {
  auto left = deadline - SteadyClock::now();
  return left > Duration::zero() ? std::chrono::duration_cast<Duration>(left) : Duration::zero();
}

// Reads the CA file and adds every PEM certificate in it to the context's trust store.
// Errors name the file.
Status loadCaFile(asio::ssl::context& ctx, const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return Error{"cannot read CA file " + path + ": " + errnoText(errno), errno};
  std::string data;
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Error{"cannot read CA file " + path + ": not a regular file"};
  }
  std::array<char, 16 * 1024> buf{};
  while (data.size() < kMaxCaFileBytes) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return Error{"cannot read CA file " + path + ": " + errnoText(err), err};
    }
    if (n == 0) break;
    data.append(buf.data(), static_cast<size_t>(n));
  }
  ::close(fd);

  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())), BIO_free);
  if (!bio) return Error{"cannot read CA file " + path + ": out of memory"};
  X509_STORE* store = SSL_CTX_get_cert_store(ctx.native_handle());
  int added = 0;
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    X509_STORE_add_cert(store, cert);  // fails only on duplicates, which are harmless
    X509_free(cert);
    ++added;
  }
  ERR_clear_error();  // the loop ends on a "no start line" error
  if (added == 0) return Error{"CA file " + path + " holds no PEM certificate"};
  return okStatus();
}

std::string connectError(const error_code& ec) {
  if (ec == asio::error::connection_refused) return "connection refused";
  if (ec == asio::error::network_unreachable) return "network unreachable";
  if (ec == asio::error::host_unreachable) return "host unreachable";
  if (ec == asio::error::timed_out) return "timed out (no answer to SYN)";
  if (ec == asio::error::access_denied || ec == asio::error::no_permission) {
    return "not permitted (" + ec.message() + ")";
  }
  return ec.message();
}

std::string handshakeError(const error_code& ec, SSL* ssl, bool verifying, const std::string& sni) {
  if (verifying) {
    long v = SSL_get_verify_result(ssl);
    if (v != X509_V_OK) {
      std::string msg = std::string("certificate verification failed: ") + X509_verify_cert_error_string(v);
      if (v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH) {
        msg += " (expected " + sni + ")";
      }
      return msg;
    }
  }
  if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) {
    return "server closed the connection during the handshake (not a TLS server?)";
  }
  if (ec == asio::error::connection_reset) return "connection reset by server during the handshake";
  // e.g. "wrong version number (SSL routines)" when the peer answers with something that is not TLS.
  return "handshake failed: " + ec.message();
}

std::string asn1Text(const ASN1_STRING* s) {
  if (s == nullptr) return {};
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<size_t>(ASN1_STRING_length(s)));
}

std::string nameText(const X509_NAME* name) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  if (!bio || X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253) < 0) return {};
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return n > 0 ? std::string(data, static_cast<size_t>(n)) : std::string();
}

std::vector<std::string> subjectAltNames(X509* cert) {
  std::vector<std::string> out;
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names, i);
    switch (gn->type) {
      case GEN_DNS:
        out.push_back("DNS:" + asn1Text(gn->d.dNSName));
        break;
      case GEN_URI:
        out.push_back("URI:" + asn1Text(gn->d.uniformResourceIdentifier));
        break;
      case GEN_EMAIL:
        out.push_back("email:" + asn1Text(gn->d.rfc822Name));
        break;
      case GEN_IPADD: {
        const ASN1_OCTET_STRING* ip = gn->d.iPAddress;
        const unsigned char* b = ASN1_STRING_get0_data(ip);
        if (ASN1_STRING_length(ip) == 4) {
          asio::ip::address_v4::bytes_type bytes;
          std::copy_n(b, 4, bytes.begin());
          out.push_back("IP:" + asio::ip::address_v4(bytes).to_string());
        } else if (ASN1_STRING_length(ip) == 16) {
          asio::ip::address_v6::bytes_type bytes;
          std::copy_n(b, 16, bytes.begin());
          out.push_back("IP:" + asio::ip::address_v6(bytes).to_string());
        }
        break;
      }
      default:
        break;
    }
  }
  GENERAL_NAMES_free(names);
  return out;
}

// Runs `io` until `done` or until `timeout`; on timeout closes `sock` (aborting the
// pending operation) and drains the aborted handler. Returns false on timeout.
bool runUntil(asio::io_context& io, tcp::socket& sock, const bool& done, Duration timeout) {
  io.restart();
  if (timeout > Duration::zero()) io.run_for(timeout);
  if (done) return true;
  error_code ignored;
  sock.close(ignored);
  io.restart();
  io.run();  // the aborted operation completes with operation_aborted at once
  return false;
}

void runProbe(const TlsProbeOptions& options, TlsProbeResult& r) {
  const auto start = SteadyClock::now();
  const auto deadline = start + options.timeout;

  auto hp = parseHostPort(options.endpoint);
  if (!hp.ok()) {
    fail(r, ProbeStage::kDns, hp.error().message, /*local=*/true);
    return;
  }
  r.host = hp->host;
  r.port = hp->port;
  r.sni = chooseSni(options.sni, r.host);
  const bool verifying = !options.ca_file.empty();

  // The TLS context comes first: an unusable CA file is a local error, reported before
  // any packet is sent.
  asio::ssl::context ctx(asio::ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION);
  if (SSL_CTX_set_alpn_protos(ctx.native_handle(), kAlpnWire.data(), kAlpnWire.size()) != 0) {
    fail(r, ProbeStage::kTls, "cannot configure ALPN h2", /*local=*/true);
    return;
  }
  if (verifying) {
    auto loaded = loadCaFile(ctx, options.ca_file);
    if (!loaded.ok()) {
      fail(r, ProbeStage::kTls, loaded.error().message, /*local=*/true);
      return;
    }
    ctx.set_verify_mode(asio::ssl::verify_peer);
  } else {
    ctx.set_verify_mode(asio::ssl::verify_none);
  }

  // Stage dns.
  if (isIpLiteral(r.host)) {
    r.addresses.push_back(asio::ip::make_address(r.host).to_string());
  } else {
    auto t0 = SteadyClock::now();
    Resolver resolver = options.resolver ? options.resolver : systemResolver();
    auto left = remaining(deadline);
    auto resolved =
        left > Duration::zero() ? resolver(r.host, left) : Result<std::vector<std::string>>(Error{"no time left"});
    if (!resolved.ok()) {
      recordStage(r, ProbeStage::kDns, t0, false);
      fail(r, ProbeStage::kDns, resolved.error().message);
      return;
    }
    for (const auto& a : *resolved) {
      error_code ec;
      auto addr = asio::ip::make_address(a, ec);
      if (ec) continue;  // a resolver that returns junk gets it skipped, not trusted
      auto text = addr.to_string();
      if (std::find(r.addresses.begin(), r.addresses.end(), text) == r.addresses.end()) r.addresses.push_back(text);
    }
    if (r.addresses.empty()) {
      recordStage(r, ProbeStage::kDns, t0, false);
      fail(r, ProbeStage::kDns, "no addresses for " + r.host);
      return;
    }
    recordStage(r, ProbeStage::kDns, t0, true);
  }

  // Stage connect: the addresses in order until one answers or the deadline passes.
  asio::io_context io;
  tcp::socket sock(io);
  {
    auto t0 = SteadyClock::now();
    bool connected = false;
    std::string last_error;
    for (const auto& a : r.addresses) {
      tcp::endpoint ep(asio::ip::make_address(a), r.port);
      r.peer_address = formatHostPort(a, r.port);
      auto left = remaining(deadline);
      if (left <= Duration::zero()) {
        last_error = "timed out after " + formatDuration(options.timeout) + " (probe deadline)";
        break;
      }
      bool done = false;
      error_code result;
      sock.async_connect(ep, [&](const error_code& ec) {
        result = ec;
        done = true;
      });
      if (!runUntil(io, sock, done, left)) {
        last_error = "timed out after " + formatDuration(SteadyClock::now() - t0);
        break;  // the deadline is spent
      }
      if (!result) {
        connected = true;
        break;
      }
      last_error = connectError(result);
      error_code ignored;
      sock.close(ignored);
    }
    recordStage(r, ProbeStage::kConnect, t0, connected);
    if (!connected) {
      fail(r, ProbeStage::kConnect, last_error);
      return;
    }
  }

  // Stage tls.
  auto t0 = SteadyClock::now();
  asio::ssl::stream<tcp::socket&> stream(sock, ctx);
  SSL* ssl = stream.native_handle();
  const bool sni_is_ip = isIpLiteral(r.sni);
  if (!sni_is_ip) SSL_set_tlsext_host_name(ssl, r.sni.c_str());
  if (verifying) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    int set = sni_is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, r.sni.c_str())
                        : X509_VERIFY_PARAM_set1_host(param, r.sni.c_str(), r.sni.size());
    if (set != 1) {
      recordStage(r, ProbeStage::kTls, t0, false);
      fail(r, ProbeStage::kTls, "cannot set the expected server name " + r.sni, /*local=*/true);
      return;
    }
  }
  bool done = false;
  error_code hs_error;
  stream.async_handshake(asio::ssl::stream_base::client, [&](const error_code& ec) {
    hs_error = ec;
    done = true;
  });
  if (!runUntil(io, sock, done, remaining(deadline))) {
    recordStage(r, ProbeStage::kTls, t0, false);
    fail(r, ProbeStage::kTls,
         "timed out after " + formatDuration(SteadyClock::now() - t0) + " (server accepted but never answered)");
    return;
  }
  if (hs_error) {
    recordStage(r, ProbeStage::kTls, t0, false);
    fail(r, ProbeStage::kTls, handshakeError(hs_error, ssl, verifying, r.sni));
    return;
  }

  const unsigned char* alpn = nullptr;
  unsigned int alpn_len = 0;
  SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
  if (alpn != nullptr) r.alpn.assign(reinterpret_cast<const char*>(alpn), alpn_len);
  r.tls_version = SSL_get_version(ssl);
  if (const char* c = SSL_get_cipher_name(ssl)) r.cipher = c;
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
  X509* peer = SSL_get1_peer_certificate(ssl);
#else
  X509* peer = SSL_get_peer_certificate(ssl);
#endif
  if (peer != nullptr) {
    r.peer_subject = nameText(X509_get_subject_name(peer));
    r.peer_sans = subjectAltNames(peer);
    X509_free(peer);
  }
  r.chain_verified = verifying && peer != nullptr && SSL_get_verify_result(ssl) == X509_V_OK;
  error_code ignored;
  sock.close(ignored);  // the probe only needs the handshake; no xDS is spoken

  if (r.alpn != kIstiodAlpn) {
    recordStage(r, ProbeStage::kTls, t0, false);
    fail(r, ProbeStage::kTls,
         std::string("server did not negotiate ALPN h2") +
             (r.alpn.empty() ? " (no protocol selected)" : " (selected \"" + r.alpn + "\")"));
    return;
  }
  recordStage(r, ProbeStage::kTls, t0, true);
  r.ok = true;
}

}  // namespace

std::string_view stageName(ProbeStage stage) {
  switch (stage) {
    case ProbeStage::kDns:
      return "dns";
    case ProbeStage::kConnect:
      return "connect";
    case ProbeStage::kTls:
      return "tls";
  }
  return "unknown";
}

Result<HostPort> parseHostPort(std::string_view text) {
  auto bad = [&](const std::string& why) { return Error{"bad endpoint '" + std::string(text) + "': " + why}; };
  HostPort hp;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos) return bad("missing ']'");
    hp.host = std::string(text.substr(1, close - 1));
    if (close + 1 >= text.size() || text[close + 1] != ':') return bad("want [IPv6]:PORT");
    port_text = text.substr(close + 2);
    if (!isIpLiteral(hp.host)) return bad("'" + hp.host + "' is not an IPv6 address");
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return bad("want HOST:PORT");
    hp.host = std::string(text.substr(0, colon));
    if (hp.host.find(':') != std::string::npos) return bad("write an IPv6 address as [ADDR]:PORT");
    port_text = text.substr(colon + 1);
  }
  if (hp.host.empty()) return bad("empty host");
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
  if (port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size() || value == 0 ||
      value > 65535) {
    return bad("port must be 1..65535");
  }
  hp.port = static_cast<uint16_t>(value);
  return hp;
}

std::string formatHostPort(const std::string& host, uint16_t port) {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

bool isIpLiteral(const std::string& host) {
  error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

std::string chooseSni(const std::string& sni, const std::string& host) {
  if (!sni.empty()) return sni;
  if (!host.empty() && !isIpLiteral(host)) return host;
  return std::string(kDefaultIstiodSni);
}

Resolver systemResolver() {
  return [](const std::string& host, Duration timeout) -> Result<std::vector<std::string>> {
    // Shared with the helper thread, which may outlive this call when the deadline passes.
    struct State {
      std::mutex mu;
      std::condition_variable cv;
      std::optional<Result<std::vector<std::string>>> result;
    };
    auto state = std::make_shared<State>();
    try {
      std::thread([state, host] {
        Result<std::vector<std::string>> r = Error{"resolver failed"};
        try {
          asio::io_context io;
          tcp::resolver resolver(io);
          error_code ec;
          auto results = resolver.resolve(host, "0", tcp::resolver::numeric_service, ec);
          if (ec == asio::error::host_not_found) {
            r = Error{"no such host"};
          } else if (ec == asio::error::host_not_found_try_again) {
            r = Error{"temporary failure in name resolution"};
          } else if (ec) {
            r = Error{ec.message()};
          } else {
            std::vector<std::string> addrs;
            for (const auto& e : results) addrs.push_back(e.endpoint().address().to_string());
            r = std::move(addrs);
          }
        } catch (const std::exception& e) {
          r = Error{e.what()};
        }
        std::lock_guard lock(state->mu);
        state->result = std::move(r);
        state->cv.notify_all();
      }).detach();
    } catch (const std::exception& e) {
      return Error{std::string("cannot start the resolver: ") + e.what()};
    }
    std::unique_lock lock(state->mu);
    if (!state->cv.wait_for(lock, timeout, [&] { return state->result.has_value(); })) {
      return Error{"timed out after " + formatDuration(timeout)};
    }
    return *state->result;
  };
}

TlsProbeResult probeIstiod(const TlsProbeOptions& options) noexcept {
  TlsProbeResult r;
  const auto start = SteadyClock::now();
  try {
    r.endpoint = options.endpoint;
    r.ca_file = options.ca_file;
    runProbe(options, r);
  } catch (const std::exception& e) {
    // A failed allocation or an asio/OpenSSL setup error: reported, never thrown.
    ProbeStage stage = r.stages.empty() ? ProbeStage::kDns : r.stages.back().stage;
    fail(r, stage, std::string("internal error: ") + e.what());
  } catch (...) {
    fail(r, ProbeStage::kDns, "internal error");
  }
  r.total = SteadyClock::now() - start;
  return r;
}

}  // namespace meshprobe::agent
