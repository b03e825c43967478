// meshprobe-hostile-grpc: hostile clients for the aggregator's gRPC port, for
// bench/hostile_input.sh. Plaintext only (the aggregator runs with --insecure there).
//
//   --mode listnodes    --count N                  N ListNodes calls: p50/p99, errors
//   --mode oversize     --mib M --repeat R         R Collector streams whose first message is
//                       [--parallel K]             a Hello of M MiB, and R GetNode calls with
//                                                  an M MiB node name: each call's status;
//                                                  K such clients at once
//   --mode idle-streams --count N --hold S         N Collector streams (100 per TCP
//                       --probes P                 connection) that never send a message,
//                                                  held S seconds while P ListNodes calls run
//                                                  on another connection; how many streams
//                                                  the server ended, and with what
//
// Output: one "key=value ..." line per result, for the script to copy.

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "meshprobe/v1/collector.grpc.pb.h"
#include "meshprobe/v1/query.grpc.pb.h"

namespace {

namespace v1 = meshprobe::v1;
using Steady = std::chrono::steady_clock;

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t idx = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5));
  return v[idx];
}

// Each channel its own TCP connection.
std::shared_ptr<grpc::Channel> makeChannel(const std::string& target, int index) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt("meshprobe.hostile.channel", index);
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
}

struct Latencies {
  std::vector<double> ms;
  uint64_t errors = 0;
  std::string last_error;
};

void listNodesOnce(v1::Query::Stub& stub, Latencies& out) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));  // slower counts as an error
  v1::ListNodesResponse r;
  const auto t0 = Steady::now();
  const grpc::Status st = stub.ListNodes(&ctx, {}, &r);
  const auto t1 = Steady::now();
  if (!st.ok()) {
    ++out.errors;
    out.last_error = std::to_string(st.error_code()) + " " + st.error_message();
    return;
  }
  out.ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
}

void printLatencies(const char* what, const Latencies& l) {
  std::printf("%s answered=%zu errors=%llu p50_ms=%.3f p99_ms=%.3f%s%s\n", what, l.ms.size(),
              static_cast<unsigned long long>(l.errors), percentile(l.ms, 0.5), percentile(l.ms, 0.99),
              l.last_error.empty() ? "" : " last_error=", l.last_error.c_str());
  std::fflush(stdout);
}

int listNodes(const std::string& target, int count) {
  auto stub = v1::Query::NewStub(makeChannel(target, -1));
  Latencies l;
  for (int i = 0; i < count; ++i) listNodesOnce(*stub, l);
  printLatencies("listnodes", l);
  return l.errors == 0 ? 0 : 1;
}

// `parallel` clients at once, each on its own connection, `repeat` rounds each.
int oversize(const std::string& target, int mib, int repeat, int parallel) {
  const std::string big(static_cast<size_t>(mib) << 20, 'x');
  std::atomic<int> unexpected{0};
  std::mutex out_mu;
  auto client = [&](int k) {
    for (int i = 0; i < repeat; ++i) {
      auto channel = makeChannel(target, k * repeat + i);
      {
        auto stub = v1::Collector::NewStub(channel);
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
        auto stream = stub->Connect(&ctx);
        v1::AgentMessage msg;
        msg.mutable_hello()->set_node_name("hostile");
        msg.mutable_hello()->set_agent_version(big);
        const auto t0 = Steady::now();
        const bool wrote = stream->Write(msg);
        stream->WritesDone();
        v1::AggregatorMessage in;
        while (stream->Read(&in)) {
        }
        const grpc::Status st = stream->Finish();
        const double ms = std::chrono::duration<double, std::milli>(Steady::now() - t0).count();
        std::lock_guard lock(out_mu);
        std::printf("oversize call=Collector.Connect mib=%d wrote=%d code=%d ms=%.1f message=\"%s\"\n", mib,
                    wrote ? 1 : 0, st.error_code(), ms, st.error_message().c_str());
        // A Hello slower to arrive than the aggregator's Hello timeout is ended by that.
        if (st.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED &&
            st.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED)
          ++unexpected;
      }
      {
        auto stub = v1::Query::NewStub(channel);
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
        v1::GetNodeRequest req;
        req.set_name(big);
        v1::GetNodeResponse resp;
        const auto t0 = Steady::now();
        const grpc::Status st = stub->GetNode(&ctx, req, &resp);
        const double ms = std::chrono::duration<double, std::milli>(Steady::now() - t0).count();
        std::lock_guard lock(out_mu);
        std::printf("oversize call=Query.GetNode mib=%d code=%d ms=%.1f message=\"%s\"\n", mib, st.error_code(), ms,
                    st.error_message().c_str());
        if (st.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED) ++unexpected;
      }
      std::fflush(stdout);
    }
  };
  std::vector<std::thread> threads;
  for (int k = 0; k < parallel; ++k) threads.emplace_back(client, k);
  for (auto& t : threads) t.join();
  return unexpected == 0 ? 0 : 1;
}

