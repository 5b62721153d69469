// Packed virtqueue layout (VIRTIO 1.1 and later) and the shared-memory access rules for it.
//
// One ring of 16-byte descriptors that both sides write: the driver marks a descriptor
// available by setting its AVAIL bit to the driver's wrap counter and its USED bit to the
// inverse; the device marks it used by setting both bits to the device's wrap counter.
// Wrap counters start at 1 and flip each time a side passes the last slot. Two 4-byte
// event-suppression structures (one written by each side) replace the split ring's flags
// and event indices.
//
// The flags word of a descriptor is what publishes it: the writer stores address, length
// and id first and the flags last (release); the reader loads the flags first (acquire)
// and copies the rest once. A batch publishes with a single release store of its first
// descriptor's flags, written last. The rules and their reasons: docs/architecture.md,
// "Barriers".
#pragma once

#include <cstddef>
#include <cstdint>

#include "vring/split_ring.h"

namespace vring {

// Descriptor flags; NEXT, WRITE and INDIRECT have the split ring's values.
inline constexpr uint16_t kPackedDescFlagAvail = 1u << 7;
inline constexpr uint16_t kPackedDescFlagUsed = 1u << 15;

// Event-suppression flags: notify always, never, or when the given descriptor position
// is reached (only with VIRTIO_RING_F_EVENT_IDX).
inline constexpr uint16_t kEventFlagsEnable = 0;
inline constexpr uint16_t kEventFlagsDisable = 1;
inline constexpr uint16_t kEventFlagsDesc = 2;

struct PackedDesc {
  uint64_t addr;
  uint32_t len;
  uint16_t id;
  uint16_t flags;
};
static_assert(sizeof(PackedDesc) == 16, "pvirtq_desc is 16 bytes");

struct EventSuppress {
  uint16_t off_wrap;  // bits 0-14 descriptor offset, bit 15 wrap counter
  uint16_t flags;
};
static_assert(sizeof(EventSuppress) == 4, "pvirtq_event_suppress is 4 bytes");

constexpr size_t PackedDescRingBytes(uint32_t q) { return 16ull * q; }
inline constexpr size_t kEventSuppressBytes = sizeof(EventSuppress);

// Packed rings need not be a power of two in size.
constexpr bool IsValidPackedQueueSize(uint32_t q) { return q >= 1 && q <= kMaxQueueSize; }

// A slot in the ring together with the wrap counter that goes with it. As a vhost-user
// ring base it is encoded as the slot in bits 0-14 and the wrap counter in bit 15.
struct RingPosition {
  uint16_t index = 0;
  bool wrap = true;

  void Advance(uint32_t n, uint32_t size) {
    uint32_t i = index + n;
    // n <= size, so one subtraction brings i back into the ring.
    if (i >= size) {
      i -= size;
      wrap = !wrap;
    }
    index = static_cast<uint16_t>(i);
  }
  // Moves back `n` slots (n <= size).
  void Retreat(uint32_t n, uint32_t size) {
    if (n > index) {
      index = static_cast<uint16_t>(index + size - n);
      wrap = !wrap;
    } else {
      index = static_cast<uint16_t>(index - n);
    }
  }
  uint16_t Encoded() const { return static_cast<uint16_t>(index | (wrap ? 0x8000u : 0u)); }
  static RingPosition Decode(uint16_t encoded) {
    return RingPosition{static_cast<uint16_t>(encoded & 0x7fffu), (encoded & 0x8000u) != 0};
  }
  // The position counted from slot 0 of a lap with wrap counter 1, modulo two laps: the
  // space in which "has the peer passed this position" is decided.
  uint32_t Linear(uint32_t size) const { return index + (wrap ? 0u : size); }
  bool operator==(const RingPosition& o) const { return index == o.index && wrap == o.wrap; }
  bool operator!=(const RingPosition& o) const { return !(*this == o); }
};

// Has the event position `event_off_wrap` (as written in an event-suppression structure)
// been crossed when the other side moved from `old_pos` to `new_pos`? The packed form of
// NeedEvent, computed modulo two laps so the wrap counter takes part. A hostile offset
// beyond the ring gives a meaningless but harmless answer.
inline bool PackedNeedEvent(uint16_t event_off_wrap, uint32_t new_linear, uint32_t old_linear, uint32_t size) {
  const uint32_t span = 2 * size;
  const uint32_t event = RingPosition::Decode(event_off_wrap).Linear(size) % span;
  const uint32_t since_event = (new_linear + span - event - 1) % span;
  const uint32_t moved = (new_linear + span - old_linear) % span;
  return since_event < moved;
}

// Views of the ring and the two event structures in shared memory.
struct PackedRingView {
  uint8_t* desc = nullptr;          // 16-byte aligned
  uint8_t* driver_event = nullptr;  // driver area: written by the driver, 4-byte aligned
  uint8_t* device_event = nullptr;  // device area: written by the device, 4-byte aligned
  uint32_t size = 0;

  PackedDesc* descs() const { return reinterpret_cast<PackedDesc*>(desc); }
  EventSuppress* driver() const { return reinterpret_cast<EventSuppress*>(driver_event); }
  EventSuppress* device() const { return reinterpret_cast<EventSuppress*>(device_event); }

  bool aligned() const {
    return (reinterpret_cast<uintptr_t>(desc) & 15) == 0 && (reinterpret_cast<uintptr_t>(driver_event) & 3) == 0 &&
           (reinterpret_cast<uintptr_t>(device_event) & 3) == 0;
  }
};

// Is a descriptor with `flags` available to the device in the lap with wrap counter `wrap`?
constexpr bool IsAvailable(uint16_t flags, bool wrap) {
  return ((flags & kPackedDescFlagAvail) != 0) == wrap && ((flags & kPackedDescFlagUsed) != 0) != wrap;
}
// Is it used (returned to the driver) in the lap with wrap counter `wrap`?
constexpr bool IsUsed(uint16_t flags, bool wrap) {
  return ((flags & kPackedDescFlagAvail) != 0) == wrap && ((flags & kPackedDescFlagUsed) != 0) == wrap;
}
constexpr uint16_t AvailBits(bool wrap) { return wrap ? kPackedDescFlagAvail : kPackedDescFlagUsed; }
constexpr uint16_t UsedBits(bool wrap) {
  return wrap ? static_cast<uint16_t>(kPackedDescFlagAvail | kPackedDescFlagUsed) : 0;
}

// Copies a descriptor out of shared memory once: flags first with acquire ordering (they
// publish the rest), then the other fields.
inline PackedDesc LoadPackedDesc(const PackedDesc* d) {
  PackedDesc out;
  out.flags = LoadAcquire(&d->flags);
  out.addr = LoadRelaxed(&d->addr);
  out.len = LoadRelaxed(&d->len);
  out.id = LoadRelaxed(&d->id);
  return out;
}

// Writes everything but the flags, which the caller stores last.
inline void StorePackedDescBody(PackedDesc* d, uint64_t addr, uint32_t len, uint16_t id) {
  StoreRelaxed(&d->addr, addr);
  StoreRelaxed(&d->len, len);
  StoreRelaxed(&d->id, id);
}

}  // namespace vring
