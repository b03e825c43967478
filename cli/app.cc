#include "cli/app.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <cctype>
#include <cstdlib>
#include <ostream>
#include <set>
#include <vector>

#include "cli/render.h"
#include "common/duration.h"
#include "common/grpc_status.h"
#include "common/flags.h"
#include "common/version.h"

namespace meshprobe::cli {
namespace {

namespace po = boost::program_options;
namespace v1 = meshprobe::v1;

constexpr const char* kDefaultAggregator = "127.0.0.1:9470";
constexpr const char* kDefaultTimeout = "5s";

const char* const kCommands[] = {"nodes", "matrix", "node", "diagnose", "namespaces"};

bool isCommand(const std::string& c) {
  return std::find(std::begin(kCommands), std::end(kCommands), c) != std::end(kCommands);
}

const std::string kToolHelp = R"(meshprobe: ask the meshprobe aggregator about the cluster's network.

Usage: meshprobe [FLAGS] COMMAND [ARGS]

Commands:
  nodes                   every node the aggregator knows, up or stale, with its overlay facts
  matrix [--layer L]      reachability heatmap (row = source, column = destination);
                          L = UNDERLAY | OVERLAY | ISTIOD, default: all three;
                          [--node N]... [--state S]... only those cells, [--page-size N]
  node NAME               one node: summary, local checks, probes, findings
  diagnose [--node N]     active findings, most severe first (only those blaming node N)
  namespaces              every Kubernetes namespace: ambient label, expected by
                          --expect-ambient, captured/running pods, findings
                          (needs the aggregator's Kubernetes API)
  help [COMMAND]          this text, or a command's

Flags:
  --aggregator HOST:PORT  the aggregator's gRPC address (default 127.0.0.1:9470)
  --output text|json      text for people (default); json = the Query API answer as proto3
                          JSON (camelCase field names, every field printed), for scripts and jq
  --timeout DURATION      deadline for the whole command, e.g. 500ms, 5s (default 5s)
  --aggregator-ca FILE    mutual TLS: the CA that signed the aggregator's certificate,
  --tls-cert FILE         with this client certificate (a reader certificate is enough)
  --tls-key FILE          and its key
  --tls-server-name NAME  the name to verify in the aggregator's certificate (default:
                          the host part of --aggregator)
  --insecure              plaintext, for an aggregator run with --insecure; without TLS
                          flags meshprobe uses plaintext anyway and, on a terminal, says so
  -h, --help              help (meshprobe COMMAND --help: the command's help)
  --version               print the version

Every flag can also be set in the environment as MESHPROBE_<FLAG>, e.g.
MESHPROBE_AGGREGATOR=10.0.0.1:9470; a flag on the command line wins.

Text output is coloured only when stdout is a terminal, NO_COLOR is unset (or empty) and
TERM is not "dumb"; piped, it is plain ASCII.

Exit status:
  0  the query succeeded (diagnose: also when findings are active; check the output or
     `--output json diagnose | jq '.findings | length'`)
  1  the query failed: the aggregator is unreachable, did not answer within --timeout, or
     refused the query (e.g. an unknown node name)
  2  usage error: unknown command or flag, missing or extra argument, bad flag value

Examples:
  meshprobe --aggregator 10.0.0.1:9470 matrix --layer OVERLAY
  meshprobe matrix --layer OVERLAY --state FAIL --state DEGRADED
  meshprobe diagnose --node node-3
  meshprobe --output json nodes | jq -r '.nodes[] | select(.up | not) | .name'
)";

const std::string kNodesHelp = R"(Usage: meshprobe [FLAGS] nodes

Every node that has said Hello to the aggregator, up or stale, as a table:
NODE, NODE IP, OVERLAY IP, VNI/PORT (the VXLAN device's VNI and UDP port), MTU (the VXLAN
device's), UP (reported within the aggregator's --stale-after), LAST REPORT (age of the
latest report), POD CIDR. A warning follows when nodes disagree on VNI or port.

With the Kubernetes API, the aggregator also lists the Nodes from which no agent has said
Hello: rows with UP "MISSING" (LAST REPORT "never"), and under the count line one line per
such node with why (AGENT_MISSING's summary, or the agent pod's state: "no agent pod is
scheduled on it", CrashLoopBackOff, Pending). A node whose agent stopped reporting stays a
stale row (UP "NO") until the aggregator forgets it.

--output json prints the ListNodesResponse: {"nodes": [{"name", "nodeIp", "overlayIp",
"vtepMac", "vxlanVni", "vxlanPort", "podCidr", "agentVersion", "up", "lastReport",
"vxlanMtu"}], "missingAgents": [{"name", "ready", "agentPod", "podState", "reason",
"findingId"}]}.

Exit status: 0 ok, 1 query failed, 2 usage error. See meshprobe --help for the flags.
)";

const std::string kMatrixHelp = R"(Usage: meshprobe [FLAGS] matrix [--layer UNDERLAY|OVERLAY|ISTIOD] [--node NAME]...
                        [--state OK|DEGRADED|FAIL|UNKNOWN]... [--page-size N]

A reachability heatmap per layer: one row per source node, one column per destination
(numbered as the rows; ISTIOD has the single column "istiod"), one glyph per cell:
  o OK   ~ DEGRADED   X FAIL   ? UNKNOWN (no data, or the source is stale)   - self
(on a terminal: coloured ● ◐ ✖ ? ·). Long node names are cut and listed in a key. Under each
map: the pair counts per state and the broken (FAIL/DEGRADED) pairs with loss and RTT.

