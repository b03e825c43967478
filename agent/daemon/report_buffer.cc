#include "agent/daemon/report_buffer.h"

namespace meshprobe::agent {

void ReportBuffer::push(PendingReport report) {
  {
    std::lock_guard lock(mu_);
    if (capacity_ == 0) {
      ++dropped_;
      return;
    }
    while (reports_.size() >= capacity_) {
      reports_.pop_front();
      ++dropped_;
    }
    reports_.push_back(std::move(report));
  }
  cv_.notify_one();
}

void ReportBuffer::pushFront(PendingReport report) {
  {
    std::lock_guard lock(mu_);
    if (reports_.size() >= capacity_) {
      ++dropped_;  // the buffer is full of newer reports: this one is the oldest
      return;
    }
    reports_.push_front(std::move(report));
  }
  cv_.notify_one();
}

std::optional<PendingReport> ReportBuffer::pop(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return closed_ || !reports_.empty(); });
  if (reports_.empty() || closed_) return std::nullopt;
  auto r = std::move(reports_.front());
  reports_.pop_front();
  return r;
}

void ReportBuffer::close() {
  {
    std::lock_guard lock(mu_);
    closed_ = true;
  }
  cv_.notify_all();
}

size_t ReportBuffer::size() const {
  std::lock_guard lock(mu_);
  return reports_.size();
}

uint64_t ReportBuffer::dropped() const {
  std::lock_guard lock(mu_);
  return dropped_;
}

}  // namespace meshprobe::agent
