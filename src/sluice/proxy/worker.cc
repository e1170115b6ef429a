#include "sluice/proxy/worker.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <queue>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "sluice/balancer/hash.h"
#include "sluice/core/address.h"
#include "sluice/core/clock.h"
#include "sluice/core/log.h"
#include "sluice/proxy/grpc_util.h"
#include "sluice/proxy/header_block.h"
#include "sluice/proxy/router.h"
#include "sluice/proxy/session_allocator.h"
#include "sluice/proxy/tls.h"

namespace sluice::proxy {
namespace {

constexpr size_t kReadBufferSize = 64 << 10;
constexpr size_t kMaxRequestHeaderBytes = 64 << 10;
constexpr absl::Duration kUpstreamIdleTimeout = absl::Seconds(60);
// Epoll tags for the two non-connection file descriptors.
constexpr uint64_t kListenerTag = 1;
constexpr uint64_t kInboxTag = 2;
// Finished calls and nghttp2's blocks are recycled, except under AddressSanitizer, which should
// see all memory freed so that a stale pointer is reported, not silently reused.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kRecycleMemory = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kRecycleMemory = false;
#else
constexpr bool kRecycleMemory = true;
#endif
#else
constexpr bool kRecycleMemory = true;
#endif
constexpr size_t kMaxFreeCalls = 1024;
// Attempts that never reached a backend (connection refused, stream refused) are retried at
// once this many times; after that every candidate looks down, so the call waits and tries
// again with a growing pause, until its deadline (a call without one gives up here instead).
constexpr int kImmediateTransparentRetries = 5;
constexpr absl::Duration kFirstRetryPause = absl::Milliseconds(10);
constexpr absl::Duration kMaxRetryPause = absl::Milliseconds(500);

// The gRPC status a backend's headers carry; UNKNOWN when absent or malformed.
grpc::StatusCode StatusOf(const HeaderBlock& headers) {
  const std::optional<absl::string_view> value = headers.Find("grpc-status");
  int code = 0;
  if (!value || !absl::SimpleAtoi(*value, &code) || code < 0 || code > 16) {
    return grpc::StatusCode::UNKNOWN;
  }
  return static_cast<grpc::StatusCode>(code);
}

class Connection;

// One gRPC call: a client stream and, while an attempt is in progress, a backend stream.
// Owned by the worker (calls_), found by id from timers and async callbacks, and by stream id
// from each connection's map, so nothing dangles when one side goes away first.
// A call's buffers, kept apart from its state so that a recycled call keeps their capacity.
struct CallBuffers {
  HeaderBlock request_headers;
  std::string path;
  // Request bytes: req_buf holds stream offsets [req_base, req_base + size). While `retain`,
  // req_base stays 0 so another attempt can resend everything.
  std::string req_buf;
  // Response bytes from the backend, not yet handed to the client's session.
  std::string resp_buf;
  HeaderBlock resp_pending;  // the header block being received
  HeaderBlock resp_trailers;
};

// Everything else about a call; reset as a whole when the call is recycled.
struct CallState {
  uint64_t id = 0;
  Connection* down = nullptr;
  int32_t down_stream = 0;
  Connection* up = nullptr;
  int32_t up_stream = 0;

  size_t request_header_bytes = 0;
  absl::Time deadline = absl::InfiniteFuture();
  bool idempotent = false;
  std::optional<uint64_t> hash_key;  // ring_hash's key, from --hash-header

  uint64_t req_base = 0;
  uint64_t req_sent = 0;      // stream offset the current attempt has sent up to
  uint64_t req_received = 0;  // bytes received from the client
  uint64_t req_consumed = 0;  // bytes whose flow-control credit went back to the client
  bool req_done = false;
  bool retain = true;
  bool req_deferred = false;

  size_t resp_off = 0;
  uint64_t resp_unconsumed = 0;        // received from the backend, credit not yet returned
  bool resp_headers_received = false;  // this attempt's backend answered
  bool resp_submitted = false;         // response HEADERS handed to the client's session
  bool resp_ended = false;
  bool resp_deferred = false;

  client::Balancer* balancer = nullptr;  // the route's
  std::shared_ptr<client::Backend> backend;
  std::shared_ptr<client::Backend> previous_backend;
  BackendMetrics* backend_metrics = nullptr;
  absl::Time attempt_start;
  // When this attempt gives up on a silent backend (retry.attempt_timeout); infinite: never.
  absl::Time attempt_deadline = absl::InfiniteFuture();
  bool attempt_open = false;
  bool budget_retry = false;
  int attempts = 0;
  int transparent_retries = 0;  // attempts that never reached a backend
  // When a paused transparent retry starts (see kImmediateTransparentRetries); infinite: none.
  absl::Time retry_at = absl::InfiniteFuture();
  // The outcome is decided: no further attempt will start.
  bool finished = false;
  int64_t accounted_bytes = 0;
};

struct Call : CallState, CallBuffers {};

class Connection;

// Each connection's nghttp2 user_data: the callbacks reach both the worker and the connection.
struct SessionContext {
  Worker::Impl* impl;
  Connection* conn;
};

class Connection {
 public:
  Connection(bool upstream, int fd) : upstream_(upstream), fd_(fd) {}
  ~Connection() {
    if (ssl_ != nullptr) SSL_free(ssl_);
    if (session_ != nullptr) nghttp2_session_del(session_);
    if (fd_ >= 0) close(fd_);
  }
  bool upstream() const { return upstream_; }

  const bool upstream_;
  int fd_;
  SessionContext context_{nullptr, this};
  SSL* ssl_ = nullptr;  // client connections with --tls-cert
  // Backend connections: the TLS context they use (null: plain), and their pool in pools_.
  const TlsContext* tls_ = nullptr;
  std::string pool_key_;
  bool handshaking_ = false;
  nghttp2_session* session_ = nullptr;
  std::string out_;
  size_t out_off_ = 0;
  bool dirty_ = false;
  bool dead_ = false;
  bool epollout_ = false;
  // The calls on this connection by stream id. nghttp2 calls back once per header and frame,
  // mostly for the stream it just reported, so the last lookup is remembered.
  Call* FindStream(int32_t stream_id) {
    if (stream_id == last_stream_id_ && last_call_ != nullptr) return last_call_;
    auto it = streams_.find(stream_id);
    if (it == streams_.end()) return nullptr;
    last_stream_id_ = stream_id;
    last_call_ = it->second;
    return last_call_;
  }
  void AddStream(int32_t stream_id, Call* call) { streams_[stream_id] = call; }
  void EraseStream(int32_t stream_id) {
    streams_.erase(stream_id);
    if (stream_id == last_stream_id_) last_call_ = nullptr;
  }
  // Removes every stream, returning their calls.
  std::vector<Call*> TakeStreams() {
    std::vector<Call*> calls;
    calls.reserve(streams_.size());
    for (auto& [id, call] : streams_) calls.push_back(call);
    streams_.clear();
    last_call_ = nullptr;
    return calls;
  }
  size_t stream_count() const { return streams_.size(); }
  std::string peer_;

  // Upstream only.
  std::string address_;
  bool connecting_ = false;
  bool connected_ = false;
  bool goaway_received_ = false;
  bool draining_ = false;  // closing because idle: no new streams
  absl::Time last_used_;

  // Downstream only.
  absl::Time created_;
  bool notice_sent_ = false;
  absl::Time final_goaway_at_ = absl::InfiniteFuture();
  bool final_goaway_sent_ = false;
  absl::Time force_close_at_ = absl::InfiniteFuture();

 private:
  absl::flat_hash_map<int32_t, Call*> streams_;
  int32_t last_stream_id_ = 0;
  Call* last_call_ = nullptr;
};

// Pick results that arrive on the balancer's thread, handed to the worker's thread.
struct Inbox {
  std::mutex mu;
  int event_fd = -1;  // -1 once the worker is gone
  std::deque<std::pair<uint64_t, absl::StatusOr<std::shared_ptr<client::Backend>>>> picks;
  bool shutdown = false;
  absl::Time shutdown_deadline = absl::InfiniteFuture();

  void Wake() {
    if (event_fd < 0) return;
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(event_fd, &one, sizeof(one));
  }
};

}  // namespace

class Worker::Impl {
 public:
  Impl(int index, const ProxyOptions& options, const Router* router, ProxyMetrics* metrics)
      : index_(index),
        options_(options),
        router_(router),
        metrics_(metrics),
        inbox_(std::make_shared<Inbox>()) {}

  ~Impl() {
    for (auto& [ptr, conn] : conns_) conn.reset();
    {
      std::lock_guard<std::mutex> lock(inbox_->mu);
      if (inbox_->event_fd >= 0) close(inbox_->event_fd);
      inbox_->event_fd = -1;
    }
    if (listen_fd_ >= 0) close(listen_fd_);
    if (epoll_fd_ >= 0) close(epoll_fd_);
    if (server_callbacks_ != nullptr) nghttp2_session_callbacks_del(server_callbacks_);
    if (client_callbacks_ != nullptr) nghttp2_session_callbacks_del(client_callbacks_);
    if (session_options_ != nullptr) nghttp2_option_del(session_options_);
  }

  absl::Status Init();
  absl::StatusOr<int> Listen(const std::string& ip, int port);
  void Run();
  void BeginShutdown(absl::Time deadline) {
    std::lock_guard<std::mutex> lock(inbox_->mu);
    inbox_->shutdown = true;
    inbox_->shutdown_deadline = deadline;
    inbox_->Wake();
  }