  --layer L      only this layer; without it UNDERLAY, OVERLAY and ISTIOD are shown
  --node NAME    only cells from or to NAME (ISTIOD: from NAME); repeat for more nodes.
                 An unknown NAME is an error
  --state STATE  only cells in STATE: OK, DEGRADED, FAIL or UNKNOWN (any case); repeat
                 for more states. With --node, a cell must pass both
  --page-size N  cells per page of the Query API (default: the aggregator's, 10,000)

With --node or --state the heatmap has a row and column only for the nodes of the cells
shown, a cell left out is blank (not counted), and the count line says "shown".

The aggregator answers a large matrix in pages; every page is fetched, within --timeout,
and with more than one page the progress goes to stderr ("OVERLAY: 10000 of 40200 cells").

--output json prints the GetMatrixResponse of the layer, every page in one: {"layer",
"nodes": [...], "cells": [{"src", "dst", "layer", "state", "rtt", "loss", "lastUpdate"}]};
without --layer, {"matrices": [<UNDERLAY>, <OVERLAY>, <ISTIOD>]}.

Exit status: 0 ok (whatever the cells' states), 1 query failed or an unknown --node NAME,
2 usage error.
)";

const std::string kNodeHelp = R"(Usage: meshprobe [FLAGS] node NAME

One node: its summary (up or stale, last report, node IP, overlay IP, VTEP MAC, VXLAN VNI,
port and MTU, pod CIDR), its local checks (STATUS and summary of vxlan_device, vxlan_socket,
vxlan_fdb, firewall, istiod, ztunnel, ambient_redirection), its probes (per layer and
destination: loss, recent loss, RTT p50/p99, last success, path-MTU probe, last error) and
the active findings that blame it (the aggregator's diagnosis, as `diagnose --node NAME`,
plus what the node itself reported).

--output json prints the GetNodeResponse: {"node", "checks", "probes", "findings"} (findings:
what the node reported; `--output json diagnose --node NAME` has the diagnosis).

Exit status: 0 ok, 1 query failed or no node named NAME, 2 usage error.
)";

const std::string kDiagnoseHelp = R"(Usage: meshprobe [FLAGS] diagnose [--node N]

The aggregator's active findings, most severe first: severity, code (e.g. OVERLAY_PARTITION,
VXLAN_PORT_FILTERED, ISTIOD_UNREACHABLE), summary, layer, blamed nodes, onset time, evidence,
remedy, the finding's id and, when it flapped, its history. "no active findings" when the
cluster is healthy.

