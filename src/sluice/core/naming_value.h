#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "sluice/core/endpoint.h"

namespace sluice {

// The registry value format: what etcd's Go `client/v3/naming/endpoints` manager writes for
// endpoints.Update{Op: Add, Endpoint{Addr, Metadata}}, so Go clients using etcd's resolver and
// Sluice read each other's registrations.
//
// With no metadata the value is exactly {"Op":0,"Addr":"127.0.0.11:50051","Metadata":null}.
// Metadata is a JSON *string* holding a JSON object ("Metadata":"{\"weight\":100}"), never an
// object: grpc-go's balancers use an address's metadata as a map key and panic on a map.
std::string EncodeNamingValue(const Endpoint& endpoint);

// Reads a value written by Sluice, by etcd's Go manager, or by another tool. Metadata may be
// null, a string holding a JSON object, a string holding anything else (kept under "raw"), or
// an object. Fails (naming `key` and what was wrong) on anything that is not an add of a valid
// address; the caller skips that key with a warning.
// Op 1 (Delete, which the Go manager never stores but a hand-written value may) is reported as
// NotFound, so callers can treat the key as absent without a warning.
absl::StatusOr<Endpoint> ParseNamingValue(absl::string_view key, absl::string_view value);

// Adds one "name=value" metadata flag (from --meta) to `endpoint`: the value is kept as JSON
// when it is a JSON number, boolean or null, and as a string otherwise; the typed fields
// (weight, zone, version, draining) are checked and set. The error names the flag.
absl::Status ApplyMetadataFlag(absl::string_view flag, Endpoint& endpoint);

// Go's encoding/json string escaping (including \u003c, \u003e, \u0026, \u2028, \u2029), so
// the bytes match what a Go program writes for the same string.
std::string GoJsonQuote(absl::string_view text);

}  // namespace sluice
