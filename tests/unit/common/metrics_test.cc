#include "common/metrics.h"

#include <gtest/gtest.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace meshprobe {
namespace {

std::string sampleOutput() {
  MetricsWriter w;
  w.family("meshprobe_test_up", "A gauge with a \\ backslash\nand a newline in its help.", MetricType::kGauge);
  w.sample({{"node", "a\"b\\c\nd"}}, 1);
  w.sample({{"node", "plain"}}, 0);
  w.family("meshprobe_test_requests_total", "A counter.", MetricType::kCounter);
  w.sample(42);
  w.family("meshprobe_test_rtt_seconds", "A histogram.", MetricType::kHistogram);
  Histogram h({0.001, 0.01, 0.1});
  h.observe(0.0005);
  h.observe(0.001);  // le is inclusive
  h.observe(0.05);
  h.observe(3);
  w.histogram({{"layer", "OVERLAY"}}, h.snapshot());
  w.family("meshprobe_test_empty", "A family without samples.", MetricType::kGauge);
  return w.take();
}

TEST(MetricsTest, FormatsValues) {
  EXPECT_EQ(formatMetricValue(0), "0");
  EXPECT_EQ(formatMetricValue(42), "42");
  EXPECT_EQ(formatMetricValue(-3), "-3");
  EXPECT_EQ(formatMetricValue(0.25), "0.25");
  EXPECT_EQ(formatMetricValue(0.0001), "0.0001");
  EXPECT_EQ(formatMetricValue(0.00005), "0.00005");
  EXPECT_EQ(formatMetricValue(1.5e-9), "1.5e-09");
  EXPECT_EQ(formatMetricValue(1e20), "1e+20");
  EXPECT_EQ(formatMetricValue(1.0 / 0.0), "+Inf");
  EXPECT_EQ(formatMetricValue(-1.0 / 0.0), "-Inf");
  EXPECT_EQ(formatMetricValue(std::nan("")), "NaN");
}

TEST(MetricsTest, EscapesLabelValues) {
  EXPECT_EQ(escapeLabelValue("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  EXPECT_EQ(escapeLabelValue("plain"), "plain");
}

TEST(MetricsTest, RendersFamiliesAndHistograms) {
  const std::string out = sampleOutput();
  const std::string want =
      "# HELP meshprobe_test_up A gauge with a \\\\ backslash\\nand a newline in its help.\n"
      "# TYPE meshprobe_test_up gauge\n"
      "meshprobe_test_up{node=\"a\\\"b\\\\c\\nd\"} 1\n"
      "meshprobe_test_up{node=\"plain\"} 0\n"
      "# HELP meshprobe_test_requests_total A counter.\n"
      "# TYPE meshprobe_test_requests_total counter\n"
      "meshprobe_test_requests_total 42\n"
      "# HELP meshprobe_test_rtt_seconds A histogram.\n"
      "# TYPE meshprobe_test_rtt_seconds histogram\n"
      "meshprobe_test_rtt_seconds_bucket{layer=\"OVERLAY\",le=\"0.001\"} 2\n"
      "meshprobe_test_rtt_seconds_bucket{layer=\"OVERLAY\",le=\"0.01\"} 2\n"
      "meshprobe_test_rtt_seconds_bucket{layer=\"OVERLAY\",le=\"0.1\"} 3\n"
      "meshprobe_test_rtt_seconds_bucket{layer=\"OVERLAY\",le=\"+Inf\"} 4\n"
      "meshprobe_test_rtt_seconds_sum{layer=\"OVERLAY\"} 3.0515\n"
      "meshprobe_test_rtt_seconds_count{layer=\"OVERLAY\"} 4\n"
      "# HELP meshprobe_test_empty A family without samples.\n"
      "# TYPE meshprobe_test_empty gauge\n";
  EXPECT_EQ(out, want);
}

TEST(MetricsTest, CountsSeries) {
  MetricsWriter w;
  w.family("x", "x", MetricType::kGauge);
  w.sample(1);
  w.sample({{"a", "b"}}, 1);
  w.family("h", "h", MetricType::kHistogram);
  w.histogram({}, Histogram({1, 2}).snapshot());  // 3 buckets + sum + count
  EXPECT_EQ(w.seriesCount(), 2u + 5u);
}

TEST(MetricsTest, HistogramIsThreadSafe) {
  Histogram h(Histogram::rttBounds());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&h] {
      for (int i = 0; i < 10000; ++i) h.observe(0.0002);
    });
  }
  for (auto& t : threads) t.join();
  auto s = h.snapshot();
  EXPECT_EQ(s.count, 40000u);
  uint64_t total = 0;
  for (auto c : s.counts) total += c;
  EXPECT_EQ(total, 40000u);
  EXPECT_NEAR(s.sum, 8.0, 1e-6);
  EXPECT_EQ(s.counts[2], 40000u);  // 0.0002 falls in le=0.00025
}

// Runs promtool check metrics on `text`; returns its exit code and output, or -1 when absent.
int promtool(const std::string& text, std::string* output) {
  const char* bin = "/usr/bin/promtool";
  if (access(bin, X_OK) != 0) return -1;
  char path[] = "/tmp/mp-metrics-test-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return -2;
  if (write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) return -2;
  close(fd);
  const std::string cmd = std::string(bin) + " check metrics < " + path + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  char buf[512];
  while (p && fgets(buf, sizeof buf, p)) *output += buf;
  int st = p ? pclose(p) : -1;
  unlink(path);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -3;
}

TEST(MetricsTest, PassesPromtool) {
  std::string output;
  int rc = promtool(sampleOutput(), &output);
  if (rc == -1) GTEST_SKIP() << "/usr/bin/promtool not installed";
  EXPECT_EQ(rc, 0) << output << "\n" << sampleOutput();
}

TEST(MetricsTest, PromtoolCatchesABrokenExposition) {
  // Proves the check above can fail: a counter without _total is a lint error.
  std::string output;
  int rc = promtool("# HELP bad A counter.\n# TYPE bad counter\nbad 1\n", &output);
  if (rc == -1) GTEST_SKIP() << "/usr/bin/promtool not installed";
  EXPECT_NE(rc, 0) << output;
}

}  // namespace
}  // namespace meshprobe