  // nghttp2 callbacks (static trampolines below call these).
  int OnBeginHeaders(Connection* conn, const nghttp2_frame* frame);
  int OnHeader(Connection* conn, const nghttp2_frame* frame, absl::string_view name,
               absl::string_view value);
  int OnFrameRecv(Connection* conn, const nghttp2_frame* frame);
  int OnDataChunk(Connection* conn, int32_t stream_id, const uint8_t* data, size_t len);
  int OnStreamClose(Connection* conn, int32_t stream_id, uint32_t error_code);
  ssize_t ReadRequestBody(Connection* up, int32_t stream_id, uint8_t* buf, size_t length,
                          uint32_t* flags);
  ssize_t ReadResponseBody(Connection* down, int32_t stream_id, uint8_t* buf, size_t length,
                           uint32_t* flags);

 private:
  // Loop pieces.
  void Accept();
  void HandleEvent(Connection* conn, uint32_t events);
  void ReadFrom(Connection* conn);
  void Handshake(Connection* conn);
  void StartBackendTls(Connection* conn);
  // read/write, through TLS when the connection has it: bytes, 0 at EOF, or one of these.
  static constexpr ssize_t kWouldBlock = -1;
  static constexpr ssize_t kIoError = -2;
  ssize_t RawRead(Connection* conn, uint8_t* buf, size_t len);
  ssize_t RawWrite(Connection* conn, const char* data, size_t len);
  void Flush(Connection* conn);
  void FlushDirty();
  void MarkDirty(Connection* conn) {
    if (conn == nullptr || conn->dead_ || conn->dirty_) return;
    conn->dirty_ = true;
    dirty_.push_back(conn);
  }
  void SetEpollOut(Connection* conn, bool on);
  void MarkDead(Connection* conn, absl::string_view why);
  void CloseDead();
  void ProcessInbox();
  void ProcessTimers();
  void ProcessRetries();
  void StartShutdown();
  void SendGoaway(Connection* conn);
  int EpollTimeoutMs();

  // Calls.
  Call* NewCall(Connection* down, int32_t stream_id);
  void FreeCall(Call* call);
  void ResetForReuse(Call* call);
  void Account(Call* call) {
    const int64_t now = static_cast<int64_t>(call->req_buf.size() + call->resp_buf.size());
    metrics_->buffered_bytes.fetch_add(now - call->accounted_bytes, std::memory_order_relaxed);
    call->accounted_bytes = now;
  }
  void OnRequestHeaders(Call* call);
  void StartAttempt(Call* call);
  void AttachToBackend(Call* call, std::shared_ptr<client::Backend> backend);
  void FinishAttempt(Call* call, grpc::StatusCode code);
  // Ends an attempt that failed before the client saw a response: tries another backend if
  // allowed (`transparent`: the backend never saw the call), or fails the call.
  void RetryOrFail(Call* call, grpc::StatusCode code, const std::string& message, bool transparent);
  // The retry half of RetryOrFail: true if another attempt is scheduled.
  bool TryRetry(Call* call, grpc::StatusCode code, const std::string& message, bool transparent);
  // Ends the call towards the client with a gRPC status (trailers-only if nothing was sent).
  void RespondError(Call* call, grpc::StatusCode code, const std::string& message,
                    bool keep_buffered_response);
  void RespondHttpError(Call* call, int http_status, grpc::StatusCode code,
                        const std::string& message);
  // Detaches the call from its backend stream, resetting it with `rst` unless NO_ERROR.
  void DetachUpstream(Call* call, uint32_t rst);
  void DropRequest(Call* call);
  void ResumeResponse(Call* call);
  void ResumeRequest(Call* call);
  void OnDownstreamClosed(Call* call);
  void OnUpstreamClosed(Call* call, uint32_t error_code);
  void OnUpstreamConnectionLost(Connection* conn);
  void OnUpstreamResponseHeaders(Call* call, bool end_stream);
  void OnUpstreamEnded(Call* call);
  void OnAttemptTimeout(Call* call);
  // A connection to `address` that uses `tls` (null: plain HTTP/2).
  Connection* UpstreamFor(const std::string& address, const TlsContext* tls);
  Connection* ConnectUpstream(const std::string& address, const TlsContext* tls,
                              const std::string& pool_key);
  // TLS towards the backends of a call's route.
  const TlsContext* BackendTlsFor(const client::Balancer* balancer) const;
  BackendMetrics* MetricsFor(const std::string& address);

  const int index_;
  const ProxyOptions options_;
  const Router* const router_;
  Clock& clock_ = SystemClock::Instance();
  ProxyMetrics* const metrics_;
  std::shared_ptr<Inbox> inbox_;

  // Before conns_: their sessions allocate from it.
  SessionAllocator session_allocator_;
  nghttp2_mem* SessionMem() { return kRecycleMemory ? session_allocator_.mem() : nullptr; }

  int epoll_fd_ = -1;
  int listen_fd_ = -1;
  nghttp2_session_callbacks* server_callbacks_ = nullptr;
  nghttp2_session_callbacks* client_callbacks_ = nullptr;
  nghttp2_option* session_options_ = nullptr;

  absl::Time now_;
  absl::Time next_scan_ = absl::InfinitePast();
  absl::Time accept_paused_until_ = absl::InfinitePast();
  bool shutting_down_ = false;
  absl::Time shutdown_deadline_ = absl::InfiniteFuture();
  size_t downstream_count_ = 0;

  std::unordered_map<Connection*, std::unique_ptr<Connection>> conns_;
  std::unordered_map<std::string, std::vector<Connection*>> pools_;
  std::unordered_map<std::string, BackendMetrics*> backend_metrics_;
  std::vector<Connection*> dirty_;
  absl::flat_hash_map<uint64_t, std::unique_ptr<Call>> calls_;
  // Finished calls kept for reuse, with their buffers (see ResetForReuse).
  std::vector<std::unique_ptr<Call>> free_calls_;
  uint64_t next_call_id_ = 1;
  std::vector<uint64_t> retries_;
  using Timer = std::pair<absl::Time, uint64_t>;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> deadlines_;
  std::vector<uint8_t> read_buffer_ = std::vector<uint8_t>(kReadBufferSize);
  std::vector<nghttp2_nv> nva_;  // scratch for submitting a header block, reused
};

namespace {

SessionContext* Ctx(void* user_data) { return static_cast<SessionContext*>(user_data); }

int OnBeginHeadersCb(nghttp2_session*, const nghttp2_frame* frame, void* ud) {
  return Ctx(ud)->impl->OnBeginHeaders(Ctx(ud)->conn, frame);
}
int OnHeaderCb(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
               const uint8_t* value, size_t valuelen, uint8_t, void* ud) {
  return Ctx(ud)->impl->OnHeader(Ctx(ud)->conn, frame,
                                 absl::string_view(reinterpret_cast<const char*>(name), namelen),
                                 absl::string_view(reinterpret_cast<const char*>(value), valuelen));
}
int OnFrameRecvCb(nghttp2_session*, const nghttp2_frame* frame, void* ud) {
  return Ctx(ud)->impl->OnFrameRecv(Ctx(ud)->conn, frame);
}
int OnDataChunkCb(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data, size_t len,
                  void* ud) {
  return Ctx(ud)->impl->OnDataChunk(Ctx(ud)->conn, stream_id, data, len);
}
int OnStreamCloseCb(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* ud) {
  return Ctx(ud)->impl->OnStreamClose(Ctx(ud)->conn, stream_id, error_code);
}
int OnInvalidFrameCb(nghttp2_session*, const nghttp2_frame* frame, int error, void* ud) {
  LogWarning("sluice proxy: invalid frame (type ", static_cast<int>(frame->hd.type), ", stream ",
             frame->hd.stream_id, ") from ", Ctx(ud)->conn->peer_, ": ", nghttp2_strerror(error));
  return 0;
}
ssize_t ReadRequestBodyCb(nghttp2_session*, int32_t stream_id, uint8_t* buf, size_t length,
                          uint32_t* flags, nghttp2_data_source*, void* ud) {
  return Ctx(ud)->impl->ReadRequestBody(Ctx(ud)->conn, stream_id, buf, length, flags);
}
ssize_t ReadResponseBodyCb(nghttp2_session*, int32_t stream_id, uint8_t* buf, size_t length,
                           uint32_t* flags, nghttp2_data_source*, void* ud) {
  return Ctx(ud)->impl->ReadResponseBody(Ctx(ud)->conn, stream_id, buf, length, flags);
}

}  // namespace

absl::Status Worker::Impl::Init() {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) return absl::InternalError(absl::StrCat("epoll_create1: ", strerror(errno)));
  int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (efd < 0) return absl::InternalError(absl::StrCat("eventfd: ", strerror(errno)));
  inbox_->event_fd = efd;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kInboxTag;
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, efd, &ev);

  for (nghttp2_session_callbacks** cbs : {&server_callbacks_, &client_callbacks_}) {
    nghttp2_session_callbacks_new(cbs);
    nghttp2_session_callbacks_set_on_begin_headers_callback(*cbs, OnBeginHeadersCb);
    nghttp2_session_callbacks_set_on_header_callback(*cbs, OnHeaderCb);
    nghttp2_session_callbacks_set_on_frame_recv_callback(*cbs, OnFrameRecvCb);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(*cbs, OnDataChunkCb);
    nghttp2_session_callbacks_set_on_stream_close_callback(*cbs, OnStreamCloseCb);
  }
  nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(server_callbacks_, OnInvalidFrameCb);
  nghttp2_option_new(&session_options_);
  // Credit goes back only as the other side drains the bytes: end-to-end flow control.
  nghttp2_option_set_no_auto_window_update(session_options_, 1);
  // Rapid-reset defence: a client resetting streams faster than this loses its connection.
  nghttp2_option_set_stream_reset_rate_limit(session_options_, 1000, 100);
  return absl::OkStatus();
}

