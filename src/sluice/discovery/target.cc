#include "sluice/discovery/target.h"

#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "sluice/core/address.h"

namespace sluice::discovery {
namespace {

absl::Status BadTarget(absl::string_view text, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("bad target '", text, "': ", why, "; ", kTargetForms));
}

// Parses "a,b,c" into normalised "host:port" strings ([v6]:port for IPv6). `what` names the
// list in errors ("etcd member", "static address").
absl::StatusOr<std::vector<std::string>> ParseAddressList(absl::string_view target,
                                                          absl::string_view list,
                                                          absl::string_view what) {
  if (list.empty()) return BadTarget(target, absl::StrCat("no ", what, " given"));
  std::vector<std::string> out;
  for (absl::string_view item : absl::StrSplit(list, ',')) {
    if (item.empty()) {
      return BadTarget(target, absl::StrCat("empty ", what, " in the list '", list, "'"));
    }
    absl::StatusOr<HostPort> parsed = ParseHostPort(item);
    if (!parsed.ok()) {
      return BadTarget(target, absl::StrCat(what, " '", item, "': ", parsed.status().message()));
    }
    out.push_back(parsed->ToString());
  }
  return out;
}

absl::StatusOr<Target> ParseEtcd(Target target, absl::string_view rest) {
  size_t slash = rest.find('/');
  absl::string_view members = rest.substr(0, slash);
  absl::string_view prefix =
      slash == absl::string_view::npos ? absl::string_view() : rest.substr(slash + 1);
  // Trailing slashes are normalised to exactly one, so "greeter" never matches "greeter2".
  while (!prefix.empty() && prefix.back() == '/') prefix.remove_suffix(1);
  if (prefix.empty()) {
    return BadTarget(target.text,
                     "an etcd target needs a key prefix after the members, e.g. "
                     "etcd://127.0.0.1:2379/services/greeter");
  }
  absl::StatusOr<std::vector<std::string>> endpoints =
      ParseAddressList(target.text, members, "etcd member");
  if (!endpoints.ok()) return endpoints.status();
  target.scheme = Target::Scheme::kEtcd;
  target.etcd_endpoints = *std::move(endpoints);
  target.prefix = absl::StrCat(prefix, "/");
  return target;
}

absl::StatusOr<Target> ParseStatic(Target target, absl::string_view rest) {
  absl::StatusOr<std::vector<std::string>> addresses =
      ParseAddressList(target.text, rest, "static address");
  if (!addresses.ok()) return addresses.status();
  target.scheme = Target::Scheme::kStatic;
  target.addresses = *std::move(addresses);
  return target;
}

absl::StatusOr<Target> ParseDns(Target target, absl::string_view rest) {
  // gRPC spells DNS targets "dns:///name:port" (empty authority); accept that too.
  absl::ConsumePrefix(&rest, "/");
  if (rest.empty()) return BadTarget(target.text, "no name given after dns://");
  if (rest.find(',') != absl::string_view::npos) {
    return BadTarget(target.text, "a dns target takes one NAME:PORT, not a list");
  }
  absl::StatusOr<HostPort> parsed = ParseHostPort(rest);
  if (!parsed.ok()) {
    return BadTarget(target.text,
                     absl::StrCat("dns name '", rest, "': ", parsed.status().message()));
  }
  target.scheme = Target::Scheme::kDns;
  target.dns_host = parsed->host;
  target.dns_port = parsed->port;
  return target;
}

}  // namespace

absl::StatusOr<Target> ParseTarget(absl::string_view text) {
  Target target;
  target.text = std::string(text);
  if (text.empty()) return BadTarget(text, "the target is empty");

  size_t sep = text.find("://");
  if (sep == absl::string_view::npos) {
    // No scheme: only a plain address is allowed. Anything with a '/' is a mistyped scheme
    // ("etcd:/x", "etcd//x") rather than an address, so say that instead of "bad port".
    if (text.find('/') != absl::string_view::npos) {
      return BadTarget(text,
                       "no scheme: expected SCHEME:// (etcd://, static:// or dns://) "
                       "or a plain IP:PORT without '/'");
    }
    absl::StatusOr<HostPort> parsed = ParseHostPort(text);
    if (!parsed.ok()) return BadTarget(text, parsed.status().message());
    target.scheme = Target::Scheme::kStatic;
    target.addresses.push_back(parsed->ToString());
    return target;
  }

  std::string scheme = absl::AsciiStrToLower(text.substr(0, sep));
  absl::string_view rest = text.substr(sep + 3);
  if (scheme == "etcd") return ParseEtcd(std::move(target), rest);
  if (scheme == "static") return ParseStatic(std::move(target), rest);
  if (scheme == "dns") return ParseDns(std::move(target), rest);
  return BadTarget(text, absl::StrCat("unknown scheme '", text.substr(0, sep), "'"));
}

std::string ServicePrefix(absl::string_view service) {
  while (!service.empty() && service.back() == '/') service.remove_suffix(1);
  return absl::StrCat("services/", service);
}

}  // namespace sluice::discovery
