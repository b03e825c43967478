#include "aggregator/web/page_data.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <unordered_map>
#include <utility>

// The page's JSON documents. Names follow the Query API's proto3 JSON (camelCase, enum
// names as strings, times RFC 3339 UTC).
//
// GET /api/v1/state[?cells=broken|all|auto] — what the page fetches every 2 s:
// {
//   "version": 2,                         // 2: cells are only FAIL/DEGRADED unless cells=all
//   "generatedAt": "2026-11-26T22:05:01Z", // the aggregator's wall clock
//   "nodes": [                            // every member, sorted by name
//     {"name": "node1", "up": true,       // up: reported within --stale-after
//      "nodeIp": "...", "overlayIp": "...", "vtepMac": "...", "vxlanVni": 1,
//      "vxlanPort": 4789, "vxlanMtu": 1450, "podCidr": "...", "agentVersion": "...",
//      "lastReport": "..." | null,        // when the aggregator received its latest Report
//      "failing":  {"UNDERLAY": 0, "OVERLAY": 3},   // distinct peers with a FAIL cell (either direction)
//      "degraded": {"UNDERLAY": 0, "OVERLAY": 0},   // ... with a DEGRADED cell
//      "measured": {"UNDERLAY": 999, "OVERLAY": 999}, // ... with a known cell (LayerView::measuredPeers)
//      "istiod": "OK" | "DEGRADED" | "FAIL" | "UNKNOWN", // its ISTIOD cell
//      "findings": ["OVERLAY_PARTITION"]} // codes of the active findings that blame it
//   ],
//   "layers": [                           // always UNDERLAY, OVERLAY, ISTIOD in this order
//     {"layer": "OVERLAY",
//      "size": 1000,                      // nodes in the layer's matrix (rows)
//      "counts": {"FAIL": 2, "DEGRADED": 0}, // exact; ISTIOD (and cells=all) also OK, UNKNOWN
//      "cellsIncluded": "broken" | "all",
//      "cellsTruncated": false,           // more FAIL/DEGRADED cells than listed (kMaxListedCells)
//      "cells": [                         // "broken": FAIL then DEGRADED cells, (src, dst) order;
//                                         // "all": every (src, dst) pair, src != dst
//        {"src": "node1", "dst": "node3",
//         "state": "OK" | "DEGRADED" | "FAIL" | "UNKNOWN",
//         "rttMs": 0.21 | null,           // median RTT of the latest window (ms); null: no reply
//         "loss": 0.0 | null,             // 0..1 over the latest window; null: no probe
//         "lastUpdate": "..." | null}],   // broken: when the source's report arrived;
//                                         // all: the time the source's Report carries
//      "nodes": [...], "destinations": [...], // only with "all": rows and columns (["istiod"])
//      "error": "..."}                    // only when the layer could not be read
//   ],
//   "findings": [                         // DiagnosisEngine::active(): most severe first
//     {"id": "OVERLAY_PARTITION/node3", "code": "OVERLAY_PARTITION",
//      "severity": "CRITICAL" | "WARNING" | "INFO", "layer": "OVERLAY",
//      "nodes": ["node3"],                // blamed nodes; empty when outside every node
//      "summary": "...", "evidence": ["..."], "remedy": "...",
//      "onsetTime": "..." | null}
//   ],
//   "missingAgents": [                    // Kubernetes Nodes no agent has said Hello from
//     {"name": "node4", "ready": true,    // (only with the aggregator's Kubernetes API; else [])
//      "agentPod": "meshprobe/meshprobe-agent-c2vns" | "", "podState": "CrashLoopBackOff" | "",
//      "reason": "...",                   // AGENT_MISSING's summary once it is active
//      "findingId": "AGENT_MISSING/node4" | ""}
//   ]
// }
// cells=broken (the default) costs O(nodes + failing cells); cells=all is the whole matrix
// (N·(N−1) cells: only for small clusters); cells=auto is "all" up to kFullCellsMaxNodes
// nodes, else "broken".
//
// GET /api/v1/matrix?layer=OVERLAY[&format=compact] — one layer's whole matrix, compact:
// {"version": 1, "layer": "OVERLAY", "generatedAt": "...",
//  "nodes": ["node1", ...],               // rows, the same order as /api/v1/state's nodes
//  "destinations": ["istiod"],            // ISTIOD only; else the columns are `nodes`
//  "counts": {"OK": .., "DEGRADED": .., "FAIL": .., "UNKNOWN": ..},
//  "encoding": "rle",
//  "rows": ["O4-O995", ...]}              // per row: runs of a letter (O OK, D DEGRADED,
//                                         // F FAIL, U UNKNOWN, - the node itself) and the
//                                         // run's length when above 1
//
// GET /api/v1/cell?layer=OVERLAY&src=node1&dst=node3 — one cell (cellJson):
// {"layer", "src", "dst", "state", "rttMs", "rttP99Ms", "loss", "sent", "received",
//  "consecutiveFailures", "error", "lastUpdate", "lastProbe", "srcUp", "measured"}

