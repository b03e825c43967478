#include "agent/http/agent_http.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

#include "agent/doctor/render.h"

namespace meshprobe::agent {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

HttpRequest get(const std::string& path) {
  HttpRequest r;
  r.method = "GET";
  r.target = path;
  r.path = path;
  return r;
}

DoctorReport report() {
  DoctorReport d;
  d.node = "node1";
  CheckResult ok;
  ok.name = "vxlan_device";
  ok.status = CheckStatus::kOk;
  ok.summary = "flannel.1 up";
  ok.duration = std::chrono::milliseconds(3);
  CheckResult fail;
  fail.name = "firewall";
  fail.status = CheckStatus::kFail;
  fail.summary = "INPUT drops udp/4789";
  fail.duration = std::chrono::milliseconds(250);
  Finding f;
  f.code = "VXLAN_PORT_FILTERED";
  f.nodes = {"node1"};
  f.summary = "drops";
  fail.findings.push_back(f);
  CheckResult skip;
  skip.name = "ztunnel";
  skip.status = CheckStatus::kSkip;
  CheckResult warn;
  warn.name = "istiod";
  warn.status = CheckStatus::kWarn;
  d.checks = {ok, fail, skip, warn};
  d.findings = {f};
  return d;
}

AgentStatus status(bool with_doctor) {
  AgentStatus s;
  s.node = "node1";
  if (with_doctor) s.doctor = report();
  ProberCounters p;
  p.sent = 100;
  p.timeouts = 7;
  p.send_errors = 1;
  p.dropped_late = 2;
  s.prober = p;
  s.targets = {{Layer::kUnderlay, 3}, {Layer::kOverlay, 3}};
  ProbeRotationStatus rot;
  rot.sparse = true;
  rot.per_round = 2;
  rot.coverage_rounds = 2;
  rot.skipped = 11;
  rot.targets_this_round = {{Layer::kUnderlay, 2}, {Layer::kOverlay, 1}};
  s.rotation = rot;
  ResponderCounters r;
  r.received = 90;
  r.dropped_rate_limited = 4;
  r.dropped_replayed = 6;
  s.responder = r;
  s.responder_bound = true;
  s.stream_connected = true;
  s.stream_reconnects = 2;
  s.report_buffer_dropped = 5;
  s.checks_running = 1;
  return s;
}

int promtool(const std::string& text, std::string* output) {
  const char* bin = "/usr/bin/promtool";
  if (access(bin, X_OK) != 0) return -1;
  char path[] = "/tmp/mp-agent-metrics-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0 || write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) return -2;
  close(fd);
  FILE* p = popen((std::string(bin) + " check metrics < " + path + " 2>&1").c_str(), "r");
  char buf[512];
  while (p && fgets(buf, sizeof buf, p)) *output += buf;
  int st = p ? pclose(p) : -1;
  unlink(path);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -3;
}

TEST(AgentMetricsTest, RendersContractAndOperatorSeries) {
  RttHistograms rtt;
  rtt.observe(Layer::kOverlay, std::chrono::microseconds(300));
  rtt.observe(Layer::kOverlay, std::chrono::milliseconds(3));
  rtt.observe(Layer::kUnderlay, std::chrono::microseconds(80));
  rtt.observe(Layer::kIstiod, std::chrono::milliseconds(1));  // no ISTIOD histogram: not counted
  const std::string m = renderAgentMetrics(status(true), rtt);

  EXPECT_THAT(m, HasSubstr("meshprobe_check_ok{check=\"vxlan_device\"} 1\n"));
  EXPECT_THAT(m, HasSubstr("meshprobe_check_ok{check=\"firewall\"} 0\n"));
  EXPECT_THAT(m, HasSubstr("meshprobe_check_ok{check=\"ztunnel\"} 1\n"));  // SKIP counts as ok
  EXPECT_THAT(m, HasSubstr("meshprobe_check_ok{check=\"istiod\"} 0\n"));   // WARN does not
  EXPECT_THAT(m, HasSubstr("meshprobe_check_duration_seconds{check=\"firewall\"} 0.25\n"));
  EXPECT_THAT(m, HasSubstr("# TYPE meshprobe_probe_rtt_seconds histogram\n"));
  EXPECT_THAT(m, HasSubstr("meshprobe_probe_rtt_seconds_bucket{layer=\"OVERLAY\",le=\"0.00025\"} 0\n"));
  EXPECT_THAT(m, HasSubstr("meshprobe_probe_rtt_seconds_bucket{layer=\"OVERLAY\",le=\"0.0005\"} 1\n"));
  EXPECT_THAT(m, HasSubstr("meshprobe_probe_rtt_seconds_bucket{layer=\"OVERLAY\",le=\"+Inf\"} 2\n"));
  EXPECT_THAT(m, HasSubstr("meshprobe_probe_rtt_seconds_count{layer=\"OVERLAY\"} 2\n"));
  EXPECT_THAT(m, HasSubstr("meshprobe_probe_rtt_seconds_count{layer=\"UNDERLAY\"} 1\n"));
  EXPECT_THAT(m, Not(HasSubstr("layer=\"ISTIOD\"")));
  EXPECT_THAT(m, HasSubstr("meshprobe_probes_sent_total 100\n"));
  EXPECT_THAT(m, HasSubstr("meshprobe_probe_errors_total{reason=\"timeout\"} 7\n"));
  EXPECT_THAT(m, HasSubstr("meshprobe_probe_errors_total{reason=\"send_error\"} 1\n"));
  EXPECT_THAT(m, HasSubstr("meshprobe_probe_errors_total{reason=\"late\"} 2\n"));
  EXPECT_THAT(m, HasSubstr("meshprobe_probe_errors_total{reason=\"unknown\"} 0\n"));
  EXPECT_THAT(m, HasSubstr("meshprobe_probe_targets{layer=\"OVERLAY\"} 3\n"));
  EXPECT_THAT(m, HasSubstr("# TYPE meshprobe_probe_targets_per_round gauge\n"));
  EXPECT_THAT(m, HasSubstr("meshprobe_probe_targets_per_round{layer=\"UNDERLAY\"} 2\n"));
  EXPECT_THAT(m, HasSubstr("meshprobe_probe_targets_per_round{layer=\"OVERLAY\"} 1\n"));
  EXPECT_THAT(m, HasSubstr("meshprobe_probe_coverage_rounds 2\n"));
  EXPECT_THAT(m, HasSubstr("meshprobe_probe_rotation_skipped_total 11\n"));
  EXPECT_THAT(m, HasSubstr("meshprobe_responder_requests_total 90\n"));
  EXPECT_THAT(m, HasSubstr("meshprobe_responder_dropped_total{reason=\"rate_limited\"} 4\n"));
  EXPECT_THAT(m, HasSubstr("meshprobe_responder_dropped_total{reason=\"replayed\"} 6\n"));
  EXPECT_THAT(m, HasSubstr("meshprobe_stream_connected 1\n"));
  EXPECT_THAT(m, HasSubstr("meshprobe_stream_reconnects_total 2\n"));
  EXPECT_THAT(m, HasSubstr("meshprobe_report_buffer_dropped_total 5\n"));
  EXPECT_THAT(m, HasSubstr("# TYPE meshprobe_agent_checks_running gauge\nmeshprobe_agent_checks_running 1\n"));
  EXPECT_THAT(m, HasSubstr("meshprobe_build_info{version=\""));

  std::string out;
  int rc = promtool(m, &out);
  if (rc != -1) {
    EXPECT_EQ(rc, 0) << out << "\n" << m;
  }
}

TEST(AgentMetricsTest, BeforeTheFirstCheckRoundAndStandalone) {
  AgentStatus s;  // nothing yet: standalone, no checks, no prober
  const std::string m = renderAgentMetrics(s, RttHistograms());
  EXPECT_THAT(m, Not(HasSubstr("meshprobe_check_ok{")));
  EXPECT_THAT(m, HasSubstr("# TYPE meshprobe_check_ok gauge\n"));
  EXPECT_THAT(m, HasSubstr("meshprobe_stream_connected 0\n"));
  EXPECT_THAT(m, HasSubstr("meshprobe_agent_checks_running 0\n"));
  EXPECT_THAT(m, HasSubstr("meshprobe_probe_rtt_seconds_count{layer=\"UNDERLAY\"} 0\n"));
  std::string out;
  int rc = promtool(m, &out);
  if (rc != -1) {
    EXPECT_EQ(rc, 0) << out << "\n" << m;
  }
}

TEST(AgentHttpTest, Routes) {
  bool with_doctor = false;
  bool bound = true;
  RttHistograms rtt;
  AgentHttp http(
      [&] {
        auto s = status(with_doctor);
        s.responder_bound = bound;
        return s;
      },
      rtt);

  EXPECT_EQ(http.handle(get("/healthz")).status, 200);
  auto metrics = http.handle(get("/metrics"));
  EXPECT_EQ(metrics.status, 200);
  EXPECT_EQ(metrics.content_type, kPrometheusContentType);
  EXPECT_EQ(http.handle(get("/nope")).status, 404);

  // Not ready before the first check round; /checks says so too (503, empty report).
  auto ready = http.handle(get("/readyz"));
  EXPECT_EQ(ready.status, 503);
  EXPECT_THAT(ready.body, HasSubstr("check round"));
  auto checks = http.handle(get("/checks"));
  EXPECT_EQ(checks.status, 503);
  auto empty = nlohmann::json::parse(checks.body);
  EXPECT_EQ(empty["node"], "node1");
  EXPECT_TRUE(empty["checks"].empty());

  with_doctor = true;
  EXPECT_EQ(http.handle(get("/readyz")).status, 200);
  checks = http.handle(get("/checks"));
  EXPECT_EQ(checks.status, 200);
  EXPECT_EQ(checks.content_type, "application/json");
  // Exactly what --once --output json prints.
  EXPECT_EQ(nlohmann::json::parse(checks.body), reportToJson(report()));

  bound = false;
  EXPECT_EQ(http.handle(get("/readyz")).status, 503);
}

TEST(AgentHttpTest, ServesOverLoopbackAndPortInUseIsAnError) {
  RttHistograms rtt;
  AgentHttp http([] { return status(true); }, rtt);
  auto port = http.start("127.0.0.1:0");
  ASSERT_TRUE(port.ok()) << port.error().message;
  AgentHttp second([] { return status(true); }, rtt);
  auto again = second.start("127.0.0.1:" + std::to_string(*port));
  ASSERT_FALSE(again.ok());
  EXPECT_THAT(again.error().message, HasSubstr("cannot listen for HTTP on 127.0.0.1:" + std::to_string(*port)));
  http.stop();
}

}  // namespace
}  // namespace meshprobe::agent
