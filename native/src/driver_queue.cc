#include "vring/driver_queue.h"

#include <cstring>
#include <string>

namespace vring {

DriverQueue::DriverQueue(const SplitRingView& ring, bool event_idx, bool in_order)
    : ring_(ring), event_idx_(event_idx), in_order_(in_order) {
  if (!IsValidQueueSize(ring.size)) {
    throw Error(ErrorCode::kInvalidArgument,
                "queue size must be a power of two between 1 and 32768, got " + std::to_string(ring.size));
  }
  if (!ring.desc || !ring.avail || !ring.used || !ring.aligned()) {
    throw Error(ErrorCode::kInvalidArgument, "virtqueue parts are missing or misaligned");
  }
  // chain_len_ is u16 per head, and a chain can be the whole table (32768 entries).
  next_.resize(ring.size);
  chain_len_.assign(ring.size, 0);
  writable_len_.assign(ring.size, 0);
  in_flight_.assign(ring.size, 0);
  avail_heads_.assign(ring.size, 0);
  if (in_order) resolved_used_.assign(ring.size, UsedElem{});
  free_tail_ = static_cast<uint16_t>(ring.size - 1);
  for (uint32_t i = 0; i < ring.size; ++i) next_[i] = static_cast<uint16_t>((i + 1) & (ring.size - 1));
  num_free_ = ring.size;
  std::memset(ring.desc, 0, DescTableBytes(ring.size));
  std::memset(ring.avail, 0, AvailRingBytes(ring.size));
  std::memset(ring.used, 0, UsedRingBytes(ring.size));
  FullFence();
}

void DriverQueue::MarkBroken(const char* reason, const std::string& message) {
  broken_ = true;
  throw Error(ErrorCode::kBadRing, "device wrote an invalid used ring: " + message, 0, nullptr, reason);
}

void DriverQueue::Publish() {
  CheckUsable();
  const uint16_t added = static_cast<uint16_t>(avail_shadow_ - avail_published_);
  if (added == 0) return;
  outstanding_ += added;
  // Only published heads may come back: a chain added but not yet published was never
  // given to the device, so a used entry naming it is invalid.
  for (uint16_t i = avail_published_; i != avail_shadow_; ++i) in_flight_[avail_heads_[i & (ring_.size - 1)]] = 1;
  avail_published_ = avail_shadow_;
  StoreRelease(ring_.avail_idx(), avail_published_);
}

bool DriverQueue::NeedKick() {
  // The avail->idx store must be visible before we read the device's suppression state,
  // or both sides can decide the other will act and the queue stalls.
  FullFence();
  const uint16_t old_idx = kick_checked_;
  const uint16_t new_idx = avail_published_;
  kick_checked_ = new_idx;
  if (old_idx == new_idx) return false;
  if (event_idx_) return NeedEvent(LoadRelaxed(ring_.avail_event()), new_idx, old_idx);
  return !(LoadRelaxed(ring_.used_flags()) & kUsedFlagNoNotify);
}

uint32_t DriverQueue::UsedPending() {
  CheckUsable();
  const uint16_t seen = static_cast<uint16_t>(used_seen_ - last_used_);
  return seen != 0 ? seen : UsedPendingFresh();
}

uint32_t DriverQueue::UsedPendingFresh() {
  CheckUsable();
  const uint16_t used = LoadAcquire(ring_.used_idx());
  const uint16_t pending = static_cast<uint16_t>(used - last_used_);
  if (pending > outstanding_) {
    MarkBroken("used-index-jump", "used index moved by " + std::to_string(pending) + " with only " +
                                 std::to_string(outstanding_) + " buffers outstanding");
  }
  if (in_order_) ResolveInOrder(used);
  used_seen_ = used;
  return pending;
}

void DriverQueue::ResolveInOrder(uint16_t used) {
  const uint32_t mask = ring_.size - 1;
  while (resolved_ != used) {
    const UsedElem* elem = ring_.used_ring(resolved_ & mask);
    const uint32_t id = LoadRelaxed(&elem->id);
    const uint32_t len = LoadRelaxed(&elem->len);
    // The entry names the last chain of a batch that starts here: find it among the chains
    // the device's index says are used, in the order they were made available.
    const uint16_t room = static_cast<uint16_t>(used - resolved_);
    uint16_t skip = 0;
    while (skip < room && avail_heads_[(resolved_ + skip) & mask] != id) ++skip;
    if (skip == room) {
      MarkBroken("used-id-out-of-order", "used id " + std::to_string(id) + " at used index " +
                                             std::to_string(resolved_) + " is none of the " +
                                             std::to_string(room) + " chains next in order");
    }
    // The chains the batch skips over are used whole: the device reports no length for
    // them, so each counts its full writable size.
    for (uint16_t i = 0; i < skip; ++i) {
      const uint16_t head = avail_heads_[(resolved_ + i) & mask];
      resolved_used_[(resolved_ + i) & mask] = UsedElem{head, writable_len_[head]};
    }
    resolved_used_[(resolved_ + skip) & mask] = UsedElem{id, len};
    resolved_ = static_cast<uint16_t>(resolved_ + skip + 1);
  }
}

UsedChain DriverQueue::CheckedUsed(uint16_t used_index) {
  const UsedElem* elem =
      in_order_ ? &resolved_used_[used_index & (ring_.size - 1)] : ring_.used_ring(used_index & (ring_.size - 1));
  const uint32_t id = LoadRelaxed(&elem->id);
  const uint32_t len = LoadRelaxed(&elem->len);
  if (id >= ring_.size) {
    MarkBroken("used-id-out-of-range", "used id " + std::to_string(id) + " >= queue size " + std::to_string(ring_.size));
  }
  const uint16_t n = chain_len_[id];
  if (n == 0 || !in_flight_[id]) MarkBroken("used-id-not-outstanding", "used id " + std::to_string(id) + " is not an outstanding chain");
  if (len > writable_len_[id]) {
    MarkBroken("used-len-too-large", "used len " + std::to_string(len) + " exceeds the " +
                                         std::to_string(writable_len_[id]) + " writable bytes of chain " +
                                         std::to_string(id));
  }
  return {static_cast<uint16_t>(id), len, n};
}

UsedChain DriverQueue::PeekUsed(uint32_t ahead) {
  CheckUsable();
  return CheckedUsed(static_cast<uint16_t>(last_used_ + ahead));
}

bool DriverQueue::PopUsed(UsedChain* out) {
  if (UsedPending() == 0) return false;
  // Copy the entry once and check it; everything below uses only the copy.
  const UsedChain used = CheckedUsed(last_used_);
  FreeChain(used.head, used.chain_len);
  chain_len_[used.head] = 0;
  in_flight_[used.head] = 0;
  --outstanding_;
  ++last_used_;
  *out = used;
  return true;
}

void DriverQueue::FreeChain(uint16_t head, uint32_t chain_len) {
  // Our private links still chain the descriptors the chain occupied.
  uint16_t tail = head;
  for (uint32_t i = 1; i < chain_len; ++i) tail = next_[tail];
  if (in_order_) {
    // Freed chains join at the end, so the free list stays in ring order: chains come back
    // in the order they went out, and the next chain starts where the last one ended.
    if (num_free_ == 0) free_head_ = head;
    else next_[free_tail_] = head;
    free_tail_ = tail;
  } else {
    next_[tail] = free_head_;
    free_head_ = head;
  }
  num_free_ += chain_len;
}

void DriverQueue::DisableInterrupts() {
  if (event_idx_) {
    // Park used_event half the index space away: the device will not cross it soon.
    StoreRelaxed(ring_.used_event(), static_cast<uint16_t>(last_used_ + 0x8000));
  } else if (!(avail_flags_ & kAvailFlagNoInterrupt)) {
    avail_flags_ |= kAvailFlagNoInterrupt;
    StoreRelaxed(ring_.avail_flags(), avail_flags_);
  }
}

bool DriverQueue::EnableInterrupts() { return EnableInterruptsDelayed(1); }

bool DriverQueue::EnableInterruptsDelayed(uint32_t count) {
  CheckUsable();
  // Never wait for more than is outstanding: that notification would never come.
  if (count > outstanding_) count = outstanding_;
  if (count == 0) count = 1;
  if (event_idx_) {
    StoreRelaxed(ring_.used_event(), static_cast<uint16_t>(last_used_ + count - 1));
  } else if (avail_flags_ & kAvailFlagNoInterrupt) {
    avail_flags_ &= static_cast<uint16_t>(~kAvailFlagNoInterrupt);
    StoreRelaxed(ring_.avail_flags(), avail_flags_);
  }
  // Publish the request before re-reading used->idx (store→load ordering).
  FullFence();
  return UsedPendingFresh() >= count;
}

}  // namespace vring
