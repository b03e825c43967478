#include "aggregator/kube/leader.h"

#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <algorithm>
#include <ctime>
#include <random>

#include "common/duration.h"

namespace meshprobe::aggregator::kube {

namespace asio = boost::asio;
using nlohmann::json;

std::string formatMicroTime(std::chrono::system_clock::time_point t) {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(us / 1'000'000);
  long frac = static_cast<long>(us % 1'000'000);
  if (frac < 0) {
    frac += 1'000'000;
    --secs;
  }
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
  return buf;
}

std::optional<std::chrono::system_clock::time_point> parseMicroTime(std::string_view text) {
  // YYYY-MM-DDTHH:MM:SS[.fraction](Z|+hh:mm|-hh:mm), as RFC 3339 (Go's time.RFC3339Nano).
  auto digits = [&](size_t pos, size_t n, int* out) {
    if (pos + n > text.size()) return false;
    int v = 0;
    for (size_t i = pos; i < pos + n; ++i) {
      if (text[i] < '0' || text[i] > '9') return false;
      v = v * 10 + (text[i] - '0');
    }
    *out = v;
    return true;
  };
  int year, mon, day, hour, min, sec;
  if (!digits(0, 4, &year) || text.size() < 20 || text[4] != '-' || !digits(5, 2, &mon) || text[7] != '-' ||
      !digits(8, 2, &day) || (text[10] != 'T' && text[10] != 't') || !digits(11, 2, &hour) || text[13] != ':' ||
      !digits(14, 2, &min) || text[16] != ':' || !digits(17, 2, &sec)) {
    return std::nullopt;
  }
  if (mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60) return std::nullopt;
  size_t pos = 19;
  int64_t nanos = 0;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    int64_t scale = 100'000'000;
    const size_t start = pos;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      nanos += (text[pos] - '0') * scale;
      scale /= 10;
      ++pos;
    }
    if (pos == start) return std::nullopt;
  }
  int offset_min = 0;
  if (pos < text.size() && (text[pos] == 'Z' || text[pos] == 'z')) {
    ++pos;
  } else if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
    int oh, om;
    if (!digits(pos + 1, 2, &oh) || pos + 3 >= text.size() || text[pos + 3] != ':' || !digits(pos + 4, 2, &om)) {
      return std::nullopt;
    }
    offset_min = (text[pos] == '-' ? -1 : 1) * (oh * 60 + om);
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != text.size()) return std::nullopt;
  const std::chrono::year_month_day ymd{std::chrono::year(year), std::chrono::month(static_cast<unsigned>(mon)),
                                        std::chrono::day(static_cast<unsigned>(day))};
  if (!ymd.ok()) return std::nullopt;
  const auto t = std::chrono::sys_days(ymd) + std::chrono::hours(hour) + std::chrono::minutes(min) +
                 std::chrono::seconds(sec) + std::chrono::nanoseconds(nanos) - std::chrono::minutes(offset_min);
  return std::chrono::time_point_cast<std::chrono::system_clock::duration>(t);
}

LeaseRecord leaseRecordFromJson(const json& lease) {
  LeaseRecord r;
  if (!lease.is_object() || !lease.contains("spec") || !lease["spec"].is_object()) return r;
  const json& spec = lease["spec"];
  auto str = [&](const char* k) { return spec.contains(k) && spec[k].is_string() ? spec[k].get<std::string>() : ""; };
  auto num = [&](const char* k) { return spec.contains(k) && spec[k].is_number_integer() ? spec[k].get<int>() : 0; };
  r.holder_identity = str("holderIdentity");
  r.lease_duration_seconds = num("leaseDurationSeconds");
  r.acquire_time = str("acquireTime");
  r.renew_time = str("renewTime");
  r.lease_transitions = num("leaseTransitions");
  return r;
}

json leaseSpecJson(const LeaseRecord& r) {
  // LeaderElectionRecordToLeaseSpec: every field is set, holderIdentity even when "".
  return json{{"holderIdentity", r.holder_identity},
              {"leaseDurationSeconds", r.lease_duration_seconds},
              {"acquireTime", r.acquire_time},
              {"renewTime", r.renew_time},
              {"leaseTransitions", r.lease_transitions}};
}

