#include "aggregator/query_service.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <exception>
#include <map>
#include <set>
#include <utility>

#include "aggregator/matrix_query.h"
#include "common/finding.h"

namespace meshprobe::aggregator {

namespace v1 = meshprobe::v1;

namespace {

// Runs `body` (which returns a grpc::Status) and finishes the default reactor with it;
// an exception becomes INTERNAL instead of crossing into gRPC.
template <typename Body>
grpc::ServerUnaryReactor* answer(grpc::CallbackServerContext* ctx, const char* method, Histogram& latency,
                                 Body&& body) {
  const auto started = std::chrono::steady_clock::now();
  grpc::Status status;
  try {
    status = body();
  } catch (const std::exception& e) {
    spdlog::error("Query/{}: {}", method, e.what());
    status = grpc::Status(grpc::StatusCode::INTERNAL, std::string("aggregator error: ") + e.what());
  } catch (...) {
    status = grpc::Status(grpc::StatusCode::INTERNAL, "aggregator error");
  }
  latency.observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}

constexpr std::string_view kDataplaneMode = "istio.io/dataplane-mode";

std::string labelOf(const kube::Labels& labels, std::string_view key) {
  const auto it = labels.find(std::string(key));
  return it == labels.end() ? "" : it->second;
}

const v1::Finding* activeWithId(const std::vector<v1::Finding>& active, const std::string& id) {
  for (const auto& f : active) {
    if (f.id() == id) return &f;
  }
  return nullptr;
}

// The synced objects, or FAILED_PRECONDITION saying why there are none.
grpc::Status kubeObjects(const kube::KubeView* kube, std::string_view method,
                         std::shared_ptr<const kube::KubeObjects>* out) {
  const std::string needs = std::string(method) + " needs the Kubernetes API: ";
  if (kube == nullptr) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        needs +
                            "the aggregator runs without it (--kube off, or --kube auto outside a cluster and "
                            "without --kubeconfig)");
  }
  auto objects = kube->objects();
  if (objects->status.state == kube::ApiState::kOff) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        needs +
                            "the aggregator runs without it (--kube off, or --kube auto outside a cluster and "
                            "without --kubeconfig)");
  }
  if (!objects->synced) {
    std::string why;
    switch (objects->status.state) {
      case kube::ApiState::kUnreachable:
        why = "the API server is unreachable";
        break;
      case kube::ApiState::kForbidden:
        why = "the API server refuses the aggregator's credentials or RBAC";
        break;
      default:
        why = "still connecting";
        break;
    }
    if (!objects->status.detail.empty()) why += ": " + objects->status.detail;
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        needs + "nodes, namespaces and pods are not listed yet (" + why + ")");
  }
  *out = std::move(objects);
  return grpc::Status::OK;
}

}  // namespace

v1::ListNamespacesResponse namespacesAnswer(const kube::KubeObjects& objects, const std::vector<KubeAgentNode>& agents,
                                            const kube::Selector& expect_ambient,
                                            const std::vector<v1::Finding>& active) {
  // The nodes POD_NOT_CAPTURED is active on.
  std::set<std::string> not_captured_nodes;
  for (const auto& f : active) {
    if (f.code() == codes::kPodNotCaptured) not_captured_nodes.insert(f.nodes().begin(), f.nodes().end());
  }
  std::map<std::string, v1::NamespaceSummary> out;
  std::map<std::string, bool> pod_not_captured;
  for (const auto& [name, ns] : objects.namespaces) {
    v1::NamespaceSummary& s = out[name];
    s.set_name(name);
    s.set_dataplane_mode(labelOf(ns.labels, kDataplaneMode));
    s.set_expect_ambient(!expect_ambient.empty() && expect_ambient.matches(ns.labels));
    s.set_terminating(ns.terminating);
  }
  for (const auto& [key, pod] : objects.pods) {
    auto it = out.find(pod.ns);
    if (it == out.end() || pod.phase != "Running" || pod.host_network || pod.deleting) continue;
    v1::NamespaceSummary& s = it->second;
    s.set_running_pods(s.running_pods() + 1);
    const PodCaptureEvidence* e = captureOf(agents, pod);
    if (e == nullptr) {
      s.set_unknown_pods(s.unknown_pods() + 1);
      continue;
    }
    if (e->captured) {
      s.set_captured_pods(s.captured_pods() + 1);
    } else if (e->state != "sidecar" && e->state != "unknown" && not_captured_nodes.count(pod.node_name) &&
               shouldBeCaptured(objects, pod)) {
      pod_not_captured[pod.ns] = true;
    }
  }
  v1::ListNamespacesResponse resp;
  for (auto& [name, s] : out) {
    if (activeWithId(active, std::string(codes::kNamespaceNotAmbient) + "/" + name)) {
      s.add_findings(std::string(codes::kNamespaceNotAmbient));
    }
    if (pod_not_captured.count(name)) s.add_findings(std::string(codes::kPodNotCaptured));
    *resp.add_namespaces() = std::move(s);
  }
  return resp;
}

