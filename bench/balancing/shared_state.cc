#include "shared_state.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace sluice::bench {

absl::StatusOr<SharedState*> MapSharedState(const std::string& path, bool create) {
  const int fd = open(path.c_str(), create ? (O_RDWR | O_CREAT | O_TRUNC) : O_RDWR, 0644);
  if (fd < 0) {
    return absl::NotFoundError(absl::StrCat("cannot open the shared state file ", path, ": ",
                                            std::strerror(errno),
                                            create ? "" : " (start the simulated backends first)"));
  }
  if (create && ftruncate(fd, sizeof(SharedState)) != 0) {
    close(fd);
    return absl::InternalError(absl::StrCat("cannot size ", path, ": ", std::strerror(errno)));
  }
  void* mapped = mmap(nullptr, sizeof(SharedState), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (mapped == MAP_FAILED) {
    return absl::InternalError(absl::StrCat("cannot map ", path, ": ", std::strerror(errno)));
  }
  // A fresh file is all zeros: every atomic starts at 0.
  return static_cast<SharedState*>(mapped);
}

int64_t MonotonicNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace sluice::bench
