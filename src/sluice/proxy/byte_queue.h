#pragma once

#include <cstddef>
#include <deque>
#include <memory>
#include <string>

#include "absl/functional/function_ref.h"

namespace sluice::proxy {

// A call's bytes in flight through the proxy, as a FIFO of fixed-size blocks. A contiguous
// buffer (std::string) copies everything it holds each time it grows, and moves what is left each
// time sent bytes are cut from its front; for a 1 MiB message those two moves were a third of the
// proxy's memcpy. Here appending never moves queued bytes and dropping frees whole blocks.
// One block stays once the queue empties, so a recycled call's small messages allocate nothing.
class ByteQueue {
 public:
  // nghttp2's largest DATA frame by default: a frame's bytes span at most two blocks.
  static constexpr size_t kBlockBytes = 16 << 10;

  ByteQueue() = default;
  ByteQueue(const ByteQueue&) = delete;
  ByteQueue& operator=(const ByteQueue&) = delete;

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  void Append(const char* data, size_t len);
  // Hands bytes [offset, offset + len) to `sink` in contiguous pieces, in order. The range must
  // lie within size().
  void Read(size_t offset, size_t len, absl::FunctionRef<void(const char*, size_t)> sink) const;
  // Drops the first `len` bytes (at most size()).
  void Drop(size_t len);
  // Drops everything, keeping one block.
  void Clear();

  // The bytes as one string, for tests and logs.
  std::string ToString() const;

 private:
  std::deque<std::unique_ptr<char[]>> blocks_;
  size_t head_ = 0;  // offset of the first byte in blocks_.front()
  size_t size_ = 0;
  std::unique_ptr<char[]> spare_;  // a block freed from the front, for the next Append
};

}  // namespace sluice::proxy
