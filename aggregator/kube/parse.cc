#include "aggregator/kube/parse.h"

namespace meshprobe::aggregator::kube {
namespace {

using nlohmann::json;

const json& field(const json& j, const char* key) {
  static const json kNull;
  if (!j.is_object()) return kNull;
  const auto it = j.find(key);
  return it == j.end() ? kNull : *it;
}

std::string str(const json& j, const char* key) {
  const json& v = field(j, key);
  return v.is_string() ? v.get<std::string>() : std::string();
}

bool boolean(const json& j, const char* key) {
  const json& v = field(j, key);
  return v.is_boolean() && v.get<bool>();
}

template <typename Int>
Int integer(const json& j, const char* key) {
  const json& v = field(j, key);
  if (v.is_number_integer()) return static_cast<Int>(v.get<int64_t>());
  if (v.is_number_unsigned()) return static_cast<Int>(v.get<uint64_t>());
  return Int{};
}

Labels labelsOf(const json& meta) {
  Labels out;
  const json& l = field(meta, "labels");
  if (!l.is_object()) return out;
  for (const auto& [k, v] : l.items()) {
    if (v.is_string()) out[k] = v.get<std::string>();
  }
  return out;
}

std::vector<Condition> conditionsOf(const json& status) {
  std::vector<Condition> out;
  const json& c = field(status, "conditions");
  if (!c.is_array()) return out;
  for (const json& e : c) {
    if (!e.is_object()) continue;
    out.push_back(Condition{str(e, "type"), str(e, "status"), str(e, "reason"), str(e, "message")});
  }
  return out;
}

bool conditionTrue(const std::vector<Condition>& conditions, const std::string& type) {
  for (const auto& c : conditions)
    if (c.type == type) return c.status == "True";
  return false;
}

}  // namespace

std::string resourceVersionOf(const json& j) { return str(field(j, "metadata"), "resourceVersion"); }

NodeObject parseNode(const json& j) {
  NodeObject n;
  const json& meta = field(j, "metadata");
  n.name = str(meta, "name");
  n.uid = str(meta, "uid");
  n.labels = labelsOf(meta);
  n.unschedulable = boolean(field(j, "spec"), "unschedulable");
  const json& status = field(j, "status");
  n.conditions = conditionsOf(status);
  n.ready = conditionTrue(n.conditions, "Ready");
  const json& addrs = field(status, "addresses");
  if (addrs.is_array()) {
    for (const json& a : addrs) {
      if (str(a, "type") == "InternalIP" && !str(a, "address").empty()) n.internal_ips.push_back(str(a, "address"));
    }
  }
  return n;
}

NamespaceObject parseNamespace(const json& j) {
  NamespaceObject n;
  const json& meta = field(j, "metadata");
  n.name = str(meta, "name");
  n.labels = labelsOf(meta);
  n.terminating = str(field(j, "status"), "phase") == "Terminating";
  return n;
}

PodObject parsePod(const json& j) {
  PodObject p;
  const json& meta = field(j, "metadata");
  p.ns = str(meta, "namespace");
  p.name = str(meta, "name");
  p.labels = labelsOf(meta);
  p.deleting = !field(meta, "deletionTimestamp").is_null();
  const json& owners = field(meta, "ownerReferences");
  if (owners.is_array()) {
    for (const json& o : owners) {
      if (boolean(o, "controller")) {
        p.owner_kind = str(o, "kind");
        p.owner_name = str(o, "name");
        break;
      }
    }
  }
  const json& spec = field(j, "spec");
  p.node_name = str(spec, "nodeName");
  p.host_network = boolean(spec, "hostNetwork");
  const json& status = field(j, "status");
  p.phase = str(status, "phase");
  p.conditions = conditionsOf(status);
  p.ready = conditionTrue(p.conditions, "Ready");
  const json& ips = field(status, "podIPs");
  if (ips.is_array()) {
    for (const json& ip : ips)
      if (!str(ip, "ip").empty()) p.pod_ips.push_back(str(ip, "ip"));
  }
  if (p.pod_ips.empty() && !str(status, "podIP").empty()) p.pod_ips.push_back(str(status, "podIP"));
  const json& cs = field(status, "containerStatuses");
  if (cs.is_array()) {
    for (const json& c : cs) {
      if (!c.is_object()) continue;
      ContainerStatus s;
      s.name = str(c, "name");
      s.ready = boolean(c, "ready");
      s.restart_count = integer<uint32_t>(c, "restartCount");
      const json& waiting = field(field(c, "state"), "waiting");
      s.waiting_reason = str(waiting, "reason");
      s.waiting_message = str(waiting, "message");
      const json& terminated = field(field(c, "lastState"), "terminated");
      s.last_terminated_reason = str(terminated, "reason");
      s.last_exit_code = integer<int>(terminated, "exitCode");
      p.containers.push_back(std::move(s));
    }
  }
  return p;
}

ApiError parseStatus(std::string_view body, int http_status) {
  ApiError e;
  e.code = http_status;
  const json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_object() && str(j, "kind") == "Status") {
    if (const int code = integer<int>(j, "code"); code != 0) e.code = code;
    e.reason = str(j, "reason");
    e.message = str(j, "message");
    // Without a code, the reason decides, as client-go's apierrors.IsResourceExpired and
    // IsGone do (a watch's ERROR event carries only its Status): Expired and Gone are 410.
    if (e.code == 0 && (e.reason == "Expired" || e.reason == "Gone")) e.code = 410;
    return e;
  }
  std::string text(body.substr(0, 200));
  for (char& c : text)
    if (c == '\n' || c == '\r') c = ' ';
  e.message = text;
  return e;
}

Result<ListPage> parseList(std::string_view body) {
  const json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return Error{"list response is not a JSON object"};
  ListPage page;
  const json& meta = field(j, "metadata");
  page.resource_version = str(meta, "resourceVersion");
  page.continue_token = str(meta, "continue");
  const json& items = field(j, "items");
  if (items.is_array()) {
    page.items.reserve(items.size());
    for (const json& i : items) page.items.push_back(i);
  } else if (!items.is_null()) {
    return Error{"list response: items is not an array"};
  }
  return page;
}

Result<WatchEvent> parseWatchEvent(std::string_view line) {
  json j = json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return Error{"watch event is not a JSON object"};
  WatchEvent ev;
  const std::string type = str(j, "type");
  if (type == "ADDED")
    ev.type = EventType::kAdded;
  else if (type == "MODIFIED")
    ev.type = EventType::kModified;
  else if (type == "DELETED")
    ev.type = EventType::kDeleted;
  else if (type == "BOOKMARK")
    ev.type = EventType::kBookmark;
  else if (type == "ERROR")
    ev.type = EventType::kError;
  else
    return Error{"watch event of unknown type \"" + type + "\""};
  auto it = j.find("object");
  if (it == j.end() || !it->is_object()) return Error{"watch event " + type + " without an object"};
  ev.object = std::move(*it);
  ev.resource_version = resourceVersionOf(ev.object);
  if (ev.type == EventType::kError) ev.error = parseStatus(ev.object.dump(), 0);
  return ev;
}

}  // namespace meshprobe::aggregator::kube