namespace meshprobe::aggregator::web {

namespace v1 = meshprobe::v1;
using google::protobuf::util::TimeUtil;
using nlohmann::json;

namespace {

json timeOrNull(bool has, const google::protobuf::Timestamp& t) {
  if (!has) return nullptr;
  return TimeUtil::ToString(t);
}

std::string rfc3339(std::chrono::system_clock::time_point t) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  return TimeUtil::ToString(TimeUtil::NanosecondsToTimestamp(ns));
}

json rttMsOrNull(const google::protobuf::Duration& d) {
  if (d.seconds() == 0 && d.nanos() == 0) return nullptr;
  return static_cast<double>(TimeUtil::DurationToNanoseconds(d)) / 1e6;
}

json nodeJson(const v1::NodeSummary& n) {
  return {{"name", n.name()},
          {"up", n.up()},
          {"nodeIp", n.node_ip()},
          {"overlayIp", n.overlay_ip()},
          {"vtepMac", n.vtep_mac()},
          {"vxlanVni", n.vxlan_vni()},
          {"vxlanPort", n.vxlan_port()},
          {"vxlanMtu", n.vxlan_mtu()},
          {"podCidr", n.pod_cidr()},
          {"agentVersion", n.agent_version()},
          {"lastReport", timeOrNull(n.has_last_report(), n.last_report())}};
}

// Distinct peers per node over a set of cells (either direction).
std::vector<uint32_t> distinctPeers(const std::vector<CellPair>& cells, size_t n) {
  std::vector<CellPair> ends;
  ends.reserve(cells.size() * 2);
  for (const auto& [s, d] : cells) {
    ends.emplace_back(s, d);
    ends.emplace_back(d, s);
  }
  std::sort(ends.begin(), ends.end());
  ends.erase(std::unique(ends.begin(), ends.end()), ends.end());
  std::vector<uint32_t> out(n, 0);
  for (const auto& [x, peer] : ends) {
    if (x < n) ++out[x];
  }
  return out;
}

struct ProbeLayer {
  json doc;
  std::vector<uint32_t> failing, degraded, measured;
};

ProbeLayer probeLayer(const DiagnosisInput& input, v1::Layer layer, size_t max_listed) {
  const size_t n = input.nodes.size();
  ProbeLayer out;
  out.doc = {{"layer", v1::Layer_Name(layer)},
             {"size", n},
             {"counts", {{"FAIL", 0}, {"DEGRADED", 0}}},
             {"cellsIncluded", "broken"},
             {"cellsTruncated", false},
             {"cells", json::array()}};
  out.failing.assign(n, 0);
  out.degraded.assign(n, 0);
  out.measured.assign(n, 0);
  const auto& view = layer == v1::UNDERLAY ? input.underlay : input.overlay;
  if (!view) {
    out.doc["error"] = "no " + v1::Layer_Name(layer) + " matrix yet";
    return out;
  }
  if (view->size() != n) {
    out.doc["error"] = v1::Layer_Name(layer) + " matrix has " + std::to_string(view->size()) + " nodes, the members " +
                       std::to_string(n);
    return out;
  }
  // Every FAIL cell is in failing(); every DEGRADED one has a detail (its state is not OK).
  std::vector<CellPair> candidates = view->failing();
  candidates.insert(candidates.end(), view->detailed().begin(), view->detailed().end());
  std::sort(candidates.begin(), candidates.end());
  candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());
  std::vector<CellPair> fail, degraded;
  for (const auto& c : candidates) {
    if (c.first >= n || c.second >= n || c.first == c.second) continue;
    const auto st = view->state(c.first, c.second);
    if (st == v1::Cell::FAIL) fail.push_back(c);
    if (st == v1::Cell::DEGRADED) degraded.push_back(c);
  }
  out.doc["counts"] = {{"FAIL", fail.size()}, {"DEGRADED", degraded.size()}};
  out.failing = distinctPeers(fail, n);
  out.degraded = distinctPeers(degraded, n);
  for (uint32_t x = 0; x < n; ++x) out.measured[x] = view->measuredPeers(x);