std::vector<v1::MissingAgentNode> missingAgents(const kube::KubeObjects& objects,
                                                const std::vector<std::string>& members, const ComponentSelector& agent,
                                                const std::vector<v1::Finding>& active) {
  const std::set<std::string> known(members.begin(), members.end());
  std::vector<v1::MissingAgentNode> out;
  for (const auto& [name, node] : objects.nodes) {
    if (known.count(name)) continue;
    v1::MissingAgentNode m;
    m.set_name(name);
    m.set_ready(node.ready);
    const auto pods = componentPodsOn(objects, name, agent);
    if (!pods.empty()) {
      m.set_agent_pod(pods.front()->key());
      m.set_pod_state(podStateText(*pods.front()));
    }
    if (const v1::Finding* f = activeWithId(active, std::string(codes::kAgentMissing) + "/" + name)) {
      m.set_finding_id(f->id());
      m.set_reason(f->summary());
    } else if (!node.ready) {
      m.set_reason("node " + name + " is NotReady");
    } else if (pods.empty()) {
      m.set_reason("no " + agent.name + " pod is scheduled on it");
    } else {
      m.set_reason("its agent pod " + pods.front()->key() + " is " + m.pod_state() + " and has not said Hello");
    }
    out.push_back(std::move(m));
  }
  return out;
}

std::string_view queryMethodName(QueryMethod m) {
  switch (m) {
    case QueryMethod::kListNodes:
      return "ListNodes";
    case QueryMethod::kGetMatrix:
      return "GetMatrix";
    case QueryMethod::kGetNode:
      return "GetNode";
    case QueryMethod::kDiagnose:
      return "Diagnose";
    case QueryMethod::kListNamespaces:
      return "ListNamespaces";
    case QueryMethod::kCount:
      break;
  }
  return "unknown";
}

grpc::ServerUnaryReactor* QueryService::ListNodes(grpc::CallbackServerContext* ctx, const v1::ListNodesRequest*,
                                                  v1::ListNodesResponse* resp) {
  return answer(ctx, "ListNodes", latency_[static_cast<size_t>(QueryMethod::kListNodes)], [&] {
    for (auto& n : state_.listNodes()) *resp->add_nodes() = std::move(n);
    // With the Kubernetes API: the Nodes no agent has said Hello from.
    for (auto& m : missingAgentNodes()) *resp->add_missing_agents() = std::move(m);
    return grpc::Status::OK;
  });
}

grpc::ServerUnaryReactor* QueryService::GetMatrix(grpc::CallbackServerContext* ctx, const v1::GetMatrixRequest* req,
                                                  v1::GetMatrixResponse* resp) {
  return answer(ctx, "GetMatrix", latency_[static_cast<size_t>(QueryMethod::kGetMatrix)], [&] {
    // Only the requested page's cells are built, from the cluster state's snapshot.
    return state_.matrixPage(*req, resp);
  });
}

grpc::ServerUnaryReactor* QueryService::GetNode(grpc::CallbackServerContext* ctx, const v1::GetNodeRequest* req,
                                                v1::GetNodeResponse* resp) {
  return answer(ctx, "GetNode", latency_[static_cast<size_t>(QueryMethod::kGetNode)], [&] {
    if (req->name().empty()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "GetNode needs a node name");
    auto node = state_.getNode(req->name());
    if (!node.ok()) return grpc::Status(grpc::StatusCode::NOT_FOUND, node.error().message);
    *resp = std::move(node.value());
    return grpc::Status::OK;
  });
}

grpc::ServerUnaryReactor* QueryService::Diagnose(grpc::CallbackServerContext* ctx, const v1::DiagnoseRequest* req,
                                                 v1::DiagnoseResponse* resp) {
  return answer(ctx, "Diagnose", latency_[static_cast<size_t>(QueryMethod::kDiagnose)], [&] {
    if (!req->node().empty() && !state_.getNode(req->node()).ok()) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          "no node named '" + req->node() + "' has said Hello to this aggregator");
    }
    for (auto& f : engine_.active(req->node())) *resp->add_findings() = std::move(f);
    return grpc::Status::OK;
  });
}

std::vector<v1::MissingAgentNode> QueryService::missingAgentNodes() const {
  if (kube_ == nullptr) return {};
  auto objects = kube_->objects();
  if (!objects->synced) return {};
  std::vector<std::string> members;
  for (const auto& n : state_.listNodes()) members.push_back(n.name());
  return missingAgents(*objects, members, kube_options_.agent, engine_.active());
}

grpc::ServerUnaryReactor* QueryService::ListNamespaces(grpc::CallbackServerContext* ctx,
                                                       const v1::ListNamespacesRequest*,
                                                       v1::ListNamespacesResponse* resp) {
  return answer(ctx, "ListNamespaces", latency_[static_cast<size_t>(QueryMethod::kListNamespaces)], [&] {
    std::shared_ptr<const kube::KubeObjects> objects;
    if (auto st = kubeObjects(kube_, "ListNamespaces", &objects); !st.ok()) return st;
    // The agents' pod netns lists, as the Kubernetes rules join them.
    const KubeRuleInput in = kubeRuleInput(*state_.snapshot(), objects, {}, {});
    *resp = namespacesAnswer(*objects, in.agents, kube_options_.expect_ambient, engine_.active());
    return grpc::Status::OK;
  });
}

}  // namespace meshprobe::aggregator