  --node N    only findings that blame node N (an unknown N is an error)

--output json prints the DiagnoseResponse: {"findings": [{"code", "severity", "nodes",
"layer", "summary", "evidence", "remedy", "onsetTime", "id", "history"}]}.

Exit status: 0 when the query succeeded, with or without findings; 1 query failed or
unknown node; 2 usage error.
)";

const std::string kNamespacesHelp = R"(Usage: meshprobe [FLAGS] namespaces

Every namespace the Kubernetes API shows, as a table: NAMESPACE, DATAPLANE MODE (its
istio.io/dataplane-mode label, "-" when unlabelled; red when the aggregator's
--expect-ambient selects it but it is not ambient), EXPECT AMBIENT (whether --expect-ambient
selects it), CAPTURED (pods that run in it, Running and not hostNetwork: how many the agent
on their node found captured by ztunnel, joined by pod IP, of how many; "unknown": no agent
reported their network namespace), FINDINGS (active NAMESPACE_NOT_AMBIENT, POD_NOT_CAPTURED
about it; `meshprobe diagnose` has them in full).

The aggregator needs the Kubernetes API for this (its --kube, --kubeconfig): without it the
query fails with FAILED_PRECONDITION saying so, as it does before the first list.

--output json prints the ListNamespacesResponse: {"namespaces": [{"name", "dataplaneMode",
"expectAmbient", "runningPods", "capturedPods", "unknownPods", "findings", "terminating"}]}.

Exit status: 0 ok, 1 query failed (also: the aggregator runs without the Kubernetes API),
2 usage error.
)";

int usageError(std::ostream& err, const std::string& msg, const std::string& command = "") {
  err << "meshprobe: " << msg << " (see meshprobe " << (command.empty() ? "" : command + " ") << "--help)\n";
  return kExitUsage;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}


// "HOST:PORT", "[v6]:PORT": a non-empty host and a port 1..65535.
bool validAddress(const std::string& a) {
  const auto colon = a.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == a.size()) return false;
  const std::string port = a.substr(colon + 1);
  if (port.size() > 5 || !std::all_of(port.begin(), port.end(), [](unsigned char c) { return std::isdigit(c); }))
    return false;
  const int p = std::stoi(port);
  if (p < 1 || p > 65535) return false;
  const std::string host = a.substr(0, colon);
  if (host.front() == '[') return host.size() > 2 && host.back() == ']';
  return host.find(':') == std::string::npos;  // a bare IPv6 address needs brackets
}

