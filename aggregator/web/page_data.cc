#include "aggregator/web/page_data.h"

#include <google/protobuf/util/time_util.h>

#include <nlohmann/json.hpp>

// /api/v1/state — what the matrix page fetches every 2 s. One JSON object; names follow
// the Query API's proto3 JSON (camelCase, enum names as strings, times RFC 3339 UTC):
//
// {
//   "version": 1,                         // bumped on incompatible changes
//   "generatedAt": "2026-11-26T22:05:01Z", // the aggregator's wall clock
//   "nodes": [                            // every member, sorted by name (ListNodes)
//     {"name": "node1", "up": true,       // up: reported within --stale-after
//      "nodeIp": "...", "overlayIp": "...", "vtepMac": "...", "vxlanVni": 1,
//      "vxlanPort": 4789, "vxlanMtu": 1450, "podCidr": "...", "agentVersion": "...",
//      "lastReport": "..." | null}        // when the aggregator received its latest Report
//   ],
//   "layers": [                           // always UNDERLAY, OVERLAY, ISTIOD in this order
//     {"layer": "OVERLAY",
//      "nodes": ["node1", ...],           // rows (sources), stable order (GetMatrix)
//      "destinations": ["node1", ...],    // columns: the nodes; ["istiod"] for ISTIOD
//      "counts": {"OK": 10, "DEGRADED": 0, "FAIL": 2, "UNKNOWN": 0},
//      "cells": [                         // one per (src, dst) pair, src != dst
//        {"src": "node1", "dst": "node3",
//         "state": "OK" | "DEGRADED" | "FAIL" | "UNKNOWN",
//         "rttMs": 0.21 | null,           // median RTT of the latest window (ms); null: no reply
//         "loss": 0.0 | null,             // 0..1 over the latest window; null: no probe
//         "lastUpdate": "..." | null}],   // time of the Report the cell comes from
//      "error": "..."}                    // only when the layer could not be read
//   ],
//   "findings": [                         // DiagnosisEngine::active(): most severe first
//     {"id": "OVERLAY_PARTITION/node3", "code": "OVERLAY_PARTITION",
//      "severity": "CRITICAL" | "WARNING" | "INFO", "layer": "OVERLAY",
//      "nodes": ["node3"],                // blamed nodes; empty when outside every node
//      "summary": "...", "evidence": ["..."], "remedy": "...",
//      "onsetTime": "..." | null}
//   ]
// }

namespace meshprobe::aggregator::web {
namespace {

namespace v1 = meshprobe::v1;
using google::protobuf::util::TimeUtil;
using nlohmann::json;

json timeOrNull(bool has, const google::protobuf::Timestamp& t) {
  if (!has) return nullptr;
  return TimeUtil::ToString(t);
}

std::string rfc3339(std::chrono::system_clock::time_point t) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  return TimeUtil::ToString(TimeUtil::NanosecondsToTimestamp(ns));
}

std::string stateName(v1::Cell::State s) {
  // STATE_UNSPECIFIED never reaches the page as such: it means nobody knows.
  return s == v1::Cell::STATE_UNSPECIFIED ? "UNKNOWN" : v1::Cell::State_Name(s);
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

json layerJson(const ClusterState& state, v1::Layer layer) {
  json out = {{"layer", v1::Layer_Name(layer)},
              {"nodes", json::array()},
              {"destinations", json::array()},
              {"counts", {{"OK", 0}, {"DEGRADED", 0}, {"FAIL", 0}, {"UNKNOWN", 0}}},
              {"cells", json::array()}};
  auto matrix = state.matrix(layer);
  if (!matrix.ok()) {
    out["error"] = matrix.error().message;
    return out;
  }
  for (const auto& n : matrix->nodes()) out["nodes"].push_back(n);
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
    json cell = {{"src", c.src()},
                 {"dst", c.dst()},
                 {"state", st},
                 {"rttMs", nullptr},
                 {"loss", measured ? json(c.loss()) : json(nullptr)},
                 {"lastUpdate", timeOrNull(c.has_last_update(), c.last_update())}};
    if (c.has_rtt() && (c.rtt().seconds() != 0 || c.rtt().nanos() != 0)) {
      cell["rttMs"] = static_cast<double>(TimeUtil::DurationToNanoseconds(c.rtt())) / 1e6;
    }
    out["cells"].push_back(std::move(cell));
  }
  return out;
}

}  // namespace

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

std::string pageStateJson(const ClusterState& state, const DiagnosisEngine& diagnosis,
                          std::chrono::system_clock::time_point now) {
  json out = {{"version", 1},
              {"generatedAt", rfc3339(now)},
              {"nodes", json::array()},
              {"layers", json::array()},
              {"findings", json::array()}};
  for (const auto& n : state.listNodes()) out["nodes"].push_back(nodeJson(n));
  for (v1::Layer layer : {v1::UNDERLAY, v1::OVERLAY, v1::ISTIOD}) out["layers"].push_back(layerJson(state, layer));
  for (const auto& f : diagnosis.active()) out["findings"].push_back(findingJson(f));
  // Invalid UTF-8 in a remedy or summary must not make the page's data unreadable.
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string pageStateJson(const ClusterState& state, const DiagnosisEngine& diagnosis) {
  return pageStateJson(state, diagnosis, std::chrono::system_clock::now());
}

}  // namespace meshprobe::aggregator::web