  json& cells = out.doc["cells"];
  size_t listed = 0;
  for (const auto* list : {&fail, &degraded}) {
    const char* st = list == &fail ? "FAIL" : "DEGRADED";
    for (const auto& [s, d] : *list) {
      if (listed == max_listed) {
        out.doc["cellsTruncated"] = true;
        return out;
      }
      ++listed;
      const auto& src = input.nodes[s].summary;
      json cell = {{"src", src.name()}, {"dst", input.nodes[d].summary.name()},
                   {"state", st},       {"rttMs", nullptr},
                   {"loss", nullptr},   {"lastUpdate", timeOrNull(src.has_last_report(), src.last_report())}};
      if (const v1::ProbeResult* p = view->detail(s, d)) {
        cell["rttMs"] = rttMsOrNull(p->rtt_p50());
        if (p->sent() > 0) cell["loss"] = p->loss();
        if (!p->error().empty()) cell["error"] = p->error();
      }
      cells.push_back(std::move(cell));
    }
  }
  return out;
}

json fullLayerJson(const Result<v1::GetMatrixResponse>& matrix, v1::Layer layer) {
  json out = {{"layer", v1::Layer_Name(layer)},
              {"size", 0},
              {"nodes", json::array()},
              {"destinations", json::array()},
              {"counts", {{"OK", 0}, {"DEGRADED", 0}, {"FAIL", 0}, {"UNKNOWN", 0}}},
              {"cellsIncluded", "all"},
              {"cellsTruncated", false},
              {"cells", json::array()}};
  if (!matrix.ok()) {
    out["error"] = matrix.error().message;
    return out;
  }
  for (const auto& n : matrix->nodes()) out["nodes"].push_back(n);
  out["size"] = matrix->nodes_size();
  if (layer == v1::ISTIOD) {
    out["destinations"].push_back(std::string(kIstiodDst));
  } else {
    out["destinations"] = out["nodes"];
  }
  for (const auto& c : matrix->cells()) {
    const std::string st = stateName(c.state());
    out["counts"][st] = out["counts"][st].get<int>() + 1;
    // Probe cells carry rtt (zero when nothing came back); ISTIOD cells derived from the
    // node's istiod check have a time but no loss or RTT.
    const bool measured = c.has_last_update() && c.has_rtt();
    out["cells"].push_back({{"src", c.src()},
                            {"dst", c.dst()},
                            {"state", st},
                            {"rttMs", c.has_rtt() ? rttMsOrNull(c.rtt()) : json(nullptr)},
                            {"loss", measured ? json(c.loss()) : json(nullptr)},
                            {"lastUpdate", timeOrNull(c.has_last_update(), c.last_update())}});
  }
  return out;
}

char letter(v1::Cell::State s) {
  switch (s) {
    case v1::Cell::OK:
      return 'O';
    case v1::Cell::DEGRADED:
      return 'D';
    case v1::Cell::FAIL:
      return 'F';
    default:
      return 'U';
  }
}

// Appends one run of `count` letters `c` ("O995", or "F" for one).
void appendRun(std::string& row, char c, size_t count) {
  if (count == 0) return;
  row.push_back(c);
  if (count > 1) row += std::to_string(count);
}

}  // namespace

std::string stateName(v1::Cell::State s) {
  // STATE_UNSPECIFIED never reaches the page as such: it means nobody knows.
  return s == v1::Cell::STATE_UNSPECIFIED ? "UNKNOWN" : v1::Cell::State_Name(s);
}

json findingJson(const v1::Finding& f) {
  json nodes = json::array(), evidence = json::array();
  for (const auto& n : f.nodes()) nodes.push_back(n);
  for (const auto& e : f.evidence()) evidence.push_back(e);
  return {{"id", f.id()},
          {"code", f.code()},
          {"severity", f.severity() == v1::SEVERITY_UNSPECIFIED ? "INFO" : v1::Severity_Name(f.severity())},
          {"layer", f.layer() == v1::LAYER_UNSPECIFIED ? "" : v1::Layer_Name(f.layer())},
          {"nodes", std::move(nodes)},
          {"summary", f.summary()},
          {"evidence", std::move(evidence)},
          {"remedy", f.remedy()},
          {"onsetTime", timeOrNull(f.has_onset_time(), f.onset_time())}};
}

