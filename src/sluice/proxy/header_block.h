#pragma once

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace sluice::proxy {

// One HTTP/2 header block (request headers, response headers or trailers) with every name and
// value stored in a single buffer. A block that is cleared and reused for the next call keeps
// its capacity, so forwarding headers allocates nothing once the proxy is warm; a vector of
// string pairs cost a dozen allocations per call.
class HeaderBlock {
 public:
  void Add(absl::string_view name, absl::string_view value) {
    const size_t at = size_;
    Reserve(at + name.size() + value.size());
    if (!name.empty()) memcpy(bytes_.get() + at, name.data(), name.size());
    if (!value.empty()) memcpy(bytes_.get() + at + name.size(), value.data(), value.size());
    size_ = at + name.size() + value.size();
    fields_.push_back(
        {static_cast<uint32_t>(at), static_cast<uint32_t>(name.size()),
         static_cast<uint32_t>(value.size())});
  }

  // The first value of `name`, if present.
  std::optional<absl::string_view> Find(absl::string_view name) const {
    for (const Field& f : fields_) {
      if (Name(f) == name) return Value(f);
    }
    return std::nullopt;
  }

  size_t size() const { return fields_.size(); }
  bool empty() const { return fields_.empty(); }
  absl::string_view name(size_t i) const { return Name(fields_[i]); }
  absl::string_view value(size_t i) const { return Value(fields_[i]); }

  void clear() {
    size_ = 0;
    fields_.clear();
  }
  void swap(HeaderBlock& other) noexcept {
    bytes_.swap(other.bytes_);
    std::swap(size_, other.size_);
    std::swap(capacity_, other.capacity_);
    fields_.swap(other.fields_);
  }

  // Fills `out` with nghttp2 name/value pairs pointing into this block (valid until it changes;
  // nghttp2's submit functions copy them). `replace_name`, when given, gets `replacement` as
  // its value instead of its own.
  void ToNv(std::vector<nghttp2_nv>* out, absl::string_view replace_name = {},
            absl::string_view replacement = {}) const {
    out->clear();
    for (const Field& f : fields_) {
      const absl::string_view name = Name(f);
      absl::string_view value = Value(f);
      if (!replace_name.empty() && name == replace_name) value = replacement;
      out->push_back(nghttp2_nv{Bytes(name), Bytes(value), name.size(), value.size(),
                                NGHTTP2_NV_FLAG_NONE});
    }
  }

 private:
  struct Field {
    uint32_t name_at;
    uint32_t name_size;
    uint32_t value_size;
  };
  absl::string_view Name(const Field& f) const {
    return absl::string_view(bytes_.get() + f.name_at, f.name_size);
  }
  absl::string_view Value(const Field& f) const {
    return absl::string_view(bytes_.get() + f.name_at + f.name_size, f.value_size);
  }
  // A plain buffer rather than std::string: appending is then one capacity check and two
  // memcpy calls, which matters at a dozen headers per call.
  void Reserve(size_t wanted) {
    if (wanted <= capacity_) return;
    const size_t grown = std::max<size_t>({wanted, capacity_ * 2, 256});
    std::unique_ptr<char[]> bigger(new char[grown]);
    if (size_ > 0) memcpy(bigger.get(), bytes_.get(), size_);
    bytes_ = std::move(bigger);
    capacity_ = grown;
  }
  static uint8_t* Bytes(absl::string_view s) {
    return reinterpret_cast<uint8_t*>(const_cast<char*>(s.data()));
  }

  std::unique_ptr<char[]> bytes_;
  size_t size_ = 0;
  size_t capacity_ = 0;
  std::vector<Field> fields_;
};

}  // namespace sluice::proxy
