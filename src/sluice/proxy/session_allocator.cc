#include "sluice/proxy/session_allocator.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace sluice::proxy {
namespace {

void* MallocCb(size_t size, void* user) { return static_cast<SessionAllocator*>(user)->Allocate(size); }
void FreeCb(void* ptr, void* user) { static_cast<SessionAllocator*>(user)->Free(ptr); }
void* CallocCb(size_t count, size_t size, void* user) {
  if (size != 0 && count > SIZE_MAX / size) return nullptr;
  void* ptr = static_cast<SessionAllocator*>(user)->Allocate(count * size);
  if (ptr != nullptr) memset(ptr, 0, count * size);
  return ptr;
}
void* ReallocCb(void* ptr, size_t size, void* user) {
  return static_cast<SessionAllocator*>(user)->Reallocate(ptr, size);
}

// The header before each block: its size class (kLarge for malloc'ed blocks).
unsigned& ClassOf(void* block) {
  return *reinterpret_cast<unsigned*>(static_cast<char*>(block) - 16);
}

}  // namespace

SessionAllocator::SessionAllocator() : mem_{this, MallocCb, FreeCb, CallocCb, ReallocCb} {}

SessionAllocator::~SessionAllocator() {
  for (FreeList& list : free_lists_) {
    while (list.head != nullptr) {
      FreeBlock* next = list.head->next;
      ::free(list.head);
      list.head = next;
    }
  }
}

void* SessionAllocator::Allocate(size_t size) {
  const size_t cls = (size + kHeader + kClassBytes - 1) / kClassBytes - 1;
  char* raw;
  if (cls >= kClasses) {
    if (size > SIZE_MAX - kHeader) return nullptr;
    raw = static_cast<char*>(::malloc(size + kHeader));
    if (raw == nullptr) return nullptr;
  } else if (FreeList& list = free_lists_[cls]; list.head != nullptr) {
    raw = reinterpret_cast<char*>(list.head);
    list.head = list.head->next;
    --list.count;
  } else {
    raw = static_cast<char*>(::malloc((cls + 1) * kClassBytes));
    if (raw == nullptr) return nullptr;
  }
  void* block = raw + kHeader;
  ClassOf(block) = cls >= kClasses ? kLarge : static_cast<unsigned>(cls);
  return block;
}

void SessionAllocator::Free(void* ptr) {
  if (ptr == nullptr) return;
  const unsigned cls = ClassOf(ptr);
  char* raw = static_cast<char*>(ptr) - kHeader;
  if (cls == kLarge) {
    ::free(raw);
    return;
  }
  FreeList& list = free_lists_[cls];
  // Keep a bounded amount per class: after a burst, the rest goes back to malloc.
  if (list.count * (cls + 1) * kClassBytes >= kCachedBytesPerClass) {
    ::free(raw);
    return;
  }
  auto* freed = reinterpret_cast<FreeBlock*>(raw);
  freed->next = list.head;
  list.head = freed;
  ++list.count;
}

void* SessionAllocator::Reallocate(void* ptr, size_t size) {
  if (ptr == nullptr) return Allocate(size);
  if (size == 0) {
    Free(ptr);
    return nullptr;
  }
  const unsigned cls = ClassOf(ptr);
  if (cls == kLarge) {
    char* raw = static_cast<char*>(::realloc(static_cast<char*>(ptr) - kHeader, size + kHeader));
    return raw == nullptr ? nullptr : raw + kHeader;
  }
  const size_t usable = (cls + 1) * kClassBytes - kHeader;
  if (size <= usable) return ptr;
  void* grown = Allocate(size);
  if (grown == nullptr) return nullptr;
  memcpy(grown, ptr, usable);
  Free(ptr);
  return grown;
}

size_t SessionAllocator::cached_blocks() const {
  size_t total = 0;
  for (const FreeList& list : free_lists_) total += list.count;
  return total;
}

}  // namespace sluice::proxy
