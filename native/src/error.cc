#include "vring/error.h"

#include <cstring>

namespace vring {

const char* ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return "ERR_VRING_INVALID_ARGUMENT";
    case ErrorCode::kClosed: return "ERR_VRING_CLOSED";
    case ErrorCode::kSystem: return "ERR_VRING_SYSTEM";
    case ErrorCode::kPermission: return "ERR_VRING_PERMISSION";
    case ErrorCode::kNotMemfd: return "ERR_VRING_NOT_MEMFD";
    case ErrorCode::kRegionBounds: return "ERR_VRING_REGION_BOUNDS";
    case ErrorCode::kRegionNotSealed: return "ERR_VRING_REGION_NOT_SEALED";
    case ErrorCode::kBadRing: return "ERR_VRING_BAD_RING";
    case ErrorCode::kQueueBroken: return "ERR_VRING_QUEUE_BROKEN";
    case ErrorCode::kOversizedMessage: return "ERR_VRING_OVERSIZED_MESSAGE";
    case ErrorCode::kPeerDisconnected: return "ERR_VRING_PEER_DISCONNECTED";
    case ErrorCode::kPartialMessage: return "ERR_VRING_PARTIAL_MESSAGE";
    case ErrorCode::kFdsTruncated: return "ERR_VRING_FDS_TRUNCATED";
    case ErrorCode::kProtocol: return "ERR_VRING_PROTOCOL";
  }
  return "ERR_VRING_SYSTEM";
}

void ThrowSystemError(int errnum, const char* syscall, const std::string& what) {
  ErrorCode code = (errnum == EPERM || errnum == EACCES) ? ErrorCode::kPermission : ErrorCode::kSystem;
  throw Error(code, what + ": " + std::strerror(errnum) + " (" + syscall + ")", errnum, syscall);
}

void ThrowSystemError(const char* syscall, const std::string& what) {
  ThrowSystemError(errno, syscall, what);
}

}  // namespace vring
