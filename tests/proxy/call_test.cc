// The proxy's call state machine on its own: fake client and backend sides record what the call
// asks of them, a fake host runs timers on a FakeClock. The balancer is real (a static target of
// addresses nobody connects to: the fake backend side stands in for the connections).
#include "sluice/proxy/call.h"

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "ready_transport.h"
#include "sluice/core/clock.h"

namespace sluice::proxy {
namespace {

// What a session's data source does with a call's DATA, copying instead of NO_COPY.
enum class Body { kRequest, kResponse };
ssize_t ReadBody(Call& call, Body body, uint8_t* buf, size_t length, uint32_t* flags) {
  const ssize_t n = body == Body::kRequest ? call.PlanRequestBody(length, flags)
                                           : call.PlanResponseBody(length, flags);
  if (n < 0) return n;
  auto copy = [buf](const char* data, size_t len) { memcpy(buf, data, len); };
  if (body == Body::kRequest) {
    call.TakeRequestBody(static_cast<size_t>(n), copy);
  } else {
    call.TakeResponseBody(static_cast<size_t>(n), copy);
  }
  return n;
}
ssize_t ReadRequestBody(Call& call, uint8_t* buf, size_t length, uint32_t* flags) {
  return ReadBody(call, Body::kRequest, buf, length, flags);
}
ssize_t ReadResponseBody(Call& call, uint8_t* buf, size_t length, uint32_t* flags) {
  return ReadBody(call, Body::kResponse, buf, length, flags);
}

struct FakeClient final : ClientSide {
  struct Response {
    std::map<std::string, std::string> headers;
    bool body;
  };
  std::vector<Response> responses;
  std::map<std::string, std::string> trailers;
  size_t consumed = 0;
  std::vector<uint32_t> resets;
  std::string peer_name = "127.0.0.1:5000";

  static std::map<std::string, std::string> ToMap(const HeaderBlock& h) {
    std::map<std::string, std::string> m;
    for (size_t i = 0; i < h.size(); ++i) m[std::string(h.name(i))] = std::string(h.value(i));
    return m;
  }
  void SubmitResponse(int32_t, const HeaderBlock& headers, bool body) override {
    responses.push_back({ToMap(headers), body});
  }
  bool SubmitTrailers(int32_t, const HeaderBlock& t) override {
    trailers = ToMap(t);
    return true;
  }
  void ResumeBody(int32_t, bool) override {}
  void Consume(int32_t, size_t bytes) override { consumed += bytes; }
  void Reset(int32_t, uint32_t error_code) override { resets.push_back(error_code); }
  const std::string& peer() const override { return peer_name; }
};

struct FakeBackend final : BackendSide {
  int32_t next_stream = 1;
  std::vector<std::map<std::string, std::string>> requests;
  std::vector<std::pair<int32_t, uint32_t>> detached;  // stream, error code
  size_t consumed = 0;
  std::string address_name;

  int32_t SubmitRequest(Call*, const HeaderBlock& headers, absl::string_view timeout,
                        bool) override {
    auto m = FakeClient::ToMap(headers);
    if (!timeout.empty()) m["grpc-timeout"] = std::string(timeout);
    requests.push_back(m);
    next_stream += 2;
    return next_stream - 2;
  }
  void ResumeBody(int32_t, bool) override {}
  void Consume(int32_t, size_t bytes) override { consumed += bytes; }
  void Detach(int32_t stream, uint32_t error_code) override {
    detached.emplace_back(stream, error_code);
  }
  const std::string& address() const override { return address_name; }
};

struct Timer {
  absl::Time at;
  TimerKind kind;
  bool cancelled = false;
};

class FakeHost final : public CallHost {
 public:
  FakeHost(client::Balancer* balancer, FakeClock* clock) : balancer_(balancer), clock_(clock) {}
  absl::Time Now() const override { return clock_->Now(); }
  TimerId Schedule(absl::Time at, TimerKind kind, Call*) override {
    timers.push_back({at, kind});
    return timers.size();
  }
  void Cancel(TimerId id) override { timers[id - 1].cancelled = true; }
  const ProxyOptions& options() const override { return options_; }
  ProxyMetrics& metrics() override { return metrics_; }
  client::Balancer* RouteFor(absl::string_view) override { return balancer_; }
  BackendSide* BackendFor(const client::Backend& backend, const client::Balancer&) override {
    if (refuse_connections) return nullptr;
    FakeBackend& side = backends[backend.address()];
    side.address_name = backend.address();
    return &side;
  }
  BackendMetrics* MetricsFor(const std::string& address) override {
    return metrics_.ForBackend(address);
  }
  void WaitForPick(Call*, client::Balancer&, absl::Time, std::optional<uint64_t>,
                   const client::Backend*, bool) override {
    ++pick_waits;
  }
  void RetrySoon(Call*) override { ++retries_soon; }
  void Release(Call*) override { ++released; }

