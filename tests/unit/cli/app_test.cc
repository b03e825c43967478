// The CLI front end (cli/app.h) against a fake Query API: usage errors and help (exit 2 / 0,
// never a query), the aggregator's failures as one-line messages naming the address (exit 1),
// unknown nodes, every command in text and JSON, the TTY/NO_COLOR decision.
#include "cli/app.h"
#include "tests/support/mtls_pki.h"

#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <sstream>

namespace meshprobe::cli {
namespace {

namespace v1 = meshprobe::v1;
using namespace std::chrono_literals;

// How the fake serves GetMatrix: a cluster of `nodes` members node1..nodeN (node2 -> node1
// FAIL, everything else OK) in pages of `default_page_size` cells, filtered as the real
// aggregator does, or, to play an aggregator older than the filters, ignoring them.
struct FakeMatrix {
  int nodes = 2;
  uint32_t default_page_size = 10'000;
  bool ignore_filters = false;
  bool repeat_token = false;  // a broken server: every page says "more" with the same token
};

struct Calls {
  // "ListNodes", "GetMatrix OVERLAY", "GetNode node1", "Diagnose node2"; GetMatrix with
  // filters or paging: "GetMatrix OVERLAY nodes=node1 states=FAIL size=5 token=10".
  std::vector<std::string> log;
  std::vector<QueryClient::Deadline> deadlines;
  std::string address;
  meshprobe::tls::ClientConfig tls;  // what the client factory was given
  int clients = 0;
};

// Answers from a small 2-node cluster, or `fail` for every call.
class FakeClient : public QueryClient {
 public:
  FakeClient(Calls& calls, grpc::Status fail, FakeMatrix matrix = {})
      : calls_(calls), fail_(std::move(fail)), matrix_(matrix) {}

  grpc::Status listNodes(Deadline d, v1::ListNodesResponse* out) override {
    record("ListNodes", d);
    if (!fail_.ok()) return fail_;
    for (const char* n : {"node1", "node2"}) {
      auto* s = out->add_nodes();
      s->set_name(n);
      s->set_up(true);
    }
    return grpc::Status::OK;
  }
  grpc::Status getMatrix(Deadline d, const v1::GetMatrixRequest& req, v1::GetMatrixResponse* out) override {
    const v1::Layer layer = req.layer();
    std::string what = "GetMatrix " + v1::Layer_Name(layer);
    for (const auto& n : req.nodes()) what += (&n == &req.nodes(0) ? " nodes=" : ",") + n;
    for (int i = 0; i < req.states_size(); ++i) {
      what += (i ? "," : " states=") + v1::Cell::State_Name(static_cast<v1::Cell::State>(req.states(i)));
    }
    if (req.page_size()) what += " size=" + std::to_string(req.page_size());
    if (!req.page_token().empty()) what += " token=" + req.page_token();
    record(what, d);
    if (!fail_.ok()) return fail_;
    std::vector<std::string> members;
    for (int i = 1; i <= matrix_.nodes; ++i) members.push_back("node" + std::to_string(i));
    std::sort(members.begin(), members.end());
    for (const auto& n : req.nodes()) {
      if (std::find(members.begin(), members.end(), n) == members.end()) {
        return grpc::Status(grpc::StatusCode::NOT_FOUND,
                            "GetMatrix: no node named '" + n + "' has said Hello to this aggregator");
      }
    }
    std::vector<v1::Cell> all;
    const std::vector<std::string> istiod = {"istiod"};
    for (const auto& s : members) {
      for (const auto& t : layer == v1::ISTIOD ? istiod : members) {
        if (s == t) continue;
        v1::Cell c;
        c.set_src(s);
        c.set_dst(t);
        c.set_layer(layer);
        c.set_state(s == "node2" && t == "node1" && layer != v1::ISTIOD ? v1::Cell::FAIL : v1::Cell::OK);
        if (matrix_.nodes == 2 && layer != v1::ISTIOD) c.set_state(v1::Cell::OK);  // the small cluster: all OK
        auto in = [](const auto& list, const auto& v) { return std::find(list.begin(), list.end(), v) != list.end(); };
        const bool node_ok = req.nodes().empty() || in(req.nodes(), c.src()) || in(req.nodes(), c.dst());
        const bool state_ok = req.states().empty() || in(req.states(), static_cast<int>(c.state()));
        if (matrix_.ignore_filters || (node_ok && state_ok)) all.push_back(std::move(c));
      }
    }
    const size_t from = req.page_token().empty() ? 0 : std::stoul(req.page_token());
    const size_t size = req.page_size() ? req.page_size() : matrix_.default_page_size;
    out->set_layer(layer);
    const bool filtered = !req.nodes().empty() || !req.states().empty();
    for (const auto& m : members) {  // filtered: only the nodes of matching cells
      if (!filtered || std::any_of(all.begin(), all.end(), [&](const auto& c) { return c.src() == m || c.dst() == m; }))
        out->add_nodes(m);
    }
    for (size_t i = from; i < all.size() && i < from + size; ++i) *out->add_cells() = all[i];
    if (matrix_.repeat_token) {
      out->set_next_page_token("7");
    } else if (from + size < all.size()) {
      out->set_next_page_token(std::to_string(from + size));
    }
    if (!out->next_page_token().empty() || !req.page_token().empty() || !req.nodes().empty() ||
        !req.states().empty() || req.page_size()) {
      out->set_total_cells(static_cast<uint32_t>(all.size()));
    }
    return grpc::Status::OK;
  }
  grpc::Status getNode(Deadline d, const std::string& name, v1::GetNodeResponse* out) override {
    record("GetNode " + name, d);
    if (!fail_.ok()) return fail_;
    if (name != "node1" && name != "node2") {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "no node named '" + name + "' has said Hello");
    }
    out->mutable_node()->set_name(name);
    auto* c = out->add_checks();
    c->set_name("vxlan_socket");
    c->set_status(v1::CheckResult::OK);
    c->set_summary("udp 0.0.0.0:4789 bound");
    return grpc::Status::OK;
  }
  grpc::Status listNamespaces(Deadline d, v1::ListNamespacesResponse* out) override {
    record("ListNamespaces", d);
    if (!fail_.ok()) return fail_;
    auto* shop = out->add_namespaces();
    shop->set_name("shop");
    shop->set_dataplane_mode("ambient");
    shop->set_running_pods(3);
    shop->set_captured_pods(2);
    shop->add_findings("POD_NOT_CAPTURED");
    auto* payments = out->add_namespaces();
    payments->set_name("payments");
    payments->set_expect_ambient(true);
    payments->set_running_pods(1);
    payments->add_findings("NAMESPACE_NOT_AMBIENT");
    return grpc::Status::OK;
  }
  grpc::Status diagnose(Deadline d, const std::string& node, v1::DiagnoseResponse* out) override {
    record("Diagnose " + node, d);
    if (!fail_.ok()) return fail_;
    if (!node.empty() && node != "node1" && node != "node2") {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "no node named '" + node + "' has said Hello");
    }
    if (node != "node1") {
      auto* f = out->add_findings();
      f->set_code("OVERLAY_PARTITION");
      f->set_severity(v1::CRITICAL);
      f->add_nodes("node2");
      f->set_summary("node2 is cut off on the overlay");
    }
    return grpc::Status::OK;
  }