absl::StatusOr<int> Worker::Impl::Listen(const std::string& ip, int port) {
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  int family = AF_INET;
  if (ip.find(':') != std::string::npos) {
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&addr);
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(port);
    if (inet_pton(AF_INET6, ip.c_str(), &a6->sin6_addr) != 1) {
      return absl::InvalidArgumentError(absl::StrCat("not an IP address: ", ip));
    }
    family = AF_INET6;
    addr_len = sizeof(sockaddr_in6);
  } else {
    auto* a4 = reinterpret_cast<sockaddr_in*>(&addr);
    a4->sin_family = AF_INET;
    a4->sin_port = htons(port);
    if (inet_pton(AF_INET, ip.c_str(), &a4->sin_addr) != 1) {
      return absl::InvalidArgumentError(absl::StrCat("not an IP address: ", ip));
    }
    addr_len = sizeof(sockaddr_in);
  }
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), addr_len) != 0 || listen(fd, 1024) != 0) {
    const int err = errno;
    close(fd);
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", ip, ":", port, ": ", strerror(err)));
  }
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const int bound = family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port)
                                       : ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  listen_fd_ = fd;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kListenerTag;
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
  return bound;
}

int Worker::Impl::EpollTimeoutMs() {
  if (!dirty_.empty() || !retries_.empty()) return 0;
  absl::Duration wait = absl::Milliseconds(100);  // connection age, GOAWAY and shutdown checks
  if (!deadlines_.empty()) wait = std::min(wait, deadlines_.top().first - now_);
  if (wait <= absl::ZeroDuration()) return 0;
  return static_cast<int>(absl::ToInt64Milliseconds(wait)) + 1;
}

void Worker::Impl::Run() {
  std::vector<epoll_event> events(128);
  now_ = clock_.Now();
  for (;;) {
    const int n =
        epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), EpollTimeoutMs());
    now_ = clock_.Now();
    // Expired calls first: a backend answering at the same instant must not win the race.
    ProcessTimers();
    for (int i = 0; i < n; ++i) {
      const uint64_t tag = events[i].data.u64;
      if (tag == kListenerTag) {
        Accept();
      } else if (tag == kInboxTag) {
        uint64_t count;
        [[maybe_unused]] ssize_t r = read(inbox_->event_fd, &count, sizeof(count));
      } else {
        HandleEvent(reinterpret_cast<Connection*>(tag), events[i].events);
      }
    }
    ProcessInbox();
    ProcessRetries();
    FlushDirty();
    CloseDead();
    if (shutting_down_ && downstream_count_ == 0) break;
  }
  // Every client connection is gone, so every call is; the backend connections go too.
  for (auto& [ptr, conn] : conns_) {
    if (conn->upstream()) metrics_->upstream_connections.fetch_sub(1);
  }
  conns_.clear();
  pools_.clear();
}

void Worker::Impl::ProcessInbox() {
  std::deque<std::pair<uint64_t, absl::StatusOr<std::shared_ptr<client::Backend>>>> picks;
  bool shutdown = false;
  {
    std::lock_guard<std::mutex> lock(inbox_->mu);
    picks.swap(inbox_->picks);
    if (inbox_->shutdown && !shutting_down_) {
      shutdown = true;
      shutdown_deadline_ = inbox_->shutdown_deadline;
    }
  }
  if (shutdown) StartShutdown();
  for (auto& [id, picked] : picks) {
    auto it = calls_.find(id);
    if (it == calls_.end()) continue;  // the client went away meanwhile
    Call* call = it->second.get();
    if (call->down == nullptr || call->finished) continue;
    if (!picked.ok()) {
      RespondError(call, grpc::StatusCode::UNAVAILABLE, std::string(picked.status().message()),
                   false);
    } else {
      AttachToBackend(call, std::move(*picked));
    }
  }
}

void Worker::Impl::StartShutdown() {
  shutting_down_ = true;
  if (listen_fd_ >= 0) {
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
    close(listen_fd_);
    listen_fd_ = -1;
  }
  for (auto& [ptr, conn] : conns_) {
    if (!conn->upstream()) SendGoaway(conn.get());
  }
}

void Worker::Impl::SendGoaway(Connection* conn) {
  if (conn->notice_sent_ || conn->dead_) return;
  // Two steps, as RFC 9113 suggests: a notice first, then the real last-stream-id once streams
  // the client sent meanwhile have arrived.
  nghttp2_submit_shutdown_notice(conn->session_);
  conn->notice_sent_ = true;
  conn->final_goaway_at_ = now_ + absl::Milliseconds(200);
  MarkDirty(conn);
}

void Worker::Impl::ProcessTimers() {
  while (!deadlines_.empty() && deadlines_.top().first <= now_) {
    const Timer timer = deadlines_.top();
    deadlines_.pop();
    auto it = calls_.find(timer.second);
    if (it == calls_.end()) continue;
    Call* call = it->second.get();
    if (call->finished || call->down == nullptr) continue;
    if (call->deadline != timer.first) {
      if (call->attempt_deadline == timer.first) {
        OnAttemptTimeout(call);
      } else if (call->retry_at == timer.first) {
        call->retry_at = absl::InfiniteFuture();
        StartAttempt(call);
      }
      continue;
    }
    metrics_->deadline_exceeded_total.fetch_add(1, std::memory_order_relaxed);
    DetachUpstream(call, NGHTTP2_CANCEL);
    FinishAttempt(call, grpc::StatusCode::DEADLINE_EXCEEDED);
    RespondError(call, grpc::StatusCode::DEADLINE_EXCEEDED, "deadline exceeded (grpc-timeout)",
                 false);
  }
  if (accept_paused_until_ != absl::InfinitePast() && now_ >= accept_paused_until_) {
    accept_paused_until_ = absl::InfinitePast();
    if (listen_fd_ >= 0) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = kListenerTag;
      epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev);
    }
  }
  // Connection housekeeping: a scan of every connection, so not on every loop pass.
  if (now_ < next_scan_ && !shutting_down_) return;
  next_scan_ = now_ + absl::Milliseconds(50);
  for (auto& [ptr, conn] : conns_) {
    if (conn->dead_) continue;
    Connection* c = conn.get();
    if (c->upstream()) {
      // Backends that left discovery, or that no call needs any more, lose their connections.
      if (c->stream_count() == 0 && !c->draining_ && now_ - c->last_used_ >= kUpstreamIdleTimeout) {
        c->draining_ = true;
        nghttp2_session_terminate_session(c->session_, NGHTTP2_NO_ERROR);
        MarkDirty(c);
      }
      continue;
    }
    if (options_.max_connection_age != absl::InfiniteDuration() && !c->notice_sent_ &&
        now_ - c->created_ >= options_.max_connection_age) {
      SendGoaway(c);
      c->force_close_at_ = now_ + options_.max_connection_age_grace;
    }
    if (c->notice_sent_ && !c->final_goaway_sent_ && now_ >= c->final_goaway_at_) {
      nghttp2_submit_goaway(c->session_, NGHTTP2_FLAG_NONE,
                            nghttp2_session_get_last_proc_stream_id(c->session_), NGHTTP2_NO_ERROR,
                            nullptr, 0);
      c->final_goaway_sent_ = true;
      MarkDirty(c);
    }
    if (now_ >= c->force_close_at_ || (shutting_down_ && now_ >= shutdown_deadline_)) {
      MarkDead(c, "closing: grace period over");
    }
  }
}

void Worker::Impl::ProcessRetries() {
  std::vector<uint64_t> retries;
  retries.swap(retries_);
  for (uint64_t id : retries) {
    auto it = calls_.find(id);
    if (it == calls_.end()) continue;
    Call* call = it->second.get();
    if (call->down == nullptr || call->finished) continue;
    StartAttempt(call);
  }
}

void Worker::Impl::Accept() {
  for (;;) {
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    const int fd =
        accept4(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        // Out of descriptors (EMFILE) and the like: the listener stays readable, so stop
        // watching it for a moment instead of spinning on it.
        LogWarning("sluice proxy: accept: ", strerror(errno), "; pausing accepts for 100 ms");
        epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
        accept_paused_until_ = now_ + absl::Milliseconds(100);
      }
      return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    auto owned = std::make_unique<Connection>(false, fd);
    Connection* conn = owned.get();
    conn->context_.impl = this;
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (addr.ss_family == AF_INET) {
      auto* a = reinterpret_cast<sockaddr_in*>(&addr);
      inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
      port = ntohs(a->sin_port);
    } else if (addr.ss_family == AF_INET6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&addr);
      inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
      port = ntohs(a->sin6_port);
    }
    conn->peer_ = absl::StrCat(host, ":", port);
    conn->created_ = now_;
    if (options_.tls_context != nullptr) {
      conn->ssl_ = options_.tls_context->NewSsl();
      SSL_set_fd(conn->ssl_, fd);
      SSL_set_accept_state(conn->ssl_);
      conn->handshaking_ = true;
    }
    nghttp2_session_server_new3(&conn->session_, server_callbacks_, &conn->context_,
                                session_options_, SessionMem());
    const nghttp2_settings_entry settings[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, options_.max_concurrent_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, options_.stream_window},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, static_cast<uint32_t>(kMaxRequestHeaderBytes)},
    };
    nghttp2_submit_settings(conn->session_, NGHTTP2_FLAG_NONE, settings, 3);
    nghttp2_session_set_local_window_size(conn->session_, NGHTTP2_FLAG_NONE, 0,
                                          static_cast<int32_t>(options_.connection_window));
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = reinterpret_cast<uint64_t>(conn);
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
    conns_.emplace(conn, std::move(owned));
    ++downstream_count_;
    metrics_->downstream_connections.fetch_add(1, std::memory_order_relaxed);
    metrics_->downstream_connections_total.fetch_add(1, std::memory_order_relaxed);
    if (shutting_down_) SendGoaway(conn);
    MarkDirty(conn);
  }
}

