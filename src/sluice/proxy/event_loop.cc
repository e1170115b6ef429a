#include "sluice/proxy/event_loop.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace sluice::proxy {
namespace {

// The inbox's eventfd is registered with a null handler; every other descriptor has one.
constexpr uint64_t kInboxTag = 0;
// With no timer due sooner, the loop still wakes this often.
constexpr absl::Duration kLongestWait = absl::Milliseconds(100);

}  // namespace

void Inbox::Post(std::function<void()> task) {
  std::lock_guard<std::mutex> lock(mu_);
  if (event_fd_ < 0) return;
  tasks_.push_back(std::move(task));
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(event_fd_, &one, sizeof(one));
}

EventLoop::EventLoop(Clock& clock) : clock_(clock), now_(clock.Now()) {}

EventLoop::~EventLoop() {
  {
    std::lock_guard<std::mutex> lock(inbox_->mu_);
    if (inbox_->event_fd_ >= 0) close(inbox_->event_fd_);
    inbox_->event_fd_ = -1;
    inbox_->tasks_.clear();
  }
  if (epoll_fd_ >= 0) close(epoll_fd_);
}

absl::Status EventLoop::Init() {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) return absl::InternalError(absl::StrCat("epoll_create1: ", strerror(errno)));
  const int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (efd < 0) return absl::InternalError(absl::StrCat("eventfd: ", strerror(errno)));
  {
    std::lock_guard<std::mutex> lock(inbox_->mu_);
    inbox_->event_fd_ = efd;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kInboxTag;
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, efd, &ev);
  return absl::OkStatus();
}

void EventLoop::Add(int fd, IoHandler* handler, bool want_write) {
  epoll_event ev{};
  ev.events = EPOLLIN | (want_write ? static_cast<uint32_t>(EPOLLOUT) : 0u);
  ev.data.ptr = handler;
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
}

void EventLoop::SetWantWrite(int fd, IoHandler* handler, bool want_write) {
  epoll_event ev{};
  ev.events = EPOLLIN | (want_write ? static_cast<uint32_t>(EPOLLOUT) : 0u);
  ev.data.ptr = handler;
  epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev);
}

void EventLoop::Remove(int fd) { epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr); }

TimerId EventLoop::Schedule(absl::Time at, TimerKind kind, uint64_t owner) {
  const TimerId id = next_timer_id_++;
  timers_.push(Timer{at, id, kind, owner});
  live_timers_.insert(id);
  return id;
}

void EventLoop::Cancel(TimerId id) {
  if (id != kNoTimer) live_timers_.erase(id);
}

int EventLoop::TimeoutMs(bool busy) const {
  if (busy) return 0;
  absl::Duration wait = kLongestWait;
  if (!timers_.empty()) wait = std::min(wait, timers_.top().at - now_);
  if (wait <= absl::ZeroDuration()) return 0;
  return static_cast<int>(absl::ToInt64Milliseconds(wait)) + 1;
}

void EventLoop::RunOnce(bool busy, TimerHandler* timers) {
  std::array<epoll_event, 128> events;
  const int n =
      epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), TimeoutMs(busy));
  now_ = clock_.Now();
  RunTimers(timers);
  bool inbox_woke = false;
  for (int i = 0; i < n; ++i) {
    if (events[i].data.u64 == kInboxTag) {
      uint64_t count;
      [[maybe_unused]] ssize_t r = read(inbox_->event_fd_, &count, sizeof(count));
      inbox_woke = true;
      continue;
    }
    static_cast<IoHandler*>(events[i].data.ptr)->OnIo(events[i].events);
  }
  if (inbox_woke) RunInbox();
}

void EventLoop::RunTimers(TimerHandler* timers) {
  while (!timers_.empty() && timers_.top().at <= now_) {
    const Timer timer = timers_.top();
    timers_.pop();
    if (live_timers_.erase(timer.id) == 0) continue;  // cancelled
    timers->OnTimer(timer.kind, timer.owner);
  }
}

void EventLoop::RunInbox() {
  tasks_.clear();
  {
    std::lock_guard<std::mutex> lock(inbox_->mu_);
    tasks_.swap(inbox_->tasks_);
  }
  for (auto& task : tasks_) task();
  tasks_.clear();
}

}  // namespace sluice::proxy
