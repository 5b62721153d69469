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
  // VIRTIO_F_IN_ORDER. Driver: ring-order descriptors, batched used entries accepted.
  // Device: chains are returned in the order they came, so no frame is held in place.
  bool in_order = false;
  bool packed = false;           // VIRTIO_F_RING_PACKED: packed rings instead of split ones
};

// For a packed ring: desc = the descriptor ring, avail = the driver area (driver event
// suppression), used = the device area (device event suppression), as in SET_VRING_ADDR.
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
// The queue size must be a power of two, on packed rings too.
QueuePairLayout ComputeQueuePairLayout(const QueuePairConfig& config);

// Checks `config` as a device's: the same limits, but a packed queue may have any size
// from 2 to 32768, as the driver chose it (throws kInvalidArgument with the reason).
void CheckDeviceQueuePairConfig(const QueuePairConfig& config);

// Within one batch call, a side publishes its ring index (and checks whether to notify)
// each time it has moved a slice of this many bytes, not only at the end of the call: a
// quarter of the ring's buffer space, at most 256 KiB. Small messages still publish about
// once per batch, which keeps the index line from bouncing per message; a large batch is
// handed over slice by slice, so the peer copies one slice out while this side copies the
// next one in. Published once at the end, the two copies of a large batch ran one after the
// other: the receiver found nothing until the whole batch was in, and the sender found no
// room until the receiver had copied all of it out (and a poll-mode sender waiting for that
// outlasted its spin slice, so it went round the event loop on every batch).
inline uint64_t PublishSliceBytes(const QueuePairConfig& c) {
  const uint64_t quarter_ring = uint64_t{c.queue_size} * c.buffer_size / 4;
  return quarter_ring < 256 * 1024 ? quarter_ring : 256 * 1024;
}

// Descriptors a message of `payload` bytes occupies once the net header is prepended.
inline uint32_t BuffersForMessage(uint64_t payload, uint32_t buffer_size) {
  return static_cast<uint32_t>((payload + 12 + buffer_size - 1) / buffer_size);
}

}  // namespace vring
