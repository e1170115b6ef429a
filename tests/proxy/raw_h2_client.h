#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace sluice::testing {

// What one raw HTTP/2 request got back.
struct RawResponse {
  std::vector<std::pair<std::string, std::string>> headers;   // first header block
  std::vector<std::pair<std::string, std::string>> trailers;  // second block, if any
  std::string body;
  uint32_t rst_error = 0;  // RST_STREAM error code, if the stream was reset
  bool reset = false;
  bool closed = false;                                // the stream closed before the timeout
  std::string Header(const std::string& name) const;  // from headers, then trailers
};

// Sends one request on a fresh connection with exactly the headers given (so a test can omit
// :path or send a wrong content-type, which gRPC's own client never does) and waits for the
// stream to close. Uses libnghttp2 directly over a blocking loopback socket.
absl::StatusOr<RawResponse> RawHttp2Request(
    int port, const std::vector<std::pair<std::string, std::string>>& headers,
    const std::string& body, absl::Duration timeout);

// A gRPC length-prefixed message frame holding `payload`.
std::string GrpcFrame(const std::string& payload);

}  // namespace sluice::testing