 private:
  void record(std::string what, Deadline d) {
    calls_.log.push_back(std::move(what));
    calls_.deadlines.push_back(d);
  }
  Calls& calls_;
  grpc::Status fail_;
  FakeMatrix matrix_;
};

const auto kNow = std::chrono::system_clock::time_point(std::chrono::seconds(1795000000));

struct Run {
  int code = -1;
  std::string out, err;
  Calls calls;
};

Run run(std::vector<std::string> args, grpc::Status fail = grpc::Status::OK, Terminal term = {},
        FakeMatrix matrix = {}) {
  std::vector<const char*> argv = {"meshprobe"};
  for (const auto& a : args) argv.push_back(a.c_str());
  Run r;
  std::ostringstream out, err;
  r.code = runCli(
      static_cast<int>(argv.size()), argv.data(), out, err, term,
      [&](const std::string& address, const meshprobe::tls::ClientConfig& tls) {
        r.calls.address = address;
        r.calls.tls = tls;
        ++r.calls.clients;
        return std::make_unique<FakeClient>(r.calls, fail, matrix);
      },
      kNow);
  r.out = out.str();
  r.err = err.str();
  return r;
}

bool contains(const std::string& s, const std::string& what) { return s.find(what) != std::string::npos; }

// ---------------- help and usage ----------------

TEST(CliHelp, ToolHelpDocumentsCommandsFlagsAndExitCodes) {
  for (auto args : {std::vector<std::string>{"--help"}, {"-h"}, {"help"}}) {
    auto r = run(args);
    EXPECT_EQ(r.code, 0);
    EXPECT_EQ(r.calls.clients, 0);
    for (const char* what :
         {"nodes", "matrix [--layer L]", "node NAME", "diagnose [--node N]", "--aggregator HOST:PORT",
          "--output text|json", "--timeout", "MESHPROBE_AGGREGATOR", "NO_COLOR", "Exit status",
          "  0  the query succeeded", "  1  the query failed", "  2  usage error"}) {
      EXPECT_TRUE(contains(r.out, what)) << what << " missing from:\n" << r.out;
    }
  }
}