  // The latest timer of `kind` unless cancelled (earlier ones have fired or were cancelled).
  const Timer* Live(TimerKind kind) const {
    for (auto it = timers.rbegin(); it != timers.rend(); ++it) {
      if (it->kind == kind) return it->cancelled ? nullptr : &*it;
    }
    return nullptr;
  }
  // All backend sides' totals.
  size_t Requests() const {
    size_t n = 0;
    for (const auto& [address, side] : backends) n += side.requests.size();
    return n;
  }
  FakeBackend* Current(const std::string& address) { return &backends[address]; }

  ProxyOptions options_;
  std::map<std::string, FakeBackend> backends;
  std::vector<Timer> timers;
  bool refuse_connections = false;
  int pick_waits = 0;
  int retries_soon = 0;
  int released = 0;

 private:
  client::Balancer* balancer_;
  FakeClock* clock_;
  ProxyMetrics metrics_;
};

class CallTest : public ::testing::Test {
 protected:
  void MakeBalancer(bool idempotent, absl::Duration attempt_timeout = absl::InfiniteDuration(),
                    int budget_min = 10) {
    client::BalancerOptions options;
    options.target = "static://127.0.0.11:1,127.0.0.12:1,127.0.0.13:1";
    options.transport_watcher = std::make_shared<sluice::testing::ReadyTransport>();
    options.health_check.enabled = false;  // nothing listens: the fake sides stand in
    options.outlier_detection.enabled = false;
    options.clock = &clock_;
    options.random_seed = 7;
    if (idempotent) options.retry.idempotent_methods = {"/Greeter/*"};
    options.retry.max_attempts = 3;
    options.retry.attempt_timeout = attempt_timeout;
    options.retry.budget_min = budget_min;
    auto made = client::Balancer::Create(options);
    ASSERT_TRUE(made.ok()) << made.status();
    balancer_ = std::move(*made);
    ASSERT_TRUE(balancer_->WaitForReady(3, absl::Seconds(10)));
    host_ = std::make_unique<FakeHost>(balancer_.get(), &clock_);
  }

  // A valid gRPC request's headers, then its end.
  void SendRequest(absl::string_view timeout = "", bool end_stream = true) {
    call_.Begin(host_.get(), 1, &client_, 1);
    ASSERT_TRUE(call_.OnRequestHeader(":method", "POST"));
    ASSERT_TRUE(call_.OnRequestHeader(":path", "/Greeter/SayHello"));
    ASSERT_TRUE(call_.OnRequestHeader("content-type", "application/grpc"));
    ASSERT_TRUE(call_.OnRequestHeader("te", "trailers"));
    ASSERT_TRUE(call_.OnRequestHeader("connection", "keep-alive"));  // hop-by-hop: dropped
    if (!timeout.empty()) {
      ASSERT_TRUE(call_.OnRequestHeader("grpc-timeout", timeout));
    }
    call_.OnRequestHeadersDone(end_stream);
  }

  // The backend of the current attempt answers trailers-only with `code`.
  void AnswerTrailersOnly(int code) {
    call_.OnResponseHeadersBegin();
    call_.OnResponseHeader(":status", "200");
    call_.OnResponseHeader("content-type", "application/grpc");
    call_.OnResponseHeader("grpc-status", absl::StrCat(code));
    call_.OnResponseHeadersDone(/*end_stream=*/true);
  }