json missingAgentsJson(const std::vector<v1::MissingAgentNode>& missing) {
  json out = json::array();
  for (const auto& m : missing) {
    out.push_back({{"name", m.name()},
                   {"ready", m.ready()},
                   {"agentPod", m.agent_pod()},
                   {"podState", m.pod_state()},
                   {"reason", m.reason()},
                   {"findingId", m.finding_id()}});
  }
  return out;
}

json pageState(const DiagnosisInput& input, const std::vector<v1::Finding>& findings,
               std::chrono::system_clock::time_point now, size_t max_listed_cells) {
  const size_t n = input.nodes.size();
  json out = {{"version", 2},
              {"generatedAt", rfc3339(now)},
              {"nodes", json::array()},
              {"layers", json::array()},
              {"findings", json::array()}};

  ProbeLayer underlay = probeLayer(input, v1::UNDERLAY, max_listed_cells);
  ProbeLayer overlay = probeLayer(input, v1::OVERLAY, max_listed_cells);

  json istiod = {{"layer", "ISTIOD"},
                 {"size", n},
                 {"counts", {{"OK", 0}, {"DEGRADED", 0}, {"FAIL", 0}, {"UNKNOWN", 0}}},
                 {"cellsIncluded", "broken"},
                 {"cellsTruncated", false},
                 {"cells", json::array()}};
  std::vector<std::string> istiod_state(n, "UNKNOWN");
  for (size_t i = 0; i < n; ++i) {
    const auto st = i < input.istiod.size() ? input.istiod[i] : v1::Cell::UNKNOWN;
    istiod_state[i] = stateName(st);
    istiod["counts"][istiod_state[i]] = istiod["counts"][istiod_state[i]].get<size_t>() + 1;
  }
  for (const auto want : {v1::Cell::FAIL, v1::Cell::DEGRADED}) {
    for (size_t i = 0; i < n; ++i) {
      if (i >= input.istiod.size() || input.istiod[i] != want) continue;
      const auto& src = input.nodes[i].summary;
      istiod["cells"].push_back({{"src", src.name()},
                                 {"dst", std::string(kIstiodDst)},
                                 {"state", stateName(want)},
                                 {"rttMs", nullptr},
                                 {"loss", nullptr},
                                 {"lastUpdate", timeOrNull(src.has_last_report(), src.last_report())}});
    }
  }

  // Codes of the findings that blame each node.
  std::unordered_map<std::string, size_t> index;
  index.reserve(n);
  for (size_t i = 0; i < n; ++i) index.emplace(input.nodes[i].summary.name(), i);
  std::vector<std::vector<std::string>> blamed(n);
  for (const auto& f : findings) {
    for (const auto& name : f.nodes()) {
      auto it = index.find(name);
      if (it == index.end()) continue;
      auto& codes = blamed[it->second];
      if (std::find(codes.begin(), codes.end(), f.code()) == codes.end()) codes.push_back(f.code());
    }
    out["findings"].push_back(findingJson(f));
  }

  json& nodes = out["nodes"];
  for (size_t i = 0; i < n; ++i) {
    json node = nodeJson(input.nodes[i].summary);
    node["failing"] = {{"UNDERLAY", underlay.failing[i]}, {"OVERLAY", overlay.failing[i]}};
    node["degraded"] = {{"UNDERLAY", underlay.degraded[i]}, {"OVERLAY", overlay.degraded[i]}};
    node["measured"] = {{"UNDERLAY", underlay.measured[i]}, {"OVERLAY", overlay.measured[i]}};
    node["istiod"] = istiod_state[i];
    node["findings"] = blamed[i];
    nodes.push_back(std::move(node));
  }
  out["layers"].push_back(std::move(underlay.doc));
  out["layers"].push_back(std::move(overlay.doc));
  out["layers"].push_back(std::move(istiod));
  return out;
}

void withFullCells(json& page, const std::vector<Result<v1::GetMatrixResponse>>& matrices) {
  const v1::Layer layers[] = {v1::UNDERLAY, v1::OVERLAY, v1::ISTIOD};
  json& out = page["layers"];
  for (size_t i = 0; i < 3 && i < matrices.size() && i < out.size(); ++i) {
    out[i] = fullLayerJson(matrices[i], layers[i]);
  }
}

