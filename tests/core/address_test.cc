#include "sluice/core/address.h"

#include <gtest/gtest.h>

namespace sluice {
namespace {

TEST(ParseHostPortTest, AcceptsIpv4NamesAndBracketedIpv6) {
  auto v4 = ParseHostPort("127.0.0.11:50051");
  ASSERT_TRUE(v4.ok()) << v4.status();
  EXPECT_EQ(v4->host, "127.0.0.11");
  EXPECT_EQ(v4->port, 50051);
  EXPECT_EQ(v4->ToString(), "127.0.0.11:50051");

  auto name = ParseHostPort("localhost:2379");
  ASSERT_TRUE(name.ok());
  EXPECT_EQ(name->host, "localhost");

  auto v6 = ParseHostPort("[::1]:443");
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->ToString(), "[::1]:443");
}

TEST(ParseHostPortTest, RejectsWithAMessageNamingTheInput) {
  for (const char* bad : {"127.0.0.1", "127.0.0.1:", ":80", "127.0.0.1:0", "127.0.0.1:65536",
                          "127.0.0.1:http", "::1:80", "[::1]80", "[nothost]:80", "[::1:80"}) {
    auto parsed = ParseHostPort(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_NE(parsed.status().message().find(bad), std::string::npos) << parsed.status();
    EXPECT_NE(parsed.status().message().find("host:port"), std::string::npos) << parsed.status();
  }
}

TEST(IsIpLiteralTest, TellsAddressesFromNames) {
  EXPECT_TRUE(IsIpLiteral("127.0.0.1"));
  EXPECT_TRUE(IsIpLiteral("::1"));
  EXPECT_FALSE(IsIpLiteral("localhost"));
  EXPECT_FALSE(IsIpLiteral("127.0.0"));
}

}  // namespace
}  // namespace sluice
