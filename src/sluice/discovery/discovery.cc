#include "sluice/discovery/discovery.h"

#include <chrono>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "sluice/discovery/sources.h"

namespace sluice::discovery {

EndpointSet Discovery::Current() const {
  std::lock_guard<std::mutex> lock(mu_);
  return current_.value_or(EndpointSet());
}

bool Discovery::HasReported() const {
  std::lock_guard<std::mutex> lock(mu_);
  return first_delivered_;
}

bool Discovery::WaitForFirstReport(absl::Duration timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  return reported_cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                               [this] { return first_delivered_; });
}

absl::Status Discovery::LastError() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_error_;
}

void Discovery::Publish(EndpointSet set) {
  // callback_mu_ first: two reports never interleave, so callbacks see them in order.
  std::lock_guard<std::mutex> callback_lock(callback_mu_);
  EndpointSetDiff diff;
  bool first;
  {
    std::lock_guard<std::mutex> lock(mu_);
    last_error_ = absl::OkStatus();
    first = !current_.has_value();
    if (!first && *current_ == set) return;
    diff = DiffEndpointSets(current_.value_or(EndpointSet()), set);
    current_ = set;
  }
  if (callback_) callback_(set, diff);
  if (first) {
    // Waiters wake only after the callback returned, so they see what it did.
    std::lock_guard<std::mutex> lock(mu_);
    first_delivered_ = true;
    reported_cv_.notify_all();
  }
}

void Discovery::ReportError(absl::Status status) {
  std::lock_guard<std::mutex> lock(mu_);
  last_error_ = std::move(status);
}

void Discovery::SetCallback(EndpointSetCallback callback) {
  std::lock_guard<std::mutex> lock(callback_mu_);
  callback_ = std::move(callback);
}

void Discovery::ClearCallback() {
  std::lock_guard<std::mutex> lock(callback_mu_);
  callback_ = nullptr;
}

absl::StatusOr<std::unique_ptr<Discovery>> CreateDiscovery(const Target& target,
                                                           DiscoveryOptions options) {
  switch (target.scheme) {
    case Target::Scheme::kStatic:
      if (target.addresses.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("static target '", target.text, "' has no addresses; ", kTargetForms));
      }
      return NewStaticDiscovery(target.addresses);
    case Target::Scheme::kDns:
      if (target.dns_host.empty() || target.dns_port == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("dns target '", target.text, "' needs NAME:PORT; ", kTargetForms));
      }
      return NewDnsDiscovery(target.dns_host, target.dns_port, std::move(options));
    case Target::Scheme::kEtcd:
      return NewEtcdDiscovery(target, std::move(options));
  }
  return absl::InvalidArgumentError("unknown target scheme");
}

absl::StatusOr<std::unique_ptr<Discovery>> CreateDiscovery(absl::string_view target,
                                                           DiscoveryOptions options) {
  absl::StatusOr<Target> parsed = ParseTarget(target);
  if (!parsed.ok()) return parsed.status();
  return CreateDiscovery(*parsed, std::move(options));
}

}  // namespace sluice::discovery
