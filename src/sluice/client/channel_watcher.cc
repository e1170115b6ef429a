#include "sluice/client/channel_watcher.h"

#include <grpc/support/time.h>

#include "sluice/client/balancer.h"
#include "sluice/core/grpc_util.h"

namespace sluice::client {
namespace {

// How long one connectivity watch waits before it is armed again. Bounds how long a removed
// endpoint's channel outlives its last call, and the balancer's shutdown time.
constexpr absl::Duration kWatchSlice = absl::Milliseconds(250);

}  // namespace

// A connectivity watch in flight; gRPC calls Run on one of its threads when the state changes
// or the watch's deadline passes.
struct ChannelConnectivityWatcher::WatchTag : grpc_completion_queue_functor {
  ChannelConnectivityWatcher* watcher;
  ReadinessReporter* reporter;
  std::weak_ptr<EndpointHandle> endpoint;
  grpc_connectivity_state last_state;

  static void Run(grpc_completion_queue_functor* functor, int /*ok*/) {
    std::unique_ptr<WatchTag> tag(static_cast<WatchTag*>(functor));
    ChannelConnectivityWatcher* watcher = tag->watcher;
    watcher->OnFired(*tag);
    std::lock_guard<std::mutex> lock(watcher->mu_);
    if (--watcher->watches_in_flight_ == 0) watcher->cv_.notify_all();
  }
};

void ChannelConnectivityWatcher::QueueShutdown::Run(grpc_completion_queue_functor* functor,
                                                    int /*ok*/) {
  ChannelConnectivityWatcher* watcher = static_cast<QueueShutdown*>(functor)->watcher;
  std::lock_guard<std::mutex> lock(watcher->mu_);
  watcher->queue_shut_down_ = true;
  watcher->cv_.notify_all();
}

ChannelConnectivityWatcher::ChannelConnectivityWatcher() {
  queue_shutdown_.functor_run = &QueueShutdown::Run;
  queue_shutdown_.inlineable = 0;
  queue_shutdown_.watcher = this;
  queue_ = grpc_completion_queue_create_for_callback(&queue_shutdown_, nullptr);
}

ChannelConnectivityWatcher::~ChannelConnectivityWatcher() {
  {
    // Each watch ends by its deadline (kWatchSlice) and is not armed again.
    std::unique_lock<std::mutex> lock(mu_);
    stopping_ = true;
    cv_.wait(lock, [&] { return watches_in_flight_ == 0; });
  }
  grpc_completion_queue_shutdown(queue_);
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return queue_shut_down_; });
  }
  grpc_completion_queue_destroy(queue_);
}

void ChannelConnectivityWatcher::Watch(const std::shared_ptr<EndpointHandle>& endpoint,
                                       ReadinessReporter& reporter) {
  const auto& backend = static_cast<const Backend&>(*endpoint);
  grpc_connectivity_state state = grpc_channel_check_connectivity_state(backend.c_channel(), 1);
  reporter.ReportTransport(endpoint, ToTransportState(state));
  Arm(endpoint, reporter, state);
}

void ChannelConnectivityWatcher::Arm(const std::shared_ptr<EndpointHandle>& endpoint,
                                     ReadinessReporter& reporter, grpc_connectivity_state last) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    ++watches_in_flight_;
  }
  auto* tag = new WatchTag();
  tag->functor_run = &WatchTag::Run;
  tag->inlineable = 0;
  tag->watcher = this;
  tag->reporter = &reporter;
  tag->endpoint = endpoint;
  tag->last_state = last;
  const gpr_timespec deadline =
      gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                   gpr_time_from_millis(absl::ToInt64Milliseconds(kWatchSlice), GPR_TIMESPAN));
  grpc_channel_watch_connectivity_state(static_cast<const Backend&>(*endpoint).c_channel(), last,
                                        deadline, queue_, tag);
}

void ChannelConnectivityWatcher::OnFired(const WatchTag& tag) {
  std::shared_ptr<EndpointHandle> endpoint = tag.endpoint.lock();
  if (endpoint == nullptr || endpoint->removed) return;
  grpc_channel* channel = static_cast<const Backend&>(*endpoint).c_channel();
  grpc_connectivity_state state = grpc_channel_check_connectivity_state(channel, 0);
  if (state == GRPC_CHANNEL_IDLE) {
    // A lost connection leaves the channel idle; keep every endpoint connected.
    state = grpc_channel_check_connectivity_state(channel, 1);
  }
  if (state != tag.last_state) tag.reporter->ReportTransport(endpoint, ToTransportState(state));
  Arm(endpoint, *tag.reporter, state);
}

}  // namespace sluice::client
