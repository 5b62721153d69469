// Errors raised by the native core. Each carries a stable code that the binding maps to
// a JS VringError `code`; OS failures also carry errno and the syscall that failed.
#pragma once

#include <cerrno>
#include <stdexcept>
#include <string>

namespace vring {

enum class ErrorCode {
  kInvalidArgument,   // ERR_VRING_INVALID_ARGUMENT: caller passed a value we refuse
  kClosed,            // ERR_VRING_CLOSED: handle already closed
  kSystem,            // ERR_VRING_SYSTEM: the OS said no (errno/syscall set)
  kPermission,        // ERR_VRING_PERMISSION: EPERM/EACCES from the OS
  kNotMemfd,          // ERR_VRING_NOT_MEMFD: an fd that should be a memfd is not
  kRegionBounds,      // ERR_VRING_REGION_BOUNDS: offset/size outside the file or overflowing
  kRegionNotSealed,   // ERR_VRING_REGION_NOT_SEALED: region could shrink under us
  kBadRing,           // ERR_VRING_BAD_RING: the peer wrote something invalid into a ring
  kQueueBroken,       // ERR_VRING_QUEUE_BROKEN: queue was marked broken earlier
  kOversizedMessage,  // ERR_VRING_OVERSIZED_MESSAGE: message exceeds what the queue can carry
  kPeerDisconnected,  // ERR_VRING_PEER_DISCONNECTED: socket EOF/reset at a message boundary
  kPartialMessage,    // ERR_VRING_PARTIAL_MESSAGE: EOF in the middle of a message
  kFdsTruncated,      // ERR_VRING_FDS_TRUNCATED: kernel dropped passed fds (MSG_CTRUNC)
  kProtocol,          // ERR_VRING_PROTOCOL: the peer broke message framing or protocol rules
};

const char* ErrorCodeName(ErrorCode code);

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message, int errnum = 0, const char* syscall = nullptr,
        const char* reason = nullptr)
      : std::runtime_error(message), code_(code), errnum_(errnum), syscall_(syscall), reason_(reason) {}

  ErrorCode code() const { return code_; }
  int errnum() const { return errnum_; }
  // Name of the failing syscall, or nullptr.
  const char* syscall() const { return syscall_; }
  // For an error raised because of what the peer sent (a ring it wrote, a message it framed),
  // which input was rejected, in stable kebab-case that JS sees as VringError.reason (e.g.
  // "descriptor-loop", "too-many-fds"); nullptr otherwise. Not copied: a string literal.
  const char* reason() const { return reason_; }

 private:
  ErrorCode code_;
  int errnum_;
  const char* syscall_;
  const char* reason_;
};

// Builds an Error from the current errno for a failed syscall.
[[noreturn]] void ThrowSystemError(const char* syscall, const std::string& what);
[[noreturn]] void ThrowSystemError(int errnum, const char* syscall, const std::string& what);

}  // namespace vring
