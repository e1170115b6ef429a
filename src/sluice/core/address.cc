#include "sluice/core/address.h"

#include <arpa/inet.h>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace sluice {

std::string HostPort::ToString() const {
  if (host.find(':') != std::string::npos) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

absl::StatusOr<HostPort> ParseHostPort(absl::string_view text) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bad address '", text, "': ", why, "; expected host:port, e.g. 127.0.0.11:50051 or [::1]:50051"));
  };
  HostPort result;
  absl::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == absl::string_view::npos) return bad("missing ']' after an IPv6 host");
    result.host = std::string(text.substr(1, close - 1));
    if (close + 1 >= text.size() || text[close + 1] != ':') return bad("missing ':port'");
    port_text = text.substr(close + 2);
    in6_addr unused;
    if (inet_pton(AF_INET6, result.host.c_str(), &unused) != 1) {
      return bad("the part in brackets is not an IPv6 address");
    }
  } else {
    size_t colon = text.rfind(':');
    if (colon == absl::string_view::npos) return bad("missing ':port'");
    result.host = std::string(text.substr(0, colon));
    if (result.host.find(':') != std::string::npos) {
      return bad("an IPv6 host must be in brackets");
    }
    port_text = text.substr(colon + 1);
  }
  if (result.host.empty()) return bad("empty host");
  uint32_t port = 0;
  if (port_text.empty() || !absl::SimpleAtoi(port_text, &port) || port == 0 || port > 65535) {
    return bad("the port must be a number from 1 to 65535");
  }
  result.port = static_cast<uint16_t>(port);
  return result;
}

bool IsIpLiteral(absl::string_view host) {
  std::string h(host);
  in_addr v4;
  in6_addr v6;
  return inet_pton(AF_INET, h.c_str(), &v4) == 1 || inet_pton(AF_INET6, h.c_str(), &v6) == 1;
}

}  // namespace sluice
