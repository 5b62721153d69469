// eventfd(2) wrapper used for virtqueue kick/call notifications. Signal and Drain sit on the
// notification hot path, so each is a single syscall and never blocks.
#pragma once

#include <cstdint>
#include <optional>

#include "vring/unique_fd.h"

namespace vring {

class EventFd {
 public:
  // An empty (invalid) EventFd; only useful as a moved-from or not-yet-assigned value.
  EventFd() = default;

  // A new non-semaphore eventfd with a zero counter, EFD_CLOEXEC | EFD_NONBLOCK.
  static EventFd Create();

  // Takes ownership of an existing eventfd (e.g. one received over SCM_RIGHTS). Throws
  // kInvalidArgument if `fd` is not an eventfd. Sets O_NONBLOCK so Drain can never block; note
  // that this flag lives on the open file description, so every duplicate of the fd (including
  // the peer's, for an fd that came over a socket) sees it too. Peers that poll their kick/call
  // fds (DPDK, QEMU) already open them non-blocking.
  static EventFd Adopt(UniqueFd fd);

  // Adopt of a duplicate of `fd`, so the caller keeps its own; nothing when `fd` is negative,
  // which is how a queue pair is told that a side has no such notifier.
  static std::optional<EventFd> AdoptCopyOf(int fd);

  int fd() const { return fd_.get(); }
  bool valid() const { return fd_.valid(); }

  // Adds 1 to the counter, waking any poller. A saturated counter (EAGAIN) already guarantees
  // a pending wakeup, so it is not an error. Throws kSystem on any other failure.
  void Signal() const;

  // Reads and resets the counter; returns 0 when nothing was pending.
  uint64_t Drain() const;

  // Closes the fd now; later Signal/Drain throw kClosed.
  void Close() { fd_.reset(); }
  UniqueFd Release() { return std::move(fd_); }

 private:
  explicit EventFd(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace vring
