// The one reader of JSON configuration (routes, xDS settings, policy configs): what each read
// accepts, and where its errors point.
#include "sluice/core/json_reader.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "sluice/core/json_file.h"

namespace sluice {
namespace {

using json = nlohmann::json;

std::string Message(const absl::Status& status) {
  return status.ok() ? "OK" : std::string(status.message());
}

TEST(JsonReaderTest, LineOfKeyFollowsKeysAndArrayElements) {
  const std::string text = R"({
  "routes": [
    {"service": "a, [not] {a} \"b\"", "target": "x"},
    {
      "service": "b",
      "nested": [[1, 2], {"k": [3]}],
      "target": "y"
    },
    7
  ],
  "target": "z"
})";
  EXPECT_EQ(LineOfKey(text, {"routes"}), 2u);
  EXPECT_EQ(LineOfKey(text, {"routes", "[0]", "target"}), 3u);
  EXPECT_EQ(LineOfKey(text, {"routes", "[1]"}), 4u);
  // Commas and brackets inside strings and nested values do not count as elements.
  EXPECT_EQ(LineOfKey(text, {"routes", "[1]", "target"}), 7u);
  EXPECT_EQ(LineOfKey(text, {"routes", "[2]"}), 9u);
  EXPECT_EQ(LineOfKey(text, {"routes", "[3]"}), 0u);
  EXPECT_EQ(LineOfKey(text, {"target"}), 3u) << "the first \"target\": key, as written";
  EXPECT_EQ(LineOfKey(text, {"missing"}), 0u);
}

TEST(JsonFileTest, ANumberTooLargeIsAnErrorWithItsLineNotACrash) {
  // nlohmann reports it as out_of_range, not as a parse error (found by the config fuzzer).
  auto parsed = ParseJsonFile("{\n  \"a\": 1,\n  \"b\": 1e999\n}", "big.json");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().message(),
            "big.json:3: not valid JSON: number overflow parsing '1e999'");
  auto syntax = ParseJsonFile("{\"a\": [1,,]}", "s.json");
  ASSERT_FALSE(syntax.ok());
  EXPECT_TRUE(absl::StartsWith(syntax.status().message(), "s.json:1:10: not valid JSON: "))
      << syntax.status();
}

TEST(JsonReaderTest, ErrorsNameTheOriginTheLineAndThePath) {
  const std::string text = "{\n  \"list\": [\n    {\"n\": 1},\n    {\"n\": \"two\"}\n  ]\n}";
  const json value = json::parse(text);
  const JsonReader top({"f.json", text}, value);
  const JsonReader second = top.Child("list").Element(1);
  int64_t n = 0;
  EXPECT_EQ(Message(second.ReadInt("n", 0, 9, &n)),
            "f.json:4: list[1].n: must be an integer from 0 to 9, got \"two\"");
  EXPECT_EQ(JsonPathText(second.path()), "list[1]");
  EXPECT_EQ(second.Where(), "f.json:4: list[1]");
  // Without the text there is no line; the origin alone starts the message.
  const JsonReader named({"policy"}, value);
  EXPECT_EQ(Message(named.Error("broken")), "policy: broken");
  EXPECT_EQ(Message(named.FieldError("list", "bad")), "policy: list: bad");
}

TEST(JsonReaderTest, AbsentAndNullFieldsKeepTheDefault) {
  const json value = {{"a", nullptr}};
  const JsonReader reader({"x"}, value);
  int64_t n = 5;
  double d = 0.5;
  std::string s = "keep";
  bool b = true;
  std::vector<std::string> list = {"keep"};
  absl::Duration duration = absl::Seconds(3);
  for (const char* field : {"a", "b"}) {
    EXPECT_TRUE(reader.ReadInt(field, 0, 9, &n).ok());
    EXPECT_TRUE(reader.ReadDouble(field, 0, 1, &d).ok());
    EXPECT_TRUE(reader.ReadString(field, &s).ok());
    EXPECT_TRUE(reader.ReadBool(field, &b).ok());
    EXPECT_TRUE(reader.ReadStringList(field, &list).ok());
    EXPECT_TRUE(reader.ReadPositiveDuration(field, &duration).ok());
  }
  EXPECT_EQ(n, 5);
  EXPECT_EQ(d, 0.5);
  EXPECT_EQ(s, "keep");
  EXPECT_TRUE(b);
  EXPECT_EQ(list, std::vector<std::string>{"keep"});
  EXPECT_EQ(duration, absl::Seconds(3));
}

TEST(JsonReaderTest, EachReadChecksItsType) {
  const json value = {{"n", 4.0},      {"half", 4.5},       {"big", 18446744073709551615u},
                      {"flag", "yes"}, {"names", {"a", 1}}, {"d", "1.5s"},
                      {"text", 3},     {"ok", {"a", "b"}},  {"u", 7}};
  const JsonReader reader({"x"}, value);
  int64_t n = 0;
  EXPECT_TRUE(reader.ReadInt("n", 0, 9, &n).ok());
  EXPECT_EQ(n, 4);
  EXPECT_EQ(Message(reader.ReadInt("half", 0, 9, &n)),
            "x: half: must be an integer from 0 to 9, got 4.5");
  EXPECT_EQ(Message(reader.ReadInt("big", 0, 9, &n)),
            "x: big: must be an integer from 0 to 9, got 18446744073709551615");
  uint32_t u = 0;
  EXPECT_TRUE(reader.ReadInt("u", 0, 9, &u).ok());
  EXPECT_EQ(u, 7u);
  bool b = false;
  EXPECT_EQ(Message(reader.ReadBool("flag", &b)), "x: flag: must be true or false, got \"yes\"");
  std::vector<std::string> list;
  EXPECT_EQ(Message(reader.ReadStringList("names", &list)),
            "x: names: must be a list of strings, got [\"a\",1]");
  EXPECT_TRUE(reader.ReadStringList("ok", &list).ok());
  EXPECT_EQ(list, (std::vector<std::string>{"a", "b"}));
  absl::Duration duration;
  EXPECT_TRUE(reader.ReadPositiveDuration("d", &duration).ok());
  EXPECT_EQ(duration, absl::Milliseconds(1500));
  std::string s;
  EXPECT_EQ(Message(reader.ReadString("text", &s)), "x: text: must be a string, got 3");
}

TEST(JsonReaderTest, ObjectsAreCheckedForTypeAndKnownKeys) {
  const json value = {{"inner", {{"known", 1}, {"typo", 2}}}, {"list", json::array()}};
  const JsonReader top({"x"}, value);
  EXPECT_TRUE(top.CheckObject({"inner", "list"}).ok());
  EXPECT_EQ(Message(top.Child("inner").CheckObject({"known", "other"})),
            "x: inner.typo: unknown field (known: known, other)");
  EXPECT_EQ(Message(top.Child("inner").CheckObject({})),
            "x: inner.known: unknown field (no fields are taken here)");
  EXPECT_EQ(Message(top.Child("list").CheckObject({})), "x: list: must be a JSON object, got []");
  // A missing child or element reads as null, never out of bounds.
  EXPECT_EQ(Message(top.Child("absent").CheckObject({})),
            "x: absent: must be a JSON object, got null");
  EXPECT_EQ(Message(top.Child("list").Element(3).CheckObject({})),
            "x: list[3]: must be a JSON object, got null");
  const json null_value;
  EXPECT_TRUE(JsonReader({"x"}, null_value).CheckObject({}, /*null_is_empty=*/true).ok());
  EXPECT_FALSE(JsonReader({"x"}, null_value).CheckObject({}).ok());
}

}  // namespace
}  // namespace sluice
