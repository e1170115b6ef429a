#include "sluice/proxy/session_allocator.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <set>
#include <vector>

namespace sluice::proxy {
namespace {

TEST(SessionAllocatorTest, ReusesFreedBlocksOfTheSameSizeClass) {
  SessionAllocator allocator;
  void* first = allocator.Allocate(100);
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(first) % 16, 0u);
  allocator.Free(first);
  EXPECT_EQ(allocator.cached_blocks(), 1u);
  void* again = allocator.Allocate(90);  // same 64-byte class
  EXPECT_EQ(again, first);
  EXPECT_EQ(allocator.cached_blocks(), 0u);
  allocator.Free(again);
  allocator.Free(nullptr);  // allowed, like free()
}

TEST(SessionAllocatorTest, BlocksAreDistinctAndHoldTheirBytes) {
  SessionAllocator allocator;
  std::vector<uint8_t*> blocks;
  std::set<uint8_t*> distinct;
  for (size_t size : {0u, 1u, 47u, 48u, 49u, 1000u, 2032u, 2033u, 100000u}) {
    auto* block = static_cast<uint8_t*>(allocator.Allocate(size));
    ASSERT_NE(block, nullptr) << size;
    memset(block, static_cast<int>(size & 0xff), size);
    blocks.push_back(block);
    distinct.insert(block);
  }
  EXPECT_EQ(distinct.size(), blocks.size());
  for (uint8_t* block : blocks) allocator.Free(block);
  // Large blocks (over 2 KiB) go back to malloc; the small ones are cached.
  EXPECT_EQ(allocator.cached_blocks(), 7u);
}

TEST(SessionAllocatorTest, ReallocateKeepsContentsAcrossClassesAndLargeBlocks) {
  SessionAllocator allocator;
  auto* block = static_cast<char*>(allocator.mem()->malloc(10, allocator.mem()->mem_user_data));
  memcpy(block, "0123456789", 10);
  block = static_cast<char*>(allocator.Reallocate(block, 40));  // fits in place
  EXPECT_EQ(memcmp(block, "0123456789", 10), 0);
  block = static_cast<char*>(allocator.Reallocate(block, 3000));  // to a large block
  ASSERT_NE(block, nullptr);
  EXPECT_EQ(memcmp(block, "0123456789", 10), 0);
  block[2999] = 'z';
  block = static_cast<char*>(allocator.Reallocate(block, 50000));  // large to larger
  ASSERT_NE(block, nullptr);
  EXPECT_EQ(memcmp(block, "0123456789", 10), 0);
  EXPECT_EQ(block[2999], 'z');
  EXPECT_EQ(allocator.Reallocate(block, 0), nullptr);  // frees
  auto* zeroed = static_cast<uint8_t*>(
      allocator.mem()->calloc(8, 16, allocator.mem()->mem_user_data));
  for (int i = 0; i < 128; ++i) ASSERT_EQ(zeroed[i], 0) << i;
  allocator.Free(zeroed);
}

TEST(SessionAllocatorTest, CacheIsBoundedAfterABurst) {
  SessionAllocator allocator;
  std::vector<void*> burst;
  for (int i = 0; i < 10000; ++i) burst.push_back(allocator.Allocate(1000));
  for (void* block : burst) allocator.Free(block);
  // 256 KiB per class at most: 1000-byte blocks live in 1 KiB slots.
  EXPECT_LE(allocator.cached_blocks(), 256u);
  EXPECT_GE(allocator.cached_blocks(), 200u);
}

}  // namespace
}  // namespace sluice::proxy
