#include "sluice/core/grpc_util.h"

#include <gtest/gtest.h>

namespace sluice {
namespace {

TEST(StatusCodeNameTest, NamesEveryCodeAsGrpcSpellsItAndNumbersTheRest) {
  EXPECT_EQ(StatusCodeName(grpc::StatusCode::OK), "OK");
  EXPECT_EQ(StatusCodeName(grpc::StatusCode::UNAVAILABLE), "UNAVAILABLE");
  EXPECT_EQ(StatusCodeName(grpc::StatusCode::DEADLINE_EXCEEDED), "DEADLINE_EXCEEDED");
  EXPECT_EQ(StatusCodeName(grpc::StatusCode::UNAUTHENTICATED), "UNAUTHENTICATED");
  // A peer may send any number in grpc-status; it must still print as something.
  EXPECT_EQ(StatusCodeName(static_cast<grpc::StatusCode>(42)), "CODE_42");
}

TEST(ToTransportStateTest, MapsEveryConnectivityState) {
  EXPECT_EQ(ToTransportState(GRPC_CHANNEL_IDLE), TransportState::kIdle);
  EXPECT_EQ(ToTransportState(GRPC_CHANNEL_CONNECTING), TransportState::kConnecting);
  EXPECT_EQ(ToTransportState(GRPC_CHANNEL_READY), TransportState::kReady);
  EXPECT_EQ(ToTransportState(GRPC_CHANNEL_TRANSIENT_FAILURE), TransportState::kTransientFailure);
  EXPECT_EQ(ToTransportState(GRPC_CHANNEL_SHUTDOWN), TransportState::kShutdown);
}

}  // namespace
}  // namespace sluice