TEST(CliHelp, EachCommandHasItsOwnHelp) {
  struct Case {
    std::vector<std::string> args;
    std::string first_line;
  };
  for (const auto& c : std::vector<Case>{{{"nodes", "--help"}, "Usage: meshprobe [FLAGS] nodes"},
                                         {{"matrix", "--help"}, "Usage: meshprobe [FLAGS] matrix [--layer"},
                                         {{"help", "node"}, "Usage: meshprobe [FLAGS] node NAME"},
                                         {{"diagnose", "-h"}, "Usage: meshprobe [FLAGS] diagnose [--node N]"},
                                         {{"namespaces", "--help"}, "Usage: meshprobe [FLAGS] namespaces"}}) {
    auto r = run(c.args);
    EXPECT_EQ(r.code, 0) << c.args[0];
    EXPECT_EQ(r.out.rfind(c.first_line, 0), 0u) << r.out;
    EXPECT_TRUE(contains(r.out, "Exit status")) << r.out;
    EXPECT_EQ(r.calls.clients, 0);
  }
  EXPECT_TRUE(contains(run({"help", "diagnose"}).out, "no active findings"));
}

TEST(CliHelp, VersionPrintsVersion) {
  auto r = run({"--version"});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out.rfind("meshprobe ", 0), 0u);
}

TEST(CliUsage, BadInvocationsExit2WithOneLineAndNeverQuery) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{}, "missing command"},
      {{"status"}, "unknown command 'status'"},
      {{"help", "status"}, "no help for unknown command 'status'"},
      {{"--bogus", "nodes"}, "--bogus"},
      {{"--output", "yaml", "nodes"}, "--output must be text or json, got 'yaml'"},
      {{"matrix", "--layer", "AMBIENT"}, "--layer must be UNDERLAY, OVERLAY or ISTIOD, got 'AMBIENT'"},
      {{"matrix", "--layer", "mesh"}, "--layer must be UNDERLAY, OVERLAY or ISTIOD, got 'mesh'"},
      {{"nodes", "--layer", "OVERLAY"}, "--layer applies to matrix only"},
      {{"node", "node1", "--node", "node2"}, "--node applies to matrix and diagnose only"},
      {{"nodes", "--state", "FAIL"}, "--state applies to matrix only"},
      {{"diagnose", "--page-size", "5"}, "--page-size applies to matrix only"},
      {{"diagnose", "--node", "node1", "--node", "node2"}, "diagnose takes one --node"},
      {{"matrix", "--node", ""}, "--node needs a node name"},
      {{"matrix", "--state", "BROKEN"}, "--state must be OK, DEGRADED, FAIL or UNKNOWN, got 'BROKEN'"},
      {{"matrix", "--state", "state_unspecified"}, "--state must be OK, DEGRADED, FAIL or UNKNOWN"},
      {{"matrix", "--page-size", "0"}, "--page-size must be a whole number of cells from 1, got '0'"},
      {{"matrix", "--page-size", "-3"}, "--page-size must be a whole number"},
      {{"matrix", "--page-size", "lots"}, "--page-size must be a whole number"},
      {{"matrix", "--page-size", "99999999999"}, "--page-size must be a whole number"},
      {{"node"}, "node: missing NAME"},
      {{"node", "a", "b"}, "node: unexpected argument 'b'"},
      {{"nodes", "extra"}, "nodes: unexpected argument 'extra'"},
      {{"--timeout", "soon", "nodes"}, "--timeout must be a positive duration"},
      {{"--timeout", "0", "nodes"}, "--timeout must be a positive duration"},
      {{"--aggregator", "10.0.0.1", "nodes"}, "--aggregator must be HOST:PORT"},
      {{"--aggregator", "10.0.0.1:99999", "nodes"}, "--aggregator must be HOST:PORT"},
      {{"--layer"}, "layer"},  // a flag without its value
  };
  for (const auto& c : cases) {
    auto r = run(c.args);
    std::string joined;
    for (const auto& a : c.args) joined += a + " ";
    EXPECT_EQ(r.code, kExitUsage) << joined;
    EXPECT_TRUE(contains(r.err, c.message)) << joined << "-> " << r.err;
    EXPECT_EQ(r.err.rfind("meshprobe: ", 0), 0u) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_TRUE(contains(r.err, "--help)")) << r.err;
    EXPECT_TRUE(r.out.empty()) << joined;
    EXPECT_EQ(r.calls.clients, 0) << joined;
  }
}

TEST(CliUsage, CommandScopedFlagsInTheEnvironmentDoNotBreakOtherCommands) {
  setenv("MESHPROBE_LAYER", "ISTIOD", 1);
  auto nodes = run({"nodes"});
  auto matrix = run({"matrix"});
  unsetenv("MESHPROBE_LAYER");
  EXPECT_EQ(nodes.code, 0) << nodes.err;
  EXPECT_EQ(matrix.code, 0) << matrix.err;
  EXPECT_EQ(matrix.calls.log, std::vector<std::string>{"GetMatrix ISTIOD"});
}