void Worker::Impl::HandleEvent(Connection* conn, uint32_t events) {
  if (conn->dead_) return;
  if (conn->connecting_) {
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(conn->fd_, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0 || (events & (EPOLLERR | EPOLLHUP)) != 0) {
      metrics_->upstream_connects_failed.fetch_add(1, std::memory_order_relaxed);
      MarkDead(conn, absl::StrCat("connect failed: ", strerror(err != 0 ? err : ECONNREFUSED)));
      return;
    }
    if ((events & EPOLLOUT) == 0) return;
    conn->connecting_ = false;
    if (conn->tls_ != nullptr) {
      StartBackendTls(conn);  // connected_ once the handshake is done
      return;
    }
    conn->connected_ = true;
    MarkDirty(conn);
    return;
  }
  if (conn->handshaking_) {
    Handshake(conn);
    if (conn->handshaking_ || conn->dead_) return;
  }
  if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0) ReadFrom(conn);
  if (!conn->dead_ && (events & EPOLLOUT) != 0) MarkDirty(conn);
}

void Worker::Impl::StartBackendTls(Connection* conn) {
  conn->ssl_ = conn->tls_->NewSsl();
  SSL_set_fd(conn->ssl_, conn->fd_);
  SSL_set_connect_state(conn->ssl_);
  absl::StatusOr<HostPort> hp = ParseHostPort(conn->address_);
  if (hp.ok()) {
    // The certificate must name the address discovery gave: its IP, or its host name (+SNI).
    if (IsIpLiteral(hp->host)) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(conn->ssl_), hp->host.c_str());
    } else {
      SSL_set1_host(conn->ssl_, hp->host.c_str());
      SSL_set_tlsext_host_name(conn->ssl_, hp->host.c_str());
    }
  }
  conn->handshaking_ = true;
  Handshake(conn);
}

void Worker::Impl::Handshake(Connection* conn) {
  ERR_clear_error();
  const int rc = SSL_do_handshake(conn->ssl_);
  if (rc == 1) {
    if (conn->upstream()) {
      const unsigned char* alpn = nullptr;
      unsigned int alpn_len = 0;
      SSL_get0_alpn_selected(conn->ssl_, &alpn, &alpn_len);
      if (alpn_len != 2 || memcmp(alpn, "h2", 2) != 0) {
        LogWarning("sluice proxy: backend ", conn->address_, " did not agree to ALPN h2");
        MarkDead(conn, "no ALPN h2");
        return;
      }
      conn->connected_ = true;
    }
    conn->handshaking_ = false;
    SetEpollOut(conn, false);
    MarkDirty(conn);  // our SETTINGS are waiting
    return;
  }
  const int err = SSL_get_error(conn->ssl_, rc);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
    SetEpollOut(conn, err == SSL_ERROR_WANT_WRITE);
    return;
  }
  char reason[256] = "closed";
  const unsigned long e = ERR_get_error();
  if (e != 0) ERR_error_string_n(e, reason, sizeof(reason));
  metrics_->protocol_errors_total.fetch_add(1, std::memory_order_relaxed);
  std::string why = reason;
  if (!conn->upstream() && !options_.tls_client_ca_file.empty()) {
    // mTLS: say plainly when it was the client's certificate that was refused.
    const long verify = SSL_get_verify_result(conn->ssl_);
    if (verify != X509_V_OK) {
      why = absl::StrCat("client certificate refused: ", X509_verify_cert_error_string(verify),
                         " (", reason, ")");
    } else if (ERR_GET_REASON(e) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
      why = absl::StrCat("client sent no certificate (", reason, ")");
    }
    if (why != reason) {
      metrics_->client_certificate_rejections_total.fetch_add(1, std::memory_order_relaxed);
    }
  }
  LogWarning("sluice proxy: TLS handshake with ", conn->upstream() ? "backend " : "client ",
             conn->peer_, " failed: ", why);
  MarkDead(conn, "TLS handshake failed");
}

ssize_t Worker::Impl::RawRead(Connection* conn, uint8_t* buf, size_t len) {
  if (conn->ssl_ == nullptr) {
    const ssize_t n = read(conn->fd_, buf, len);
    if (n >= 0) return n;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? kWouldBlock : kIoError;
  }
  ERR_clear_error();
  const int n = SSL_read(conn->ssl_, buf, static_cast<int>(len));
  if (n > 0) return n;
  const int err = SSL_get_error(conn->ssl_, n);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return kWouldBlock;
  return err == SSL_ERROR_ZERO_RETURN ? 0 : kIoError;
}

ssize_t Worker::Impl::RawWrite(Connection* conn, const char* data, size_t len) {
  if (conn->ssl_ == nullptr) {
    const ssize_t n = send(conn->fd_, data, len, MSG_NOSIGNAL);
    if (n >= 0) return n;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? kWouldBlock : kIoError;
  }
  ERR_clear_error();
  const int n = SSL_write(conn->ssl_, data, static_cast<int>(std::min<size_t>(len, 1 << 30)));
  if (n > 0) return n;
  const int err = SSL_get_error(conn->ssl_, n);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return kWouldBlock;
  return kIoError;
}

void Worker::Impl::ReadFrom(Connection* conn) {
  // A few reads per event, so one busy connection cannot starve the others. TLS reads until
  // the socket is dry: bytes OpenSSL has buffered would not wake epoll again.
  for (int round = 0; (round < 4 || conn->ssl_ != nullptr) && !conn->dead_; ++round) {
    const ssize_t n = RawRead(conn, read_buffer_.data(), read_buffer_.size());
    if (n == 0) {
      MarkDead(conn, "peer closed the connection");
      return;
    }
    if (n == kWouldBlock) break;
    if (n < 0) {
      std::string why = absl::StrCat("read: ", strerror(errno));
      if (const unsigned long e = conn->ssl_ != nullptr ? ERR_get_error() : 0; e != 0) {
        char reason[256];
        ERR_error_string_n(e, reason, sizeof(reason));
        why = absl::StrCat("TLS: ", reason);
        // With TLS 1.3 a backend refuses the proxy's client certificate only after the
        // handshake, with an alert: say so without debug logging.
        if (conn->upstream()) {
          LogWarning("sluice proxy: backend ", conn->peer_, " closed the TLS connection: ", reason);
        }
      }
      MarkDead(conn, why);
      return;
    }
    const ssize_t rv = nghttp2_session_mem_recv(conn->session_, read_buffer_.data(), n);
    if (rv < 0) {
      // Not HTTP/2: GOAWAY(PROTOCOL_ERROR); a flood of frames that each ask for an answer
      // (PING, SETTINGS) from a peer that does not read them: GOAWAY(ENHANCE_YOUR_CALM). Then
      // close, this connection only.
      metrics_->protocol_errors_total.fetch_add(1, std::memory_order_relaxed);
      LogWarning("sluice proxy: closing ", conn->upstream() ? "backend " : "client ", "connection ",
                 conn->peer_, ": ", nghttp2_strerror(static_cast<int>(rv)));
      nghttp2_session_terminate_session(conn->session_, rv == NGHTTP2_ERR_FLOODED
                                                            ? NGHTTP2_ENHANCE_YOUR_CALM
                                                            : NGHTTP2_PROTOCOL_ERROR);
      MarkDirty(conn);
      break;
    }
    if (conn->ssl_ == nullptr && static_cast<size_t>(n) < read_buffer_.size()) break;
  }
  MarkDirty(conn);
}

void Worker::Impl::SetEpollOut(Connection* conn, bool on) {
  if (conn->epollout_ == on) return;
  conn->epollout_ = on;
  epoll_event ev{};
  ev.events = EPOLLIN | (on ? static_cast<uint32_t>(EPOLLOUT) : 0u);
  ev.data.u64 = reinterpret_cast<uint64_t>(conn);
  epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, conn->fd_, &ev);
}

void Worker::Impl::Flush(Connection* conn) {
  if (conn->dead_ || conn->connecting_ || conn->handshaking_) return;
  for (;;) {
    // Gather frames into one buffer, then one write: few, full writes are the cheap ones.
    while (conn->out_.size() - conn->out_off_ < options_.write_buffer_limit) {
      const uint8_t* data = nullptr;
      const ssize_t n = nghttp2_session_mem_send(conn->session_, &data);
      if (n < 0) {
        MarkDead(conn, absl::StrCat("nghttp2: ", nghttp2_strerror(static_cast<int>(n))));
        return;
      }
      if (n == 0) break;
      conn->out_.append(reinterpret_cast<const char*>(data), n);
    }
    if (conn->out_off_ == conn->out_.size()) break;
    const ssize_t w =
        RawWrite(conn, conn->out_.data() + conn->out_off_, conn->out_.size() - conn->out_off_);
    if (w < 0) {
      if (w == kWouldBlock) break;
      MarkDead(conn, absl::StrCat("write: ", strerror(errno)));
      return;
    }
    conn->out_off_ += w;
    if (conn->out_off_ < conn->out_.size()) break;
    conn->out_.clear();
    conn->out_off_ = 0;
  }
  const bool pending = conn->out_off_ < conn->out_.size();
  SetEpollOut(conn, pending);
  if (!pending && !nghttp2_session_want_read(conn->session_) &&
      !nghttp2_session_want_write(conn->session_)) {
    MarkDead(conn, "");
  }
}

