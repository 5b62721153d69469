// Shared setup for the ring tests: one memfd holding a split virtqueue plus a data area,
// mapped between two PROT_NONE guard pages (so any read or write past either end of the
// shared memory faults instead of silently touching a neighbouring mapping), described
// by a MemoryTable whose guest and user addresses differ from the host addresses.
//
// The driver side and the device side use the same host pointers; tests drive each
// side in turn from one thread, or play a hostile peer by writing the ring directly.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

#include "harness.h"
#include "vring/device_queue.h"
#include "vring/driver_queue.h"
#include "vring/memory_table.h"
#include "vring/shared_region.h"
#include "vring/split_ring.h"

namespace ringtest {

using namespace vring;

inline uint64_t Page() { return static_cast<uint64_t>(::sysconf(_SC_PAGESIZE)); }

inline uint64_t RoundUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

// Maps `size` bytes of `fd` with an inaccessible page directly before and after.
inline std::shared_ptr<Mapping> GuardedMap(int fd, uint64_t size) {
  const uint64_t page = Page();
  uint8_t* reserve = static_cast<uint8_t*>(
      ::mmap(nullptr, size + 2 * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
  if (reserve == MAP_FAILED) throw std::runtime_error("mmap guard reservation failed");
  void* mid = ::mmap(reserve + page, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
  if (mid == MAP_FAILED) {
    ::munmap(reserve, size + 2 * page);
    throw std::runtime_error("mmap of the memfd between guard pages failed");
  }
  // The Mapping owns the middle; the deleter also drops the two guard pages.
  return std::shared_ptr<Mapping>(new Mapping(mid, size, 0), [reserve, size, page](Mapping* m) {
    delete m;
    ::munmap(reserve, page);
    ::munmap(reserve + page + size, page);
  });
}

// Guest ("physical") and user address of the region's first byte. Neither equals the host
// address, so a missing translation anywhere shows up as a fault or a range error.
inline constexpr uint64_t kGuestBase = 0x100000000ull;
inline constexpr uint64_t kUserBase = 0x7e0000000000ull;

struct RingFixture {
  uint32_t q;
  bool event_idx;
  uint64_t size = 0;     // bytes of shared memory
  uint64_t data_off = 0; // first byte of the data area (page aligned)
  uint64_t data_size = 0;
  SharedRegion region;
  std::shared_ptr<Mapping> mapping;
  std::shared_ptr<MemoryTable> memory;
  SplitRingView view;
  std::unique_ptr<DriverQueue> driver;
  std::unique_ptr<DeviceQueue> device;

  // `with_driver` = false leaves the ring zeroed and driverless, for tests that play a
  // hostile driver by writing descriptors and the avail ring by hand.
  RingFixture(uint32_t queue_size, bool evidx, bool with_driver = true, uint64_t data_bytes = 1 << 20,
              uint16_t device_base = 0)
      : q(queue_size), event_idx(evidx), region(Create(queue_size, data_bytes)) {
    const uint64_t desc_off = 0;
    const uint64_t avail_off = RoundUp(DescTableBytes(q), 64);
    const uint64_t used_off = RoundUp(avail_off + AvailRingBytes(q), 64);
    data_off = RoundUp(used_off + UsedRingBytes(q), Page());
    size = region.size();
    data_size = size - data_off;
    mapping = GuardedMap(region.fd(), size);
    memory = std::make_shared<MemoryTable>();
    memory->Add(kGuestBase, kUserBase, size, mapping);
    // The device finds the ring through the table, as it would from SET_VRING_ADDR.
    view.size = q;
    view.desc = memory->TranslateUser(kUserBase + desc_off, DescTableBytes(q));
    view.avail = memory->TranslateUser(kUserBase + avail_off, AvailRingBytes(q));
    view.used = memory->TranslateUser(kUserBase + used_off, UsedRingBytes(q));
    if (with_driver) driver = std::make_unique<DriverQueue>(view, event_idx);
    device = std::make_unique<DeviceQueue>(view, memory.get(), event_idx, device_base);
  }

  static SharedRegion Create(uint32_t q, uint64_t data_bytes) {
    const uint64_t rings = RoundUp(DescTableBytes(q), 64) + RoundUp(AvailRingBytes(q), 64) + UsedRingBytes(q);
    return SharedRegion::Create(RoundUp(rings, Page()) + data_bytes, "ring-test");
  }

  uint8_t* base() const { return mapping->data(); }
  // Guest address / host pointer of byte `off` of the data area.
  uint64_t G(uint64_t off) const { return kGuestBase + data_off + off; }
  uint8_t* H(uint64_t off) const { return base() + data_off + off; }
  uint64_t end_guest() const { return kGuestBase + size; }

  // --- hostile driver: raw ring writes -----------------------------------------------
  void SetDesc(uint32_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
    StoreDesc(&view.descs()[i], RingDesc{addr, len, flags, next});
  }
  uint16_t avail_idx() const { return LoadAcquire(view.avail_idx()); }
  void SetAvailIdx(uint16_t v) { StoreRelease(view.avail_idx(), v); }
  // Appends `head` to the avail ring and publishes it.
  void MakeAvail(uint16_t head) {
    const uint16_t idx = avail_idx();
    StoreRelaxed(view.avail_ring(idx & (q - 1)), head);
    SetAvailIdx(static_cast<uint16_t>(idx + 1));
  }

  // --- hostile device: raw used ring writes ------------------------------------------
  uint16_t used_idx() const { return LoadAcquire(view.used_idx()); }
  void SetUsedIdx(uint16_t v) { StoreRelease(view.used_idx(), v); }
  void SetUsed(uint16_t slot, uint32_t id, uint32_t len) {
    UsedElem* e = view.used_ring(slot & (q - 1));
    StoreRelaxed(&e->id, id);
    StoreRelaxed(&e->len, len);
  }
  // Appends one used entry and publishes it.
  void ReturnUsed(uint32_t id, uint32_t len) {
    const uint16_t idx = used_idx();
    SetUsed(idx, id, len);
    SetUsedIdx(static_cast<uint16_t>(idx + 1));
  }

  // Adds a chain of `n` buffers of `len` bytes each from the data area (buffer i of the
  // chain at data offset (id * len)), the first `readable` of them device-readable.
  int AddChain(uint32_t n, uint32_t readable, uint32_t len) {
    return driver->AddChain(n, [&](uint32_t i, uint16_t id) {
      return ChainBuffer{G(uint64_t{id} * len), len, i >= readable};
    });
  }
};

}  // namespace ringtest

#define EXPECT_BAD_RING(stmt, reason) EXPECT_ERROR(stmt, vring::ErrorCode::kBadRing, reason)
