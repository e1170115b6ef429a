#include "sluice/core/open_files.h"

#include <sys/resource.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace sluice {
namespace {

// The kernel refuses RLIMIT_NOFILE above fs.nr_open, even when the hard limit is "unlimited".
uint64_t KernelMaxOpenFiles() {
  std::ifstream file("/proc/sys/fs/nr_open");
  uint64_t value = 0;
  if (file >> value && value > 0) return value;
  return 1 << 20;  // the kernel's default nr_open
}

}  // namespace

absl::StatusOr<OpenFilesLimit> RaiseOpenFilesLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return absl::InternalError(absl::StrCat("getrlimit(RLIMIT_NOFILE): ", strerror(errno)));
  }
  OpenFilesLimit result;
  result.soft_before = limit.rlim_cur;
  result.hard = limit.rlim_max;
  uint64_t wanted = limit.rlim_max;
  if (limit.rlim_max == RLIM_INFINITY) wanted = KernelMaxOpenFiles();
  if (limit.rlim_cur != RLIM_INFINITY && wanted > limit.rlim_cur) {
    rlimit raised = limit;
    raised.rlim_cur = wanted;
    if (setrlimit(RLIMIT_NOFILE, &raised) != 0) {
      return absl::InternalError(absl::StrCat("cannot raise the open-files limit from ",
                                              limit.rlim_cur, " to ", wanted, ": ",
                                              strerror(errno)));
    }
    result.soft = wanted;
  } else {
    result.soft = limit.rlim_cur;
  }
  return result;
}

}  // namespace sluice