TEST(CliUsage, AggregatorFromTheEnvironmentAndFlagWins) {
  setenv("MESHPROBE_AGGREGATOR", "10.9.9.9:9470", 1);
  auto env = run({"nodes"});
  auto flag = run({"--aggregator", "[fd00::1]:9470", "nodes"});
  unsetenv("MESHPROBE_AGGREGATOR");
  EXPECT_EQ(env.calls.address, "10.9.9.9:9470");
  EXPECT_EQ(flag.calls.address, "[fd00::1]:9470");
  EXPECT_EQ(run({"nodes"}).calls.address, "127.0.0.1:9470");  // the default
}

// ---------------- the aggregator fails ----------------

TEST(CliErrors, RefusedConnectionNamesTheAddressAndTheReason) {
  // gRPC 1.51's message for a refused TCP connect.
  grpc::Status refused(grpc::StatusCode::UNAVAILABLE,
                       "failed to connect to all addresses; last error: UNKNOWN: ipv4:10.0.0.1:9470: Failed to "
                       "connect to remote host: Connection refused");
  for (auto args : {std::vector<std::string>{"nodes"}, {"matrix"}, {"node", "node1"}, {"diagnose"}}) {
    std::vector<std::string> full = {"--aggregator", "10.0.0.1:9470"};
    full.insert(full.end(), args.begin(), args.end());
    auto r = run(full, refused);
    EXPECT_EQ(r.code, kExitQueryFailed) << args[0];
    EXPECT_EQ(r.err, "meshprobe: cannot reach the aggregator at 10.0.0.1:9470: connection refused (UNAVAILABLE)\n");
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
}

TEST(CliErrors, TimeoutSaysHowLongItWaited) {
  auto r = run({"--aggregator", "10.0.0.1:9470", "--timeout", "2s", "matrix", "--layer", "OVERLAY"},
               grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "Deadline Exceeded"));
  EXPECT_EQ(r.code, kExitQueryFailed);
  EXPECT_EQ(r.err,
            "meshprobe: cannot reach the aggregator at 10.0.0.1:9470: no answer within 2s (DEADLINE_EXCEEDED)\n");
}

TEST(CliErrors, DescribeRpcErrorReasons) {
  auto d = [](grpc::StatusCode c, const std::string& m) { return describeRpcError(grpc::Status(c, m), "h:1", "5s"); };
  EXPECT_EQ(d(grpc::StatusCode::UNAVAILABLE, "... Failed to connect to remote host: No route to host"),
            "cannot reach the aggregator at h:1: no route to host (UNAVAILABLE)");
  EXPECT_EQ(d(grpc::StatusCode::UNAVAILABLE, "DNS resolution failed for nope:9470: C-ares status is not ARES_SUCCESS"),
            "cannot reach the aggregator at h:1: cannot resolve the host name (UNAVAILABLE)");
  EXPECT_EQ(d(grpc::StatusCode::UNAVAILABLE, "Socket closed"),
            "cannot reach the aggregator at h:1: Socket closed (UNAVAILABLE)");
  EXPECT_EQ(d(grpc::StatusCode::UNIMPLEMENTED, ""),
            "the server at h:1 does not serve meshprobe.v1.Query (UNIMPLEMENTED): is this the aggregator's gRPC port "
            "(9470)?");
  EXPECT_EQ(d(grpc::StatusCode::INTERNAL, "aggregator error: boom\nmore"),
            "the aggregator at h:1 refused the query: aggregator error: boom (INTERNAL)");
}

TEST(CliErrors, UnknownNodeIsNamed) {
  auto r = run({"node", "node9"});
  EXPECT_EQ(r.code, kExitQueryFailed);
  EXPECT_EQ(r.err,
            "meshprobe: no node named 'node9' is known to the aggregator at 127.0.0.1:9470 (meshprobe nodes lists "
            "them)\n");
  auto d = run({"diagnose", "--node", "node9"});
  EXPECT_EQ(d.code, kExitQueryFailed);
  EXPECT_TRUE(contains(d.err, "no node named 'node9'")) << d.err;
}

// ---------------- every command answers ----------------