void Worker::Impl::FlushDirty() {
  // Flushing one session can return credit on another (consume), which then has a
  // WINDOW_UPDATE to send: a few rounds settle it; the rest waits for the next pass.
  for (int round = 0; round < 4 && !dirty_.empty(); ++round) {
    std::vector<Connection*> batch;
    batch.swap(dirty_);
    for (Connection* conn : batch) {
      conn->dirty_ = false;
      Flush(conn);
    }
  }
}

void Worker::Impl::MarkDead(Connection* conn, absl::string_view why) {
  if (conn->dead_) return;
  conn->dead_ = true;
  if (!why.empty()) {
    LogDebug("sluice proxy: worker ", index_, ": ", conn->upstream() ? "backend " : "client ",
             conn->peer_, ": ", why);
  }
}

void Worker::Impl::CloseDead() {
  std::vector<Connection*> dead;
  for (auto& [ptr, conn] : conns_) {
    if (conn->dead_) dead.push_back(ptr);
  }
  if (dead.empty()) return;
  dirty_.erase(std::remove_if(dirty_.begin(), dirty_.end(), [](Connection* c) { return c->dead_; }),
               dirty_.end());
  for (Connection* conn : dead) {
    if (conn->upstream()) {
      OnUpstreamConnectionLost(conn);
      auto& pool = pools_[conn->pool_key_];
      pool.erase(std::remove(pool.begin(), pool.end(), conn), pool.end());
      metrics_->upstream_connections.fetch_sub(1, std::memory_order_relaxed);
    } else {
      for (Call* call : conn->TakeStreams()) {
        call->down = nullptr;
        OnDownstreamClosed(call);
      }
      --downstream_count_;
      metrics_->downstream_connections.fetch_sub(1, std::memory_order_relaxed);
    }
  }
  for (Connection* conn : dead) {
    dirty_.erase(std::remove(dirty_.begin(), dirty_.end(), conn), dirty_.end());
    // Leave the epoll set before closing: close() alone removes the registration only when no
    // other descriptor shares the socket, and a fork elsewhere in the process (a child between
    // fork and exec) would keep it registered, so a later event would name a freed connection.
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, conn->fd_, nullptr);
    conns_.erase(conn);  // closes the fd
  }
}

// ---- Calls ----

Call* Worker::Impl::NewCall(Connection* down, int32_t stream_id) {
  std::unique_ptr<Call> call;
  if (free_calls_.empty()) {
    call = std::make_unique<Call>();
  } else {
    call = std::move(free_calls_.back());
    free_calls_.pop_back();
  }
  call->id = next_call_id_++;
  call->down = down;
  call->down_stream = stream_id;
  Call* raw = call.get();
  calls_.emplace(raw->id, std::move(call));
  down->AddStream(stream_id, raw);
  metrics_->streams.fetch_add(1, std::memory_order_relaxed);
  metrics_->streams_total.fetch_add(1, std::memory_order_relaxed);
  return raw;
}

void Worker::Impl::FreeCall(Call* call) {
  FinishAttempt(call, grpc::StatusCode::CANCELLED);
  metrics_->buffered_bytes.fetch_sub(call->accounted_bytes, std::memory_order_relaxed);
  metrics_->streams.fetch_sub(1, std::memory_order_relaxed);
  auto it = calls_.find(call->id);
  if (it == calls_.end()) return;
  if (kRecycleMemory && free_calls_.size() < kMaxFreeCalls) {
    ResetForReuse(call);
    free_calls_.push_back(std::move(it->second));
  }
  calls_.erase(it);
}

void Worker::Impl::ResetForReuse(Call* call) {
  static_cast<CallState&>(*call) = CallState{};
  // Cleared buffers keep their capacity (a warm proxy then allocates nothing per call for
  // headers and small messages), but not a large message's: an idle pool should not hold
  // megabytes.
  constexpr size_t kKeptBufferBytes = 16 << 10;
  call->request_headers.clear();
  call->path.clear();
  call->req_buf.clear();
  call->resp_buf.clear();
  call->resp_pending.clear();
  call->resp_trailers.clear();
  if (call->req_buf.capacity() > kKeptBufferBytes) call->req_buf.shrink_to_fit();
  if (call->resp_buf.capacity() > kKeptBufferBytes) call->resp_buf.shrink_to_fit();
}

int Worker::Impl::OnBeginHeaders(Connection* conn, const nghttp2_frame* frame) {
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  if (!conn->upstream()) {
    if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) NewCall(conn, frame->hd.stream_id);
    return 0;
  }
  if (Call* call = conn->FindStream(frame->hd.stream_id)) call->resp_pending.clear();
  return 0;
}

int Worker::Impl::OnHeader(Connection* conn, const nghttp2_frame* frame, absl::string_view name,
                           absl::string_view value) {
  Call* call = conn->FindStream(frame->hd.stream_id);
  if (call == nullptr) return 0;
  if (IsHopByHopHeader(name)) return 0;
  if (!conn->upstream()) {
    if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;  // request trailers: not gRPC
    call->request_header_bytes += name.size() + value.size() + 32;
    if (call->request_header_bytes > kMaxRequestHeaderBytes) {
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // resets this stream only
    }
    call->request_headers.Add(name, value);
    return 0;
  }
  call->resp_pending.Add(name, value);
  return 0;
}

int Worker::Impl::OnFrameRecv(Connection* conn, const nghttp2_frame* frame) {
  if (frame->hd.type == NGHTTP2_GOAWAY) {
    if (conn->upstream()) {
      // No new streams here; nghttp2 closes streams above last-stream-id as REFUSED_STREAM,
      // which retries them elsewhere.
      conn->goaway_received_ = true;
      LogInfo("sluice proxy: backend ", conn->address_, " sent GOAWAY (last stream ",
              frame->goaway.last_stream_id, ")");
    }
    return 0;
  }
  if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) return 0;
  Call* call = conn->FindStream(frame->hd.stream_id);
  if (call == nullptr) return 0;
  const bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (!conn->upstream()) {
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
      call->req_done = end_stream;
      OnRequestHeaders(call);
      return 0;
    }
    if (end_stream) {
      call->req_done = true;
      ResumeRequest(call);
    }
    return 0;
  }
  if (frame->hd.type == NGHTTP2_HEADERS) {
    if (frame->headers.cat == NGHTTP2_HCAT_RESPONSE) {
      const std::optional<absl::string_view> status = call->resp_pending.Find(":status");
      if (status && !status->empty() && (*status)[0] == '1' && !end_stream) {
        return 0;  // 1xx informational: not forwarded
      }
      OnUpstreamResponseHeaders(call, end_stream);
    } else if (end_stream) {
      call->resp_trailers.swap(call->resp_pending);
      OnUpstreamEnded(call);
    }
    return 0;
  }
  if (end_stream) OnUpstreamEnded(call);
  return 0;
}

int Worker::Impl::OnDataChunk(Connection* conn, int32_t stream_id, const uint8_t* data,
                              size_t len) {
  Call* call = conn->FindStream(stream_id);
  if (!conn->upstream()) {
    if (call == nullptr || call->finished) {
      // Nobody will forward these bytes: give the credit back at once.
      nghttp2_session_consume(conn->session_, stream_id, len);
      return 0;
    }
    call->req_buf.append(reinterpret_cast<const char*>(data), len);
    call->req_received += len;
    if (call->retain && call->req_buf.size() > options_.retry_buffer_limit) {
      call->retain = false;  // too big to resend: this call will not be retried
    }
    Account(call);
    ResumeRequest(call);
    return 0;
  }
  if (call == nullptr || call->down == nullptr) {
    nghttp2_session_consume(conn->session_, stream_id, len);
    return 0;
  }
  call->resp_buf.append(reinterpret_cast<const char*>(data), len);
  call->resp_unconsumed += len;
  Account(call);
  ResumeResponse(call);
  return 0;
}

int Worker::Impl::OnStreamClose(Connection* conn, int32_t stream_id, uint32_t error_code) {
  Call* call = conn->FindStream(stream_id);
  if (call == nullptr) return 0;
  conn->EraseStream(stream_id);
  if (!conn->upstream()) {
    // Return the credit of request bytes nobody will forward now.
    DropRequest(call);
    call->down = nullptr;
    OnDownstreamClosed(call);
  } else {
    if (call->resp_unconsumed > 0) {
      // The stream is over: its last bytes free the connection window now; they are bounded by
      // the stream window already.
      nghttp2_session_consume_connection(conn->session_, call->resp_unconsumed);
      call->resp_unconsumed = 0;
    }
    call->up = nullptr;
    call->up_stream = 0;
    OnUpstreamClosed(call, error_code);
  }
  return 0;
}

