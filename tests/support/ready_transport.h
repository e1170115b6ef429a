#pragma once

#include <memory>

#include "sluice/balancer/readiness.h"

namespace sluice::testing {

// A transport input that says every endpoint is ready at once: for tests that report calls'
// outcomes by hand (nothing listens on their addresses) or drive fake connections.
class ReadyTransport final : public ReadinessWatcher {
 public:
  void Watch(const std::shared_ptr<EndpointHandle>& endpoint,
             ReadinessReporter& reporter) override {
    reporter.ReportTransport(endpoint, TransportState::kReady);
  }
};

}  // namespace sluice::testing
