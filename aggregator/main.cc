// meshprobe-aggregator entry point: flags, logging, signals. Everything else is in
// meshprobe_aggregator_lib (AggregatorServer wires Collector, Query, reflection, health).
#include <absl/synchronization/mutex.h>
#include <pthread.h>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <csignal>
#include <iostream>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <tuple>

#include "aggregator/diagnosis/kube_rules.h"
#include "aggregator/kube/client.h"
#include "aggregator/kube/config.h"
#include "aggregator/kube/leader.h"
#include "aggregator/kube/node_status.h"
#include "aggregator/kube/selector.h"
#include "aggregator/kube/watcher.h"
#include "aggregator/server.h"
#include "common/clock.h"
#include "common/duration.h"
#include "common/flags.h"
#include "common/logging.h"
#include "common/tls/tls.h"
#include "common/version.h"

namespace po = boost::program_options;

int main(int argc, char** argv) {
  // Debian's Abseil is built with its mutex deadlock detector on: every absl::Mutex gRPC
  // takes is tracked in a global lock-order graph, which with thousands of agent streams
  // costs more than the streams themselves. Nothing of ours uses absl::Mutex.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  std::string grpc_listen, http_listen, stale_after, forget_after, log_level, log_format;
  std::string kube_mode_text, kubeconfig, kube_context, expect_ambient, agent_missing_after;
  std::string node_conditions;
  std::string grpc_memory_limit;
  namespace diag = meshprobe::aggregator;
  const diag::KubeRuleOptions rule_defaults;
  // The mesh's own components' pods, as the upstream charts label them (kube_rules.h).
  struct ComponentFlag {
    const char* flag;
    diag::ComponentSelector diag::KubeRuleOptions::*field;
    std::string text;
  };
  std::vector<ComponentFlag> components = {
      {"agent-pods", &diag::KubeRuleOptions::agent, ""},
      {"ztunnel-pods", &diag::KubeRuleOptions::ztunnel, ""},
      {"istio-cni-pods", &diag::KubeRuleOptions::istio_cni, ""},
      {"flannel-pods", &diag::KubeRuleOptions::flannel, ""},
  };
  bool leader_elect = false;
  std::string le_name, le_namespace, le_identity, le_lease, le_renew, le_retry;
  meshprobe::tls::ServerConfig tls;
  po::options_description desc(
      "meshprobe-aggregator: cluster reachability matrix and diagnosis for meshprobe agents.\n"
      "Every flag also reads MESHPROBE_<FLAG>; flags win.\n\nFlags");
  // clang-format off
  desc.add_options()
      ("help,h", "print this help and exit")
      ("version", "print the version and exit")
      ("grpc-listen", po::value(&grpc_listen)->default_value("0.0.0.0:9470"), "gRPC ADDR:PORT (Collector, Query, health, reflection)")
      ("http-listen", po::value(&http_listen)->default_value("0.0.0.0:9471"), "HTTP ADDR:PORT (/metrics, /healthz, /readyz, /)")
      ("stale-after", po::value(&stale_after)->default_value("10s"), "a node that has not reported for this long is down: its cells turn UNKNOWN")
      ("forget-after", po::value(&forget_after)->default_value("0"), "a node silent for this long leaves the membership (0: 10 x --stale-after)")
      ("grpc-memory-limit", po::value(&grpc_memory_limit)->default_value("0"), "cap gRPC's transport buffers at this QUANTITY (e.g. 128Mi; at least 32Mi; 0: no cap); past it gRPC frees idle connections' read buffers, and if that is not enough ends streams")
      ("kube", po::value(&kube_mode_text)->default_value("auto"), "auto | on | off: watch Nodes, Namespaces and Pods (auto: when in a cluster or with --kubeconfig)")
      ("kubeconfig", po::value(&kubeconfig)->default_value(""), "kubeconfig FILE for running outside a cluster (token and client-certificate users)")
      ("kube-context", po::value(&kube_context)->default_value(""), "the kubeconfig context to use (default: its current-context)")
      ("expect-ambient", po::value(&expect_ambient)->default_value(""), "label SELECTOR of namespaces that must be in the ambient mesh (empty: not checked)")
      ("agent-missing-after", po::value(&agent_missing_after)->default_value("60s"), "a Ready Kubernetes node without a reporting agent for this long is AGENT_MISSING (time for a new node's agent to start)")
      ("node-conditions", po::value(&node_conditions)->default_value("on"), "on | off: write the MeshprobeNetworkProblem condition and finding Events to the Nodes (with the Kubernetes API; the leader only)")
      ("leader-elect", po::bool_switch(&leader_elect), "run several replicas: only the holder of a coordination.k8s.io Lease is Ready (needs the Kubernetes API)")
      ("leader-elect-resource-name", po::value(&le_name)->default_value("meshprobe-aggregator"), "the Lease's name")
      ("leader-elect-resource-namespace", po::value(&le_namespace)->default_value(""), "the Lease's namespace (default: the pod's own in-cluster, else meshprobe)")
      ("leader-elect-identity", po::value(&le_identity)->default_value(""), "this replica's holderIdentity (default: hostname_<random>)")
      ("leader-elect-lease-duration", po::value(&le_lease)->default_value("15s"), "a follower takes over a Lease it has seen unchanged for this long")
      ("leader-elect-renew-deadline", po::value(&le_renew)->default_value("10s"), "the leader steps down when it could not renew within this (< lease duration)")
      ("leader-elect-retry-period", po::value(&le_retry)->default_value("2s"), "how often to try to acquire or renew (< renew deadline)")
      ("log-level", po::value(&log_level)->default_value("info"), "debug | info | warn | error")
      ("log-format", po::value(&log_format)->default_value("text"), "text | json");
  // clang-format on
  for (auto& c : components) {
    const auto& def = rule_defaults.*(c.field);
    desc.add_options()(c.flag, po::value(&c.text)->default_value(diag::formatComponentSelector(def)),
                       ("NAMESPACE[,NAMESPACE...]:SELECTOR of the " + def.name + " pods (remedies name them)").c_str());
  }
  meshprobe::tls::addServerFlags(desc, tls);
  po::variables_map vm;
  auto outcome = meshprobe::parseFlags(argc, argv, desc, vm);
  if (!outcome.ok()) {
    std::cerr << "meshprobe-aggregator: " << outcome.error().message << "\n";
    return 2;
  }
  if (*outcome == meshprobe::ParseOutcome::kHelp) {
    std::cout << desc << "\n";
    return 0;
  }
  if (*outcome == meshprobe::ParseOutcome::kVersion) {
    std::cout << "meshprobe-aggregator " << meshprobe::kVersion << "\n";
    return 0;
  }
  if (auto st = meshprobe::setupLogging(log_level, log_format); !st.ok()) {
    std::cerr << "meshprobe-aggregator: " << st.error().message << "\n";
    return 2;
  }
  if (auto st = meshprobe::tls::finishServerConfig(tls); !st.ok()) {
    std::cerr << "meshprobe-aggregator: " << st.error().message << "\n";
    return 2;
  }
  auto stale = meshprobe::parseDuration(stale_after);
  if (!stale || stale->count() <= 0) {
    std::cerr << "meshprobe-aggregator: --stale-after '" << stale_after << "' is not a positive duration (e.g. 10s)\n";
    return 2;
  }
  auto forget = meshprobe::parseDuration(forget_after);
  if (!forget || forget->count() < 0 || (forget->count() > 0 && *forget < *stale)) {
    std::cerr << "meshprobe-aggregator: --forget-after '" << forget_after
              << "' must be 0 or a duration not shorter than --stale-after\n";
    return 2;
  }

  auto memory_limit = meshprobe::aggregator::parseByteQuantity(grpc_memory_limit);
  if (!memory_limit || (*memory_limit != 0 && *memory_limit < meshprobe::aggregator::kMinGrpcMemoryLimit)) {
    std::cerr << "meshprobe-aggregator: --grpc-memory-limit '" << grpc_memory_limit
              << "' must be 0 (no cap) or a byte quantity of at least 32Mi (e.g. 128Mi, 1Gi)\n";
    return 2;
  }

  namespace kube = meshprobe::aggregator::kube;
  auto kube_mode = kube::parseKubeMode(kube_mode_text);
  if (!kube_mode.ok()) {
    std::cerr << "meshprobe-aggregator: --kube: " << kube_mode.error().message << "\n";
    return 2;
  }
  if (!kube_context.empty() && kubeconfig.empty()) {
    std::cerr << "meshprobe-aggregator: --kube-context needs --kubeconfig\n";
    return 2;
  }
  auto expect = kube::Selector::parse(expect_ambient);
  if (!expect.ok()) {
    std::cerr << "meshprobe-aggregator: --expect-ambient '" << expect_ambient << "': " << expect.error().message
              << "\n";
    return 2;
  }
  diag::KubeRuleOptions rules;
  std::set<std::string> component_namespaces;
  for (const auto& c : components) {
    auto parsed = diag::parseComponentSelector((rule_defaults.*(c.field)).name, c.text);
    if (!parsed.ok()) {
      std::cerr << "meshprobe-aggregator: --" << c.flag << ": " << parsed.error().message << "\n";
      return 2;
    }
    component_namespaces.insert(parsed->namespaces.begin(), parsed->namespaces.end());
    rules.*(c.field) = std::move(*parsed);
  }
  auto missing_after = meshprobe::parseDuration(agent_missing_after);
  if (!missing_after || missing_after->count() < 0) {
    std::cerr << "meshprobe-aggregator: --agent-missing-after '" << agent_missing_after
              << "' is not a duration (e.g. 60s)\n";
    return 2;
  }
  if (node_conditions != "on" && node_conditions != "off") {
    std::cerr << "meshprobe-aggregator: --node-conditions '" << node_conditions << "' must be on or off\n";
    return 2;
  }
  auto resolution = kube::resolve(*kube_mode, kubeconfig, kube::processEnv());
  if (!resolution.ok()) {
    std::cerr << "meshprobe-aggregator: " << resolution.error().message << "\n";
    return 2;
  }
  if (resolution->config && !kube_context.empty()) {
    auto with_context = kube::loadKubeconfig(kubeconfig, kube_context);
    if (!with_context.ok()) {
      std::cerr << "meshprobe-aggregator: " << with_context.error().message << "\n";
      return 2;
    }
    resolution->config = *with_context;
  }
  // --leader-elect: configured and checked before anything starts.
  std::optional<kube::LeaderElectionConfig> election;
  if (leader_elect) {
    if (!resolution->config) {
      std::cerr << "meshprobe-aggregator: --leader-elect needs the Kubernetes API, and " << resolution->why
                << ": use --kube on or --kubeconfig, or run one replica without --leader-elect\n";
      return 2;
    }
    kube::LeaderElectionConfig le;
    le.lease_name = le_name;
    le.lease_namespace = !le_namespace.empty()                          ? le_namespace
                         : !resolution->config->pod_namespace.empty() ? resolution->config->pod_namespace
                                                                       : "meshprobe";
    le.identity = le_identity;
    if (le.identity.empty()) {
      // client-go's convention: hostname + "_" + a unique suffix (a restarted pod is a new holder).
      char host[256] = {0};
      gethostname(host, sizeof host - 1);
      std::mt19937_64 gen(std::random_device{}());
      char suffix[17];
      std::snprintf(suffix, sizeof suffix, "%016llx", static_cast<unsigned long long>(gen()));
      le.identity = std::string(host) + "_" + suffix;
    }
    for (auto [flag, text, out] : {std::tuple{"--leader-elect-lease-duration", &le_lease, &le.lease_duration},
                                   std::tuple{"--leader-elect-renew-deadline", &le_renew, &le.renew_deadline},
                                   std::tuple{"--leader-elect-retry-period", &le_retry, &le.retry_period}}) {
      auto d = meshprobe::parseDuration(*text);
      if (!d || d->count() <= 0) {
        std::cerr << "meshprobe-aggregator: " << flag << " '" << *text << "' is not a positive duration (e.g. 2s)\n";
        return 2;
      }
      *out = std::chrono::duration_cast<std::chrono::milliseconds>(*d);
    }
    if (auto why = kube::validateLeaderElection(le); !why.empty()) {
      std::cerr << "meshprobe-aggregator: --leader-elect: " << why << "\n";
      return 2;
    }
    election = le;
  }
  std::unique_ptr<kube::KubeWatcher> watcher;
  std::unique_ptr<kube::NodeProblemReporter> reporter;  // --node-conditions on
  std::unique_ptr<kube::LeaderElector> elector;
  if (resolution->config) {
    auto client = kube::KubeClient::create(*resolution->config);
    if (!client.ok()) {
      std::cerr << "meshprobe-aggregator: " << client.error().message << "\n";
      return 2;
    }
    kube::WatcherOptions wopts;
    wopts.component_namespaces = component_namespaces;  // their pods are kept whole
    watcher = std::make_unique<kube::KubeWatcher>(*client, wopts);
    if (node_conditions == "on") reporter = std::make_unique<kube::NodeProblemReporter>(*client, *watcher);
    if (election) {
      // A client of its own: each request is bounded by the retry period, so one hung
      // request cannot use up the renew deadline.
      kube::ClientOptions copts;
      copts.connect_timeout = election->retry_period;
      copts.request_timeout = election->retry_period;
      auto le_client = kube::KubeClient::create(*resolution->config, copts);
      if (!le_client.ok()) {
        std::cerr << "meshprobe-aggregator: " << le_client.error().message << "\n";
        return 2;
      }
      static const meshprobe::SystemClock election_clock;
      elector = std::make_unique<kube::LeaderElector>(*le_client, election_clock, *election);
    }
  }

  // Block SIGTERM/SIGINT before any thread starts (gRPC's threads inherit the mask), so
  // only sigwait below sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  meshprobe::SystemClock clock;
  meshprobe::aggregator::ServerOptions options;
  options.grpc_listen = grpc_listen;
  options.http_listen = http_listen;
  options.tls = tls;
  options.grpc_memory_limit = *memory_limit;
  options.cluster.stale_after = *stale;
  // Queries, /metrics and diagnosis read a snapshot rebuilt at most 4 times a second.
  options.cluster.publish_interval = std::chrono::milliseconds(250);
  options.cluster.forget_after = *forget;
  options.diagnosis.kube.agent = rules.agent;
  options.diagnosis.kube.ztunnel = rules.ztunnel;
  options.diagnosis.kube.istio_cni = rules.istio_cni;
  options.diagnosis.kube.flannel = rules.flannel;
  options.diagnosis.kube.expect_ambient = *expect;
  options.diagnosis.kube.onset_agent_missing = *missing_after;
  options.diagnosis.kube.forget_after =
      forget->count() > 0 ? *forget : std::chrono::duration_cast<std::chrono::nanoseconds>(*stale * 10);
  options.kube = watcher.get();
  if (watcher) options.kube_counters = [w = watcher.get()] { return w->counters(); };
  if (reporter) options.node_status_counters = [r = reporter.get()] { return r->counters(); };
  if (elector) {
    options.is_leader = [e = elector.get()] { return e->isLeader(); };
    options.leader_identity = [e = elector.get()] { return e->leader(); };
  }
  meshprobe::aggregator::AggregatorServer server(clock, options);
  auto port = server.start();
  if (!port.ok()) {
    spdlog::error("{}", port.error().message);
    return 1;
  }
  spdlog::info("meshprobe-aggregator {} serving gRPC on {} (port {}); stale after {}, forget after {}",
               meshprobe::kVersion, grpc_listen, *port, meshprobe::formatDuration(*stale),
               meshprobe::formatDuration(server.state().options().forget_after));
  if (*memory_limit > 0) {
    spdlog::info("gRPC transport buffers capped at {} bytes (--grpc-memory-limit {})", *memory_limit,
                 grpc_memory_limit);
  }
  if (tls.insecure) {
    spdlog::warn("gRPC is plaintext without client authentication (--insecure)");
  } else {
    spdlog::info("gRPC is mutual TLS: serving {}, client certificates from {}; files re-read every {}", tls.cert_file,
                 tls.client_ca_file, meshprobe::formatDuration(tls.refresh));
  }
  if (watcher) {
    watcher->start();
    spdlog::info("{}; watching nodes, namespaces and pods", resolution->why);
    if (reporter) {
      reporter->start([&server] { return kube::nodeFindings(server.diagnosis().active()); }, options.is_leader);
      spdlog::info("node conditions on: the leader sets {} on every Node (True while a finding blames it) and "
                   "posts an Event per finding onset and clear",
                   kube::kProblemConditionType);
    } else {
      spdlog::info("node conditions off: nothing is written to the Kubernetes API");
    }
  } else {
    spdlog::info("Kubernetes API not used: {}", resolution->why);
  }
  spdlog::info("serving HTTP (/metrics, /healthz, /readyz, /, /api/v1/state) on {} (port {})", http_listen,
               server.httpPort());
  if (elector) {
    elector->start();
    spdlog::info("leader election on Lease {} as {}: Ready only while leading", elector->describe(),
                 elector->config().identity);
  }

  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("received signal {}; shutting down", sig);
  if (elector) elector->stop();  // releases the Lease: a follower takes over at its next retry
  server.shutdown(std::chrono::milliseconds(500));
  if (reporter) reporter->stop();  // before the watcher whose Nodes it reads
  if (watcher) watcher->stop();
  spdlog::info("meshprobe-aggregator stopped");
  return 0;
}
