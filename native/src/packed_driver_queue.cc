#include "vring/packed_driver_queue.h"

#include <cstring>

namespace vring {

PackedDriverQueue::PackedDriverQueue(const PackedRingView& ring, bool event_idx) : ring_(ring), event_idx_(event_idx) {
  if (!IsValidPackedQueueSize(ring.size)) {
    throw Error(ErrorCode::kInvalidArgument,
                "packed queue size must be between 1 and 32768, got " + std::to_string(ring.size));
  }
  if (!ring.desc || !ring.driver_event || !ring.device_event || !ring.aligned()) {
    throw Error(ErrorCode::kInvalidArgument, "virtqueue parts are missing or misaligned");
  }
  next_free_id_.resize(ring.size);
  for (uint32_t i = 0; i < ring.size; ++i) next_free_id_[i] = static_cast<uint16_t>(i + 1 < ring.size ? i + 1 : 0);
  chain_len_.assign(ring.size, 0);
  writable_len_.assign(ring.size, 0);
  in_flight_.assign(ring.size, 0);
  seen_.resize(ring.size);
  unpublished_.reserve(ring.size);
  num_free_ = ring.size;
  // All-zero flags are neither available nor used in the first lap (wrap counter 1).
  std::memset(ring.desc, 0, PackedDescRingBytes(ring.size));
  std::memset(ring.driver_event, 0, kEventSuppressBytes);
  std::memset(ring.device_event, 0, kEventSuppressBytes);
  FullFence();
}

void PackedDriverQueue::MarkBroken(const char* reason, const std::string& message) {
  broken_ = true;
  throw Error(ErrorCode::kBadRing, "device wrote an invalid packed ring: " + message, 0, nullptr, reason);
}

void PackedDriverQueue::Publish() {
  CheckUsable();
  if (!head_pending_) return;
  // Only published chains may come back: one added but not yet published was never given
  // to the device, so a used descriptor naming it is invalid.
  for (uint16_t id : unpublished_) in_flight_[id] = 1;
  outstanding_ += static_cast<uint32_t>(unpublished_.size());
  unpublished_.clear();
  head_pending_ = false;
  published_ = avail_;
  StoreRelease(&ring_.descs()[head_slot_].flags, head_flags_);
}

bool PackedDriverQueue::NeedKick() {
  // The head flags store must be visible before we read the device's suppression state.
  FullFence();
  const uint32_t old_pos = kick_checked_;
  const uint32_t new_pos = published_.Linear(ring_.size);
  kick_checked_ = new_pos;
  if (old_pos == new_pos) return false;
  const uint16_t flags = LoadAcquire(&ring_.device()->flags);
  if (event_idx_ && flags == kEventFlagsDesc) {
    return PackedNeedEvent(LoadRelaxed(&ring_.device()->off_wrap), new_pos, old_pos, ring_.size);
  }
  return flags != kEventFlagsDisable;
}

void PackedDriverQueue::Scan() {
  const PackedDesc* ring = ring_.descs();
  // Every in-flight chain has been seen once seen_count_ reaches outstanding_.
  while (seen_count_ < outstanding_) {
    const PackedDesc d = LoadPackedDesc(&ring[scan_.index]);
    if (!IsUsed(d.flags, scan_.wrap)) return;
    if (d.id >= ring_.size) {
      MarkBroken("used-id-out-of-range", "used id " + std::to_string(d.id) + " >= queue size " +
                                             std::to_string(ring_.size));
    }
    if (chain_len_[d.id] == 0 || !in_flight_[d.id]) {
      MarkBroken("used-id-not-outstanding", "used id " + std::to_string(d.id) + " is not an outstanding chain");
    }
    // A chain the device only reads has nothing to report, and DPDK's back-end leaves the
    // driver's own length in such used descriptors: ignored, not trusted.
    const uint32_t len = writable_len_[d.id] == 0 ? 0 : d.len;
    if (len > writable_len_[d.id]) {
      MarkBroken("used-len-too-large", "used len " + std::to_string(d.len) + " exceeds the " +
                                           std::to_string(writable_len_[d.id]) + " writable bytes of chain " +
                                           std::to_string(d.id));
    }
    in_flight_[d.id] = 0;
    seen_[(seen_first_ + seen_count_) % ring_.size] = UsedChain{d.id, len, chain_len_[d.id]};
    ++seen_count_;
    // The device writes one used descriptor per chain and skips the rest of its slots.
    scan_.Advance(chain_len_[d.id], ring_.size);
  }
}

uint32_t PackedDriverQueue::UsedPending() {
  CheckUsable();
  return seen_count_ != 0 ? seen_count_ : UsedPendingFresh();
}

uint32_t PackedDriverQueue::UsedPendingFresh() {
  CheckUsable();
  Scan();
  return seen_count_;
}

UsedChain PackedDriverQueue::PeekUsed(uint32_t ahead) {
  CheckUsable();
  if (ahead >= seen_count_) throw Error(ErrorCode::kInvalidArgument, "PeekUsed beyond the used chains seen");
  return seen_[(seen_first_ + ahead) % ring_.size];
}

bool PackedDriverQueue::PopUsed(UsedChain* out) {
  if (UsedPending() == 0) return false;
  const UsedChain used = seen_[seen_first_];
  seen_first_ = (seen_first_ + 1) % ring_.size;
  --seen_count_;
  chain_len_[used.head] = 0;
  next_free_id_[used.head] = free_id_head_;
  free_id_head_ = used.head;
  num_free_ += used.chain_len;
  --outstanding_;
  used_.Advance(used.chain_len, ring_.size);
  *out = used;
  return true;
}

void PackedDriverQueue::DisableInterrupts() {
  if (event_flags_ == kEventFlagsDisable) return;
  event_flags_ = kEventFlagsDisable;
  StoreRelease(&ring_.driver()->flags, event_flags_);
}

bool PackedDriverQueue::EnableInterruptsDelayed(uint32_t count) {
  CheckUsable();
  // Never wait for more than is outstanding: that notification would never come.
  if (count > outstanding_) count = outstanding_;
  if (count == 0) count = 1;
  if (event_idx_) {
    // Chains already seen used are before scan_; each further one takes at least one slot,
    // so the position below is reached no later than the count-th used chain.
    const uint32_t further = count > seen_count_ ? count - seen_count_ : 1;
    RingPosition event = scan_;
    event.Advance((further - 1) % ring_.size, ring_.size);
    StoreRelaxed(&ring_.driver()->off_wrap, event.Encoded());
    if (event_flags_ != kEventFlagsDesc) {
      event_flags_ = kEventFlagsDesc;
      StoreRelease(&ring_.driver()->flags, event_flags_);
    }
  } else if (event_flags_ != kEventFlagsEnable) {
    event_flags_ = kEventFlagsEnable;
    StoreRelease(&ring_.driver()->flags, event_flags_);
  }
  // Publish the request before looking at the ring again (store→load ordering).
  FullFence();
  return UsedPendingFresh() >= count;
}

}  // namespace vring
