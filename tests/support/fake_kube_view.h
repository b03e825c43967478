#pragma once
// A KubeView whose objects the test sets: each set() publishes a new snapshot with the next
// generation, as the watcher does on every change.

#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "aggregator/kube/objects.h"

namespace meshprobe::aggregator::testing {

class FakeKubeView final : public kube::KubeView {
 public:
  std::shared_ptr<const kube::KubeObjects> objects() const override {
    std::lock_guard lock(mu_);
    return objects_;
  }
  void set(kube::KubeObjects objects) {
    std::lock_guard lock(mu_);
    objects.generation = ++generation_;
    objects_ = std::make_shared<const kube::KubeObjects>(std::move(objects));
  }
  // The current objects with another API state.
  void setStatus(kube::ApiState state, std::string detail) {
    kube::KubeObjects o = *objects();
    o.status = {state, std::move(detail)};
    set(std::move(o));
  }

 private:
  mutable std::mutex mu_;
  uint64_t generation_ = 0;
  std::shared_ptr<const kube::KubeObjects> objects_ = std::make_shared<const kube::KubeObjects>();
};

}  // namespace meshprobe::aggregator::testing
