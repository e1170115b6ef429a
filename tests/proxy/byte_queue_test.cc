#include "sluice/proxy/byte_queue.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sluice::proxy {
namespace {

constexpr size_t kBlock = ByteQueue::kBlockBytes;

// Bytes that differ from their neighbours, so a misplaced piece shows.
std::string Pattern(size_t len, size_t seed = 0) {
  std::string out(len, '\0');
  for (size_t i = 0; i < len; ++i) out[i] = static_cast<char>((i + seed) * 131 % 251);
  return out;
}

std::string ReadAll(const ByteQueue& queue, size_t offset, size_t len, int* pieces = nullptr) {
  std::string out;
  int count = 0;
  queue.Read(offset, len, [&](const char* data, size_t n) {
    out.append(data, n);
    ++count;
  });
  if (pieces != nullptr) *pieces = count;
  return out;
}

TEST(ByteQueueTest, KeepsBytesInOrderAcrossBlocks) {
  ByteQueue queue;
  const std::string data = Pattern(3 * kBlock + 123);
  // Appended in odd-sized pieces that straddle block boundaries.
  for (size_t at = 0; at < data.size(); at += 5000) {
    queue.Append(data.data() + at, std::min<size_t>(5000, data.size() - at));
  }
  EXPECT_EQ(queue.size(), data.size());
  EXPECT_EQ(queue.ToString(), data);
  int pieces = 0;
  // A frame's worth that crosses one boundary comes in two contiguous pieces.
  EXPECT_EQ(ReadAll(queue, kBlock - 100, 1000, &pieces), data.substr(kBlock - 100, 1000));
  EXPECT_EQ(pieces, 2);
  EXPECT_EQ(ReadAll(queue, 10, 100, &pieces), data.substr(10, 100));
  EXPECT_EQ(pieces, 1);
}

TEST(ByteQueueTest, DropFromTheFrontThenAppendMore) {
  ByteQueue queue;
  std::string expected;
  size_t seed = 0;
  // Like a call's response: bytes arrive, some are handed on, more arrive.
  for (int round = 0; round < 50; ++round) {
    const std::string in = Pattern(7000 + round * 311, seed++);
    queue.Append(in.data(), in.size());
    expected += in;
    const size_t out = std::min<size_t>(expected.size(), 6000 + round * 500);
    EXPECT_EQ(ReadAll(queue, 0, out), expected.substr(0, out)) << round;
    queue.Drop(out);
    expected.erase(0, out);
    ASSERT_EQ(queue.size(), expected.size()) << round;
    ASSERT_EQ(queue.ToString(), expected) << round;
  }
  queue.Drop(queue.size() + 10);  // more than there is: empties it
  EXPECT_TRUE(queue.empty());
  queue.Append("ab", 2);
  EXPECT_EQ(queue.ToString(), "ab");
}

TEST(ByteQueueTest, ClearEmptiesItForReuse) {
  ByteQueue queue;
  const std::string big = Pattern(5 * kBlock);
  queue.Append(big.data(), big.size());
  queue.Drop(kBlock + 1);
  queue.Clear();
  EXPECT_EQ(queue.size(), 0u);
  EXPECT_EQ(queue.ToString(), "");
  queue.Append("hello", 5);
  EXPECT_EQ(queue.ToString(), "hello");
  queue.Append(big.data(), big.size());
  EXPECT_EQ(queue.ToString(), "hello" + big);
}

TEST(ByteQueueTest, AnEmptyRangeCallsNothing) {
  ByteQueue queue;
  int pieces = 0;
  EXPECT_EQ(ReadAll(queue, 0, 0, &pieces), "");
  EXPECT_EQ(pieces, 0);
  queue.Append("x", 1);
  EXPECT_EQ(ReadAll(queue, 1, 0, &pieces), "");
  EXPECT_EQ(pieces, 0);
}

}  // namespace
}  // namespace sluice::proxy
