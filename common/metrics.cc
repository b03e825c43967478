#include "common/metrics.h"

#include <algorithm>
#include <cassert>
#include <charconv>
#include <cmath>

namespace meshprobe {

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {
  assert(std::is_sorted(bounds_.begin(), bounds_.end()));
}

void Histogram::observe(double value) {
  // The bucket of `value` is the first bound >= value (le is inclusive).
  const size_t i = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin());
  std::lock_guard lock(mu_);
  ++counts_[i];
  sum_ += value;
  ++count_;
}

HistogramSnapshot Histogram::snapshot() const {
  HistogramSnapshot s;
  s.bounds = bounds_;
  std::lock_guard lock(mu_);
  s.counts = counts_;
  s.sum = sum_;
  s.count = count_;
  return s;
}

std::vector<double> Histogram::rttBounds() {
  return {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};
}

std::vector<double> Histogram::latencyBounds() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

std::string formatMetricValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    char buf[32];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, static_cast<long long>(v));
    return ec == std::errc() ? std::string(buf, end) : "NaN";
  }
  // Plain decimals where they stay short (bucket bounds read "0.00005", not "5e-05").
  const double a = std::fabs(v);
  const auto format = a >= 1e-6 && a < 1e15 ? std::chars_format::fixed : std::chars_format::general;
  char buf[400];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v, format);
  return ec == std::errc() ? std::string(buf, end) : "NaN";
}

std::string escapeLabelValue(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

namespace {

std::string escapeHelp(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

const char* typeName(MetricType t) {
  switch (t) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

}  // namespace

void MetricsWriter::family(std::string_view name, std::string_view help, MetricType type) {
  current_ = std::string(name);
  type_ = type;
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  out_ += escapeHelp(help);
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += typeName(type);
  out_ += '\n';
}

void MetricsWriter::line(std::string_view name, const MetricLabels& labels,
                         const std::pair<std::string, std::string>* extra, std::string_view value) {
  out_ += name;
  if (!labels.empty() || extra != nullptr) {
    out_ += '{';
    bool first = true;
    auto add = [&](const std::pair<std::string, std::string>& l) {
      if (!first) out_ += ',';
      first = false;
      out_ += l.first;
      out_ += "=\"";
      out_ += escapeLabelValue(l.second);
      out_ += '"';
    };
    for (const auto& l : labels) add(l);
    if (extra != nullptr) add(*extra);
    out_ += '}';
  }
  out_ += ' ';
  out_ += value;
  out_ += '\n';
  ++series_;
}

void MetricsWriter::sample(const MetricLabels& labels, double value) {
  assert(!current_.empty() && type_ != MetricType::kHistogram);
  line(current_, labels, nullptr, formatMetricValue(value));
}

void MetricsWriter::histogram(const MetricLabels& labels, const HistogramSnapshot& h) {
  assert(!current_.empty() && type_ == MetricType::kHistogram);
  const std::string bucket = current_ + "_bucket";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < h.bounds.size(); ++i) {
    cumulative += i < h.counts.size() ? h.counts[i] : 0;
    const std::pair<std::string, std::string> le{"le", formatMetricValue(h.bounds[i])};
    line(bucket, labels, &le, std::to_string(cumulative));
  }
  const std::pair<std::string, std::string> inf{"le", "+Inf"};
  line(bucket, labels, &inf, std::to_string(h.count));
  line(current_ + "_sum", labels, nullptr, formatMetricValue(h.sum));
  line(current_ + "_count", labels, nullptr, std::to_string(h.count));
}

}  // namespace meshprobe