TEST(CliCommands, DeadlineIsNowPlusTimeoutForEveryCall) {
  auto r = run({"--timeout", "1500ms", "matrix"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.calls.log, (std::vector<std::string>{"GetMatrix UNDERLAY", "GetMatrix OVERLAY", "GetMatrix ISTIOD"}));
  for (auto d : r.calls.deadlines) EXPECT_EQ(d, kNow + 1500ms);
}

TEST(CliCommands, MatrixTextShowsEveryLayerOrTheOneAsked) {
  auto all = run({"matrix"});
  EXPECT_EQ(all.code, 0);
  for (const char* l : {"UNDERLAY  rows", "OVERLAY  rows", "ISTIOD  rows"}) EXPECT_TRUE(contains(all.out, l)) << l;
  auto one = run({"matrix", "--layer", "overlay"});  // case-insensitive
  EXPECT_EQ(one.code, 0) << one.err;
  EXPECT_EQ(one.calls.log, std::vector<std::string>{"GetMatrix OVERLAY"});
  EXPECT_TRUE(contains(one.out, "OVERLAY: 2 pairs: 2 OK")) << one.out;
  EXPECT_FALSE(contains(one.out, "UNDERLAY"));
  auto flag_first = run({"--layer", "UNDERLAY", "matrix"});
  EXPECT_EQ(flag_first.calls.log, std::vector<std::string>{"GetMatrix UNDERLAY"});
}

TEST(CliCommands, JsonIsTheQueryAnswer) {
  auto one = run({"--output", "json", "matrix", "--layer", "OVERLAY"});
  ASSERT_EQ(one.code, 0);
  auto j = nlohmann::json::parse(one.out);
  EXPECT_EQ(j["layer"], "OVERLAY");
  EXPECT_EQ(j["cells"].size(), 2u);
  EXPECT_EQ(j["cells"][0]["loss"], 0);  // primitives always printed

  auto all = nlohmann::json::parse(run({"--output", "json", "matrix"}).out);
  ASSERT_EQ(all["matrices"].size(), 3u);
  EXPECT_EQ(all["matrices"][2]["layer"], "ISTIOD");
  EXPECT_EQ(all["matrices"][2]["cells"][0]["dst"], "istiod");

  auto nodes = nlohmann::json::parse(run({"--output", "json", "nodes"}).out);
  EXPECT_EQ(nodes["nodes"][1]["name"], "node2");
  EXPECT_EQ(nodes["nodes"][1]["vxlanPort"], 0);

  auto node = nlohmann::json::parse(run({"--output", "json", "node", "node1"}).out);
  EXPECT_EQ(node["checks"][0]["status"], "OK");

  auto diag = nlohmann::json::parse(run({"--output", "json", "diagnose"}).out);
  EXPECT_EQ(diag["findings"][0]["code"], "OVERLAY_PARTITION");
  auto none = nlohmann::json::parse(run({"--output", "json", "diagnose", "--node", "node1"}).out);
  EXPECT_EQ(none["findings"].size(), 0u);
}

TEST(CliNamespaces, TableJsonAndHelp) {
  auto text = run({"namespaces"});
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_EQ(text.calls.log, std::vector<std::string>{"ListNamespaces"});
  EXPECT_TRUE(contains(text.out, "NAMESPACE")) << text.out;
  EXPECT_TRUE(contains(text.out, "2/3")) << text.out;
  EXPECT_TRUE(contains(text.out, "NAMESPACE_NOT_AMBIENT")) << text.out;

  auto json = run({"--output", "json", "namespaces"});
  ASSERT_EQ(json.code, 0);
  auto j = nlohmann::json::parse(json.out);
  ASSERT_EQ(j["namespaces"].size(), 2u);
  EXPECT_EQ(j["namespaces"][0]["dataplaneMode"], "ambient");
  EXPECT_EQ(j["namespaces"][0]["capturedPods"], 2);
  EXPECT_EQ(j["namespaces"][1]["expectAmbient"], true);
  EXPECT_EQ(j["namespaces"][1]["unknownPods"], 0);  // primitives always printed

  // The aggregator's own words when it runs without the Kubernetes API.
  auto off = run({"namespaces"}, grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                              "ListNamespaces needs the Kubernetes API: the aggregator runs without "
                                              "it (--kube off, or --kube auto outside a cluster and without "
                                              "--kubeconfig)"));
  EXPECT_EQ(off.code, kExitQueryFailed);
  EXPECT_TRUE(contains(off.err, "needs the Kubernetes API: the aggregator runs without it")) << off.err;
  EXPECT_TRUE(contains(off.err, "FAILED_PRECONDITION")) << off.err;
  // An older aggregator.
  auto old = run({"namespaces"}, grpc::Status(grpc::StatusCode::UNIMPLEMENTED, ""));
  EXPECT_EQ(old.code, kExitQueryFailed);
  EXPECT_TRUE(contains(old.err, "does not answer ListNamespaces")) << old.err;

  EXPECT_EQ(run({"namespaces", "extra"}).code, kExitUsage);
  EXPECT_EQ(run({"namespaces", "--node", "n1"}).code, kExitUsage);
  EXPECT_TRUE(contains(run({"--help"}).out, "namespaces"));
}