// The first line of a (possibly multi-line) gRPC error message.
std::string firstLine(const std::string& s) {
  auto nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

// "from or to node1, node2; FAIL, DEGRADED" (ISTIOD reads "from or to" as "from": its one
// column is istiod); "" without filters.
std::string describeFilter(const std::vector<std::string>& nodes, const std::vector<v1::Cell::State>& states) {
  std::string nodes_text, states_text;
  for (const auto& n : nodes) nodes_text += (nodes_text.empty() ? "" : ", ") + n;
  for (auto s : states) states_text += (states_text.empty() ? "" : ", ") + v1::Cell::State_Name(s);
  if (nodes_text.empty()) return states_text;
  return "from or to " + nodes_text + (states_text.empty() ? "" : "; " + states_text);
}

// Does `c` pass the request's filters? (An aggregator older than the filters ignores them.)
bool passes(const v1::Cell& c, const v1::GetMatrixRequest& req) {
  if (!req.nodes().empty()) {
    const bool src = std::find(req.nodes().begin(), req.nodes().end(), c.src()) != req.nodes().end();
    const bool dst =
        c.layer() != v1::ISTIOD && std::find(req.nodes().begin(), req.nodes().end(), c.dst()) != req.nodes().end();
    if (!src && !dst) return false;
  }
  if (!req.states().empty() &&
      std::find(req.states().begin(), req.states().end(), static_cast<int>(c.state())) == req.states().end()) {
    return false;
  }
  return true;
}

// Every page of `req` into *out: cells in the aggregator's order, `nodes` the sorted union
// of every page's (one page: as sent). Progress on `err` when there is more than one page.
// A protocol problem (a page token repeated, a cell the filters exclude) is put in *problem
// and the fetch stops; errors of the RPC are returned.
grpc::Status fetchMatrix(QueryClient& client, QueryClient::Deadline deadline, v1::GetMatrixRequest req,
                         v1::GetMatrixResponse* out, std::ostream& err, std::string* problem) {
  std::set<std::string> tokens;
  const std::string layer = v1::Layer_Name(req.layer());
  for (int page = 1;; ++page) {
    v1::GetMatrixResponse resp;
    if (auto st = client.getMatrix(deadline, req, &resp); !st.ok()) return st;
    for (const auto& c : resp.cells()) {
      if (!passes(c, req)) {
        *problem = "returned " + layer + " cell " + c.src() + " -> " + c.dst() +
                   ", which --node/--state exclude: it predates them (upgrade it, or drop those flags)";
        return grpc::Status::OK;
      }
    }
    if (page == 1) {
      *out = std::move(resp);
    } else {
      // The same list on every page unless members came or went between pages.
      if (!std::equal(out->nodes().begin(), out->nodes().end(), resp.nodes().begin(), resp.nodes().end())) {
        std::set<std::string> nodes(out->nodes().begin(), out->nodes().end());
        nodes.insert(resp.nodes().begin(), resp.nodes().end());
        out->clear_nodes();
        for (const auto& n : nodes) out->add_nodes(n);
      }
      for (auto& c : *resp.mutable_cells()) *out->add_cells() = std::move(c);
      out->set_next_page_token(resp.next_page_token());
      out->set_total_cells(resp.total_cells());
    }
    const std::string next = out->next_page_token();
    if (page > 1 || !next.empty()) {
      err << "meshprobe: " << layer << ": " << out->cells_size() << " of " << out->total_cells() << " cells\n";
    }
    if (next.empty()) break;
    if (!tokens.insert(next).second) {
      *problem = "sent the same " + layer + " page token twice; stopped after page " + std::to_string(page);
      return grpc::Status::OK;
    }
    req.set_page_token(next);
  }
  // The CLI shows the whole answer: the paging fields describe one page, not it.
  out->clear_next_page_token();
  out->clear_total_cells();
  return grpc::Status::OK;
}

}  // namespace

Terminal terminalFrom(bool stdout_tty, const char* no_color, const char* term, int tty_columns, const char* columns) {
  Terminal t;
  t.stdout_tty = stdout_tty;
  t.no_color = (no_color != nullptr && *no_color != '\0') || (term != nullptr && std::string(term) == "dumb");
  if (stdout_tty && tty_columns > 0) {
    t.width = tty_columns;
  } else if (columns != nullptr && std::atoi(columns) > 0) {
    t.width = std::atoi(columns);
  }
  return t;
}

std::string helpText(const std::string& command) {
  if (command.empty() || command == "help") return kToolHelp;
  if (command == "nodes") return kNodesHelp;
  if (command == "matrix") return kMatrixHelp;
  if (command == "node") return kNodeHelp;
  if (command == "diagnose") return kDiagnoseHelp;
  if (command == "namespaces") return kNamespacesHelp;
  return "";
}

grpc::Status QueryClient::listNamespaces(Deadline, v1::ListNamespacesResponse*) {
  return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "ListNamespaces");
}

