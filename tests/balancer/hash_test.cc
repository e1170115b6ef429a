#include "sluice/balancer/hash.h"

#include <gtest/gtest.h>

#include <string>

namespace sluice {
namespace {

// Reference values from the xxHash library (libxxhash 0.8.1, XXH64).
TEST(Xxh64Test, MatchesTheReferenceImplementation) {
  EXPECT_EQ(Xxh64("", 0), 0xef46db3751d8e999ULL);
  EXPECT_EQ(Xxh64("a", 0), 0xd24ec4f1a98c6e5bULL);
  EXPECT_EQ(Xxh64("abc", 0), 0x44bc2cf5ad770999ULL);
  EXPECT_EQ(Xxh64("127.0.0.1:50051_0", 0), 0x2aa0808c170b12a2ULL);
  EXPECT_EQ(Xxh64("hello world, this is a longer string over 32 bytes!!", 0),
            0x3ba5871053b95daeULL);
  EXPECT_EQ(Xxh64("0123456789abcdef0123456789abcdef0123456789", 0), 0xa76190c3acf08a1cULL);
  EXPECT_EQ(Xxh64("", 42), 0x98b1582b0977e704ULL);
  EXPECT_EQ(Xxh64("abc", 42), 0x13c1d910702770e6ULL);
  EXPECT_EQ(Xxh64("hello world, this is a longer string over 32 bytes!!", 42),
            0x3cbc1204c6f8078eULL);
}

TEST(Xxh64Test, HashCallKeyIsSeedZeroXxh64) {
  EXPECT_EQ(HashCallKey("abc"), 0x44bc2cf5ad770999ULL);
  EXPECT_NE(HashCallKey("user-1"), HashCallKey("user-2"));
  // Bytes after a NUL count.
  EXPECT_NE(HashCallKey(absl::string_view("a\0b", 3)), HashCallKey(absl::string_view("a\0c", 3)));
}

}  // namespace
}  // namespace sluice