  FakeClock clock_;
  std::unique_ptr<client::Balancer> balancer_;
  std::unique_ptr<FakeHost> host_;
  FakeClient client_;
  Call call_;
};

TEST_F(CallTest, ForwardsRequestResponseAndTrailersThroughItsStates) {
  MakeBalancer(/*idempotent=*/false);
  SendRequest("", /*end_stream=*/false);
  EXPECT_EQ(call_.phase(), CallPhase::kAttempting);
  EXPECT_EQ(call_.attempt_state(), AttemptState::kAwaitingResponse);
  ASSERT_EQ(host_->Requests(), 1u);
  const auto& request = host_->backends.begin()->second.requests[0];
  EXPECT_EQ(request.at(":path"), "/Greeter/SayHello");
  EXPECT_EQ(request.count("connection"), 0u) << "hop-by-hop headers must not cross the proxy";

  // Request bytes: the client's credit comes back only once the backend's session takes them.
  const std::string message(100, 'x');
  call_.OnRequestData(reinterpret_cast<const uint8_t*>(message.data()), message.size());
  EXPECT_EQ(client_.consumed, 0u);
  EXPECT_EQ(call_.buffered_bytes(), 100);
  call_.OnRequestEnd();
  uint8_t buf[256];
  uint32_t flags = 0;
  EXPECT_EQ(ReadRequestBody(call_, buf, sizeof(buf), &flags), 100);
  EXPECT_NE(flags & NGHTTP2_DATA_FLAG_EOF, 0u);
  EXPECT_EQ(client_.consumed, 100u);
  // Still kept: the backend has not answered, so the call could be sent again.
  EXPECT_EQ(call_.retry_copy(), RetryCopy::kKept);
  EXPECT_EQ(call_.buffered_bytes(), 100);

  call_.OnResponseHeadersBegin();
  call_.OnResponseHeader(":status", "200");
  call_.OnResponseHeader("content-type", "application/grpc");
  call_.OnResponseHeadersDone(/*end_stream=*/false);
  EXPECT_EQ(call_.response_state(), ResponseState::kStreaming);
  EXPECT_EQ(call_.attempt_state(), AttemptState::kAnswered);
  ASSERT_EQ(client_.responses.size(), 1u);
  EXPECT_TRUE(client_.responses[0].body);
  // The backend took the call: the retry copy is gone.
  EXPECT_EQ(call_.retry_copy(), RetryCopy::kReleased);
  EXPECT_EQ(call_.buffered_bytes(), 0);

  // Response bytes: the backend's credit comes back as the client's session takes them.
  const std::string reply(60, 'y');
  call_.OnResponseData(reinterpret_cast<const uint8_t*>(reply.data()), reply.size());
  FakeBackend* backend = &host_->backends.begin()->second;
  EXPECT_EQ(backend->consumed, 0u);
  flags = 0;
  EXPECT_EQ(ReadResponseBody(call_, buf, 40, &flags), 40);
  EXPECT_EQ(backend->consumed, 40u);
  EXPECT_EQ(flags, 0u);
  call_.OnResponseHeadersBegin();
  call_.OnResponseHeader("grpc-status", "0");
  call_.OnResponseTrailers();
  EXPECT_EQ(call_.phase(), CallPhase::kFinished);
  EXPECT_EQ(call_.response_state(), ResponseState::kEnded);
  flags = 0;
  EXPECT_EQ(ReadResponseBody(call_, buf, sizeof(buf), &flags), 20);
  EXPECT_EQ(backend->consumed, 60u);
  EXPECT_NE(flags & NGHTTP2_DATA_FLAG_EOF, 0u);
  EXPECT_NE(flags & NGHTTP2_DATA_FLAG_NO_END_STREAM, 0u);
  EXPECT_EQ(client_.trailers.at("grpc-status"), "0");

  call_.OnClientStreamClosed();
  EXPECT_EQ(call_.phase(), CallPhase::kReleased);
  EXPECT_EQ(host_->released, 1);
  EXPECT_EQ(balancer_->retry_budget().calls_in_flight(), 0);
}

TEST_F(CallTest, IdempotentUnavailableIsRetriedUpToMaxAttemptsThenForwarded) {
  MakeBalancer(/*idempotent=*/true);
  SendRequest();
  ASSERT_EQ(host_->Requests(), 1u);
  AnswerTrailersOnly(14);  // UNAVAILABLE
  EXPECT_EQ(call_.phase(), CallPhase::kPicking);
  EXPECT_EQ(host_->retries_soon, 1);
  EXPECT_TRUE(client_.responses.empty()) << "a retried attempt's answer must not reach the client";
  EXPECT_EQ(balancer_->retry_budget().retries_in_flight(), 1);
  call_.StartAttempt();  // the host's next loop pass
  EXPECT_EQ(host_->Requests(), 2u);
  EXPECT_EQ(call_.attempts(), 2);
  AnswerTrailersOnly(14);
  call_.StartAttempt();
  EXPECT_EQ(host_->Requests(), 3u);
  AnswerTrailersOnly(14);
  // max_attempts (3) used: the backend's answer goes to the client as it is.
  EXPECT_EQ(call_.phase(), CallPhase::kFinished);
  EXPECT_EQ(host_->retries_soon, 2);
  ASSERT_EQ(client_.responses.size(), 1u);
  EXPECT_EQ(client_.responses[0].headers.at("grpc-status"), "14");
  EXPECT_EQ(balancer_->retry_budget().retries_in_flight(), 0);
  call_.OnClientStreamClosed();
  EXPECT_EQ(balancer_->retry_budget().calls_in_flight(), 0);
}

TEST_F(CallTest, NonIdempotentUnavailableIsForwardedWithoutRetry) {
  MakeBalancer(/*idempotent=*/false);
  SendRequest();
  AnswerTrailersOnly(14);
  EXPECT_EQ(host_->retries_soon, 0);
  EXPECT_EQ(host_->Requests(), 1u);
  ASSERT_EQ(client_.responses.size(), 1u);
  EXPECT_EQ(client_.responses[0].headers.at("grpc-status"), "14");
}

TEST_F(CallTest, AnEmptyRetryBudgetStopsTheRetry) {
  MakeBalancer(/*idempotent=*/true, absl::InfiniteDuration(), /*budget_min=*/0);
  SendRequest();
  // 0.2 x 1 call in flight + 0: no retry slot.
  AnswerTrailersOnly(14);
  EXPECT_EQ(host_->retries_soon, 0);
  EXPECT_EQ(call_.phase(), CallPhase::kFinished);
  EXPECT_EQ(client_.responses[0].headers.at("grpc-status"), "14");
}

TEST_F(CallTest, DeadlineFromGrpcTimeoutEndsTheCallAndCancelsTheBackendStream) {
  MakeBalancer(/*idempotent=*/false);
  SendRequest("100m");
  const Timer* deadline = host_->Live(TimerKind::kCallDeadline);
  ASSERT_NE(deadline, nullptr);
  EXPECT_EQ(deadline->at, clock_.Now() + absl::Milliseconds(100));
  // The backend gets what is left of the call's time.
  EXPECT_EQ(host_->backends.begin()->second.requests[0].at("grpc-timeout"), "100m");
  clock_.Advance(absl::Milliseconds(100));
  call_.OnTimer(TimerKind::kCallDeadline);
  EXPECT_EQ(call_.phase(), CallPhase::kFinished);
  ASSERT_EQ(client_.responses.size(), 1u);
  EXPECT_EQ(client_.responses[0].headers.at("grpc-status"), "4");  // DEADLINE_EXCEEDED
  const FakeBackend& backend = host_->backends.begin()->second;
  ASSERT_EQ(backend.detached.size(), 1u);
  EXPECT_EQ(backend.detached[0].second, static_cast<uint32_t>(NGHTTP2_CANCEL));
}

TEST_F(CallTest, AttemptTimeoutRetriesElsewhereAndAnAnswerCancelsTheTimer) {
  MakeBalancer(/*idempotent=*/true, absl::Milliseconds(50));
  SendRequest("1S");
  const Timer* attempt = host_->Live(TimerKind::kAttemptTimeout);
  ASSERT_NE(attempt, nullptr);
  EXPECT_EQ(attempt->at, clock_.Now() + absl::Milliseconds(50));
  clock_.Advance(absl::Milliseconds(50));
  call_.OnTimer(TimerKind::kAttemptTimeout);
  EXPECT_EQ(call_.phase(), CallPhase::kPicking);
  EXPECT_EQ(host_->retries_soon, 1);
  EXPECT_EQ(host_->metrics().attempt_timeouts_total.load(), 1u);
  call_.StartAttempt();
  ASSERT_EQ(host_->Requests(), 2u);
  // The second backend answers: its attempt timer is cancelled, the call may take long now.
  call_.OnResponseHeadersBegin();
  call_.OnResponseHeader(":status", "200");
  call_.OnResponseHeadersDone(false);
  EXPECT_EQ(host_->Live(TimerKind::kAttemptTimeout), nullptr);
}

TEST_F(CallTest, RefusedConnectionsAreRetriedAtOnceThenAfterAPause) {
  MakeBalancer(/*idempotent=*/false);
  host_->refuse_connections = true;
  SendRequest("10S");
  // Transparent retries: the backend never saw the call, so even a non-idempotent call goes
  // again, at once five times...
  EXPECT_EQ(host_->retries_soon, 1);
  for (int i = 0; i < 4; ++i) call_.StartAttempt();
  EXPECT_EQ(host_->retries_soon, 5);
  EXPECT_EQ(host_->Live(TimerKind::kRetryPause), nullptr);
  // ...then after a pause.
  call_.StartAttempt();
  const Timer* pause = host_->Live(TimerKind::kRetryPause);
  ASSERT_NE(pause, nullptr);
  EXPECT_EQ(pause->at, clock_.Now() + absl::Milliseconds(10));
  EXPECT_EQ(call_.phase(), CallPhase::kPicking);
  EXPECT_TRUE(client_.responses.empty());
  // The client goes away: the pending timers are cancelled and the call is released.
  call_.OnClientStreamClosed();
  EXPECT_EQ(host_->Live(TimerKind::kRetryPause), nullptr);
  EXPECT_EQ(host_->Live(TimerKind::kCallDeadline), nullptr);
  EXPECT_EQ(host_->released, 1);
}

TEST_F(CallTest, RequestsLargerThanTheRetryBufferAreNotKeptForRetries) {
  MakeBalancer(/*idempotent=*/true);
  host_->options_.retry_buffer_limit = 1000;
  SendRequest("", /*end_stream=*/false);
  const std::string chunk(600, 'z');
  call_.OnRequestData(reinterpret_cast<const uint8_t*>(chunk.data()), chunk.size());
  EXPECT_EQ(call_.retry_copy(), RetryCopy::kKept);
  call_.OnRequestData(reinterpret_cast<const uint8_t*>(chunk.data()), chunk.size());
  EXPECT_EQ(call_.retry_copy(), RetryCopy::kReleased);
  // Bytes sent are dropped at once now (nothing could resend them).
  uint8_t buf[2000];
  uint32_t flags = 0;
  EXPECT_EQ(ReadRequestBody(call_, buf, sizeof(buf), &flags), 1200);
  EXPECT_EQ(call_.buffered_bytes(), 0);
  // And an UNAVAILABLE answer is not retried: the request cannot be sent again.
  AnswerTrailersOnly(14);
  EXPECT_EQ(host_->retries_soon, 0);
  EXPECT_EQ(client_.responses[0].headers.at("grpc-status"), "14");
}

TEST_F(CallTest, InvalidRequestsGetAnHttpErrorWithoutAnAttempt) {
  MakeBalancer(/*idempotent=*/false);
  call_.Begin(host_.get(), 1, &client_, 1);
  ASSERT_TRUE(call_.OnRequestHeader(":method", "GET"));
  ASSERT_TRUE(call_.OnRequestHeader(":path", "/Greeter/SayHello"));
  call_.OnRequestHeadersDone(true);
  EXPECT_EQ(call_.phase(), CallPhase::kFinished);
  ASSERT_EQ(client_.responses.size(), 1u);
  EXPECT_EQ(client_.responses[0].headers.at(":status"), "405");
  EXPECT_EQ(host_->Requests(), 0u);
  // Oversized headers: the call refuses them (the session resets that stream alone).
  call_.Begin(host_.get(), 2, &client_, 3);
  EXPECT_FALSE(call_.OnRequestHeader("big", std::string(70 << 10, 'a')));
}

}  // namespace
}  // namespace sluice::proxy
