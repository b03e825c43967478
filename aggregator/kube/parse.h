#pragma once
// The API server's JSON (core/v1) to the objects the aggregator keeps. Lenient: a missing or
// mistyped field leaves the default; nothing here throws. Field names follow the Kubernetes
// API reference (ObjectMeta, NodeStatus, NamespaceStatus, PodSpec, PodStatus, meta/v1 Status
// and WatchEvent).

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "aggregator/kube/objects.h"
#include "common/result.h"

namespace meshprobe::aggregator::kube {

NodeObject parseNode(const nlohmann::json& j);
NamespaceObject parseNamespace(const nlohmann::json& j);
PodObject parsePod(const nlohmann::json& j);

// metadata.resourceVersion ("" when absent).
std::string resourceVersionOf(const nlohmann::json& j);

// meta/v1 Status (the body of an error response, or the object of an ERROR watch event).
struct ApiError {
  int code = 0;        // HTTP status it stands for: 401, 403, 410, 500, ...
  std::string reason;  // "Forbidden", "Expired", "Gone", "Unauthorized", ...
  std::string message;
};
// From a response body that should be a Status; falls back to `http_status` and the
// first 200 bytes of the body when it is not one.
ApiError parseStatus(std::string_view body, int http_status);

// One page of a list: {"kind":"PodList","metadata":{"resourceVersion":"N","continue":"..."},"items":[...]}.
struct ListPage {
  std::string resource_version;
  std::string continue_token;
  std::vector<nlohmann::json> items;
};
Result<ListPage> parseList(std::string_view body);

// One line of a watch stream: {"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":{...}}.
enum class EventType { kAdded, kModified, kDeleted, kBookmark, kError };
struct WatchEvent {
  EventType type = EventType::kAdded;
  nlohmann::json object;
  std::string resource_version;  // the object's metadata.resourceVersion (bookmarks: the new RV)
  ApiError error;                // kError only: the Status (code 410 = "too old resource version")
};
// An unknown type, bad JSON or a missing object is an error naming what was wrong.
Result<WatchEvent> parseWatchEvent(std::string_view line);

}  // namespace meshprobe::aggregator::kube
