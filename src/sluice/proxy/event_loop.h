#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <queue>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "sluice/core/clock.h"

namespace sluice::proxy {

// What a timer is for. The loop hands the kind back with the timer's owner, so a handler never
// has to tell timers apart by comparing times.
enum class TimerKind : uint8_t {
  kCallDeadline,    // the call's grpc-timeout ran out
  kAttemptTimeout,  // the backend gave no answer within the route's attempt timeout
  kRetryPause,      // a paused transparent retry may start
  kResumeAccept,    // accepting paused after an accept error may resume
  kHousekeeping,    // the worker's periodic scan of its connections
  kBackendProbe,    // a backend's readiness asked for a connection attempt at this time
};

using TimerId = uint64_t;
constexpr TimerId kNoTimer = 0;

// Gets the readiness events (EPOLLIN, EPOLLOUT, ...) of one registered descriptor.
class IoHandler {
 public:
  virtual void OnIo(uint32_t events) = 0;

 protected:
  ~IoHandler() = default;
};

// Gets the loop's expired timers.
class TimerHandler {
 public:
  virtual void OnTimer(TimerKind kind, uint64_t owner) = 0;

 protected:
  ~TimerHandler() = default;
};

// Work handed to the loop's thread from other threads (a pick that completed on a balancer's
// thread, a shutdown request). Shared with the senders, so it may outlive its loop: tasks posted
// after the loop is gone are dropped.
class Inbox {
 public:
  // Any thread.
  void Post(std::function<void()> task);

 private:
  friend class EventLoop;
  std::mutex mu_;
  int event_fd_ = -1;  // -1 once the loop is gone
  std::vector<std::function<void()>> tasks_;
};

// One worker's epoll loop, its inbox and its timers, on the injected clock. Single-threaded:
// everything but Inbox::Post runs on the loop's thread.
class EventLoop {
 public:
  explicit EventLoop(Clock& clock);
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  absl::Status Init();

  // Registers `fd` for EPOLLIN (and EPOLLOUT when `want_write`); events go to `handler`.
  void Add(int fd, IoHandler* handler, bool want_write);
  void SetWantWrite(int fd, IoHandler* handler, bool want_write);
  // Must precede close(fd): a descriptor shared with another process (a child between fork and
  // exec) would otherwise stay registered and wake the loop with a freed handler.
  void Remove(int fd);

  // A timer that fires at `at` (at the next pass when already past) unless cancelled first.
  TimerId Schedule(absl::Time at, TimerKind kind, uint64_t owner);
  void Cancel(TimerId id);  // kNoTimer and timers already fired are ignored

  // One pass: waits for events (not at all when `busy`, at most until the next timer), reads
  // the clock, then runs expired timers first (a backend answering at the same instant as a
  // deadline must not win), then the I/O handlers, then the inbox's tasks.
  void RunOnce(bool busy, TimerHandler* timers);

  // The time read at the start of this pass.
  absl::Time now() const { return now_; }
  Clock& clock() const { return clock_; }
  const std::shared_ptr<Inbox>& inbox() const { return inbox_; }

 private:
  struct Timer {
    absl::Time at;
    TimerId id;
    TimerKind kind;
    uint64_t owner;
    bool operator>(const Timer& other) const {
      return at != other.at ? at > other.at : id > other.id;
    }
  };
  int TimeoutMs(bool busy) const;
  void RunTimers(TimerHandler* timers);
  void RunInbox();

  Clock& clock_;
  absl::Time now_;
  int epoll_fd_ = -1;
  std::shared_ptr<Inbox> inbox_ = std::make_shared<Inbox>();
  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> timers_;
  absl::flat_hash_set<TimerId> live_timers_;
  TimerId next_timer_id_ = 1;
  std::vector<std::function<void()>> tasks_;  // scratch, reused
};

}  // namespace sluice::proxy
