#include "sluice/core/signals.h"

#include <pthread.h>
#include <signal.h>

namespace sluice {
namespace {

sigset_t TerminationSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  return set;
}

}  // namespace

void BlockTerminationSignals() {
  sigset_t set = TerminationSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int WaitForTerminationSignal() {
  sigset_t set = TerminationSignals();
  int signo = 0;
  while (sigwait(&set, &signo) != 0) {
  }
  return signo;
}

}  // namespace sluice
