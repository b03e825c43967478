#include "agent/checks/istiod_check.h"

#include <algorithm>
#include <exception>
#include <string>

#include "common/finding_catalogue.h"

namespace meshprobe::agent {
namespace {

using namespace std::chrono_literals;

constexpr Duration kMaxProbeTimeout = 3s;

double millis(Duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

std::string latencies(const TlsProbeResult& p) {
  std::string out;
  for (const auto& s : p.stages) {
    if (!out.empty()) out += ", ";
    out += std::string(stageName(s.stage)) + " " + formatDuration(s.latency);
    if (!s.ok) out += " (failed)";
  }
  return out;
}

std::string chainText(const TlsProbeResult& p) {
  if (p.ca_file.empty()) return "chain not verified: no --istiod-ca";
  return p.chain_verified ? "chain verified" : "chain not verified";
}

bool startsWith(const std::string& s, std::string_view prefix) { return s.rfind(prefix, 0) == 0; }

// "connect to 10.96.0.10:15012", "connect to istiod.istio-system.svc:15012 (10.96.0.10:15012)".
std::string target(const TlsProbeResult& p) {
  if (p.peer_address.empty() || p.peer_address == p.endpoint) return p.endpoint;
  return p.endpoint + " (" + p.peer_address + ")";
}

std::string failureSummary(const TlsProbeResult& p) {
  switch (p.failed_stage.value_or(ProbeStage::kDns)) {
    case ProbeStage::kDns:
      if (p.local_error) return "istiod endpoint " + p.endpoint + ": " + p.error;
      return "resolve " + p.endpoint + ": " + p.error;
    case ProbeStage::kConnect:
      return "connect to " + target(p) + ": " + p.error;
    case ProbeStage::kTls:
      if (p.local_error) return "cannot probe istiod " + p.endpoint + ": " + p.error + " (--istiod-ca)";
      return "TLS handshake with " + target(p) + ": " + p.error;
  }
  return p.error;
}

constexpr std::string_view kRemedy =
    "Check that istiod is listening on port 15012 (kubectl debug $ISTIOD -n istio-system --target=discovery -- "
    "ss -ltnp | grep 15012) and that the istiod Service exposes port 15012 (kubectl get svc istiod -n istio-system; "
    "kubectl get endpoints -n istio-system istiod); then check network connectivity from this node to istiod "
    "(nc -zv istiod.istio-system.svc.cluster.local 15012). ztunnel stays 0/1 READY until it can reach istiod.";

std::string remedy(const TlsProbeResult& p) {
  std::string hint;
  switch (p.failed_stage.value_or(ProbeStage::kDns)) {
    case ProbeStage::kDns:
      hint = "The name " + p.host + " does not resolve from this node: check the cluster DNS and the --istiod name. ";
      break;
    case ProbeStage::kConnect:
      if (startsWith(p.error, "timed out")) {
        hint = "Nothing answered the TCP connect: a firewall drop or a broken overlay path is likely. ";
      }
      break;
    case ProbeStage::kTls:
      if (startsWith(p.error, "server did not negotiate ALPN h2")) {
        hint = "Something accepts TLS on " + p.endpoint +
               " but does not negotiate ALPN h2, which Istio 1.24 requires: make sure the port reaches istiod itself. ";
      } else if (startsWith(p.error, "certificate verification failed")) {
        hint = "istiod's certificate does not chain to --istiod-ca or does not name " + p.sni +
               ": pass the istio-ca-root-cert ConfigMap's root-cert.pem. ";
      } else if (startsWith(p.error, "timed out")) {
        hint = "The port accepted the connection but never completed TLS: it is not istiod, or istiod is stuck. ";
      } else {
        hint = "The port accepted the connection but did not complete TLS: it is not istiod's TLS listener. ";
      }
      break;
  }
  return hint + std::string(kRemedy);
}

}  // namespace

Duration istiodProbeTimeout(Duration check_timeout) {
  Duration margin = std::max<Duration>(check_timeout / 10, 200ms);
  Duration t = check_timeout - margin;
  if (t < check_timeout / 2) t = check_timeout / 2;
  return std::min(t, kMaxProbeTimeout);
}

nlohmann::json istiodProbeDetails(const TlsProbeResult& p, Duration timeout) {
  nlohmann::json d = nlohmann::json::object();
  d["endpoint"] = p.endpoint;
  d["host"] = p.host;
  d["port"] = p.port;
  d["addresses"] = p.addresses;
  d["peer_address"] = p.peer_address;
  d["sni"] = p.sni;
  d["timeout_ms"] = millis(timeout);
  d["total_ms"] = millis(p.total);
  nlohmann::json stages = nlohmann::json::object();
  for (const auto& s : p.stages) {
    stages[std::string(stageName(s.stage))] = {{"ok", s.ok}, {"latency_ms", millis(s.latency)}};
  }
  d["stages"] = std::move(stages);
  d["alpn"] = p.alpn;
  d["tls_version"] = p.tls_version;
  d["cipher"] = p.cipher;
  d["peer_subject"] = p.peer_subject;
  d["peer_sans"] = p.peer_sans;
  d["ca_file"] = p.ca_file;
  d["chain_verified"] = p.chain_verified;
  d["chain"] = chainText(p);
  if (!p.ok) {
    d["failed_stage"] = std::string(stageName(p.failed_stage.value_or(ProbeStage::kDns)));
    d["error"] = p.error;
  }
  return d;
}

IstiodCheck::IstiodCheck(const AgentConfig& config) : IstiodCheck(config, IstiodCheckOptions{}) {}

IstiodCheck::IstiodCheck(const AgentConfig& config, IstiodCheckOptions options)
    : config_(config), options_(std::move(options)) {}

CheckResult IstiodCheck::run() {
  try {
    TlsProbeOptions opts;
    opts.endpoint = config_.istiod;
    opts.sni = config_.istiod_sni;
    opts.ca_file = config_.istiod_ca;
    opts.timeout = options_.probe_timeout.value_or(istiodProbeTimeout(config_.check_timeout));
    opts.resolver = options_.resolver;
    return evaluate(probeIstiod(opts), opts.timeout);
  } catch (const std::exception& e) {
    return result(CheckStatus::kFail, std::string("internal error: ") + e.what());
  } catch (...) {
    return result(CheckStatus::kFail, "internal error");
  }
}

CheckResult IstiodCheck::evaluate(const TlsProbeResult& p, Duration timeout) const {
  if (p.ok) {
    auto r = result(CheckStatus::kOk, "istiod " + target(p) + " reachable: " + p.tls_version + ", ALPN " + p.alpn +
                                          ", " + chainText(p) + " (" + latencies(p) + ")");
    r.details = istiodProbeDetails(p, timeout);
    return r;
  }

  auto r = result(CheckStatus::kFail, failureSummary(p));
  r.details = istiodProbeDetails(p, timeout);
  if (p.local_error) {
    // Nothing was sent: this says nothing about istiod's reachability, so no
    // ISTIOD_UNREACHABLE is claimed; the FAIL and its summary name the bad setting.
    return r;
  }

  Finding f = findingOf(codes::kIstiodUnreachable);
  f.summary = "node cannot reach istiod: " + r.summary;
  f.evidence.push_back("stage=" + std::string(stageName(p.failed_stage.value_or(ProbeStage::kDns))));
  f.evidence.push_back("error=" + p.error);
  f.evidence.push_back("endpoint=" + p.endpoint);
  if (!p.addresses.empty()) {
    std::string joined;
    for (const auto& a : p.addresses) joined += (joined.empty() ? "" : ",") + a;
    f.evidence.push_back("addresses=" + joined);
  }
  if (!p.peer_address.empty()) f.evidence.push_back("address=" + p.peer_address);
  if (p.failed_stage == ProbeStage::kTls) {
    f.evidence.push_back("sni=" + p.sni);
    if (!p.alpn.empty()) f.evidence.push_back("alpn=" + p.alpn);
    if (!p.tls_version.empty()) f.evidence.push_back("tls_version=" + p.tls_version);
    if (!p.ca_file.empty()) f.evidence.push_back("ca=" + p.ca_file);
  }
  f.evidence.push_back("latency: " + latencies(p));
  f.remedy = remedy(p);
  r.findings.push_back(std::move(f));
  return r;
}

}  // namespace meshprobe::agent