std::string describeRpcError(const grpc::Status& status, const std::string& address, const std::string& timeout) {
  const std::string code = grpcStatusCodeName(status.error_code());
  const std::string msg = firstLine(status.error_message());
  const std::string m = lower(msg);
  switch (status.error_code()) {
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "cannot reach the aggregator at " + address + ": no answer within " + timeout + " (" + code + ")";
    case grpc::StatusCode::UNAVAILABLE: {
      std::string reason;
      if (m.find("connection refused") != std::string::npos) {
        reason = "connection refused";
      } else if (m.find("no route to host") != std::string::npos) {
        reason = "no route to host";
      } else if (m.find("network is unreachable") != std::string::npos) {
        reason = "network is unreachable";
      } else if (m.find("dns resolution failed") != std::string::npos ||
                 m.find("domain name not found") != std::string::npos) {
        reason = "cannot resolve the host name";
      } else if (m.find("connection reset") != std::string::npos) {
        reason = "connection reset by peer";
      } else if (m.find("timed out") != std::string::npos || m.find("timeout") != std::string::npos) {
        reason = "connection timed out";
      } else {
        reason = msg.empty() ? "unavailable" : msg;
      }
      return "cannot reach the aggregator at " + address + ": " + reason + " (" + code + ")";
    }
    case grpc::StatusCode::UNIMPLEMENTED:
      return "the server at " + address + " does not serve meshprobe.v1.Query (" + code +
             "): is this the aggregator's gRPC port (9470)?";
    default:
      return "the aggregator at " + address + " refused the query: " + (msg.empty() ? "no message" : msg) + " (" +
             code + ")";
  }
}

