#include "sluice/client/progress_poller.h"

#include <chrono>
#include <cstdlib>

namespace sluice::client {

ProgressPoller::ProgressPoller() : always_(std::getenv("SLUICE_ALWAYS_POLL") != nullptr) {
  thread_ = std::thread([this] { Run(); });
}

ProgressPoller::~ProgressPoller() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
  cq_.Shutdown();
  void* tag;
  bool ok;
  while (cq_.Next(&tag, &ok)) {
  }
}

void ProgressPoller::Demand(int delta) {
  if (demand_.fetch_add(delta, std::memory_order_relaxed) == 0 && delta > 0) {
    std::lock_guard<std::mutex> lock(mu_);
    cv_.notify_all();
  }
}

void ProgressPoller::SetNotReady(size_t count) {
  if (not_ready_.exchange(count) == 0 && count > 0) {
    std::lock_guard<std::mutex> lock(mu_);
    cv_.notify_all();
  }
}

bool ProgressPoller::Needed() const {
  return always_ || demand_.load(std::memory_order_relaxed) > 0 ||
         not_ready_.load(std::memory_order_relaxed) > 0;
}

void ProgressPoller::Run() {
  while (!stopping_) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || Needed(); });
    }
    if (stopping_) break;
    void* tag;
    bool ok;
    cq_.AsyncNext(&tag, &ok, std::chrono::system_clock::now() + std::chrono::milliseconds(50));
  }
}

}  // namespace sluice::client
