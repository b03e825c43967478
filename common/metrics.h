#pragma once
// Prometheus text exposition format 0.0.4 (what `promtool check metrics` validates):
// families with # HELP / # TYPE, counters, gauges and histograms (cumulative buckets,
// le="+Inf", _sum, _count), label values escaped. Both daemons render their /metrics at
// scrape time from current state, so a series whose subject is gone simply disappears.
//
// Histogram is the one piece of state kept between scrapes: a thread-safe set of bucket
// counters the agent observes RTTs into.

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace meshprobe {

inline constexpr const char* kPrometheusContentType = "text/plain; version=0.0.4; charset=utf-8";

enum class MetricType { kCounter, kGauge, kHistogram };

using MetricLabels = std::vector<std::pair<std::string, std::string>>;

struct HistogramSnapshot {
  std::vector<double> bounds;    // upper bounds, ascending, without +Inf
  std::vector<uint64_t> counts;  // per bucket, NOT cumulative; bounds.size() + 1 entries (last: above every bound)
  double sum = 0;
  uint64_t count = 0;
};

class Histogram {
 public:
  // `bounds`: ascending upper bounds (le), without +Inf.
  explicit Histogram(std::vector<double> bounds);
  void observe(double value);
  HistogramSnapshot snapshot() const;

  // Bounds for network round trips in seconds: 50 µs .. 2.5 s.
  static std::vector<double> rttBounds();
  // Bounds for request handling in seconds: 100 µs .. 10 s.
  static std::vector<double> latencyBounds();

 private:
  const std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::vector<uint64_t> counts_;
  double sum_ = 0;
  uint64_t count_ = 0;
};

// Formats a sample value the way Prometheus expects: shortest round-trip decimal,
// "NaN", "+Inf", "-Inf".
std::string formatMetricValue(double v);
// Escapes a label value: backslash, double quote and newline.
std::string escapeLabelValue(std::string_view v);

class MetricsWriter {
 public:
  // Starts a family; every sample until the next family() belongs to it. A family with no
  // samples still prints HELP and TYPE (valid and harmless). Each family name once.
  void family(std::string_view name, std::string_view help, MetricType type);
  // A counter or gauge sample of the current family.
  void sample(const MetricLabels& labels, double value);
  void sample(double value) { sample({}, value); }
  // A histogram series of the current family: _bucket{...,le=...} (cumulative), _sum, _count.
  void histogram(const MetricLabels& labels, const HistogramSnapshot& h);

  const std::string& text() const { return out_; }
  std::string take() { return std::move(out_); }
  // Time series written so far (a histogram counts each bucket, _sum and _count).
  size_t seriesCount() const { return series_; }

 private:
  void line(std::string_view name, const MetricLabels& labels, const std::pair<std::string, std::string>* extra,
            std::string_view value);

  std::string out_;
  std::string current_;
  MetricType type_ = MetricType::kGauge;
  size_t series_ = 0;
};

}  // namespace meshprobe
