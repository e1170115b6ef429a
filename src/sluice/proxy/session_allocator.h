#pragma once

#include <nghttp2/nghttp2.h>

#include <array>
#include <cstddef>

namespace sluice::proxy {

// The memory allocator a worker gives its nghttp2 sessions. nghttp2 allocates and frees a
// dozen small blocks per stream (stream state, header copies, outbound frames); a worker's
// sessions all run on its one thread, so freed blocks go onto per-size free lists here and are
// handed out again without a lock or a trip through malloc. Not thread-safe: one per worker.
class SessionAllocator {
 public:
  SessionAllocator();
  ~SessionAllocator();
  SessionAllocator(const SessionAllocator&) = delete;
  SessionAllocator& operator=(const SessionAllocator&) = delete;

  void* Allocate(size_t size);
  void Free(void* ptr);
  void* Reallocate(void* ptr, size_t size);

  // For nghttp2_session_{server,client}_new3; valid as long as this allocator.
  nghttp2_mem* mem() { return &mem_; }

  // Blocks currently kept on the free lists (for tests).
  size_t cached_blocks() const;

 private:
  static constexpr size_t kHeader = 16;       // keeps the caller's block 16-byte aligned
  static constexpr size_t kClassBytes = 64;   // size classes are multiples of this
  static constexpr size_t kClasses = 32;      // up to 2 KiB; larger blocks go to malloc
  static constexpr size_t kCachedBytesPerClass = 256 << 10;
  static constexpr unsigned kLarge = kClasses;  // the class tag of a malloc'ed large block

  struct FreeBlock {
    FreeBlock* next;
  };
  struct FreeList {
    FreeBlock* head = nullptr;
    size_t count = 0;
  };

  std::array<FreeList, kClasses> free_lists_;
  nghttp2_mem mem_;
};

}  // namespace sluice::proxy