TEST(CliMatrix, WithoutFlagsTheRequestAndTheJsonAreAsBeforePaging) {
  auto r = run({"--output", "json", "matrix", "--layer", "OVERLAY"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.calls.log, std::vector<std::string>{"GetMatrix OVERLAY"});  // no filter, size or token
  auto j = nlohmann::json::parse(r.out);
  std::vector<std::string> keys;
  for (const auto& [k, _] : j.items()) keys.push_back(k);
  std::sort(keys.begin(), keys.end());
  EXPECT_EQ(keys, (std::vector<std::string>{"cells", "layer", "nodes"})) << r.out;
  auto all = nlohmann::json::parse(run({"--output", "json", "matrix"}).out);
  for (const auto& m : all["matrices"]) {
    EXPECT_FALSE(m.contains("nextPageToken"));
    EXPECT_FALSE(m.contains("totalCells"));
  }
  EXPECT_TRUE(r.err.empty()) << r.err;
}

TEST(CliMatrix, FiltersAndPageSizeGoToTheAggregator) {
  auto r = run({"matrix", "--layer", "OVERLAY", "--node", "node1", "--node", "node3", "--state", "fail", "--state",
                "Degraded", "--page-size", "5"},
               grpc::Status::OK, {}, FakeMatrix{.nodes = 3});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.calls.log, std::vector<std::string>{"GetMatrix OVERLAY nodes=node1,node3 states=FAIL,DEGRADED size=5"});
  // Every layer gets the same filters.
  auto all = run({"matrix", "--state", "OK"}, grpc::Status::OK, {}, FakeMatrix{.nodes = 3});
  EXPECT_EQ(all.calls.log, (std::vector<std::string>{"GetMatrix UNDERLAY states=OK", "GetMatrix OVERLAY states=OK",
                                                     "GetMatrix ISTIOD states=OK"}));
}

TEST(CliMatrix, EveryPageIsFetchedAndProgressGoesToStderr) {
  const FakeMatrix four{.nodes = 4, .default_page_size = 5};  // 12 OVERLAY cells: pages of 5, 5, 2
  auto paged = run({"matrix", "--layer", "OVERLAY"}, grpc::Status::OK, {}, four);
  ASSERT_EQ(paged.code, 0) << paged.err;
  EXPECT_EQ(paged.calls.log, (std::vector<std::string>{"GetMatrix OVERLAY", "GetMatrix OVERLAY token=5",
                                                       "GetMatrix OVERLAY token=10"}));
  EXPECT_EQ(paged.err,
            "meshprobe: OVERLAY: 5 of 12 cells\nmeshprobe: OVERLAY: 10 of 12 cells\nmeshprobe: OVERLAY: 12 of 12 "
            "cells\n");
  // stdout is the same as from one page.
  auto one_page = run({"matrix", "--layer", "OVERLAY"}, grpc::Status::OK, {}, FakeMatrix{.nodes = 4});
  EXPECT_EQ(one_page.calls.log.size(), 1u);
  EXPECT_TRUE(one_page.err.empty()) << one_page.err;
  EXPECT_EQ(paged.out, one_page.out);
  EXPECT_TRUE(contains(paged.out, "OVERLAY: 12 pairs: 11 OK, 0 DEGRADED, 1 FAIL")) << paged.out;

  auto json = run({"--output", "json", "matrix", "--layer", "OVERLAY", "--page-size", "3"}, grpc::Status::OK, {}, four);
  ASSERT_EQ(json.code, 0) << json.err;
  EXPECT_EQ(json.calls.log.size(), 4u);
  EXPECT_EQ(json.out, run({"--output", "json", "matrix", "--layer", "OVERLAY"}, grpc::Status::OK, {},
                          FakeMatrix{.nodes = 4}).out);
  auto j = nlohmann::json::parse(json.out);
  EXPECT_EQ(j["cells"].size(), 12u);
  EXPECT_EQ(j["cells"][11]["src"], "node4");
}

TEST(CliMatrix, FilteredTextSaysSoAndLeavesFilteredCellsBlank) {
  auto r = run({"matrix", "--layer", "OVERLAY", "--state", "FAIL"}, grpc::Status::OK, {}, FakeMatrix{.nodes = 3});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "OVERLAY  rows = source, columns = destination  (only FAIL)\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "1 node1  -\n2 node2  X -\n")) << r.out;  // node2 -> node1 alone; node3 not involved
  EXPECT_TRUE(contains(r.out, "OVERLAY: 1 pair shown: 0 OK, 0 DEGRADED, 1 FAIL, 0 UNKNOWN")) << r.out;
  auto node = run({"matrix", "--layer", "OVERLAY", "--node", "node3"}, grpc::Status::OK, {}, FakeMatrix{.nodes = 3});
  EXPECT_TRUE(contains(node.out, "(only from or to node3)")) << node.out;
  EXPECT_TRUE(contains(node.out, "1 node1  -   o\n2 node2    - o\n3 node3  o o -\n")) << node.out;
  EXPECT_TRUE(contains(node.out, "4 pairs shown: 4 OK")) << node.out;
  auto none = run({"matrix", "--layer", "UNDERLAY", "--state", "UNKNOWN"}, grpc::Status::OK, {}, FakeMatrix{.nodes = 3});
  EXPECT_TRUE(contains(none.out, "no cell matches")) << none.out;
}

