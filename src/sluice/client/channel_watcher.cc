#include "sluice/client/channel_watcher.h"

#include <grpc/support/time.h>

#include "sluice/client/balancer.h"
#include "sluice/core/grpc_util.h"

namespace sluice::client {
namespace {

// How long one connectivity watch waits before it is armed again. Bounds how long a removed
// endpoint's channel outlives its last call. Every expiry costs gRPC a timed-out error
// (formatted with a timestamp), so the slice is not shorter: at 250 ms that cost was 4% of the
// client's instructions per call at 8 connections (bench/results/client_split_callgrind.md).
constexpr absl::Duration kWatchSlice = absl::Seconds(1);

// Destroys the completion queue once gRPC reports it shut down, as gRPC's own C++ channel does
// with its callback queue.
struct QueueDestroyer : grpc_completion_queue_functor {
  grpc_completion_queue* queue = nullptr;

  static void Run(grpc_completion_queue_functor* functor, int /*ok*/) {
    std::unique_ptr<QueueDestroyer> self(static_cast<QueueDestroyer*>(functor));
    grpc_completion_queue_destroy(self->queue);
  }
};

}  // namespace

// The completion queue and the watcher's phase, shared by the watcher and each watch in flight.
struct ChannelConnectivityWatcher::WatchQueue {
  enum class Phase { kWatching, kStopped };

  WatchQueue() {
    auto destroyer = std::make_unique<QueueDestroyer>();
    destroyer->functor_run = &QueueDestroyer::Run;
    destroyer->inlineable = 0;
    queue = grpc_completion_queue_create_for_callback(destroyer.get(), nullptr);
    destroyer->queue = queue;
    destroyer.release();  // freed by its Run, after the shutdown below
  }
  // Runs when neither the watcher nor any watch holds the queue: nothing can be pending on it.
  ~WatchQueue() { grpc_completion_queue_shutdown(queue); }

  // Enters a callback that may report; false once the watcher has stopped.
  bool EnterCallback() {
    std::lock_guard<std::mutex> lock(mu);
    if (phase == Phase::kStopped) return false;
    ++callbacks_running;
    return true;
  }
  void LeaveCallback() {
    std::lock_guard<std::mutex> lock(mu);
    if (--callbacks_running == 0) idle.notify_all();
  }
  void Stop() {
    std::unique_lock<std::mutex> lock(mu);
    phase = Phase::kStopped;
    idle.wait(lock, [&] { return callbacks_running == 0; });
  }

  grpc_completion_queue* queue = nullptr;
  std::mutex mu;
  std::condition_variable idle;
  Phase phase = Phase::kWatching;  // guarded by mu
  int callbacks_running = 0;       // guarded by mu
};

// A connectivity watch in flight; gRPC calls Run on one of its threads when the state changes
// or the watch's deadline passes.
struct ChannelConnectivityWatcher::WatchTag : grpc_completion_queue_functor {
  std::shared_ptr<WatchQueue> queue;
  ReadinessReporter* reporter = nullptr;  // used only while the watcher is watching
  std::weak_ptr<EndpointHandle> endpoint;
  grpc_connectivity_state last_state = GRPC_CHANNEL_IDLE;

  static void Arm(std::shared_ptr<WatchQueue> queue, const std::shared_ptr<EndpointHandle>& endpoint,
                  ReadinessReporter& reporter, grpc_connectivity_state last) {
    auto* tag = new WatchTag();
    tag->functor_run = &WatchTag::Run;
    tag->inlineable = 0;
    tag->queue = std::move(queue);
    tag->reporter = &reporter;
    tag->endpoint = endpoint;
    tag->last_state = last;
    const gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                     gpr_time_from_millis(absl::ToInt64Milliseconds(kWatchSlice), GPR_TIMESPAN));
    grpc_channel_watch_connectivity_state(static_cast<const Backend&>(*endpoint).c_channel(), last,
                                          deadline, tag->queue->queue, tag);
  }

  static void Run(grpc_completion_queue_functor* functor, int /*ok*/) {
    std::unique_ptr<WatchTag> tag(static_cast<WatchTag*>(functor));
    if (!tag->queue->EnterCallback()) return;
    tag->OnFired();
    tag->queue->LeaveCallback();
  }

  void OnFired() {
    std::shared_ptr<EndpointHandle> watched = endpoint.lock();
    if (watched == nullptr || watched->removed) return;
    grpc_channel* channel = static_cast<const Backend&>(*watched).c_channel();
    grpc_connectivity_state state = grpc_channel_check_connectivity_state(channel, 0);
    if (state == GRPC_CHANNEL_IDLE) {
      // A lost connection leaves the channel idle; keep every endpoint connected.
      state = grpc_channel_check_connectivity_state(channel, 1);
    }
    if (state != last_state) reporter->ReportTransport(watched, ToTransportState(state));
    // Armed again while this callback counts as running: Stop waits for it.
    Arm(queue, watched, *reporter, state);
  }
};

ChannelConnectivityWatcher::ChannelConnectivityWatcher()
    : queue_(std::make_shared<WatchQueue>()) {}

ChannelConnectivityWatcher::~ChannelConnectivityWatcher() { queue_->Stop(); }

void ChannelConnectivityWatcher::Watch(const std::shared_ptr<EndpointHandle>& endpoint,
                                       ReadinessReporter& reporter) {
  if (!queue_->EnterCallback()) return;
  const auto& backend = static_cast<const Backend&>(*endpoint);
  grpc_connectivity_state state = grpc_channel_check_connectivity_state(backend.c_channel(), 1);
  reporter.ReportTransport(endpoint, ToTransportState(state));
  WatchTag::Arm(queue_, endpoint, reporter, state);
  queue_->LeaveCallback();
}

}  // namespace sluice::client
