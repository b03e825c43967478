#include "aggregator/kube/node_status.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstdio>
#include <ctime>

namespace meshprobe::aggregator::kube {

namespace asio = boost::asio;
using asio::awaitable;
using nlohmann::json;
using std::chrono::steady_clock;
using std::chrono::system_clock;

namespace {

// The apiserver keeps an Event message up to 1 KiB (events.k8s.io validation); a summary is
// far shorter, but a message must not make the request fail.
std::string clip(std::string s, size_t max = 1024) {
  if (s.size() > max) s.resize(max);
  return s;
}

bool blames(const NodeFinding& f, const std::string& node) {
  return std::find(f.nodes.begin(), f.nodes.end(), node) != f.nodes.end();
}

// The Status message of an error answer, or its body.
std::string statusMessage(const HttpResult& r) {
  const json j = json::parse(r.body, nullptr, false);
  if (j.is_object() && j.contains("message") && j["message"].is_string()) return j["message"].get<std::string>();
  return r.body.substr(0, 200);
}

}  // namespace

ProblemCondition desiredCondition(const std::vector<NodeFinding>& findings, const std::string& node, int min_severity) {
  const NodeFinding* worst = nullptr;
  for (const auto& f : findings) {
    if (f.severity < min_severity || !blames(f, node)) continue;
    if (worst == nullptr || f.severity > worst->severity ||
        (f.severity == worst->severity && std::tie(f.code, f.id) < std::tie(worst->code, worst->id))) {
      worst = &f;
    }
  }
  if (worst == nullptr) return {"False", kNoProblemReason, kNoProblemMessage};
  return {"True", worst->code, clip(worst->summary)};
}

std::string rfc3339(system_clock::time_point t) {
  const std::time_t secs = system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

json conditionPatch(const ProblemCondition& c, system_clock::time_point now, bool transition) {
  json cond{{"type", kProblemConditionType},
            {"status", c.status},
            {"reason", c.reason},
            {"message", c.message},
            {"lastHeartbeatTime", rfc3339(now)}};
  if (transition) cond["lastTransitionTime"] = rfc3339(now);
  return json{{"status", {{"conditions", json::array({cond})}}}};
}

ConditionWrite planConditionWrite(const std::optional<WrittenCondition>& last,
                                  const std::optional<ProblemCondition>& observed, const ProblemCondition& want,
                                  steady_clock::time_point now, steady_clock::duration heartbeat) {
  if (last) {
    if (last->condition.status != want.status) return ConditionWrite::kTransition;
    if (!(last->condition == want)) return ConditionWrite::kUpdate;
    return now - last->at >= heartbeat ? ConditionWrite::kHeartbeat : ConditionWrite::kNone;
  }
  // Not written by this reporter yet (a new leader): the node's own condition says whether
  // the status flips; either way the first write refreshes the heartbeat.
  if (observed && observed->status == want.status) return ConditionWrite::kUpdate;
  return ConditionWrite::kTransition;
}

NodeFindingSet nodeFindingSet(const std::vector<NodeFinding>& findings, const std::set<std::string>& nodes,
                              int min_severity) {
  NodeFindingSet out;
  for (const auto& f : findings) {
    if (f.severity < min_severity) continue;
    for (const auto& n : f.nodes) {
      if (nodes.contains(n)) out.emplace(NodeFindingKey{n, f.id}, f);
    }
  }
  return out;
}

std::vector<EventChange> eventChanges(const NodeFindingSet& before, const NodeFindingSet& after) {
  std::vector<EventChange> out;
  for (const auto& [key, f] : after) {
    if (!before.contains(key)) out.push_back({key.first, f, true});
  }
  for (const auto& [key, f] : before) {
    if (!after.contains(key)) out.push_back({key.first, f, false});
  }
  return out;
}

EventSpamFilter::EventSpamFilter(int burst, steady_clock::duration refill, size_t max_keys)
    : burst_(burst), refill_(refill), max_keys_(max_keys) {}

bool EventSpamFilter::allow(const std::string& key, steady_clock::time_point now) {
  auto it = buckets_.find(key);
  if (it == buckets_.end()) {
    if (buckets_.size() >= max_keys_) {  // evict the least recently used bucket
      auto lru = std::min_element(buckets_.begin(), buckets_.end(),
                                  [](const auto& a, const auto& b) { return a.second.used < b.second.used; });
      buckets_.erase(lru);
    }
    it = buckets_.emplace(key, Bucket{static_cast<double>(burst_), now, 0}).first;
  }
  Bucket& b = it->second;
  b.used = ++tick_;
  if (now > b.updated) {
    b.tokens = std::min<double>(
        burst_, b.tokens + std::chrono::duration<double>(now - b.updated) / std::chrono::duration<double>(refill_));
    b.updated = now;
  }
  if (b.tokens < 1.0) return false;
  b.tokens -= 1.0;
  return true;
}

json nodeEvent(const std::string& ns, const std::string& node, const std::string& node_uid, const EventChange& change,
               system_clock::time_point now) {
  char suffix[32];
  std::snprintf(suffix, sizeof suffix, "%llx",
                static_cast<unsigned long long>(
                    std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count()));
  const std::string ts = rfc3339(now);
  return json{{"apiVersion", "v1"},
              {"kind", "Event"},
              {"metadata", {{"name", node + "." + suffix}, {"namespace", ns}}},
              // The kubelet and NPD use the node's name as its uid in node events; the real uid when the
              // watch has it.
              {"involvedObject",
               {{"kind", "Node"}, {"apiVersion", "v1"}, {"name", node}, {"uid", node_uid.empty() ? node : node_uid}}},
              {"reason", change.finding.code},
              {"message", clip(change.onset ? change.finding.summary : "Cleared: " + change.finding.summary)},
              {"type", change.onset ? "Warning" : "Normal"},
              {"source", {{"component", kEventComponent}}},
              {"reportingComponent", kEventComponent},
              {"firstTimestamp", ts},
              {"lastTimestamp", ts},
              {"count", 1}};
}

NodeProblemReporter::NodeProblemReporter(std::shared_ptr<KubeClient> client, const KubeView& view,
                                         NodeProblemOptions options)
    : client_(std::move(client)),
      view_(view),
      options_(std::move(options)),
      spam_(options_.event_burst, options_.event_refill) {}

NodeProblemReporter::~NodeProblemReporter() { stop(); }

void NodeProblemReporter::start(FindingsSource findings, std::function<bool()> is_leader) {
  if (ioc_) return;
  findings_ = std::move(findings);
  is_leader_ = std::move(is_leader);
  ioc_ = std::make_unique<asio::io_context>(1);
  asio::co_spawn(
      *ioc_, [this]() -> awaitable<void> { co_await run(); }, asio::detached);
  thread_ = std::thread([ioc = ioc_.get()] { ioc->run(); });
}

void NodeProblemReporter::stop() {
  if (!ioc_) return;
  ioc_->stop();
  if (thread_.joinable()) thread_.join();
  ioc_.reset();  // destroys the suspended coroutine: a request in flight closes its socket
}

NodeStatusCounters NodeProblemReporter::counters() const {
  std::lock_guard lock(mu_);
  return counters_;
}

awaitable<void> NodeProblemReporter::run() {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (true) {
    co_await pass();
    timer.expires_after(options_.interval);
    boost::system::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

awaitable<void> NodeProblemReporter::pass() {
  const auto objects = view_.objects();
  if (!objects->synced) co_return;
  {
    std::lock_guard lock(mu_);
    ++counters_.passes;
  }
  const std::vector<NodeFinding> findings = findings_ ? findings_() : std::vector<NodeFinding>{};
  std::set<std::string> names;
  for (const auto& [name, node] : objects->nodes) names.insert(name);
  NodeFindingSet current = nodeFindingSet(findings, names, options_.min_severity);
  if (is_leader_ && !is_leader_()) {
    // A follower writes nothing; when it leads, its first pass writes every node again.
    written_.clear();
    active_ = std::move(current);
    co_return;
  }

  for (const EventChange& change : eventChanges(active_, current)) {
    // Named locals, not temporaries in the co_await expression: GCC 12 destroys a conditional
    // expression's temporaries in a coroutine twice.
    std::string uid;
    if (const auto it = objects->nodes.find(change.node); it != objects->nodes.end()) uid = it->second.uid;
    co_await sendEvent(uid, change);
  }
  active_ = std::move(current);

  if (steady_clock::now() < paused_until_) co_return;
  for (const auto& [name, node] : objects->nodes) {
    const ProblemCondition want = desiredCondition(findings, name, options_.min_severity);
    std::optional<ProblemCondition> observed;
    for (const auto& c : node.conditions) {
      if (c.type == kProblemConditionType) observed = ProblemCondition{c.status, c.reason, c.message};
    }
    std::optional<WrittenCondition> last;
    if (const auto w = written_.find(name); w != written_.end()) last = w->second;
    const ConditionWrite how = planConditionWrite(last, observed, want, steady_clock::now(), options_.heartbeat);
    if (how == ConditionWrite::kNone) continue;
    if (!co_await writeCondition(name, want, how)) {
      // NPD's condition manager tries again after its resync period; so do we, for every node.
      paused_until_ = steady_clock::now() + options_.retry_after;
      co_return;
    }
  }
}

awaitable<bool> NodeProblemReporter::writeCondition(const std::string& node, const ProblemCondition& want,
                                                    ConditionWrite how) {
  const json patch = conditionPatch(want, system_clock::now(), how == ConditionWrite::kTransition);
  std::string target = "/api/v1/nodes/" + node + "/status";
  const auto r =
      co_await client_->send("PATCH", std::move(target), patch.dump(), "application/strategic-merge-patch+json");
  if (!r.ok() || r->status != 200) {
    failed("patch", "nodes/status", "node " + node + " condition " + kProblemConditionType, r);
    co_return false;
  }
  written_[node] = WrittenCondition{want, steady_clock::now()};
  std::lock_guard lock(mu_);
  ++counters_.condition_writes;
  if (how == ConditionWrite::kTransition)
    spdlog::info("node {}: {}={} ({})", node, kProblemConditionType, want.status, want.reason);
  co_return true;
}

awaitable<void> NodeProblemReporter::sendEvent(const std::string& node_uid, const EventChange& change) {
  const auto now = system_clock::now();
  json event = nodeEvent(options_.event_namespace, change.node, node_uid, change, now);
  const json& obj = event["involvedObject"];
  // client-go getSpamKey (source component + host, then the involved object).
  const std::string spam_key =
      std::string(kEventComponent) + "Node" + obj["name"].get<std::string>() + obj["uid"].get<std::string>() + "v1";
  if (!spam_.allow(spam_key, steady_clock::now())) {
    std::lock_guard lock(mu_);
    ++counters_.events_throttled;
    co_return;
  }
  // client-go getEventKey: the same event (object, type, reason, message) sent before is
  // PATCHed with count + 1 and a new lastTimestamp (and message) instead of created again.
  const std::string key =
      spam_key + event["type"].get<std::string>() + change.finding.code + event["message"].get<std::string>();
  const std::string base = "/api/v1/namespaces/" + options_.event_namespace + "/events";
  auto seen = sent_.find(key);
  if (seen != sent_.end()) {
    SentEvent& s = seen->second;
    const json patch{{"count", s.count + 1}, {"lastTimestamp", rfc3339(now)}, {"message", event["message"]}};
    const auto r =
        co_await client_->send("PATCH", base + "/" + s.name, patch.dump(), "application/strategic-merge-patch+json");
    if (r.ok() && r->status == 200) {
      s.count += 1;
      s.used = ++sent_tick_;
      std::lock_guard lock(mu_);
      ++counters_.events_aggregated;
      co_return;
    }
    if (!r.ok() || r->status != 404) {
      failed("patch", "events", "event " + s.name, r);
      co_return;
    }
    // The event expired (the apiserver's event TTL): client-go creates it again under the
    // same name with the new count.
    event["metadata"]["name"] = s.name;
    event["count"] = s.count + 1;
    event["firstTimestamp"] = s.first_timestamp;
  }
  const auto r = co_await client_->send("POST", base, event.dump(), "application/json");
  if (!r.ok() || r->status != 201) {
    failed("create", "events", "event " + change.finding.code + " on node " + change.node, r);
    co_return;
  }
  if (sent_.size() >= 4096 && !sent_.contains(key)) {  // client-go's LRU size
    auto lru = std::min_element(sent_.begin(), sent_.end(),
                                [](const auto& a, const auto& b) { return a.second.used < b.second.used; });
    sent_.erase(lru);
  }
  sent_[key] = SentEvent{event["metadata"]["name"].get<std::string>(), event["count"].get<int>(),
                         event["firstTimestamp"].get<std::string>(), ++sent_tick_};
  std::lock_guard lock(mu_);
  ++counters_.events_created;
}

bool NodeProblemReporter::failed(const std::string& verb, const std::string& resource, const std::string& what,
                                 const Result<HttpResult>& r) {
  const bool denied = r.ok() && (r->status == 401 || r->status == 403);
  {
    std::lock_guard lock(mu_);
    ++(denied ? counters_.errors_forbidden : counters_.errors_other);
  }
  if (denied) {
    // Once per (verb, resource): RBAC's answer names what the ClusterRole lacks.
    if (logged_forbidden_.insert({verb, resource}).second) {
      spdlog::error(
          "Kubernetes API refuses to {} {} (HTTP {}): {}; the aggregator's ClusterRole needs \"{}\" on "
          "\"{}\"",
          verb, resource, r->status, statusMessage(*r), verb, resource);
    }
    return true;
  }
  if (!r.ok()) {
    spdlog::warn("{}: {}", what, r.error().message);
  } else {
    spdlog::warn("{}: HTTP {}: {}", what, r->status, statusMessage(*r));
  }
  return false;
}

}  // namespace meshprobe::aggregator::kube
