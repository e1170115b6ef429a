#include "sluice/client/work_serializer.h"

#include <chrono>

namespace sluice::client {

WorkSerializer::WorkSerializer(absl::Duration tick_interval, std::function<void()> tick)
    : tick_interval_(tick_interval), tick_(std::move(tick)), thread_([this] { Run(); }) {}

WorkSerializer::~WorkSerializer() { Shutdown(); }

void WorkSerializer::Post(std::function<void()> task) {
  std::lock_guard<std::mutex> lock(mu_);
  if (shutting_down_) return;
  tasks_.push_back(std::move(task));
  cv_.notify_one();
}

void WorkSerializer::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (shutting_down_ && !thread_.joinable()) return;
    shutting_down_ = true;
    cv_.notify_one();
  }
  if (thread_.joinable() && !OnSerializerThread()) thread_.join();
}

void WorkSerializer::Run() {
  const auto interval = absl::ToChronoNanoseconds(tick_interval_);
  auto next_tick = std::chrono::steady_clock::now() + interval;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    if (tasks_.empty() && !shutting_down_) {
      if (tick_) {
        cv_.wait_until(lock, next_tick);
      } else {
        cv_.wait(lock);
      }
    }
    while (!tasks_.empty()) {
      std::function<void()> task = std::move(tasks_.front());
      tasks_.pop_front();
      lock.unlock();
      task();
      lock.lock();
    }
    if (shutting_down_) return;
    if (tick_ && std::chrono::steady_clock::now() >= next_tick) {
      lock.unlock();
      tick_();
      lock.lock();
      next_tick = std::chrono::steady_clock::now() + interval;
    }
  }
}

}  // namespace sluice::client
