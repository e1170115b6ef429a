#include "sluice/core/naming_value.h"

#include <gtest/gtest.h>

namespace sluice {
namespace {

Endpoint Ep(std::string address) {
  Endpoint e;
  e.address = std::move(address);
  return e;
}

TEST(NamingValueTest, EncodesExactlyWhatEtcdsGoManagerWrites) {
  // endpoints.Manager.AddEndpoint(key, endpoints.Endpoint{Addr: "127.0.0.11:50051"}) stores
  // json.Marshal(endpoints.Update{Op: Add, Addr: ..., Metadata: nil}).
  EXPECT_EQ(EncodeNamingValue(Ep("127.0.0.11:50051")),
            R"({"Op":0,"Addr":"127.0.0.11:50051","Metadata":null})");
}

TEST(NamingValueTest, EncodesMetadataAsAStringHoldingAnObject) {
  Endpoint e = Ep("127.0.0.12:50051");
  e.weight = 100;
  e.zone = "a";
  EXPECT_EQ(EncodeNamingValue(e),
            R"({"Op":0,"Addr":"127.0.0.12:50051","Metadata":"{\"weight\":100,\"zone\":\"a\"}"})");
}

TEST(NamingValueTest, RoundTripsTypedAndExtraFields) {
  Endpoint e = Ep("[::1]:50051");
  e.weight = 7;
  e.version = "v2";
  e.draining = true;
  e.metadata["team"] = R"("search")";
  auto parsed = ParseNamingValue("k", EncodeNamingValue(e));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->address, "[::1]:50051");
  EXPECT_EQ(parsed->weight, 7u);
  EXPECT_EQ(parsed->version, "v2");
  EXPECT_TRUE(parsed->draining);
  EXPECT_EQ(parsed->metadata.at("team"), R"("search")");
}

TEST(NamingValueTest, ReadsNullStringAndObjectMetadata) {
  auto plain = ParseNamingValue("k", R"({"Op":0,"Addr":"127.0.0.11:50051","Metadata":null})");
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->address, "127.0.0.11:50051");
  EXPECT_EQ(plain->weight, Endpoint::kDefaultWeight);
  EXPECT_TRUE(plain->metadata.empty());

  auto as_string =
      ParseNamingValue("k", R"({"Op":0,"Addr":"127.0.0.11:1","Metadata":"{\"weight\":100}"})");
  ASSERT_TRUE(as_string.ok()) << as_string.status();
  EXPECT_EQ(as_string->weight, 100u);

  auto as_object =
      ParseNamingValue("k", R"({"Addr":"127.0.0.11:1","Metadata":{"weight":5,"zone":"b"}})");
  ASSERT_TRUE(as_object.ok()) << as_object.status();
  EXPECT_EQ(as_object->weight, 5u);
  EXPECT_EQ(as_object->zone, "b");

  // Go programs may store any string as metadata: kept, with no typed fields.
  auto free_text = ParseNamingValue("k", R"({"Op":0,"Addr":"127.0.0.11:1","Metadata":"blue"})");
  ASSERT_TRUE(free_text.ok()) << free_text.status();
  EXPECT_EQ(free_text->metadata.at("raw"), R"("blue")");
}

TEST(NamingValueTest, RejectsMalformedValuesNamingTheKey) {
  const std::string key = "services/greeter/bad";
  for (const char* bad : {"", "not json", "[1,2]", R"({"host":"127.0.0.1:1"})",
                          R"({"Op":0,"Addr":5})", R"({"Op":0,"Addr":"nohostport"})",
                          R"({"Op":2,"Addr":"127.0.0.1:1"})", R"({"Op":"0","Addr":"127.0.0.1:1"})",
                          R"({"Op":0,"Addr":"127.0.0.1:1","Metadata":{"weight":-1}})",
                          R"({"Op":0,"Addr":"127.0.0.1:1","Metadata":{"weight":"heavy"}})"}) {
    auto parsed = ParseNamingValue(key, bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(parsed.status().message().find(key), std::string::npos) << parsed.status();
  }
}

TEST(NamingValueTest, DeleteOpIsNotFound) {
  auto parsed = ParseNamingValue("k", R"({"Op":1,"Addr":"127.0.0.11:1","Metadata":null})");
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kNotFound);
}

TEST(GoJsonQuoteTest, EscapesLikeGo) {
  EXPECT_EQ(GoJsonQuote("a\"b\\c"), R"("a\"b\\c")");
  EXPECT_EQ(GoJsonQuote("<&>"), R"("\u003c\u0026\u003e")");
  EXPECT_EQ(GoJsonQuote("\n\x01"), R"("\n\u0001")");
  EXPECT_EQ(GoJsonQuote("\xE2\x80\xA8"), R"("\u2028")");
  EXPECT_EQ(GoJsonQuote("zone-é"), "\"zone-é\"");
}

}  // namespace
}  // namespace sluice

namespace sluice {
namespace {

TEST(ApplyMetadataFlagTest, SetsTypedFieldsAndKeepsJsonScalars) {
  Endpoint e;
  e.address = "127.0.0.11:50051";
  ASSERT_TRUE(ApplyMetadataFlag("weight=100", e).ok());
  ASSERT_TRUE(ApplyMetadataFlag("zone=a", e).ok());
  ASSERT_TRUE(ApplyMetadataFlag("canary=true", e).ok());
  EXPECT_EQ(e.weight, 100u);
  EXPECT_EQ(e.zone, "a");
  EXPECT_EQ(e.metadata.at("zone"), R"("a")");
  EXPECT_EQ(e.metadata.at("canary"), "true");
  EXPECT_EQ(EncodeNamingValue(e),
            R"({"Op":0,"Addr":"127.0.0.11:50051","Metadata":"{\"canary\":true,\"weight\":100,\"zone\":\"a\"}"})");
}

TEST(ApplyMetadataFlagTest, RejectsMalformedFlagsNamingThem) {
  Endpoint e;
  auto no_equals = ApplyMetadataFlag("weight", e);
  EXPECT_NE(no_equals.message().find("NAME=VALUE"), std::string::npos) << no_equals;
  auto bad_weight = ApplyMetadataFlag("weight=heavy", e);
  EXPECT_FALSE(bad_weight.ok());
  EXPECT_NE(bad_weight.message().find("--meta weight=heavy"), std::string::npos) << bad_weight;
}

}  // namespace
}  // namespace sluice
