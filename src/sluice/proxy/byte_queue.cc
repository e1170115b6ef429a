#include "sluice/proxy/byte_queue.h"

#include <algorithm>
#include <cstring>
#include <utility>

namespace sluice::proxy {

void ByteQueue::Append(const char* data, size_t len) {
  while (len > 0) {
    const size_t end = head_ + size_;  // where the next byte goes, from the first block's start
    if (end / kBlockBytes == blocks_.size()) {
      blocks_.push_back(spare_ != nullptr ? std::move(spare_)
                                          : std::unique_ptr<char[]>(new char[kBlockBytes]));
    }
    const size_t in_block = end % kBlockBytes;
    const size_t n = std::min(len, kBlockBytes - in_block);
    std::memcpy(blocks_[end / kBlockBytes].get() + in_block, data, n);
    data += n;
    len -= n;
    size_ += n;
  }
}

void ByteQueue::Read(size_t offset, size_t len,
                     absl::FunctionRef<void(const char*, size_t)> sink) const {
  size_t at = head_ + offset;
  while (len > 0) {
    const size_t in_block = at % kBlockBytes;
    const size_t n = std::min(len, kBlockBytes - in_block);
    sink(blocks_[at / kBlockBytes].get() + in_block, n);
    at += n;
    len -= n;
  }
}

void ByteQueue::Drop(size_t len) {
  len = std::min(len, size_);
  head_ += len;
  size_ -= len;
  if (size_ == 0) {
    // Nothing left: start over at the front of the first block and free any others, so a
    // small message after a large one holds one block, and the next one allocates nothing.
    while (blocks_.size() > 1) blocks_.pop_back();
    head_ = 0;
    return;
  }
  while (head_ >= kBlockBytes) {
    if (spare_ == nullptr) spare_ = std::move(blocks_.front());
    blocks_.pop_front();
    head_ -= kBlockBytes;
  }
}

void ByteQueue::Clear() {
  Drop(size_);
  spare_.reset();  // a recycled call keeps one block per direction, as little as a small call needs
}

std::string ByteQueue::ToString() const {
  std::string out;
  out.reserve(size_);
  Read(0, size_, [&out](const char* data, size_t len) { out.append(data, len); });
  return out;
}

}  // namespace sluice::proxy
