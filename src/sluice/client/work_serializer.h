#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "absl/time/time.h"

namespace sluice::client {

// Runs posted tasks one at a time, in order, on one thread of its own: the balancer's control
// plane. Everything that changes balancer state runs here, so that state needs no lock; other
// threads (discovery, gRPC connectivity, the data plane) only Post.
// A tick task, when set, runs every `tick_interval` on the same thread (timers: ejection ends).
class WorkSerializer {
 public:
  explicit WorkSerializer(absl::Duration tick_interval = absl::Milliseconds(100),
                          std::function<void()> tick = nullptr);
  ~WorkSerializer();  // Shutdown()

  void Post(std::function<void()> task);
  // Runs the tasks already posted, then stops the thread. Later Posts are dropped.
  void Shutdown();

 private:
  bool OnSerializerThread() const { return std::this_thread::get_id() == thread_.get_id(); }
  void Run();

  const absl::Duration tick_interval_;
  const std::function<void()> tick_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool shutting_down_ = false;
  std::thread thread_;
};

}  // namespace sluice::client
