// libFuzzer target: the proxy's handling of request-header values that clients control:
// grpc-timeout parsing, grpc-message encoding and the hop-by-hop header filter.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/strings/string_view.h"
#include "sluice/proxy/grpc_util.h"

namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);

  // A parsed timeout is never negative, and only short well-formed values parse.
  if (auto timeout = sluice::proxy::ParseGrpcTimeout(input)) {
    if (*timeout < absl::ZeroDuration() || size < 2 || size > 9) std::abort();
  }

  // grpc-message: only printable ASCII goes on the wire, and decoding gives the input back.
  const std::string encoded = sluice::proxy::PercentEncodeGrpcMessage(input);
  std::string decoded;
  for (size_t i = 0; i < encoded.size(); ++i) {
    const char c = encoded[i];
    if (c < 0x20 || c > 0x7e) std::abort();
    if (c == '%') {
      if (i + 2 >= encoded.size()) std::abort();  // a '%' needs two hex digits after it
      const int high = HexValue(encoded[i + 1]), low = HexValue(encoded[i + 2]);
      if (high < 0 || low < 0) std::abort();
      decoded.push_back(static_cast<char>(high * 16 + low));
      i += 2;
    } else {
      decoded.push_back(c);
    }
  }
  if (decoded != input) std::abort();

  (void)sluice::proxy::IsHopByHopHeader(input);
  return 0;
}
