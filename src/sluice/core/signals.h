#pragma once

namespace sluice {

// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread and every thread it starts later, so
// they are only taken by WaitForTerminationSignal. Call first thing in main, before any thread
// (gRPC's included) exists.
void BlockTerminationSignals();

// Waits until SIGTERM, SIGINT or SIGHUP arrives; returns the signal number.
int WaitForTerminationSignal();

}  // namespace sluice
