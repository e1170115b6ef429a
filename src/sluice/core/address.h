#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sluice {

struct HostPort {
  std::string host;  // an IPv4 address, an IPv6 address without brackets, or a name
  uint16_t port = 0;
  // "host:port", with brackets around an IPv6 host.
  std::string ToString() const;
};

// Parses "host:port" or "[ipv6]:port". The port must be 1-65535; the host must be non-empty.
// The error names the input and shows the expected form.
absl::StatusOr<HostPort> ParseHostPort(absl::string_view text);

// True if host is a literal IPv4 or IPv6 address (not a name).
bool IsIpLiteral(absl::string_view host);

}  // namespace sluice