void Worker::Impl::DropRequest(Call* call) {
  if (call->down != nullptr && call->req_received > call->req_consumed) {
    nghttp2_session_consume(call->down->session_, call->down_stream,
                            call->req_received - call->req_consumed);
    MarkDirty(call->down);
  }
  call->req_consumed = call->req_received;
  call->req_base = call->req_received;
  call->req_sent = call->req_received;
  call->req_buf.clear();
  call->req_buf.shrink_to_fit();
  call->retain = false;
  Account(call);
}

void Worker::Impl::OnRequestHeaders(Call* call) {
  const HeaderBlock& h = call->request_headers;
  const std::optional<absl::string_view> method = h.Find(":method");
  const std::optional<absl::string_view> path = h.Find(":path");
  const std::optional<absl::string_view> content_type = h.Find("content-type");
  if (!path || path->empty() || (*path)[0] != '/') {
    metrics_->rejected_requests_total.fetch_add(1, std::memory_order_relaxed);
    LogWarning("sluice proxy: request without a valid :path from ", call->down->peer_);
    RespondHttpError(call, 400, grpc::StatusCode::INTERNAL, "missing or invalid :path");
    return;
  }
  call->path.assign(path->data(), path->size());
  if (!method || *method != "POST") {
    metrics_->rejected_requests_total.fetch_add(1, std::memory_order_relaxed);
    LogWarning("sluice proxy: non-POST request (", method ? *method : "none", ") for ", *path,
               " from ", call->down->peer_);
    RespondHttpError(call, 405, grpc::StatusCode::INTERNAL,
                     absl::StrCat("gRPC requires POST, got ", method ? *method : "none"));
    return;
  }
  if (!content_type || !absl::StartsWith(*content_type, "application/grpc")) {
    metrics_->rejected_requests_total.fetch_add(1, std::memory_order_relaxed);
    LogWarning("sluice proxy: non-gRPC content-type '", content_type ? *content_type : "", "' for ",
               *path, " from ", call->down->peer_);
    RespondHttpError(
        call, 415, grpc::StatusCode::INTERNAL,
        absl::StrCat("invalid gRPC content-type '", content_type ? *content_type : "", "'"));
    return;
  }
  if (const std::optional<absl::string_view> timeout = h.Find("grpc-timeout")) {
    if (auto d = ParseGrpcTimeout(*timeout)) {
      call->deadline = now_ + *d;
      deadlines_.push({call->deadline, call->id});
    }
  }
  call->balancer = router_->ForPath(call->path);
  if (call->balancer == nullptr) {
    metrics_->rejected_requests_total.fetch_add(1, std::memory_order_relaxed);
    RespondError(
        call, grpc::StatusCode::UNIMPLEMENTED,
        absl::StrCat("sluice proxy has no route for service '", ServiceOfPath(call->path), "'"),
        false);
    return;
  }
  call->idempotent = call->balancer->IsIdempotent(call->path);
  if (!options_.hash_header.empty()) {
    if (const std::optional<absl::string_view> key = h.Find(options_.hash_header)) {
      call->hash_key = HashCallKey(*key);
    }
  }
  StartAttempt(call);
}

void Worker::Impl::StartAttempt(Call* call) {
  absl::StatusOr<std::shared_ptr<client::Backend>> picked =
      call->balancer->Pick(call->deadline, call->hash_key, call->previous_backend.get(),
                           /*fail_fast=*/true);
  if (!picked.ok()) {
    if (options_.pick_wait > absl::ZeroDuration() && now_ < call->deadline &&
        call->balancer->ReadyCount() == 0) {
      // No endpoint is pickable (startup, or every backend left or failed a moment ago): as a
      // library caller does, wait for one off this thread, until the call's deadline or at most
      // pick_wait.
      std::shared_ptr<Inbox> inbox = inbox_;
      const uint64_t id = call->id;
      call->balancer->PickAsync(std::min(call->deadline, now_ + options_.pick_wait), call->hash_key,
                                call->previous_backend.get(), /*fail_fast=*/false,
                                [inbox, id](absl::StatusOr<std::shared_ptr<client::Backend>> r) {
                                  std::lock_guard<std::mutex> lock(inbox->mu);
                                  inbox->picks.emplace_back(id, std::move(r));
                                  inbox->Wake();
                                });
      return;
    }
    RespondError(call, grpc::StatusCode::UNAVAILABLE, std::string(picked.status().message()),
                 false);
    return;
  }
  AttachToBackend(call, std::move(*picked));
}

BackendMetrics* Worker::Impl::MetricsFor(const std::string& address) {
  auto it = backend_metrics_.find(address);
  if (it != backend_metrics_.end()) return it->second;
  BackendMetrics* m = metrics_->ForBackend(address);
  backend_metrics_.emplace(address, m);
  return m;
}

void Worker::Impl::AttachToBackend(Call* call, std::shared_ptr<client::Backend> backend) {
  call->backend = std::move(backend);
  call->backend_metrics = MetricsFor(call->backend->address());
  call->attempt_start = now_;
  call->attempt_open = true;
  call->resp_headers_received = false;
  ++call->attempts;
  call->balancer->OnCallStarted(*call->backend);

  Connection* up = UpstreamFor(call->backend->address(), BackendTlsFor(call->balancer));
  if (up == nullptr) {
    RetryOrFail(call, grpc::StatusCode::UNAVAILABLE,
                absl::StrCat("cannot connect to backend ", call->backend->address()), true);
    return;
  }
  std::string timeout;
  if (call->deadline != absl::InfiniteFuture()) {
    // The backend gets what is left of the call's time, which matters after a retry.
    const int64_t ms = std::max<int64_t>(
        1, absl::ToInt64Milliseconds(absl::Ceil(call->deadline - now_, absl::Milliseconds(1))));
    timeout = ms < 100'000'000 ? absl::StrCat(ms, "m") : absl::StrCat(ms / 1000 + 1, "S");
    call->request_headers.ToNv(&nva_, "grpc-timeout", timeout);
  } else {
    call->request_headers.ToNv(&nva_);
  }
  nghttp2_data_provider body{};
  body.read_callback = ReadRequestBodyCb;
  const bool empty_body = call->req_done && call->req_buf.empty();
  const int32_t stream_id = nghttp2_submit_request(up->session_, nullptr, nva_.data(), nva_.size(),
                                                   empty_body ? nullptr : &body, nullptr);
  if (stream_id < 0) {
    RetryOrFail(call, grpc::StatusCode::UNAVAILABLE,
                absl::StrCat("cannot open a stream to backend ", call->backend->address(), ": ",
                             nghttp2_strerror(stream_id)),
                true);
    return;
  }
  call->up = up;
  call->up_stream = stream_id;
  call->req_sent = call->req_base;
  call->req_deferred = false;
  up->AddStream(stream_id, call);
  up->last_used_ = now_;
  MarkDirty(up);
  // A backend that accepts the stream but never answers (paused, wedged) shows no status code;
  // only a timer catches it. Idempotent calls still fully buffered only: others cannot go
  // elsewhere, so cutting them short would just fail them.
  call->attempt_deadline = absl::InfiniteFuture();
  const absl::Duration attempt_timeout = call->balancer->options().retry.attempt_timeout;
  if (call->idempotent && call->retain && call->req_base == 0 &&
      attempt_timeout != absl::InfiniteDuration() && now_ + attempt_timeout < call->deadline) {
    call->attempt_deadline = now_ + attempt_timeout;
    deadlines_.push({call->attempt_deadline, call->id});
  }
}

const TlsContext* Worker::Impl::BackendTlsFor(const client::Balancer* balancer) const {
  if (options_.route_backend_tls.empty()) return options_.backend_tls_context;
  auto it = options_.route_backend_tls.find(balancer);
  return it == options_.route_backend_tls.end() ? options_.backend_tls_context : it->second;
}

