#include "sluice/proxy/header_block.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sluice::proxy {
namespace {

std::string NvName(const nghttp2_nv& nv) {
  return std::string(reinterpret_cast<const char*>(nv.name), nv.namelen);
}
std::string NvValue(const nghttp2_nv& nv) {
  return std::string(reinterpret_cast<const char*>(nv.value), nv.valuelen);
}

TEST(HeaderBlockTest, KeepsOrderFindsFirstValueAndSurvivesGrowth) {
  HeaderBlock block;
  block.Add(":path", "/Greeter/SayHello");
  block.Add("x-dup", "first");
  block.Add("x-dup", "second");
  // Enough bytes to make the buffer grow several times: earlier fields must stay intact.
  block.Add("x-big", std::string(5000, 'b'));
  block.Add("", "");
  ASSERT_EQ(block.size(), 5u);
  EXPECT_EQ(block.Find(":path").value_or("none"), "/Greeter/SayHello");
  EXPECT_EQ(block.Find("x-dup").value_or("none"), "first");
  EXPECT_EQ(block.Find("x-big")->size(), 5000u);
  EXPECT_FALSE(block.Find("x-missing").has_value());
  EXPECT_EQ(block.name(2), "x-dup");
  EXPECT_EQ(block.value(2), "second");
  EXPECT_EQ(block.value(4), "");
}

TEST(HeaderBlockTest, ToNvPointsIntoTheBlockAndReplacesOneValue) {
  HeaderBlock block;
  block.Add("grpc-timeout", "10S");
  block.Add("te", "trailers");
  std::vector<nghttp2_nv> nva;
  block.ToNv(&nva);
  ASSERT_EQ(nva.size(), 2u);
  EXPECT_EQ(NvName(nva[0]), "grpc-timeout");
  EXPECT_EQ(NvValue(nva[0]), "10S");
  EXPECT_EQ(NvValue(nva[1]), "trailers");
  const std::string left = "250m";
  block.ToNv(&nva, "grpc-timeout", left);
  ASSERT_EQ(nva.size(), 2u);  // refilled, not appended
  EXPECT_EQ(NvValue(nva[0]), "250m");
  EXPECT_EQ(NvValue(nva[1]), "trailers");
}

TEST(HeaderBlockTest, ClearAndSwapKeepCapacityAndContents) {
  HeaderBlock a;
  HeaderBlock b;
  a.Add("grpc-status", "0");
  b.Add(":status", "200");
  b.Add("content-type", "application/grpc");
  a.swap(b);
  EXPECT_EQ(a.size(), 2u);
  EXPECT_EQ(a.Find("content-type").value_or(""), "application/grpc");
  EXPECT_EQ(b.Find("grpc-status").value_or(""), "0");
  a.clear();
  EXPECT_TRUE(a.empty());
  EXPECT_FALSE(a.Find(":status").has_value());
  a.Add("grpc-message", "again");
  EXPECT_EQ(a.Find("grpc-message").value_or(""), "again");
}

}  // namespace
}  // namespace sluice::proxy