std::string validateLeaderElection(const LeaderElectionConfig& c) {
  if (c.identity.empty()) return "the identity must not be empty";
  if (c.lease_name.empty() || c.lease_namespace.empty()) return "the Lease's name and namespace must not be empty";
  if (c.lease_duration < std::chrono::seconds(1)) return "the lease duration must be at least 1s";
  if (c.renew_deadline <= std::chrono::milliseconds(0) || c.retry_period <= std::chrono::milliseconds(0))
    return "the renew deadline and the retry period must be positive";
  // client-go's NewLeaderElector checks these two (with JitterFactor applied to the retry).
  if (c.renew_deadline >= c.lease_duration) return "the renew deadline must be shorter than the lease duration";
  if (c.retry_period >= c.renew_deadline) return "the retry period must be shorter than the renew deadline";
  return "";
}

LeaderElector::LeaderElector(std::shared_ptr<KubeClient> client, const Clock& clock, LeaderElectionConfig config)
    : client_(std::move(client)),
      clock_(clock),
      config_(std::move(config)),
      lease_path_("/apis/coordination.k8s.io/v1/namespaces/" + config_.lease_namespace + "/leases/" +
                  config_.lease_name) {
  if (!config_.random) {
    auto gen = std::make_shared<std::mt19937>(std::random_device{}());
    auto mu = std::make_shared<std::mutex>();
    config_.random = [gen, mu] {
      std::lock_guard lock(*mu);
      return std::uniform_real_distribution<double>(0.0, 1.0)(*gen);
    };
  }
}

LeaderElector::~LeaderElector() { stop(); }

void LeaderElector::start() {
  if (thread_.joinable()) return;
  thread_ = std::jthread([this](std::stop_token st) { run(st); });
}

void LeaderElector::stop() {
  if (!thread_.joinable()) return;
  thread_.request_stop();
  thread_.join();
}

std::string LeaderElector::leader() const {
  std::lock_guard lock(mu_);
  return observed_.holder_identity;
}

std::chrono::nanoseconds LeaderElector::jittered() const {
  const double extra = config_.jitter_factor > 0 ? config_.random() * config_.jitter_factor : 0.0;
  return config_.retry_period + std::chrono::duration_cast<std::chrono::nanoseconds>(
                                    std::chrono::duration<double, std::milli>(config_.retry_period.count() * extra));
}

std::chrono::steady_clock::time_point LeaderElector::observedAt(const LeaseRecord& changed,
                                                               std::chrono::steady_clock::time_point now) const {
  // client-go: when we saw it (`now`), up to one poll after it was written. A renewal by the
  // holder we saw before is placed where the holder's own clock puts it relative to the
  // renewal before: observed_time_ + (its renewTime - the previous renewTime). Only the
  // difference of two timestamps the same holder wrote is used, so the offset between the
  // two machines' clocks cancels out. The estimate must lie between the previous read
  // (the record was still the old one then) and `now`; a holder whose clock says otherwise
  // (stepped, or not a steady writer) gets client-go's `now`.
  if (changed.holder_identity.empty() || changed.holder_identity != observed_.holder_identity ||
      changed.holder_identity == config_.identity || !last_read_asked_) {
    return now;
  }
  const auto before = parseMicroTime(observed_.renew_time);
  const auto after = parseMicroTime(changed.renew_time);
  if (!before || !after || *after <= *before) return now;
  const auto estimate =
      observed_time_ + std::chrono::duration_cast<std::chrono::steady_clock::duration>(*after - *before);
  if (estimate < *last_read_asked_ || estimate > now) return now;
  return estimate;
}