Connection* Worker::Impl::UpstreamFor(const std::string& address, const TlsContext* tls) {
  // Routes with their own TLS settings keep their own connections to a backend they share.
  std::string route_key;  // stays empty (no allocation) for the common case
  if (tls != options_.backend_tls_context) {
    route_key = absl::StrCat(address, " tls@", reinterpret_cast<uintptr_t>(tls));
  }
  const std::string& pool_key = route_key.empty() ? address : route_key;
  auto& pool = pools_[pool_key];
  Connection* best = nullptr;
  size_t usable = 0;
  for (Connection* conn : pool) {
    if (conn->dead_ || conn->goaway_received_ || conn->draining_) continue;
    ++usable;
    const uint32_t remote_max = nghttp2_session_get_remote_settings(
        conn->session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
    const size_t capacity = std::min(remote_max, options_.streams_per_upstream_connection);
    if (conn->stream_count() < capacity) return conn;
    if (best == nullptr || conn->stream_count() < best->stream_count()) best = conn;
  }
  if (usable < static_cast<size_t>(options_.max_upstream_connections) || best == nullptr) {
    if (Connection* fresh = ConnectUpstream(address, tls, pool_key)) return fresh;
  }
  // Every connection is full: nghttp2 queues the stream until the backend allows it.
  return best;
}

Connection* Worker::Impl::ConnectUpstream(const std::string& address, const TlsContext* tls,
                                          const std::string& pool_key) {
  absl::StatusOr<HostPort> hp = ParseHostPort(address);
  if (!hp.ok()) return nullptr;
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  if (IsIpLiteral(hp->host)) hints.ai_flags |= AI_NUMERICHOST;
  addrinfo* result = nullptr;
  const std::string port = absl::StrCat(hp->port);
  // Discovery hands out IP addresses; a name (rare) resolves here, on the loop thread.
  if (getaddrinfo(hp->host.c_str(), port.c_str(), &hints, &result) != 0 || result == nullptr) {
    return nullptr;
  }
  const int fd = socket(result->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    freeaddrinfo(result);
    return nullptr;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  const int rc = connect(fd, result->ai_addr, result->ai_addrlen);
  const int err = errno;
  freeaddrinfo(result);
  if (rc != 0 && err != EINPROGRESS) {
    close(fd);
    metrics_->upstream_connects_failed.fetch_add(1, std::memory_order_relaxed);
    return nullptr;
  }
  auto owned = std::make_unique<Connection>(true, fd);
  Connection* conn = owned.get();
  conn->context_.impl = this;
  conn->address_ = address;
  conn->peer_ = address;
  // With TLS, even an immediate connect goes through the EPOLLOUT path, which starts TLS.
  conn->tls_ = tls;
  conn->pool_key_ = pool_key;
  conn->connecting_ = rc != 0 || tls != nullptr;
  conn->connected_ = !conn->connecting_;
  conn->last_used_ = now_;
  nghttp2_session_client_new3(&conn->session_, client_callbacks_, &conn->context_, session_options_,
                              SessionMem());
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, options_.stream_window},
  };
  nghttp2_submit_settings(conn->session_, NGHTTP2_FLAG_NONE, settings, 2);
  nghttp2_session_set_local_window_size(conn->session_, NGHTTP2_FLAG_NONE, 0,
                                        static_cast<int32_t>(options_.connection_window));
  epoll_event ev{};
  ev.events = EPOLLIN | (conn->connecting_ ? static_cast<uint32_t>(EPOLLOUT) : 0u);
  conn->epollout_ = conn->connecting_;
  ev.data.u64 = reinterpret_cast<uint64_t>(conn);
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
  pools_[pool_key].push_back(conn);
  conns_.emplace(conn, std::move(owned));
  metrics_->upstream_connections.fetch_add(1, std::memory_order_relaxed);
  return conn;
}

ssize_t Worker::Impl::ReadRequestBody(Connection* up, int32_t stream_id, uint8_t* buf,
                                      size_t length, uint32_t* flags) {
  Call* call = up->FindStream(stream_id);
  if (call == nullptr) return NGHTTP2_ERR_DEFERRED;  // detached; its RST is queued
  const size_t offset = call->req_sent - call->req_base;
  const size_t n = std::min(length, call->req_buf.size() - offset);
  if (n > 0) memcpy(buf, call->req_buf.data() + offset, n);
  call->req_sent += n;
  if (call->req_sent > call->req_consumed && call->down != nullptr) {
    // The backend's session has the bytes now: the client may send as much again.
    nghttp2_session_consume(call->down->session_, call->down_stream,
                            call->req_sent - call->req_consumed);
    call->req_consumed = call->req_sent;
    MarkDirty(call->down);
  }
  if (!call->retain) {
    const size_t sent = call->req_sent - call->req_base;
    if (sent == call->req_buf.size() || sent >= (16u << 10)) {
      call->req_buf.erase(0, sent);
      call->req_base = call->req_sent;
      Account(call);
    }
  }
  if (call->req_sent - call->req_base == call->req_buf.size()) {
    if (call->req_done) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      return static_cast<ssize_t>(n);
    }
    if (n == 0) {
      call->req_deferred = true;
      return NGHTTP2_ERR_DEFERRED;
    }
  }
  return static_cast<ssize_t>(n);
}

ssize_t Worker::Impl::ReadResponseBody(Connection* down, int32_t stream_id, uint8_t* buf,
                                       size_t length, uint32_t* flags) {
  Call* call = down->FindStream(stream_id);
  if (call == nullptr) return NGHTTP2_ERR_DEFERRED;
  const size_t n = std::min(length, call->resp_buf.size() - call->resp_off);
  if (n > 0) memcpy(buf, call->resp_buf.data() + call->resp_off, n);
  call->resp_off += n;
  if (call->up != nullptr && call->resp_unconsumed > 0) {
    const uint64_t credit = std::min<uint64_t>(n, call->resp_unconsumed);
    nghttp2_session_consume(call->up->session_, call->up_stream, credit);
    call->resp_unconsumed -= credit;
    MarkDirty(call->up);
  }
  if (call->resp_off == call->resp_buf.size()) {
    call->resp_buf.clear();
    call->resp_off = 0;
    Account(call);
  } else if (call->resp_off >= (64u << 10)) {
    call->resp_buf.erase(0, call->resp_off);
    call->resp_off = 0;
    Account(call);
  }
  if (call->resp_buf.empty()) {
    if (call->resp_ended) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      if (!call->resp_trailers.empty()) {
        call->resp_trailers.ToNv(&nva_);
        if (nghttp2_submit_trailer(down->session_, stream_id, nva_.data(), nva_.size()) == 0) {
          *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        }
      }
      return static_cast<ssize_t>(n);
    }
    if (n == 0) {
      call->resp_deferred = true;
      return NGHTTP2_ERR_DEFERRED;
    }
  }
  return static_cast<ssize_t>(n);
}

void Worker::Impl::ResumeResponse(Call* call) {
  if (call->down == nullptr || !call->resp_submitted) return;
  if (call->resp_deferred) {
    call->resp_deferred = false;
    nghttp2_session_resume_data(call->down->session_, call->down_stream);
  }
  MarkDirty(call->down);
}

void Worker::Impl::ResumeRequest(Call* call) {
  if (call->up == nullptr) return;
  if (call->req_deferred) {
    call->req_deferred = false;
    nghttp2_session_resume_data(call->up->session_, call->up_stream);
  }
  MarkDirty(call->up);
}

void Worker::Impl::OnUpstreamResponseHeaders(Call* call, bool end_stream) {
  call->resp_headers_received = true;
  // The backend answered: a streaming response may rightly take long from here.
  call->attempt_deadline = absl::InfiniteFuture();
  const grpc::StatusCode early = end_stream ? StatusOf(call->resp_pending) : grpc::StatusCode::OK;
  if (call->idempotent && call->down != nullptr &&
      (early == grpc::StatusCode::UNAVAILABLE || early == grpc::StatusCode::CANCELLED)) {
    // A trailers-only UNAVAILABLE of an idempotent method, or the CANCELLED a gRPC server gives
    // calls it had not started when it shuts down (the client did not cancel: its stream is
    // still open): another backend may do better.
    const std::optional<absl::string_view> message = call->resp_pending.Find("grpc-message");
    if (TryRetry(call, early, message ? std::string(*message) : "", false)) {
      DetachUpstream(call, NGHTTP2_NO_ERROR);
      return;
    }
    // No retry: the backend's own answer goes to the client below, as it is.
  }
  if (call->retain) {
    // The backend took the call: no more resending, so stop keeping what was sent.
    call->retain = false;
    const size_t sent = call->req_sent - call->req_base;
    call->req_buf.erase(0, sent);
    call->req_base = call->req_sent;
    Account(call);
  }
  if (call->down == nullptr) return;
  if (end_stream) {
    // Trailers-only: the whole answer is this one block.
    const grpc::StatusCode code = StatusOf(call->resp_pending);
    if (code != grpc::StatusCode::OK) {
      const std::optional<absl::string_view> message = call->resp_pending.Find("grpc-message");
      LogDebug("sluice proxy: ", call->path, " on ",
               (call->up ? call->up->address_ : std::string()), ": trailers-only status ",
               static_cast<int>(code), " ", message.value_or(""));
    }
    call->resp_pending.ToNv(&nva_);
    nghttp2_submit_response(call->down->session_, call->down_stream, nva_.data(), nva_.size(),
                            nullptr);
    call->resp_submitted = true;
    call->resp_ended = true;
    call->finished = true;
    FinishAttempt(call, code);
    DropRequest(call);
    MarkDirty(call->down);
    return;
  }
  call->resp_pending.ToNv(&nva_);
  nghttp2_data_provider body{};
  body.read_callback = ReadResponseBodyCb;
  nghttp2_submit_response(call->down->session_, call->down_stream, nva_.data(), nva_.size(), &body);
  call->resp_submitted = true;
  MarkDirty(call->down);
}

void Worker::Impl::OnUpstreamEnded(Call* call) {
  if (call->finished) return;
  call->resp_ended = true;
  call->finished = true;
  FinishAttempt(call, call->resp_trailers.empty() ? grpc::StatusCode::UNKNOWN
                                                  : StatusOf(call->resp_trailers));
  if (!call->req_done) DropRequest(call);  // the backend answered before the client finished
  ResumeResponse(call);
}

void Worker::Impl::OnAttemptTimeout(Call* call) {
  call->attempt_deadline = absl::InfiniteFuture();
  // Past the point of resending (more request bytes than the retry buffer keeps), the attempt
  // may use the call's whole deadline, as for non-idempotent methods.
  if (!call->attempt_open || call->up == nullptr || call->resp_headers_received || !call->retain ||
      call->req_base != 0) {
    return;
  }
  metrics_->attempt_timeouts_total.fetch_add(1, std::memory_order_relaxed);
  const std::string message =
      absl::StrCat("backend ", call->backend->address(), " gave no answer within attempt timeout (",
                   absl::FormatDuration(call->balancer->options().retry.attempt_timeout), "); ",
                   call->attempts, " attempt(s) made");
  LogDebug("sluice proxy: ", call->path, ": ", message);
  DetachUpstream(call, NGHTTP2_CANCEL);
  // UNAVAILABLE, not DEADLINE_EXCEEDED: it counts as the backend's failure for outlier
  // detection, and the client's own deadline has not passed.
  RetryOrFail(call, grpc::StatusCode::UNAVAILABLE, message, false);
}

