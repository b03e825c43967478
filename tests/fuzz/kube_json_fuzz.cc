// The Kubernetes API's JSON as the aggregator's watcher reads it: a watch stream line
// (parseWatchEvent), a list page (parseList), an error body (parseStatus), and each Node,
// Namespace and Pod object of them (parseNode / parseNamespace / parsePod). The bytes come
// from the API server or whatever answers at its address. Seeds:
// tests/fuzz/corpus/kube_json (events, lists, a Status, objects with every field read).

#include "aggregator/kube/parse.h"
#include "tests/fuzz/fuzz_target.h"

using namespace meshprobe::aggregator::kube;

namespace {

// Ready means a condition Ready with status "True" was read, whatever else the object has.
bool readyCondition(const std::vector<Condition>& conditions) {
  for (const auto& c : conditions) {
    if (c.type == "Ready" && c.status == "True") return true;
  }
  return false;
}

void parseObject(const nlohmann::json& j) {
  const NodeObject node = parseNode(j);
  FUZZ_CHECK(node.ready == readyCondition(node.conditions));
  const NamespaceObject ns = parseNamespace(j);
  FUZZ_CHECK(ns.name.size() <= j.dump().size());
  const PodObject pod = parsePod(j);
  FUZZ_CHECK(pod.ready == readyCondition(pod.conditions));
  FUZZ_CHECK(pod.key().size() == pod.ns.size() + 1 + pod.name.size());
  (void)resourceVersionOf(j);
}

}  // namespace

MESHPROBE_FUZZ_TARGET(kube_json) {
  const std::string_view text = meshprobe::fuzz::asText(data);
  auto event = parseWatchEvent(text);
  if (event.ok()) {
    if (event.value().type == EventType::kError) {
      // An expired resource version makes the watcher list again, whether the Status says
      // so by its code or (as client-go reads it) by its reason alone.
      const ApiError& error = event.value().error;
      FUZZ_CHECK(error.code != 0 || (error.reason != "Expired" && error.reason != "Gone"));
    } else {
      parseObject(event.value().object);
    }
  } else {
    FUZZ_CHECK(!event.error().message.empty());
  }
  auto page = parseList(text);
  if (page.ok()) {
    for (const auto& item : page.value().items) parseObject(item);
  } else {
    FUZZ_CHECK(!page.error().message.empty());
  }
  const ApiError status = parseStatus(text, 500);
  FUZZ_CHECK(status.code != 0);
}