std::chrono::nanoseconds LeaderElector::untilNextAttempt() const {
  const auto retry = jittered();
  std::string holder;
  {
    std::lock_guard lock(mu_);
    holder = observed_.holder_identity;
  }
  if (holder.empty() || holder == config_.identity) return retry;
  // Held by another: client-go tries again only at its next jittered retry, up to 1.2
  // RetryPeriods after the Lease expired on our clock. Trying at the expiry instead
  // changes nothing about safety (the holder had a whole LeaseDuration, measured on our
  // clock since we saw its last renewal) and takes a lost leader's place up to a retry
  // period sooner.
  const auto expiry = observed_time_ + config_.lease_duration - clock_.monotonicNow();
  if (expiry < std::chrono::nanoseconds(0)) return retry;
  return std::min<std::chrono::nanoseconds>(retry, expiry + std::chrono::milliseconds(1));
}

Result<HttpResult> LeaderElector::call(const std::string& method, const std::string& target, const std::string& body) {
  asio::io_context ioc;
  std::optional<Result<HttpResult>> out;
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        // Two statements: GCC 12 destroys a co_await's result twice inside a conditional expression.
        if (method == "GET") {
          out = co_await client_->get(target);
        } else {
          out = co_await client_->send(method, target, body);
        }
      },
      asio::detached);
  ioc.run();
  if (!out) return Error{method + " " + target + ": no result"};
  return std::move(*out);
}

void LeaderElector::logError(const std::string& what) {
  // One line per distinct error, not one per retry.
  if (what == last_error_) return;
  last_error_ = what;
  spdlog::warn("leader election: {}", what);
}

namespace {
std::string statusText(const HttpResult& r) {
  const json st = json::parse(r.body, nullptr, false);
  std::string msg = st.is_object() && st.contains("message") && st["message"].is_string()
                        ? st["message"].get<std::string>()
                        : r.body.substr(0, 200);
  return "HTTP " + std::to_string(r.status) + ": " + msg;
}
}  // namespace

bool LeaderElector::tryAcquireOrRenew() {
  const std::string now_text = formatMicroTime(clock_.wallNow());
  LeaseRecord record{config_.identity, static_cast<int>(config_.lease_duration.count() / 1000), now_text, now_text, 0};

  // 1. Obtain or create the record.
  const auto asked = clock_.monotonicNow();  // the record read is no older than this
  auto got = call("GET", lease_path_, "");
  if (!got) {
    logError("cannot read Lease " + describe() + ": " + got.error().message);
    return false;
  }
  if (got->status == 404) {
    json lease{{"apiVersion", "coordination.k8s.io/v1"},
               {"kind", "Lease"},
               {"metadata", {{"name", config_.lease_name}, {"namespace", config_.lease_namespace}}},
               {"spec", leaseSpecJson(record)}};
    auto created =
        call("POST", "/apis/coordination.k8s.io/v1/namespaces/" + config_.lease_namespace + "/leases", lease.dump());
    if (!created) {
      logError("cannot create Lease " + describe() + ": " + created.error().message);
      return false;
    }
    if (created->status != 201 && created->status != 200) {
      // 409 AlreadyExists: another replica created it first; read it at the next retry.
      logError("cannot create Lease " + describe() + ": " + statusText(*created));
      return false;
    }
    lease_ = json::parse(created->body, nullptr, false);
    {
      std::lock_guard lock(mu_);
      observed_ = record;
    }
    observed_time_ = clock_.monotonicNow();
    last_error_.clear();
    return true;
  }
  if (got->status != 200) {
    logError("cannot read Lease " + describe() + ": " + statusText(*got));
    return false;
  }
  json current = json::parse(got->body, nullptr, false);
  if (!current.is_object()) {
    logError("Lease " + describe() + " is not JSON");
    return false;
  }
  const LeaseRecord old = leaseRecordFromJson(current);
  lease_ = current;

  // 2. Check the identity and the time: expiry is measured on OUR clock from when the
  // record changed (see observedAt).
  const auto now = clock_.monotonicNow();
  bool i_hold;
  {
    std::lock_guard lock(mu_);
    if (!(old == observed_)) {
      observed_time_ = observedAt(old, now);
      observed_ = old;
    }
    i_hold = observed_.holder_identity == config_.identity;
  }
  last_read_asked_ = asked;
  if (!old.holder_identity.empty() && observed_time_ + config_.lease_duration > now && !i_hold) {
    last_error_.clear();
    return false;  // held by another and not expired (on our clock)
  }

  // 3. Update: a renewal keeps acquireTime and leaseTransitions; a takeover counts one more.
  if (i_hold) {
    record.acquire_time = old.acquire_time;
    record.lease_transitions = old.lease_transitions;
  } else {
    record.lease_transitions = old.lease_transitions + 1;
  }
  json updated = current;
  updated["spec"] = leaseSpecJson(record);
  auto put = call("PUT", lease_path_, updated.dump());
  if (!put) {
    logError("cannot update Lease " + describe() + ": " + put.error().message);
    return false;
  }
  if (put->status != 200) {
    // 409 Conflict: the Lease changed since we read it (another candidate won); try later.
    logError("cannot update Lease " + describe() + ": " + statusText(*put));
    return false;
  }
  lease_ = json::parse(put->body, nullptr, false);
  {
    std::lock_guard lock(mu_);
    observed_ = record;
  }
  observed_time_ = clock_.monotonicNow();
  last_error_.clear();
  return true;
}

