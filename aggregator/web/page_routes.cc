#include "aggregator/web/page_routes.h"

#include <utility>

#include "aggregator/web/matrix_page_html.h"
#include "aggregator/web/page_data.h"

namespace meshprobe::aggregator::web {

namespace v1 = meshprobe::v1;

namespace {

HttpResponse badRequest(const std::string& why) { return HttpResponse::text(400, why + "\n"); }

std::optional<v1::Layer> parseLayer(const HttpRequest& req) {
  auto it = req.query.find("layer");
  if (it == req.query.end()) return std::nullopt;
  v1::Layer layer;
  if (!v1::Layer_Parse(it->second, &layer) || !hasMatrix(layer)) return std::nullopt;
  return layer;
}

std::string param(const HttpRequest& req, const std::string& key) {
  auto it = req.query.find(key);
  return it == req.query.end() ? "" : it->second;
}

}  // namespace

PageSources clusterPageSources(const ClusterState& state, std::function<std::vector<v1::Finding>()> findings) {
  PageSources s;
  s.input = [&state] { return state.diagnosisInput(); };
  s.findings = std::move(findings);
  s.matrix = [&state](v1::Layer layer) { return state.matrix(layer); };
  s.node = [&state](const std::string& name) { return state.getNode(name); };
  s.matrix_options = state.options().matrix;
  return s;
}

std::optional<HttpResponse> handlePageRequest(const PageSources& src, const HttpRequest& req) {
  if (req.path == "/" || req.path == "/index.html") {
    HttpResponse res = HttpResponse::text(200, std::string(kMatrixPageHtml));
    res.content_type = "text/html; charset=utf-8";
    return res;
  }
  if (req.path == "/api/v1/state") {
    const std::string cells = param(req, "cells");
    if (!cells.empty() && cells != "broken" && cells != "all" && cells != "auto") {
      return badRequest("cells=" + cells + ": want broken (the default), all or auto");
    }
    const DiagnosisInput input = src.input();
    nlohmann::json page = pageState(input, src.findings ? src.findings() : std::vector<v1::Finding>{}, src.now());
    page["missingAgents"] =
        missingAgentsJson(src.missing_agents ? src.missing_agents() : std::vector<v1::MissingAgentNode>{});
    if (cells == "all" || (cells == "auto" && input.nodes.size() <= kFullCellsMaxNodes)) {
      std::vector<Result<v1::GetMatrixResponse>> matrices;
      for (v1::Layer layer : {v1::UNDERLAY, v1::OVERLAY, v1::ISTIOD}) {
        matrices.push_back(src.matrix ? src.matrix(layer) : Result<v1::GetMatrixResponse>(Error{"no matrix source"}));
      }
      withFullCells(page, matrices);
    }
    return HttpResponse::json(200, dumpJson(page));
  }
  if (req.path == "/api/v1/matrix") {
    const auto layer = parseLayer(req);
    if (!layer) return badRequest("layer=" + param(req, "layer") + ": want UNDERLAY, OVERLAY or ISTIOD");
    const std::string format = param(req, "format");
    if (!format.empty() && format != "compact") return badRequest("format=" + format + ": only compact");
    auto body = compactMatrixJson(src.input(), *layer, src.now());
    if (!body.ok()) return HttpResponse::text(500, body.error().message + "\n");
    return HttpResponse::json(200, std::move(body.value()));
  }
  if (req.path == "/api/v1/cell") {
    const auto layer = parseLayer(req);
    if (!layer) return badRequest("layer=" + param(req, "layer") + ": want UNDERLAY, OVERLAY or ISTIOD");
    const std::string from = param(req, "src"), to = param(req, "dst");
    if (from.empty() || to.empty()) return badRequest("want src and dst");
    if (!src.node) return HttpResponse::text(500, "no node source\n");
    auto node = src.node(from);
    if (!node.ok()) return HttpResponse::text(404, node.error().message + "\n");
    return HttpResponse::json(200, dumpJson(cellJson(*node, *layer, to, src.matrix_options)));
  }
  return std::nullopt;
}

}  // namespace meshprobe::aggregator::web
