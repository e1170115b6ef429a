#pragma once

#include <cstdint>

#include "absl/status/statusor.h"

namespace sluice {

// The process's open-files limit (RLIMIT_NOFILE) before and after RaiseOpenFilesLimit.
struct OpenFilesLimit {
  uint64_t soft_before = 0;
  uint64_t soft = 0;
  uint64_t hard = 0;
};

// File descriptors a server keeps for what is not a client connection: listeners, epoll and
// event fds, backend connections of a small fleet, etcd, logs.
inline constexpr uint64_t kReservedFileDescriptors = 64;

// Raises the soft open-files limit to the hard limit (capped by the kernel's fs.nr_open), as
// HAProxy and nginx do at start: systemd and most shells leave the soft limit at 1024, which
// stops a proxy at about 1,000 client connections while the hard limit allows far more.
// Never lowers the limit. Fails only when the kernel refuses (the limit is then unchanged).
absl::StatusOr<OpenFilesLimit> RaiseOpenFilesLimit();

// Client connections a server can hold under a soft limit of `soft` open files.
inline uint64_t ConnectionCapacity(uint64_t soft) {
  return soft > kReservedFileDescriptors ? soft - kReservedFileDescriptors : 0;
}

}  // namespace sluice
