#pragma once

// The discovery sources behind CreateDiscovery. Exposed for tests and for callers that want
// one source directly; everything else goes through CreateDiscovery.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "sluice/discovery/discovery.h"

namespace sluice::discovery {

// Reports `addresses` (each "host:port") once, inside Start().
std::unique_ptr<Discovery> NewStaticDiscovery(std::vector<std::string> addresses);

// Resolves a name into the dialable addresses of every A/AAAA record, port not included
// ("127.0.0.1", "::1"). An empty list is a valid answer; an error keeps the last set.
using DnsResolver = std::function<absl::StatusOr<std::vector<std::string>>(const std::string&)>;
// getaddrinfo(3).
absl::StatusOr<std::vector<std::string>> ResolveWithGetaddrinfo(const std::string& host);

// Resolves `host` with `resolver` (default: getaddrinfo) at Start() and then every
// options.dns_refresh_interval, reporting "ip:port" / "[ipv6]:port" for each address.
std::unique_ptr<Discovery> NewDnsDiscovery(std::string host, uint16_t port,
                                           DiscoveryOptions options,
                                           DnsResolver resolver = nullptr);

// Lists and watches target.prefix in etcd (target.scheme must be kEtcd). Fails only on bad
// options; an unreachable etcd is retried in the background.
absl::StatusOr<std::unique_ptr<Discovery>> NewEtcdDiscovery(const Target& target,
                                                            DiscoveryOptions options);

}  // namespace sluice::discovery
