// Shared setup for the packed ring tests: one memfd holding a packed virtqueue (descriptor
// ring and both event structures) plus a data area, mapped between PROT_NONE guard pages
// and described by a MemoryTable whose addresses differ from the host addresses (see
// ring_fixture.h, which this mirrors for split rings).
#pragma once

#include <cstdint>
#include <memory>

#include "ring_fixture.h"
#include "vring/packed_device_queue.h"
#include "vring/packed_driver_queue.h"
#include "vring/packed_ring.h"

namespace ringtest {

struct PackedRingFixture {
  uint32_t q;
  bool event_idx;
  uint64_t size = 0;
  uint64_t data_off = 0;
  SharedRegion region;
  std::shared_ptr<Mapping> mapping;
  std::shared_ptr<MemoryTable> memory;
  PackedRingView view;
  std::unique_ptr<PackedDriverQueue> driver;
  std::unique_ptr<PackedDeviceQueue> device;

  // `with_driver` = false leaves the ring zeroed and driverless, for tests that play a
  // hostile driver by writing descriptors by hand.
  PackedRingFixture(uint32_t queue_size, bool evidx, bool with_driver = true, uint16_t device_base = 0x8000,
                    bool in_order = false)
      : q(queue_size), event_idx(evidx), region(Create(queue_size)) {
    const uint64_t driver_off = RoundUp(PackedDescRingBytes(q), 64);
    const uint64_t device_off = driver_off + 64;
    data_off = RoundUp(device_off + 64, Page());
    size = region.size();
    mapping = GuardedMap(region.fd(), size);
    memory = std::make_shared<MemoryTable>();
    memory->Add(kGuestBase, kUserBase, size, mapping);
    view.size = q;
    view.desc = memory->TranslateUser(kUserBase, PackedDescRingBytes(q));
    view.driver_event = memory->TranslateUser(kUserBase + driver_off, kEventSuppressBytes);
    view.device_event = memory->TranslateUser(kUserBase + device_off, kEventSuppressBytes);
    if (with_driver) driver = std::make_unique<PackedDriverQueue>(view, event_idx, in_order);
    device = std::make_unique<PackedDeviceQueue>(view, memory.get(), event_idx, device_base);
  }

  static SharedRegion Create(uint32_t q) {
    return SharedRegion::Create(RoundUp(RoundUp(PackedDescRingBytes(q), 64) + 128, Page()) + (1 << 20),
                                "packed-ring-test");
  }

  uint64_t G(uint64_t off) const { return kGuestBase + data_off + off; }
  uint8_t* H(uint64_t off) const { return mapping->data() + data_off + off; }
  uint64_t end_guest() const { return kGuestBase + size; }

  // --- a hostile peer: raw descriptor writes ------------------------------------------
  void SetDesc(uint32_t slot, uint64_t addr, uint32_t len, uint16_t id, uint16_t flags) {
    PackedDesc* d = &view.descs()[slot];
    StorePackedDescBody(d, addr, len, id);
    StoreRelease(&d->flags, flags);
  }
  PackedDesc Desc(uint32_t slot) const { return LoadPackedDesc(&view.descs()[slot]); }
  // Makes a one-descriptor chain available at `slot` in the lap with wrap counter `wrap`.
  void OfferAt(uint32_t slot, bool wrap, uint64_t addr, uint32_t len, uint16_t id, uint16_t flags = 0) {
    SetDesc(slot, addr, len, id, static_cast<uint16_t>(flags | AvailBits(wrap)));
  }
  // Writes a used descriptor at `slot` in the lap with wrap counter `wrap`.
  void ReturnAt(uint32_t slot, bool wrap, uint16_t id, uint32_t len) {
    SetDesc(slot, 0, len, id, UsedBits(wrap));
  }

  int AddChain(uint32_t n, uint32_t readable, uint32_t len) {
    return driver->AddChain(n, [&](uint32_t i, uint16_t id) {
      return ChainBuffer{G((uint64_t{id} * 8 + i) * len), len, i >= readable};
    });
  }
};

}  // namespace ringtest
