// The etcd client's watches against a real etcd: history then live events, from now,
// from a compacted revision, and across an etcd restart.
#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "etcd_client_fixture.h"
#include "etcd_process.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "process.h"
#include "sluice/etcd/etcd_client.h"

namespace sluice::etcd {
namespace {

using ::sluice::testing::EtcdProcess;
using ::sluice::testing::WaitFor;
using test_support::EtcdClientTest;
using test_support::MakeClient;
using test_support::WatchRecorder;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST_F(EtcdClientTest, WatchDeliversHistoryAndLiveEventsInOrder) {
  const std::string w = prefix_ + "w/";
  ASSERT_TRUE(client_->Put(w + "a", "a1").ok());
  auto start = client_->Put(w + "b", "b1");
  ASSERT_TRUE(start.ok());
  auto del_a = client_->Delete(w + "a");
  ASSERT_TRUE(del_a.ok());
  ASSERT_TRUE(client_->Put(prefix_ + "w2/x", "sibling").ok());  // must not be delivered

  WatchRecorder recorder;
  auto watch = client_->WatchPrefix(w, *start, recorder.OnUpdate(), recorder.OnEnd());
  // The two events before the watch started come from history.
  ASSERT_TRUE(WaitFor([&] { return recorder.event_count() >= 2; }, absl::Seconds(10)));
  auto put_c = client_->Put(w + "c", "c1");
  ASSERT_TRUE(put_c.ok());
  ASSERT_TRUE(client_->Delete(w + "b").ok());
  ASSERT_TRUE(WaitFor([&] { return recorder.event_count() >= 4; }, absl::Seconds(10)));
  absl::SleepFor(absl::Milliseconds(100));  // nothing else may arrive

  std::vector<WatchEvent> events = recorder.events();
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0].type, WatchEvent::Type::kPut);
  EXPECT_EQ(events[0].kv.key, w + "b");
  EXPECT_EQ(events[0].kv.value, "b1");
  EXPECT_EQ(events[0].kv.mod_revision, *start);
  EXPECT_EQ(events[1].type, WatchEvent::Type::kDelete);
  EXPECT_EQ(events[1].kv.key, w + "a");
  EXPECT_EQ(events[1].kv.mod_revision, *start + 1);
  EXPECT_EQ(events[2].type, WatchEvent::Type::kPut);
  EXPECT_EQ(events[2].kv.key, w + "c");
  EXPECT_EQ(events[2].kv.mod_revision, *put_c);
  EXPECT_EQ(events[3].type, WatchEvent::Type::kDelete);
  EXPECT_EQ(events[3].kv.key, w + "b");
  EXPECT_EQ(events[3].kv.mod_revision, *put_c + 1);

  watch->Cancel();
  watch->Cancel();                // idempotent
  EXPECT_EQ(recorder.ends(), 0);  // Cancel never reports on_end
}

TEST_F(EtcdClientTest, WatchFromNowSkipsHistory) {
  const std::string w = prefix_ + "w/";
  ASSERT_TRUE(client_->Put(w + "old", "x").ok());
  WatchRecorder recorder;
  auto watch = client_->WatchPrefix(w, 0, recorder.OnUpdate(), recorder.OnEnd());
  // No "created" signal in the API: keep writing until the watch sees a write.
  ASSERT_TRUE(WaitFor(
      [&] {
        EXPECT_TRUE(client_->Put(w + "new", "y").ok());
        return recorder.event_count() > 0;
      },
      absl::Seconds(10)));
  for (const WatchEvent& event : recorder.events()) EXPECT_EQ(event.kv.key, w + "new");
  watch.reset();  // the destructor cancels
  EXPECT_EQ(recorder.ends(), 0);
}

TEST_F(EtcdClientTest, WatchFromCompactedRevisionEndsWithOutOfRange) {
  const std::string w = prefix_ + "w/";
  auto first = client_->Put(w + "a", "1");
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(client_->Put(w + "a", "2").ok());
  auto last = client_->Put(w + "a", "3");
  ASSERT_TRUE(last.ok());
  ASSERT_TRUE(client_->Compact(*last).ok());

  WatchRecorder recorder;
  auto watch = client_->WatchPrefix(w, *first, recorder.OnUpdate(), recorder.OnEnd());
  ASSERT_TRUE(WaitFor([&] { return recorder.ends() > 0; }, absl::Seconds(10)));
  absl::Status status = recorder.end_status();
  EXPECT_EQ(status.code(), absl::StatusCode::kOutOfRange) << status;
  EXPECT_THAT(status.message(), HasSubstr("compacted"));
  EXPECT_EQ(recorder.compact_revision(), *last);
  EXPECT_EQ(recorder.event_count(), 0u);
  watch.reset();
  EXPECT_EQ(recorder.ends(), 1);

  // Compacting again at the same revision is an error that names the operation.
  absl::Status again = client_->Compact(*last);
  EXPECT_EQ(again.code(), absl::StatusCode::kOutOfRange) << again;
  EXPECT_THAT(again.message(), HasSubstr("Compact"));
}

// A private etcd: this test stops it.
TEST(EtcdClientRestartTest, WatchEndsWhenEtcdStopsAndClientReconnectsQuickly) {
  EtcdProcess etcd;
  ASSERT_TRUE(etcd.Start().ok());
  auto client = MakeClient({etcd.endpoint()}, absl::Seconds(2));
  ASSERT_TRUE(client->Put("x/k", "1").ok());
  WatchRecorder recorder;
  auto watch = client->WatchPrefix("x/", 0, recorder.OnUpdate(), recorder.OnEnd());
  ASSERT_TRUE(WaitFor(
      [&] {
        EXPECT_TRUE(client->Put("x/k", "2").ok());
        return recorder.event_count() > 0;
      },
      absl::Seconds(10)));

  etcd.Stop();
  ASSERT_TRUE(WaitFor([&] { return recorder.ends() > 0; }, absl::Seconds(10)));
  EXPECT_FALSE(recorder.end_status().ok());
  EXPECT_THAT(recorder.end_status().message(), HasSubstr("Watch 'x/'"));
  EXPECT_EQ(recorder.compact_revision(), 0);

  // While etcd is down calls fail fast rather than waiting for it.
  absl::Time start = absl::Now();
  auto down = client->Get("x/k");
  EXPECT_FALSE(down.ok());
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(1500));

  ASSERT_TRUE(etcd.Start().ok());
  start = absl::Now();
  absl::Status last_error;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto got = client->Get("x/k");
        last_error = got.status();
        return got.ok();
      },
      absl::Seconds(10)))
      << last_error;
  absl::Duration reconnect = absl::Now() - start;
  EXPECT_LT(reconnect, absl::Seconds(3));
  std::printf("reconnected %s after etcd answered /health\n",
              absl::FormatDuration(reconnect).c_str());
  auto got = client->Get("x/k");
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->kvs.size(), 1u);
  EXPECT_EQ(got->kvs[0].value, "2");  // same data dir
}

}  // namespace
}  // namespace sluice::etcd
