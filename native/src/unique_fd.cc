#include "vring/unique_fd.h"

#include <fcntl.h>

#include "vring/error.h"

namespace vring {

UniqueFd DupFd(int fd) {
  if (fd < 0) throw Error(ErrorCode::kInvalidArgument, "file descriptor must be >= 0");
  int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (copy < 0) ThrowSystemError("fcntl", "cannot duplicate fd " + std::to_string(fd));
  return UniqueFd(copy);
}

}  // namespace vring