bool LeaderElector::release() {
  if (!leading_.load() || !lease_.is_object()) return true;
  const std::string now_text = formatMicroTime(clock_.wallNow());
  LeaseRecord record;
  {
    std::lock_guard lock(mu_);
    record = LeaseRecord{"", 1, now_text, now_text, observed_.lease_transitions};
  }
  json updated = lease_;
  updated["spec"] = leaseSpecJson(record);
  auto put = call("PUT", lease_path_, updated.dump());
  leading_ = false;
  if (!put || put->status != 200) {
    spdlog::error("leader election: failed to release Lease {}: {}", describe(),
                  put ? statusText(*put) : put.error().message);
    return false;
  }
  {
    std::lock_guard lock(mu_);
    observed_ = record;
  }
  observed_time_ = clock_.monotonicNow();
  spdlog::info("leader election: released Lease {}", describe());
  return true;
}

void LeaderElector::reportTransition() {
  const std::string holder = leader();
  if (reported_once_ && holder == reported_leader_) return;
  reported_once_ = true;
  reported_leader_ = holder;
  if (holder.empty() || holder == config_.identity) return;  // our own transitions are logged by run()
  spdlog::info("leader election: the leader is {} (Lease {})", holder, describe());
}

void LeaderElector::run(std::stop_token stop) {
  spdlog::info("leader election: {} attempting to acquire Lease {} (lease {}, renew deadline {}, retry {})",
               config_.identity, describe(), formatDuration(config_.lease_duration),
               formatDuration(config_.renew_deadline), formatDuration(config_.retry_period));
  while (!stop.stop_requested()) {
    // Acquire: every RetryPeriod with jitter until it succeeds.
    while (true) {
      const bool ok = tryAcquireOrRenew();
      reportTransition();
      if (ok) break;
      if (!clock_.waitFor(untilNextAttempt(), stop)) goto stopping;
    }
    leading_ = true;
    spdlog::info("leader election: {} became leader (acquired Lease {})", config_.identity, describe());
    // Renew: every RetryPeriod; give up when nothing succeeded within RenewDeadline.
    while (true) {
      if (!clock_.waitFor(config_.retry_period, stop)) goto stopping;
      const auto started = clock_.monotonicNow();
      bool renewed = false;
      while (true) {
        renewed = tryAcquireOrRenew();
        if (renewed) break;
        if (!clock_.waitFor(config_.retry_period, stop)) goto stopping;
        if (clock_.monotonicNow() - started >= config_.renew_deadline) break;
      }
      reportTransition();
      if (!renewed) {
        leading_ = false;
        spdlog::error("leader election: {} lost leadership: failed to renew Lease {} within {}", config_.identity,
                      describe(), formatDuration(config_.renew_deadline));
        break;
      }
    }
  }
stopping:
  if (config_.release_on_stop) release();
  leading_ = false;
}

}  // namespace meshprobe::aggregator::kube
