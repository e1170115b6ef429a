#include "sluice/proxy/grpc_util.h"

#include <gtest/gtest.h>

namespace sluice::proxy {
namespace {

TEST(GrpcTimeoutTest, ParsesEveryUnit) {
  EXPECT_EQ(ParseGrpcTimeout("1H"), absl::Hours(1));
  EXPECT_EQ(ParseGrpcTimeout("2M"), absl::Minutes(2));
  EXPECT_EQ(ParseGrpcTimeout("3S"), absl::Seconds(3));
  EXPECT_EQ(ParseGrpcTimeout("300m"), absl::Milliseconds(300));
  EXPECT_EQ(ParseGrpcTimeout("7u"), absl::Microseconds(7));
  EXPECT_EQ(ParseGrpcTimeout("99999999n"), absl::Nanoseconds(99999999));
}

TEST(GrpcTimeoutTest, RefusesMalformedValues) {
  for (const char* bad : {"", "m", "10", "10x", "-5m", "1.5S", "123456789S", " 5S", "5 S"}) {
    EXPECT_FALSE(ParseGrpcTimeout(bad).has_value()) << bad;
  }
}

TEST(GrpcMessageTest, PercentEncodesOutsidePrintableAsciiAndPercent) {
  EXPECT_EQ(PercentEncodeGrpcMessage("plain text"), "plain text");
  EXPECT_EQ(PercentEncodeGrpcMessage("100%"), "100%25");
  EXPECT_EQ(PercentEncodeGrpcMessage("a\nb"), "a%0Ab");
  EXPECT_EQ(PercentEncodeGrpcMessage("\xe2\x98\xba"), "%E2%98%BA");
}

TEST(HopByHopTest, DropsConnectionHeadersKeepsTe) {
  for (const char* name :
       {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}) {
    EXPECT_TRUE(IsHopByHopHeader(name)) << name;
  }
  EXPECT_FALSE(IsHopByHopHeader("te"));
  EXPECT_FALSE(IsHopByHopHeader("grpc-timeout"));
  EXPECT_FALSE(IsHopByHopHeader("content-type"));
}

}  // namespace
}  // namespace sluice::proxy
