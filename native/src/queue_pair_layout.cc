#include "vring/queue_pair_layout.h"

#include <string>

#include "vring/error.h"
#include "vring/packed_ring.h"
#include "vring/split_ring.h"

namespace vring {

namespace {

// Driver-written and device-written parts sit on separate cache lines so the two
// sides never bounce a line they both write.
constexpr uint64_t kCacheLine = 64;

uint64_t AlignUp(uint64_t v) { return (v + kCacheLine - 1) / kCacheLine * kCacheLine; }

void Fail(const std::string& message) { throw Error(ErrorCode::kInvalidArgument, message); }

// The limits shared by both roles, all but the queue size.
void CheckLimits(const QueuePairConfig& c) {
  if (c.buffer_size < 64 || c.buffer_size > (1u << 20) || c.buffer_size % 8 != 0) {
    Fail("bufferSize must be a multiple of 8 between 64 and 1048576, got " + std::to_string(c.buffer_size));
  }
  if (c.max_message == 0 || c.max_message > (1u << 30)) {
    Fail("maxMessage must be between 1 and 1073741824, got " + std::to_string(c.max_message));
  }
  const uint32_t needed = BuffersForMessage(c.max_message, c.buffer_size);
  if (needed > c.queue_size) {
    Fail("a maxMessage of " + std::to_string(c.max_message) + " bytes needs " + std::to_string(needed) +
         " buffers of " + std::to_string(c.buffer_size) + " bytes, more than the queue size " +
         std::to_string(c.queue_size));
  }
  if (!c.mergeable && c.buffer_size < c.max_message + 12) {
    Fail("without mergeable receive buffers each buffer must hold a whole message");
  }
}

}  // namespace

void CheckDeviceQueuePairConfig(const QueuePairConfig& c) {
  // The driver chose the size: virtio 1.1 lets a packed ring have any size up to 32768.
  const bool size_ok = c.packed ? IsValidPackedQueueSize(c.queue_size) : IsValidQueueSize(c.queue_size);
  if (!size_ok || c.queue_size < 2) {
    Fail(std::string(c.packed ? "a packed queueSize must be between" : "queueSize must be a power of two between") +
         " 2 and 32768, got " + std::to_string(c.queue_size));
  }
  CheckLimits(c);
}

QueuePairLayout ComputeQueuePairLayout(const QueuePairConfig& c) {
  // Our driver lays out powers of two on either ring kind (its held-buffer rings index by mask).
  if (!IsValidQueueSize(c.queue_size) || c.queue_size < 2) {
    Fail("queueSize must be a power of two between 2 and 32768, got " + std::to_string(c.queue_size));
  }
  CheckLimits(c);
  QueuePairLayout l;
  uint64_t at = 0;
  for (RingAddresses* r : {&l.rx, &l.tx}) {
    r->desc = at;
    at = AlignUp(at + (c.packed ? PackedDescRingBytes(c.queue_size) : DescTableBytes(c.queue_size)));
    r->avail = at;
    at = AlignUp(at + (c.packed ? kEventSuppressBytes : AvailRingBytes(c.queue_size)));
    r->used = at;
    at = AlignUp(at + (c.packed ? kEventSuppressBytes : UsedRingBytes(c.queue_size)));
  }
  l.rx_buffers = at;
  at += uint64_t{c.queue_size} * c.buffer_size;
  l.tx_buffers = at;
  at += uint64_t{c.queue_size} * c.buffer_size;
  l.total_bytes = at;
  return l;
}

}  // namespace vring