TEST(CliMatrix, AnUnknownNodeIsNamed) {
  auto r = run({"matrix", "--layer", "OVERLAY", "--node", "node9"});
  EXPECT_EQ(r.code, kExitQueryFailed);
  EXPECT_EQ(r.err,
            "meshprobe: no node named 'node9' has said Hello to this aggregator at 127.0.0.1:9470 (meshprobe nodes "
            "lists them)\n");
  EXPECT_TRUE(r.out.empty());
}

TEST(CliMatrix, AnAggregatorThatIgnoresTheFiltersOrRepeatsATokenIsAnError) {
  auto old = run({"matrix", "--layer", "OVERLAY", "--state", "FAIL"}, grpc::Status::OK, {},
                 FakeMatrix{.nodes = 3, .ignore_filters = true});
  EXPECT_EQ(old.code, kExitQueryFailed);
  EXPECT_TRUE(contains(old.err, "meshprobe: the aggregator at 127.0.0.1:9470 returned OVERLAY cell node1 -> node2, "
                                "which --node/--state exclude: it predates them"))
      << old.err;
  EXPECT_TRUE(old.out.empty());
  // Without filters such an aggregator is fine.
  EXPECT_EQ(run({"matrix"}, grpc::Status::OK, {}, FakeMatrix{.nodes = 3, .ignore_filters = true}).code, 0);

  auto loop = run({"matrix", "--layer", "ISTIOD"}, grpc::Status::OK, {}, FakeMatrix{.repeat_token = true});
  EXPECT_EQ(loop.code, kExitQueryFailed);
  EXPECT_EQ(loop.calls.log.size(), 2u);
  EXPECT_TRUE(contains(loop.err, "sent the same ISTIOD page token twice; stopped after page 2")) << loop.err;
}

TEST(CliMatrix, NodeFromTheEnvironmentFiltersTheMatrixAndLeavesOtherCommandsAlone) {
  setenv("MESHPROBE_NODE", "node2", 1);
  auto nodes = run({"nodes"});
  auto matrix = run({"matrix", "--layer", "OVERLAY"});
  auto flag = run({"matrix", "--layer", "OVERLAY", "--node", "node1"});
  unsetenv("MESHPROBE_NODE");
  EXPECT_EQ(nodes.code, 0) << nodes.err;
  EXPECT_EQ(matrix.calls.log, std::vector<std::string>{"GetMatrix OVERLAY nodes=node2"});
  EXPECT_EQ(flag.calls.log, std::vector<std::string>{"GetMatrix OVERLAY nodes=node1"});  // the flag wins
}

TEST(CliCommands, DiagnoseExitsZeroWithOrWithoutFindings) {
  auto some = run({"diagnose"});
  EXPECT_EQ(some.code, 0);
  EXPECT_TRUE(contains(some.out, "OVERLAY_PARTITION")) << some.out;
  EXPECT_EQ(some.calls.log, std::vector<std::string>{"Diagnose "});
  auto none = run({"diagnose", "--node", "node1"});
  EXPECT_EQ(none.code, 0);
  EXPECT_EQ(none.out, "no active findings for node1\n");
  EXPECT_EQ(none.calls.log, std::vector<std::string>{"Diagnose node1"});
}

TEST(CliCommands, NodeShowsItsChecksAndTheFindingsBlamingIt) {
  auto r = run({"node", "node2"});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.calls.log, (std::vector<std::string>{"GetNode node2", "Diagnose node2"}));
  EXPECT_TRUE(contains(r.out, "OK      vxlan_socket  udp 0.0.0.0:4789 bound")) << r.out;
  EXPECT_TRUE(contains(r.out, "Findings\n  CRITICAL  OVERLAY_PARTITION\n")) << r.out;
  auto healthy = run({"node", "node1"});
  EXPECT_TRUE(contains(healthy.out, "Findings\n  no active findings for node1")) << healthy.out;
  // JSON is GetNodeResponse alone.
  auto j = run({"--output", "json", "node", "node2"});
  EXPECT_EQ(j.calls.log, std::vector<std::string>{"GetNode node2"});
}

// ---------------- terminal ----------------

