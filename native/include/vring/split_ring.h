// Split virtqueue layout (VIRTIO 1.x §2.7) and the shared-memory access rules for it.
//
// Every index and event field the peer reads is a single aligned 16-bit atomic store, and
// the ring indices are published with release ordering and read with an acquire load: a
// torn or byte-wise index store makes a real backend (DPDK) dequeue stale descriptors.
// Descriptors are copied out of shared memory exactly once, field by field, before they are
// validated and used, so a peer rewriting them concurrently cannot change a value after it
// was checked. The rules and their reasons: docs/architecture.md, "Barriers".
#pragma once

#include <cstddef>
#include <cstdint>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "vring assumes a little-endian host: virtio 1.x rings are little-endian"
#endif

namespace vring {

inline constexpr uint16_t kDescFlagNext = 1;
inline constexpr uint16_t kDescFlagWrite = 2;
inline constexpr uint16_t kDescFlagIndirect = 4;
inline constexpr uint16_t kAvailFlagNoInterrupt = 1;
inline constexpr uint16_t kUsedFlagNoNotify = 1;
inline constexpr uint32_t kMaxQueueSize = 32768;

struct RingDesc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};
static_assert(sizeof(RingDesc) == 16, "virtq_desc is 16 bytes");

struct UsedElem {
  uint32_t id;
  uint32_t len;
};
static_assert(sizeof(UsedElem) == 8, "virtq_used_elem is 8 bytes");

// Byte sizes of the three parts, including the 2-byte EVENT_IDX field after each ring.
constexpr size_t DescTableBytes(uint32_t q) { return 16ull * q; }
constexpr size_t AvailRingBytes(uint32_t q) { return 6 + 2ull * q; }
constexpr size_t UsedRingBytes(uint32_t q) { return 6 + 8ull * q; }

constexpr bool IsValidQueueSize(uint32_t q) { return q >= 1 && q <= kMaxQueueSize && (q & (q - 1)) == 0; }

// VIRTIO's vring_need_event: has `event_idx` been crossed when moving old_idx → new_idx?
constexpr bool NeedEvent(uint16_t event_idx, uint16_t new_idx, uint16_t old_idx) {
  return static_cast<uint16_t>(new_idx - event_idx - 1) < static_cast<uint16_t>(new_idx - old_idx);
}

// Views of the three ring parts in shared memory. Field offsets per VIRTIO 1.x.
struct SplitRingView {
  uint8_t* desc = nullptr;   // 16-byte aligned
  uint8_t* avail = nullptr;  // 2-byte aligned
  uint8_t* used = nullptr;   // 4-byte aligned
  uint32_t size = 0;

  uint16_t* avail_flags() const { return reinterpret_cast<uint16_t*>(avail); }
  uint16_t* avail_idx() const { return reinterpret_cast<uint16_t*>(avail + 2); }
  uint16_t* avail_ring(uint32_t i) const { return reinterpret_cast<uint16_t*>(avail + 4 + 2 * i); }
  uint16_t* used_event() const { return reinterpret_cast<uint16_t*>(avail + 4 + 2 * size); }
  uint16_t* used_flags() const { return reinterpret_cast<uint16_t*>(used); }
  uint16_t* used_idx() const { return reinterpret_cast<uint16_t*>(used + 2); }
  UsedElem* used_ring(uint32_t i) const { return reinterpret_cast<UsedElem*>(used + 4 + 8 * i); }
  uint16_t* avail_event() const { return reinterpret_cast<uint16_t*>(used + 4 + 8 * size); }
  RingDesc* descs() const { return reinterpret_cast<RingDesc*>(desc); }

  // True when the three parts meet their alignment rules.
  bool aligned() const {
    return (reinterpret_cast<uintptr_t>(desc) & 15) == 0 && (reinterpret_cast<uintptr_t>(avail) & 1) == 0 &&
           (reinterpret_cast<uintptr_t>(used) & 3) == 0;
  }
};

// Shared-memory accessors. The peer is another process, so these are the only way ring
// fields are touched: single-copy-atomic loads and stores with explicit ordering.
inline uint16_t LoadAcquire(const uint16_t* p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
inline uint16_t LoadRelaxed(const uint16_t* p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
inline uint32_t LoadRelaxed(const uint32_t* p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
inline uint64_t LoadRelaxed(const uint64_t* p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
inline void StoreRelease(uint16_t* p, uint16_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
inline void StoreRelaxed(uint16_t* p, uint16_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
inline void StoreRelaxed(uint32_t* p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
inline void StoreRelaxed(uint64_t* p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
// Orders an event-field store before the following index load (the "enable notification,
// then re-check the ring" pattern); release/acquire alone would allow store→load reordering.
inline void FullFence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

inline RingDesc LoadDesc(const RingDesc* d) {
  RingDesc out;
  out.addr = LoadRelaxed(&d->addr);
  out.len = LoadRelaxed(&d->len);
  out.flags = LoadRelaxed(&d->flags);
  out.next = LoadRelaxed(&d->next);
  return out;
}

inline void StoreDesc(RingDesc* d, const RingDesc& v) {
  StoreRelaxed(&d->addr, v.addr);
  StoreRelaxed(&d->len, v.len);
  StoreRelaxed(&d->flags, v.flags);
  StoreRelaxed(&d->next, v.next);
}

// A brief pause for spin-wait loops (lets the sibling hyperthread run, saves power).
inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

}  // namespace vring
