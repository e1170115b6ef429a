#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "sluice/balancer/endpoint_handle.h"
#include "sluice/core/clock.h"

namespace sluice {

struct OutlierDetectionOptions {
  bool enabled = true;
  // This many failures in a row (UNAVAILABLE, INTERNAL, UNKNOWN, DATA_LOSS) eject an endpoint.
  int consecutive_failures = 5;
  // An ejection lasts base_ejection_time x (number of times ejected), at most max_ejection_time.
  absl::Duration base_ejection_time = absl::Seconds(30);
  absl::Duration max_ejection_time = absl::Seconds(300);
  // At most this percentage of the endpoints is ejected at once; the last endpoint never is.
  double max_ejection_percent = 50;
};

// One endpoint's ejection, kept by whoever keeps the endpoint (the EndpointManager).
struct EjectionState {
  bool ejected = false;
  int ejections = 0;  // times ejected so far: each ejection lasts longer
  absl::Time ejected_until = absl::InfinitePast();
};

// Consecutive-failure outlier detection (Envoy's and gRPC's): an endpoint that fails this many
// calls in a row is left out of picks for a while, within limits that keep enough endpoints in.
//
// Two halves. RecordResult runs on the data plane, any thread, on the endpoint's atomics; when
// it returns true the caller asks its control plane to Eject. The rest runs on the control
// plane (one thread) over every endpoint's EjectionState, with times from the injected clock.
class OutlierDetector {
 public:
  // One endpoint as the control-plane calls see it.
  struct Member {
    const std::string* address;
    bool ready;  // pickable apart from ejection (transport ready, health not failing)
    EjectionState* ejection;
  };
  enum class EjectOutcome { kEjected, kRefused, kNotNeeded };

  OutlierDetector(OutlierDetectionOptions options, Clock& clock, std::string service_name)
      : options_(options), clock_(clock), service_name_(std::move(service_name)) {}

  static bool CountsAsFailure(absl::StatusCode code);
  const OutlierDetectionOptions& options() const { return options_; }

  // Data plane: true when `code` made the endpoint cross the threshold and no ejection of it
  // is requested yet (the caller then requests one).
  bool RecordResult(EndpointHandle& endpoint, absl::StatusCode code) const;

  // Ejects members[index] unless that would eject too many (the percentage limit, the last
  // ready endpoint). Either way its failure streak starts again.
  EjectOutcome Eject(std::vector<Member>& members, size_t index, EndpointHandle& endpoint);
  // Ends the ejections whose time has passed; true if any did.
  bool ReleaseExpired(std::vector<Member>& members);
  // The limits are checked when an endpoint is ejected, but the set changes afterwards: when
  // the others leave or stop being ready, ejected endpoints may be all that is left, or more
  // than the allowed share. Those whose ejection ends first come back early; true if any did.
  bool ReleaseBeyondLimits(std::vector<Member>& members);

 private:
  struct Counts {
    size_t ejected = 0;
    size_t ready_not_ejected = 0;
  };
  static Counts Count(const std::vector<Member>& members);
  static Member* FirstEjectionToEnd(std::vector<Member>& members, bool ready_only);
  size_t MaxEjected(size_t members) const;

  const OutlierDetectionOptions options_;
  Clock& clock_;
  const std::string service_name_;
};

}  // namespace sluice