TEST(CliTerminal, ColourOnlyOnATtyWithoutNoColor) {
  Terminal piped;
  Terminal tty{.stdout_tty = true, .no_color = false, .width = 80};
  Terminal tty_no_color{.stdout_tty = true, .no_color = true, .width = 80};
  auto p = run({"matrix", "--layer", "OVERLAY"}, grpc::Status::OK, piped);
  auto t = run({"matrix", "--layer", "OVERLAY"}, grpc::Status::OK, tty);
  auto n = run({"matrix", "--layer", "OVERLAY"}, grpc::Status::OK, tty_no_color);
  EXPECT_FALSE(contains(p.out, "\033[")) << p.out;
  EXPECT_TRUE(contains(p.out, "1 node1  - o")) << p.out;
  EXPECT_TRUE(contains(t.out, "\033[32m●\033[0m")) << t.out;
  EXPECT_FALSE(contains(n.out, "\033[")) << n.out;
  EXPECT_TRUE(contains(n.out, "●")) << n.out;
  // JSON is never coloured.
  EXPECT_FALSE(contains(run({"--output", "json", "nodes"}, grpc::Status::OK, tty).out, "\033["));
}

TEST(CliTerminal, FromTheEnvironment) {
  auto t = terminalFrom(true, nullptr, "xterm-256color", 132, "80");
  EXPECT_TRUE(t.stdout_tty);
  EXPECT_FALSE(t.no_color);
  EXPECT_EQ(t.width, 132);  // the tty's own size wins over $COLUMNS
  EXPECT_TRUE(terminalFrom(true, "1", "xterm", 80, nullptr).no_color);
  EXPECT_FALSE(terminalFrom(true, "", "xterm", 80, nullptr).no_color);  // no-color.org: empty means unset
  EXPECT_TRUE(terminalFrom(true, nullptr, "dumb", 80, nullptr).no_color);
  auto piped = terminalFrom(false, nullptr, nullptr, 0, "60");
  EXPECT_FALSE(piped.stdout_tty);
  EXPECT_EQ(piped.width, 60);
  EXPECT_EQ(terminalFrom(false, nullptr, nullptr, 0, "junk").width, 100);
}

}  // namespace
}  // namespace meshprobe::cli

namespace meshprobe::cli {
namespace {

// ---------------- TLS flags ----------------

TEST(CliTls, FlagsReachTheClientFactory) {
  using meshprobe::test::mtlsFile;
  auto r = run({"--aggregator-ca", mtlsFile("ca.pem"), "--tls-cert", mtlsFile("meshprobe-reader.pem"), "--tls-key",
                mtlsFile("meshprobe-reader.key"), "--tls-server-name", "meshprobe-aggregator", "nodes"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.calls.tls.ca_file, mtlsFile("ca.pem"));
  EXPECT_EQ(r.calls.tls.cert_file, mtlsFile("meshprobe-reader.pem"));
  EXPECT_EQ(r.calls.tls.server_name, "meshprobe-aggregator");
  EXPECT_FALSE(r.calls.tls.insecure);
}

TEST(CliTls, BadTlsFlagsAreUsageErrorsNamingTheFlag) {
  using meshprobe::test::mtlsFile;
  auto partial = run({"--aggregator-ca", mtlsFile("ca.pem"), "nodes"});
  EXPECT_EQ(partial.code, 2);
  EXPECT_TRUE(contains(partial.err, "missing --tls-cert and --tls-key")) << partial.err;
  EXPECT_EQ(partial.calls.clients, 0);
  auto both = run({"--insecure", "--aggregator-ca", mtlsFile("ca.pem"), "--tls-cert", mtlsFile("node1.pem"),
                   "--tls-key", mtlsFile("node1.key"), "nodes"});
  EXPECT_EQ(both.code, 2);
  EXPECT_TRUE(contains(both.err, "--insecure cannot be combined")) << both.err;
  auto missing = run({"--aggregator-ca", "/nonexistent/ca.pem", "--tls-cert", mtlsFile("node1.pem"), "--tls-key",
                      mtlsFile("node1.key"), "nodes"});
  EXPECT_EQ(missing.code, 2);
  EXPECT_TRUE(contains(missing.err, "--aggregator-ca /nonexistent/ca.pem")) << missing.err;
}

TEST(CliTls, PlaintextWithoutInsecureIsNotedOnlyToAPerson) {
  Terminal person;
  person.stderr_tty = true;
  auto noted = run({"nodes"}, grpc::Status::OK, person);
  EXPECT_EQ(noted.code, 0);
  EXPECT_TRUE(contains(noted.err, "plaintext connection to 127.0.0.1:9470")) << noted.err;
  auto acknowledged = run({"--insecure", "nodes"}, grpc::Status::OK, person);
  EXPECT_EQ(acknowledged.code, 0);
  EXPECT_EQ(acknowledged.err, "");
  EXPECT_TRUE(acknowledged.calls.tls.insecure);
  auto script = run({"nodes"});  // stderr not a terminal: scripts see nothing new
  EXPECT_EQ(script.err, "");
}

}  // namespace
}  // namespace meshprobe::cli
