#include "sluice/balancer/outlier_detector.h"

#include <algorithm>

#include "sluice/core/log.h"

namespace sluice {

bool OutlierDetector::CountsAsFailure(absl::StatusCode code) {
  return code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kInternal ||
         code == absl::StatusCode::kUnknown || code == absl::StatusCode::kDataLoss;
}

bool OutlierDetector::RecordResult(EndpointHandle& endpoint, absl::StatusCode code) const {
  if (!options_.enabled) return false;
  if (!CountsAsFailure(code)) {
    // Only a store when the streak was not already 0: a shared cache line stays clean.
    if (endpoint.consecutive_failures.load(std::memory_order_relaxed) != 0) {
      endpoint.consecutive_failures.store(0, std::memory_order_relaxed);
    }
    return false;
  }
  const int failures = endpoint.consecutive_failures.fetch_add(1, std::memory_order_relaxed) + 1;
  return failures >= options_.consecutive_failures && !endpoint.ejection_requested.exchange(true);
}

OutlierDetector::EjectOutcome OutlierDetector::Eject(std::vector<Member>& members, size_t index,
                                                     EndpointHandle& endpoint) {
  endpoint.ejection_requested = false;
  Member& member = members[index];
  if (member.ejection->ejected) return EjectOutcome::kNotNeeded;
  const Counts counts = Count(members);
  if (counts.ejected + 1 > MaxEjected(members.size()) ||
      (member.ready && counts.ready_not_ejected <= 1) || members.size() <= 1) {
    LogWarning("balancer ", service_name_, ": ", *member.address, " failed ",
               options_.consecutive_failures,
               " calls in a row but is not ejected: too many endpoints are ejected already");
    endpoint.consecutive_failures = 0;
    return EjectOutcome::kRefused;
  }
  EjectionState& ejection = *member.ejection;
  ejection.ejected = true;
  ++ejection.ejections;
  const absl::Duration duration =
      std::min(options_.base_ejection_time * ejection.ejections,
               std::max(options_.base_ejection_time, options_.max_ejection_time));
  ejection.ejected_until = clock_.Now() + duration;
  endpoint.consecutive_failures = 0;
  LogWarning("balancer ", service_name_, ": ejected ", *member.address, " for ",
             absl::FormatDuration(duration), " after ", options_.consecutive_failures,
             " failed calls in a row");
  return EjectOutcome::kEjected;
}

bool OutlierDetector::ReleaseExpired(std::vector<Member>& members) {
  const absl::Time now = clock_.Now();
  bool released = false;
  for (Member& member : members) {
    if (member.ejection->ejected && now >= member.ejection->ejected_until) {
      member.ejection->ejected = false;
      released = true;
      LogInfo("balancer ", service_name_, ": ", *member.address, " back from ejection");
    }
  }
  return released;
}

bool OutlierDetector::ReleaseBeyondLimits(std::vector<Member>& members) {
  bool released = false;
  while (true) {
    const Counts counts = Count(members);
    Member* release = nullptr;
    const char* why = nullptr;
    if (counts.ready_not_ejected == 0 && (release = FirstEjectionToEnd(members, true)) != nullptr) {
      why = "no other endpoint is ready";
    } else if (counts.ejected > MaxEjected(members.size())) {
      release = FirstEjectionToEnd(members, false);
      why = "more than the allowed share of the endpoints left is ejected";
    }
    if (release == nullptr) return released;
    release->ejection->ejected = false;
    released = true;
    LogInfo("balancer ", service_name_, ": ", *release->address,
            " back from ejection early: ", why);
  }
}

OutlierDetector::Counts OutlierDetector::Count(const std::vector<Member>& members) {
  Counts counts;
  for (const Member& member : members) {
    if (member.ejection->ejected) {
      ++counts.ejected;
    } else if (member.ready) {
      ++counts.ready_not_ejected;
    }
  }
  return counts;
}

OutlierDetector::Member* OutlierDetector::FirstEjectionToEnd(std::vector<Member>& members,
                                                             bool ready_only) {
  Member* first = nullptr;
  for (Member& member : members) {
    if (!member.ejection->ejected || (ready_only && !member.ready)) continue;
    if (first == nullptr || member.ejection->ejected_until < first->ejection->ejected_until) {
      first = &member;
    }
  }
  return first;
}

size_t OutlierDetector::MaxEjected(size_t members) const {
  return std::max<size_t>(
      1, static_cast<size_t>(static_cast<double>(members) * options_.max_ejection_percent / 100.0));
}

}  // namespace sluice
