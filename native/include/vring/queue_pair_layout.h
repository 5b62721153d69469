// Where a virtio-net queue pair (queue 0 = receive, queue 1 = transmit) and its packet
// buffers live inside the driver's shared region, and the limits both sides agree on.
#pragma once

#include <cstdint>

namespace vring {

struct QueuePairConfig {
  uint32_t queue_size = 256;     // descriptors per queue: power of two, <= 32768
  uint32_t buffer_size = 2048;   // bytes per packet buffer (one descriptor each)
  uint32_t max_message = 65536;  // largest payload either side may send
  bool event_idx = true;         // VIRTIO_RING_F_EVENT_IDX
  bool mergeable = true;         // VIRTIO_NET_F_MRG_RXBUF: a message may span receive buffers
};

struct RingAddresses {
  uint64_t desc = 0;
  uint64_t avail = 0;
  uint64_t used = 0;
};

// Byte offsets from the start of the queue pair's area in the region.
struct QueuePairLayout {
  RingAddresses rx;
  RingAddresses tx;
  uint64_t rx_buffers = 0;
  uint64_t tx_buffers = 0;
  uint64_t total_bytes = 0;
};

// Checks `config` (throws kInvalidArgument with the reason) and computes its layout.
QueuePairLayout ComputeQueuePairLayout(const QueuePairConfig& config);

// Descriptors a message of `payload` bytes occupies once the net header is prepended.
inline uint32_t BuffersForMessage(uint64_t payload, uint32_t buffer_size) {
  return static_cast<uint32_t>((payload + 12 + buffer_size - 1) / buffer_size);
}

}  // namespace vring
