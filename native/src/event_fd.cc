#include "vring/event_fd.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "vring/error.h"

namespace vring {

namespace {

// /proc names every eventfd "anon_inode:[eventfd]"; without /proc we cannot tell and accept
// the fd (Signal/Drain then fail loudly on anything that is not 8-byte readable/writable).
bool LooksLikeEventFd(int fd) {
  char link[64];
  char target[64];
  std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = ::readlink(link, target, sizeof target - 1);
  if (n < 0) return true;
  target[n] = '\0';
  return std::strcmp(target, "anon_inode:[eventfd]") == 0;
}

void RequireOpen(const UniqueFd& fd) {
  if (!fd.valid()) throw Error(ErrorCode::kClosed, "eventfd is closed");
}

}  // namespace

EventFd EventFd::Create() {
  int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) ThrowSystemError("eventfd", "cannot create eventfd");
  return EventFd(UniqueFd(fd));
}

EventFd EventFd::Adopt(UniqueFd fd) {
  if (!fd.valid()) throw Error(ErrorCode::kInvalidArgument, "eventfd must be a valid fd");
  int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0) ThrowSystemError("fcntl", "cannot inspect fd " + std::to_string(fd.get()));
  if (!LooksLikeEventFd(fd.get()))
    throw Error(ErrorCode::kInvalidArgument, "fd " + std::to_string(fd.get()) + " is not an eventfd");
  if (!(flags & O_NONBLOCK) && ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) < 0)
    ThrowSystemError("fcntl", "cannot make eventfd non-blocking");
  return EventFd(std::move(fd));
}

std::optional<EventFd> EventFd::AdoptCopyOf(int fd) {
  if (fd < 0) return std::nullopt;
  return Adopt(DupFd(fd));
}

void EventFd::Signal() const {
  RequireOpen(fd_);
  const uint64_t one = 1;
  for (;;) {
    ssize_t n = ::write(fd_.get(), &one, sizeof one);
    if (n == static_cast<ssize_t>(sizeof one)) return;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    ThrowSystemError(n < 0 ? errno : EIO, "write", "cannot signal eventfd");
  }
}

uint64_t EventFd::Drain() const {
  RequireOpen(fd_);
  uint64_t value = 0;
  for (;;) {
    ssize_t n = ::read(fd_.get(), &value, sizeof value);
    if (n == static_cast<ssize_t>(sizeof value)) return value;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return 0;
    ThrowSystemError(n < 0 ? errno : EIO, "read", "cannot drain eventfd");
  }
}

}  // namespace vring