Result<std::string> compactMatrixJson(const DiagnosisInput& input, v1::Layer layer,
                                      std::chrono::system_clock::time_point now) {
  if (!hasMatrix(layer)) {
    return Error{"layer " + v1::Layer_Name(layer) + " has no matrix; ask for UNDERLAY, OVERLAY or ISTIOD"};
  }
  const size_t n = input.nodes.size();
  json out = {{"version", 1},
              {"layer", v1::Layer_Name(layer)},
              {"generatedAt", rfc3339(now)},
              {"nodes", json::array()},
              {"encoding", "rle"}};
  for (const auto& node : input.nodes) out["nodes"].push_back(node.summary.name());
  size_t counts[4] = {0, 0, 0, 0};  // OK, DEGRADED, FAIL, UNKNOWN
  auto count = [&](char c) { counts[c == 'O' ? 0 : c == 'D' ? 1 : c == 'F' ? 2 : 3]++; };
  json rows = json::array();
  if (layer == v1::ISTIOD) {
    out["destinations"] = json::array({std::string(kIstiodDst)});
    for (size_t i = 0; i < n; ++i) {
      const char c = letter(i < input.istiod.size() ? input.istiod[i] : v1::Cell::UNKNOWN);
      count(c);
      rows.push_back(std::string(1, c));
    }
  } else {
    const auto& view = layer == v1::UNDERLAY ? input.underlay : input.overlay;
    if (view && view->size() != n) {
      return Error{v1::Layer_Name(layer) + " matrix has " + std::to_string(view->size()) + " nodes, the members " +
                   std::to_string(n)};
    }
    std::string row;
    for (uint32_t s = 0; s < n; ++s) {
      row.clear();
      char run = 0;
      size_t len = 0;
      for (uint32_t d = 0; d < n; ++d) {
        char c = '-';
        if (d != s) {
          c = view ? letter(view->state(s, d)) : 'U';
          count(c);
        }
        if (c == run) {
          ++len;
          continue;
        }
        appendRun(row, run, len);
        run = c;
        len = 1;
      }
      appendRun(row, run, len);
      rows.push_back(row);
    }
  }
  out["counts"] = {{"OK", counts[0]}, {"DEGRADED", counts[1]}, {"FAIL", counts[2]}, {"UNKNOWN", counts[3]}};
  out["rows"] = std::move(rows);
  return dumpJson(out);
}

json cellJson(const v1::GetNodeResponse& src, v1::Layer layer, const std::string& dst, const MatrixOptions& options) {
  const auto& node = src.node();
  json out = {{"layer", v1::Layer_Name(layer)},
              {"src", node.name()},
              {"dst", dst},
              {"state", "UNKNOWN"},
              {"rttMs", nullptr},
              {"rttP99Ms", nullptr},
              {"loss", nullptr},
              {"sent", nullptr},
              {"received", nullptr},
              {"consecutiveFailures", nullptr},
              {"error", ""},
              {"lastUpdate", nullptr},
              {"lastProbe", nullptr},
              {"srcUp", node.up()},
              {"measured", false}};
  if (!node.has_last_report() || dst == node.name()) return out;
  // The same classification as ClusterState::matrix(): the source's latest probe of dst on
  // this layer; for ISTIOD without such a probe, the source's istiod check. A source that
  // is down shows UNKNOWN.
  const v1::ProbeResult* probe = nullptr;
  for (const auto& p : src.probes()) {
    if (p.layer() == layer && p.dst() == dst) probe = &p;
  }
  v1::Cell::State st = v1::Cell::UNKNOWN;
  if (probe != nullptr) {
    st = classifyProbe(*probe, options);
    out["measured"] = true;
    out["rttMs"] = rttMsOrNull(probe->rtt_p50());
    out["rttP99Ms"] = rttMsOrNull(probe->rtt_p99());
    if (probe->sent() > 0) out["loss"] = probe->loss();
    out["sent"] = probe->sent();
    out["received"] = probe->received();
    out["consecutiveFailures"] = probe->consecutive_failures();
    out["error"] = probe->error();
    out["lastProbe"] = timeOrNull(probe->has_last_probe(), probe->last_probe());
    out["lastUpdate"] = timeOrNull(node.has_last_report(), node.last_report());
  } else if (layer == v1::ISTIOD && dst == kIstiodDst) {
    const v1::CheckResult* check = nullptr;
    for (const auto& c : src.checks()) {
      if (c.name() == "istiod") check = &c;
    }
    st = classifyIstiodCheck(check);
    if (check != nullptr) {
      out["measured"] = true;
      out["lastUpdate"] = timeOrNull(node.has_last_report(), node.last_report());
      out["error"] = check->summary();
    }
  }
  out["state"] = stateName(node.up() ? st : v1::Cell::UNKNOWN);
  return out;
}

std::string dumpJson(const json& j) {
  // Invalid UTF-8 in a remedy or summary must not make the page's data unreadable.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace meshprobe::aggregator::web