void Worker::Impl::FinishAttempt(Call* call, grpc::StatusCode code) {
  if (call->budget_retry) {
    // Also when the retry never got to start (no endpoint, client gone): the budget is shared.
    call->balancer->EndRetry();
    call->budget_retry = false;
  }
  if (!call->attempt_open) return;
  call->attempt_open = false;
  const absl::Duration latency = now_ - call->attempt_start;
  call->balancer->OnCallFinished(*call->backend, code, latency);
  call->backend_metrics->Record(static_cast<int>(code), latency);
  call->previous_backend = std::move(call->backend);
  call->backend = nullptr;
}

void Worker::Impl::DetachUpstream(Call* call, uint32_t rst) {
  Connection* up = call->up;
  if (up == nullptr) return;
  if (call->resp_unconsumed > 0) {
    nghttp2_session_consume(up->session_, call->up_stream, call->resp_unconsumed);
    call->resp_unconsumed = 0;
  }
  if (rst == NGHTTP2_NO_ERROR &&
      nghttp2_session_get_stream_local_close(up->session_, call->up_stream) == 0) {
    // The backend is done but our side of the stream is not: end it, or it would hold one of
    // the connection's stream slots until the backend resets it.
    rst = NGHTTP2_CANCEL;
  }
  if (rst != NGHTTP2_NO_ERROR) {
    nghttp2_submit_rst_stream(up->session_, NGHTTP2_FLAG_NONE, call->up_stream, rst);
  }
  up->EraseStream(call->up_stream);
  call->up = nullptr;
  call->up_stream = 0;
  MarkDirty(up);
}

bool Worker::Impl::TryRetry(Call* call, grpc::StatusCode code, const std::string& message,
                            bool transparent) {
  bool retry = call->down != nullptr && !call->resp_submitted && call->retain &&
               call->req_base == 0 && now_ < call->deadline;
  if (transparent) {
    // The backend never saw this attempt, so it does not count against max_attempts (as in
    // gRPC): a backend killed moments ago stays in the registry until its lease expires, and
    // refused connections to it must not use up the attempts of the calls that try it. When
    // every candidate keeps refusing, the call waits between tries until its deadline, as a
    // library caller waits for a ready endpoint.
    ++call->transparent_retries;
    if (retry && call->transparent_retries > kImmediateTransparentRetries) {
      const int paused = call->transparent_retries - kImmediateTransparentRetries;
      const absl::Duration pause =
          std::min(kMaxRetryPause, kFirstRetryPause * (1 << std::min(paused - 1, 10)));
      retry = call->deadline != absl::InfiniteFuture() && now_ + pause < call->deadline;
      if (retry) call->retry_at = now_ + pause;
    }
  } else {
    retry = retry && call->attempts - call->transparent_retries <
                         call->balancer->options().retry.max_attempts;
  }
  if (retry && !transparent) {
    // Release the failed attempt's own budget first, then ask for this retry's.
    FinishAttempt(call, code);
    retry = call->idempotent && call->balancer->TryStartRetry();
    call->budget_retry = retry;
  }
  if (!retry) {
    LogDebug("sluice proxy: not retrying ", call->path, " (attempts ", call->attempts,
             ", response started ", call->resp_submitted, ", request kept ",
             call->retain && call->req_base == 0, ", idempotent ", call->idempotent,
             "): ", message);
    return false;
  }
  FinishAttempt(call, code);
  metrics_->retries_total.fetch_add(1, std::memory_order_relaxed);
  LogDebug("sluice proxy: retrying ", call->path, " after: ", message);
  call->resp_headers_received = false;
  call->resp_pending.clear();
  if (call->retry_at != absl::InfiniteFuture()) {
    deadlines_.push({call->retry_at, call->id});
  } else {
    retries_.push_back(call->id);
  }
  return true;
}

void Worker::Impl::RetryOrFail(Call* call, grpc::StatusCode code, const std::string& message,
                               bool transparent) {
  if (!TryRetry(call, code, message, transparent)) RespondError(call, code, message, true);
}

void Worker::Impl::RespondError(Call* call, grpc::StatusCode code, const std::string& message,
                                bool keep_buffered_response) {
  DetachUpstream(call, NGHTTP2_CANCEL);
  FinishAttempt(call, code);
  call->finished = true;
  if (call->down == nullptr) return;
  DropRequest(call);
  const std::string code_text = absl::StrCat(static_cast<int>(code));
  const std::string encoded_message = PercentEncodeGrpcMessage(message);
  if (!call->resp_submitted) {
    HeaderBlock headers;
    headers.Add(":status", "200");
    headers.Add("content-type", "application/grpc");
    headers.Add("grpc-status", code_text);
    headers.Add("grpc-message", encoded_message);
    headers.ToNv(&nva_);
    nghttp2_submit_response(call->down->session_, call->down_stream, nva_.data(), nva_.size(),
                            nullptr);
    call->resp_submitted = true;
    call->resp_ended = true;
  } else if (!call->resp_ended) {
    if (!keep_buffered_response) {
      call->resp_buf.clear();
      call->resp_off = 0;
      Account(call);
    }
    call->resp_trailers.clear();
    call->resp_trailers.Add("grpc-status", code_text);
    call->resp_trailers.Add("grpc-message", encoded_message);
    call->resp_ended = true;
    ResumeResponse(call);
  }
  MarkDirty(call->down);
}

void Worker::Impl::RespondHttpError(Call* call, int http_status, grpc::StatusCode code,
                                    const std::string& message) {
  call->finished = true;
  DropRequest(call);
  HeaderBlock headers;
  headers.Add(":status", absl::StrCat(http_status));
  headers.Add("content-type", "application/grpc");
  headers.Add("grpc-status", absl::StrCat(static_cast<int>(code)));
  headers.Add("grpc-message", PercentEncodeGrpcMessage(message));
  headers.ToNv(&nva_);
  nghttp2_submit_response(call->down->session_, call->down_stream, nva_.data(), nva_.size(),
                          nullptr);
  call->resp_submitted = true;
  call->resp_ended = true;
  MarkDirty(call->down);
}

void Worker::Impl::OnDownstreamClosed(Call* call) {
  // The client's stream is gone (done, reset, or its connection closed): cancel the backend's.
  if (call->up != nullptr) DetachUpstream(call, NGHTTP2_CANCEL);
  if (!call->finished) {
    FinishAttempt(call, grpc::StatusCode::CANCELLED);
    call->finished = true;
  }
  FreeCall(call);
}

void Worker::Impl::OnUpstreamClosed(Call* call, uint32_t error_code) {
  if (!call->attempt_open || call->finished) return;  // already decided
  LogDebug("sluice proxy: ", call->path, " on ", call->backend->address(),
           ": stream closed early (", nghttp2_http2_strerror(error_code), "), response ",
           call->resp_submitted ? "started" : "not started");
  if (error_code == NGHTTP2_REFUSED_STREAM && !call->resp_headers_received) {
    RetryOrFail(call, grpc::StatusCode::UNAVAILABLE,
                absl::StrCat("backend ", call->backend->address(), " refused the stream"), true);
    return;
  }
  if (!call->resp_submitted) {
    RetryOrFail(call, grpc::StatusCode::UNAVAILABLE,
                absl::StrCat("backend ", call->backend->address(), " reset the stream (",
                             nghttp2_http2_strerror(error_code), ")"),
                false);
    return;
  }
  // Mid-response reset: pass it on as a reset, as the backend did.
  FinishAttempt(call, error_code == NGHTTP2_CANCEL ? grpc::StatusCode::CANCELLED
                                                   : grpc::StatusCode::UNAVAILABLE);
  call->finished = true;
  if (call->down != nullptr) {
    nghttp2_submit_rst_stream(call->down->session_, NGHTTP2_FLAG_NONE, call->down_stream,
                              error_code == NGHTTP2_NO_ERROR
                                  ? static_cast<uint32_t>(NGHTTP2_INTERNAL_ERROR)
                                  : error_code);
    MarkDirty(call->down);
  }
}

void Worker::Impl::OnUpstreamConnectionLost(Connection* conn) {
  const std::vector<Call*> calls = conn->TakeStreams();
  const bool never_connected = !conn->connected_;
  for (Call* call : calls) {
    call->up = nullptr;
    call->up_stream = 0;
    call->resp_unconsumed = 0;
    if (call->finished) continue;
    const std::string why = never_connected
                                ? absl::StrCat("cannot connect to backend ", conn->address_)
                                : absl::StrCat("lost the connection to backend ", conn->address_);
    if (!call->resp_submitted) {
      RetryOrFail(call, grpc::StatusCode::UNAVAILABLE, why, never_connected);
    } else {
      RespondError(call, grpc::StatusCode::UNAVAILABLE, why, true);
    }
  }
}

// ---- Worker ----

Worker::Worker(int index, const ProxyOptions& options, const Router* router, ProxyMetrics* metrics)
    : impl_(std::make_unique<Impl>(index, options, router, metrics)) {}

Worker::~Worker() = default;

absl::StatusOr<int> Worker::Listen(const std::string& ip, int port) {
  if (absl::Status s = impl_->Init(); !s.ok()) return s;
  return impl_->Listen(ip, port);
}

void Worker::Run() { impl_->Run(); }

void Worker::BeginShutdown(absl::Time deadline) { impl_->BeginShutdown(deadline); }

}  // namespace sluice::proxy
