#pragma once

#include <string_view>

namespace sluice::proxy {

// The live dashboard the admin port serves at GET /: one self-contained HTML page (its CSS and
// script inline, no fonts or scripts from the network) that reads /api/dashboard every second
// and shows, per backend, calls/s, p50 and p99 latency, errors by status code, calls in flight
// and state, a rolling chart of the last five minutes (?minutes=N for another span), and the
// routes with their targets.
std::string_view DashboardPage();

}  // namespace sluice::proxy