int runCli(int argc, const char* const argv[], std::ostream& out, std::ostream& err, const Terminal& term,
           const ClientFactory& clients, std::chrono::system_clock::time_point now) {
  std::string aggregator, output, timeout_text, layer_text, page_size_text;
  std::vector<std::string> args, node_filters, state_texts;
  tls::ClientConfig tls;
  po::options_description desc("meshprobe flags");
  desc.add_options()                                                                          //
      ("help,h", "help")                                                                      //
      ("version", "version")                                                                  //
      ("aggregator", po::value(&aggregator)->default_value(kDefaultAggregator), "HOST:PORT")  //
      ("output", po::value(&output)->default_value("text"), "text | json")                    //
      ("timeout", po::value(&timeout_text)->default_value(kDefaultTimeout), "deadline")       //
      ("layer", po::value(&layer_text), "matrix: UNDERLAY | OVERLAY | ISTIOD")                //
      ("node", po::value(&node_filters), "matrix, diagnose: only this node")                  //
      ("state", po::value(&state_texts), "matrix: only cells in this state")                  //
      ("page-size", po::value(&page_size_text), "matrix: cells per page")                     //
      ("command", po::value(&args)->multitoken(), "command and its arguments");
  tls::addClientFlags(desc, tls, "plaintext");
  po::positional_options_description pos;
  pos.add("command", -1);
  po::variables_map vm;
  auto outcome = meshprobe::parseFlags(argc, argv, desc, vm, &pos);
  if (!outcome.ok()) return usageError(err, outcome.error().message);

  // Which command-scoped flags were given on the command line (the environment may set any).
  po::variables_map given;
  try {
    po::store(po::command_line_parser(argc, argv).options(desc).positional(pos).run(), given);
  } catch (const po::error&) {
  }
  const std::string command = args.empty() ? "" : args[0];

  if (*outcome == meshprobe::ParseOutcome::kVersion) {
    out << "meshprobe " << meshprobe::kVersion << "\n";
    return kExitOk;
  }
  if (*outcome == meshprobe::ParseOutcome::kHelp || command == "help") {
    std::string topic = command == "help" ? (args.size() > 1 ? args[1] : "") : command;
    std::string text = helpText(topic);
    if (text.empty()) return usageError(err, "no help for unknown command '" + topic + "'");
    out << text;
    return kExitOk;
  }
  if (command.empty()) return usageError(err, "missing command: nodes | matrix | node NAME | diagnose | namespaces");
  if (!isCommand(command)) {
    return usageError(err, "unknown command '" + command + "': want nodes | matrix | node NAME | diagnose | namespaces");
  }
  if (given.count("layer") && command != "matrix") return usageError(err, "--layer applies to matrix only", command);
  if (given.count("node") && command != "diagnose" && command != "matrix") {
    return usageError(err, "--node applies to matrix and diagnose only (to show one node: meshprobe node NAME)",
                      command);
  }
  for (const char* flag : {"state", "page-size"}) {
    if (given.count(flag) && command != "matrix") {
      return usageError(err, std::string("--") + flag + " applies to matrix only", command);
    }
  }
  const size_t want_args = command == "node" ? 2 : 1;
  if (args.size() < want_args) return usageError(err, "node: missing NAME", command);
  if (args.size() > want_args) {
    return usageError(err, command + ": unexpected argument '" + args[want_args] + "'", command);
  }
  if (output != "text" && output != "json") {
    return usageError(err, "--output must be text or json, got '" + output + "'");
  }
  if (!validAddress(aggregator)) {
    return usageError(err, "--aggregator must be HOST:PORT (e.g. 10.0.0.1:9470), got '" + aggregator + "'");
  }
  auto timeout = meshprobe::parseDuration(timeout_text);
  if (!timeout || timeout->count() <= 0) {
    return usageError(err, "--timeout must be a positive duration such as 500ms or 5s, got '" + timeout_text + "'");
  }
  if (auto st = tls::finishClientConfig(tls, /*require_choice=*/false); !st.ok())
    return usageError(err, st.error().message);
  std::vector<v1::Layer> layers = {v1::UNDERLAY, v1::OVERLAY, v1::ISTIOD};
  const bool one_layer = command == "matrix" && vm.count("layer");
  if (one_layer) {
    v1::Layer l;
    std::string upper = layer_text;
    std::transform(upper.begin(), upper.end(), upper.begin(), [](unsigned char c) { return std::toupper(c); });
    if (!v1::Layer_Parse(upper, &l) || (l != v1::UNDERLAY && l != v1::OVERLAY && l != v1::ISTIOD)) {
      return usageError(err, "--layer must be UNDERLAY, OVERLAY or ISTIOD, got '" + layer_text + "'", command);
    }
    layers = {l};
  }
  if (command != "matrix" && command != "diagnose") node_filters.clear();  // from the environment
  for (const auto& n : node_filters) {
    if (n.empty()) return usageError(err, "--node needs a node name", command);
  }
  if (command == "diagnose" && node_filters.size() > 1) {
    return usageError(err, "diagnose takes one --node", command);
  }
  const std::string node_filter = command == "diagnose" && !node_filters.empty() ? node_filters[0] : "";
  std::vector<v1::Cell::State> states;
  if (command == "matrix") {
    for (const auto& t : state_texts) {
      v1::Cell::State st;
      std::string upper = t;
      std::transform(upper.begin(), upper.end(), upper.begin(), [](unsigned char c) { return std::toupper(c); });
      if (!v1::Cell::State_Parse(upper, &st) || st == v1::Cell::STATE_UNSPECIFIED) {
        return usageError(err, "--state must be OK, DEGRADED, FAIL or UNKNOWN, got '" + t + "'", command);
      }
      states.push_back(st);
    }
  }
  uint32_t page_size = 0;
  if (command == "matrix" && vm.count("page-size")) {
    const bool digits =
        !page_size_text.empty() && page_size_text.size() <= 9 &&
        std::all_of(page_size_text.begin(), page_size_text.end(), [](unsigned char c) { return std::isdigit(c); });
    if (!digits || std::stoul(page_size_text) == 0) {
      return usageError(err, "--page-size must be a whole number of cells from 1, got '" + page_size_text + "'",
                        command);
    }
    page_size = static_cast<uint32_t>(std::stoul(page_size_text));
  }

  const bool json = output == "json";
  RenderOptions ro;
  ro.unicode = term.stdout_tty;
  ro.color = term.stdout_tty && !term.no_color;
  ro.width = term.width;
  ro.now = google::protobuf::util::TimeUtil::NanosecondsToTimestamp(
      std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count());

  const auto deadline = now + std::chrono::duration_cast<std::chrono::system_clock::duration>(*timeout);
  if (tls::plaintextUnacknowledged(tls) && term.stderr_tty)
    err << "meshprobe: note: plaintext connection to " << aggregator
        << " (no --aggregator-ca/--tls-cert/--tls-key; --insecure says this is intended)\n";
  auto client = clients(aggregator, tls);
  auto failed = [&](const grpc::Status& st) {
    err << "meshprobe: " << describeRpcError(st, aggregator, timeout_text) << "\n";
    return kExitQueryFailed;
  };
  auto unknownNode = [&](const std::string& name) {
    err << "meshprobe: no node named '" << name << "' is known to the aggregator at " << aggregator
        << " (meshprobe nodes lists them)\n";
    return kExitQueryFailed;
  };

  if (command == "nodes") {
    v1::ListNodesResponse resp;
    if (auto st = client->listNodes(deadline, &resp); !st.ok()) return failed(st);
    out << (json ? toJson(resp) : renderNodes(resp, ro));
  } else if (command == "namespaces") {
    v1::ListNamespacesResponse resp;
    if (auto st = client->listNamespaces(deadline, &resp); !st.ok()) {
      if (st.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
        err << "meshprobe: the aggregator at " << aggregator
            << " does not answer ListNamespaces (UNIMPLEMENTED): an aggregator older than this CLI (upgrade "
               "it), or not the aggregator's gRPC port\n";
        return kExitQueryFailed;
      }
      return failed(st);
    }
    out << (json ? toJson(resp) : renderNamespaces(resp, ro));
  } else if (command == "matrix") {
    std::vector<v1::GetMatrixResponse> resps;
    for (v1::Layer l : layers) {
      v1::GetMatrixRequest req;
      req.set_layer(l);
      for (const auto& n : node_filters) req.add_nodes(n);
      for (auto st : states) req.add_states(st);
      req.set_page_size(page_size);
      v1::GetMatrixResponse resp;
      std::string problem;
      if (auto st = fetchMatrix(*client, deadline, req, &resp, err, &problem); !st.ok()) {
        if (st.error_code() == grpc::StatusCode::NOT_FOUND && !node_filters.empty()) {
          std::string msg = firstLine(st.error_message());
          if (msg.rfind("GetMatrix: ", 0) == 0) msg = msg.substr(11);
          err << "meshprobe: " << msg << " at " << aggregator << " (meshprobe nodes lists them)\n";
          return kExitQueryFailed;
        }
        return failed(st);
      }
      if (!problem.empty()) {
        err << "meshprobe: the aggregator at " << aggregator << " " << problem << "\n";
        return kExitQueryFailed;
      }
      if (resp.layer() == v1::LAYER_UNSPECIFIED) resp.set_layer(l);
      resps.push_back(std::move(resp));
    }
    if (json) {
      out << (one_layer ? matrixToJson(resps[0]) : matricesToJson(resps));
    } else {
      ro.matrix_filter = describeFilter(node_filters, states);
      out << renderMatrices(resps, ro);
    }
  } else if (command == "node") {
    v1::GetNodeResponse resp;
    if (auto st = client->getNode(deadline, args[1], &resp); !st.ok()) {
      return st.error_code() == grpc::StatusCode::NOT_FOUND ? unknownNode(args[1]) : failed(st);
    }
    if (json) {
      out << toJson(resp);
    } else {
      // GetNode carries what the node itself reported; the doctor's findings that blame it come
      // from Diagnose. Text shows both (JSON stays the GetNodeResponse). Best effort: if Diagnose
      // fails, the node's own findings are still shown.
      v1::DiagnoseResponse diagnosed;
      if (client->diagnose(deadline, args[1], &diagnosed).ok()) {
        *resp.mutable_findings() = mergeFindings(diagnosed.findings(), resp.findings());
      }
      out << renderNode(resp, ro);
    }
  } else {  // diagnose
    v1::DiagnoseResponse resp;
    if (auto st = client->diagnose(deadline, node_filter, &resp); !st.ok()) {
      return st.error_code() == grpc::StatusCode::NOT_FOUND && !node_filter.empty() ? unknownNode(node_filter)
                                                                                    : failed(st);
    }
    out << (json ? toJson(resp) : renderFindings(resp, ro, node_filter));
  }
  out.flush();
  return kExitOk;
}

}  // namespace meshprobe::cli
