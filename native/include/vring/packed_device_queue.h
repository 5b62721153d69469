// The device side of one packed virtqueue: it reads chains the (untrusted) driver made
// available and writes one used descriptor per chain back over the ring.
//
// Everything read from the ring is hostile until checked: availability bits against our
// wrap counter, chains that run into slots the driver never made available or past the
// ring's size, buffer ids out of range or already in use, lengths, address ranges,
// indirect tables. The first violation marks the queue broken and throws kBadRing; later
// calls throw kQueueBroken. Same interface as DeviceQueue, so a queue pair can run on
// either.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "vring/device_queue.h"
#include "vring/error.h"
#include "vring/memory_table.h"
#include "vring/packed_ring.h"

namespace vring {

class PackedDeviceQueue {
 public:
  // `ring` holds host pointers (translated and range-checked by the caller). `base` is the
  // vhost-user ring base: slot in bits 0-14, wrap counter in bit 15 (0x8000 for a new
  // ring); used descriptors start at the same position.
  PackedDeviceQueue(const PackedRingView& ring, const MemoryTable* memory, bool event_idx, uint16_t base);

  uint32_t size() const { return ring_.size; }
  bool broken() const { return broken_; }

  // Descriptors made available and not yet taken (a chain of n descriptors counts n).
  // Looks at the ring only when those seen before are used up.
  uint32_t AvailPending();
  // The same, always looking for newly available descriptors.
  uint32_t AvailPendingFresh();

  // Takes the next available chain into `out`; `out->head` is its buffer id. False when none.
  bool Pop(Chain* out);
  // Puts back the last `n` chains taken with Pop() (they were not used).
  void Unpop(uint32_t n);

  // Records that buffer `id` (taken by Pop) was used with `len` bytes written; visible
  // after PublishUsed().
  void PushUsed(uint16_t id, uint32_t len);
  void PublishUsed();
  // After PublishUsed(): must the driver be notified? Applies the driver's event suppression.
  bool NeedCall();

  void DisableNotifications();
  bool EnableNotifications() { return EnableNotificationsDelayed(1); }
  // Asks for a kick no later than when `count` more descriptors are available; true if
  // that many are already.
  bool EnableNotificationsDelayed(uint32_t count);

  // The next slot to take, as a vhost-user ring base (GET_VRING_BASE).
  uint16_t last_avail_idx() const { return avail_.Encoded(); }

  [[noreturn]] void MarkBroken(const char* reason, const std::string& message);

 private:
  void CheckUsable() const {
    if (broken_) throw Error(ErrorCode::kQueueBroken, "virtqueue is broken by earlier invalid data from the peer");
  }
  void AddSegment(uint64_t addr, uint32_t len, bool writable, Chain* out);
  void AddIndirect(const PackedDesc& d, Chain* out);

  PackedRingView ring_;
  const MemoryTable* memory_;
  bool event_idx_;
  bool broken_ = false;
  RingPosition avail_;        // next slot to take
  uint32_t avail_seen_ = 0;   // slots from avail_ on known to be available
  RingPosition used_;         // next slot to write a used descriptor to
  uint32_t published_ = 0;    // used_ (linear) as of the last PublishUsed()
  uint32_t call_checked_ = 0; // published_ at the previous NeedCall()
  bool used_pending_ = false; // the batch's first used flags are not yet stored
  uint16_t used_slot_ = 0;
  uint16_t used_flags_ = 0;
  std::vector<uint16_t> chain_len_;  // per buffer id: slots its chain took; 0 = not in use
  // The chains taken, newest last (a ring of queue-size entries), so Unpop can undo them.
  std::vector<RingPosition> taken_start_;
  std::vector<uint16_t> taken_id_;
  uint32_t taken_next_ = 0;
  uint16_t event_flags_ = kEventFlagsEnable;  // our copy of the device event flags
};

}  // namespace vring
