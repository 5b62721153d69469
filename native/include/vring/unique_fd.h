// Owning file descriptor: closed exactly once, on destruction or reset.
#pragma once

#include <unistd.h>

#include <utility>

namespace vring {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }

  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    int old = std::exchange(fd_, fd);
    // close() may fail with EINTR, but on Linux the fd is released regardless; retrying
    // could close an fd another thread has just been given.
    if (old >= 0) ::close(old);
  }

 private:
  int fd_ = -1;
};

// dup(2) with CLOEXEC; throws vring::Error on failure.
UniqueFd DupFd(int fd);

}  // namespace vring