// A Collector stream that never writes: it reads until the server ends the call.
class SilentStream final : public grpc::ClientBidiReactor<v1::AgentMessage, v1::AggregatorMessage> {
 public:
  SilentStream(v1::Collector::Stub& stub, Steady::time_point start) : start_(start) {
    stub.async()->Connect(&ctx_, this);
    StartRead(&in_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (ok) {
      ++messages_;
      StartRead(&in_);
    }
  }
  void OnDone(const grpc::Status& s) override {
    std::lock_guard lock(mu_);
    status_ = s;
    done_at_ = Steady::now();
    done_ = true;
    cv_.notify_all();
  }
  void cancel() { ctx_.TryCancel(); }
  bool waitDone(Steady::time_point deadline) {
    std::unique_lock lock(mu_);
    return cv_.wait_until(lock, deadline, [this] { return done_; });  // bounded by `deadline`
  }
  // Whether it ended before `t`, and how.
  bool doneBefore(Steady::time_point t, grpc::StatusCode* code, double* after_s) {
    std::lock_guard lock(mu_);
    if (!done_ || done_at_ > t) return false;
    *code = status_.error_code();
    *after_s = std::chrono::duration<double>(done_at_ - start_).count();
    return true;
  }
  uint64_t messages() const { return messages_.load(); }

 private:
  grpc::ClientContext ctx_;
  v1::AggregatorMessage in_;
  Steady::time_point start_;
  std::atomic<uint64_t> messages_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  grpc::Status status_;
  Steady::time_point done_at_;
};

int idleStreams(const std::string& target, int count, int hold_s, int probes) {
  auto query = v1::Query::NewStub(makeChannel(target, -1));
  Latencies base;
  for (int i = 0; i < probes; ++i) listNodesOnce(*query, base);
  printLatencies("idle_streams_baseline_listnodes", base);

  constexpr int kPerChannel = 100;
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<std::unique_ptr<v1::Collector::Stub>> stubs;
  std::vector<std::unique_ptr<SilentStream>> streams;
  const auto start = Steady::now();
  for (int i = 0; i < count; ++i) {
    if (i % kPerChannel == 0) {
      channels.push_back(makeChannel(target, i / kPerChannel));
      stubs.push_back(v1::Collector::NewStub(channels.back()));
    }
    streams.push_back(std::make_unique<SilentStream>(*stubs.back(), start));
  }
  const auto opened = Steady::now();
  std::printf("idle_streams opened=%d connections=%zu open_ms=%.1f\n", count, channels.size(),
              std::chrono::duration<double, std::milli>(opened - start).count());
  std::fflush(stdout);

  // ListNodes spread over the hold, on a connection of its own.
  const auto hold_end = start + std::chrono::seconds(hold_s);
  Latencies during;
  const auto step = std::chrono::duration_cast<Steady::duration>(std::chrono::duration<double>(hold_s) * 0.9 / probes);
  for (int i = 0; i < probes; ++i) {
    std::this_thread::sleep_until(start + std::chrono::seconds(1) + step * i);  // pacing, not synchronisation
    listNodesOnce(*query, during);
  }
  printLatencies("idle_streams_during_listnodes", during);
  std::this_thread::sleep_until(hold_end);

  std::map<int, int> ended;  // status code -> streams the server ended during the hold
  double first_end = -1, last_end = -1;
  uint64_t messages = 0;
  for (auto& s : streams) {
    grpc::StatusCode code{};
    double after = 0;
    messages += s->messages();
    if (s->doneBefore(hold_end, &code, &after)) {
      ++ended[code];
      first_end = first_end < 0 ? after : std::min(first_end, after);
      last_end = std::max(last_end, after);
    }
  }
  int ended_total = 0;
  std::string by_code;
  for (auto [code, n] : ended) {
    ended_total += n;
    by_code += " code" + std::to_string(code) + "=" + std::to_string(n);
  }
  std::printf(
      "idle_streams hold_s=%d ended_by_server=%d still_open=%d messages_received=%llu first_end_s=%.1f "
      "last_end_s=%.1f%s\n",
      hold_s, ended_total, count - ended_total, static_cast<unsigned long long>(messages), first_end, last_end,
      by_code.c_str());
  std::fflush(stdout);

  for (auto& s : streams) s->cancel();
  const auto deadline = Steady::now() + std::chrono::seconds(10);
  int unfinished = 0;
  for (auto& s : streams)
    if (!s->waitDone(deadline)) ++unfinished;
  if (unfinished > 0) {
    std::printf("idle_streams unfinished_after_cancel=%d\n", unfinished);
    std::fflush(stdout);
    std::_Exit(1);  // reactors still referenced by gRPC: do not destroy them
  }
  Latencies after;
  for (int i = 0; i < probes; ++i) listNodesOnce(*query, after);
  printLatencies("idle_streams_after_listnodes", after);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> a;
  for (int i = 1; i + 1 < argc; i += 2) a[argv[i]] = argv[i + 1];
  auto get = [&](const char* k, const char* d) { return a.count(k) ? a[k] : std::string(d); };
  const std::string mode = get("--mode", ""), target = get("--target", "");
  if (target.empty() || (argc % 2) != 1) {
    std::fprintf(
        stderr,
        "usage: %s --target HOST:PORT --mode listnodes [--count N] | oversize [--mib M --repeat R --parallel K] | "
        "idle-streams [--count N --hold S --probes P]\n",
        argv[0]);
    return 2;
  }
  if (mode == "listnodes") return listNodes(target, std::stoi(get("--count", "50")));
  if (mode == "oversize")
    return oversize(target, std::stoi(get("--mib", "64")), std::stoi(get("--repeat", "3")),
                    std::stoi(get("--parallel", "1")));
  if (mode == "idle-streams")
    return idleStreams(target, std::stoi(get("--count", "1000")), std::stoi(get("--hold", "60")),
                       std::stoi(get("--probes", "50")));
  std::fprintf(stderr, "unknown --mode '%s'\n", mode.c_str());
  return 2;
}
