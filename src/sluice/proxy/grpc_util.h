#pragma once

#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace sluice::proxy {

// Parses a grpc-timeout header value ("100m", "5S", "1H"): 1 to 8 digits and a unit among
// H M S m u n. Returns nullopt on anything else, so a malformed value is ignored, not guessed.
std::optional<absl::Duration> ParseGrpcTimeout(absl::string_view value);

// grpc-message is percent-encoded: bytes outside 0x20-0x7E and '%' itself become %XX.
std::string PercentEncodeGrpcMessage(absl::string_view message);

// Connection-specific headers that must not cross the proxy (RFC 9113 section 8.2.2). "te" is
// not among them: gRPC needs "te: trailers" end to end.
bool IsHopByHopHeader(absl::string_view name);

}  // namespace sluice::proxy
