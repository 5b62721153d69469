#include "vring/packed_driver_queue.h"

#include <algorithm>
#include <cstring>

namespace vring {

PackedDriverQueue::PackedDriverQueue(const PackedRingView& ring, bool event_idx, bool in_order)
    : ring_(ring), event_idx_(event_idx), in_order_(in_order) {
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
  added_seq_.assign(ring.size, 0);
  chain_descs_.resize(ring.size);
  id_at_slot_.assign(ring.size, 0);
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
    if (in_order_) {
      TakeInOrderBatch(d.id, d.len);
    } else {
      // The device writes one used descriptor per chain and skips the rest of its slots.
      See(d.id, CheckedLen(d.id, d.len));
    }
  }
}

uint32_t PackedDriverQueue::CheckedLen(uint16_t id, uint32_t reported) {
  // A chain the device only reads has nothing to report, and DPDK's back-end leaves the
  // driver's own length in such used descriptors: ignored, not trusted.
  const uint32_t len = writable_len_[id] == 0 ? 0 : reported;
  if (len > writable_len_[id]) {
    MarkBroken("used-len-too-large", "used len " + std::to_string(reported) + " exceeds the " +
                                         std::to_string(writable_len_[id]) + " writable bytes of chain " +
                                         std::to_string(id));
  }
  return len;
}

void PackedDriverQueue::See(uint16_t id, uint32_t len) {
  in_flight_[id] = 0;
  seen_[(seen_first_ + seen_count_) % ring_.size] = UsedChain{id, len, chain_len_[id]};
  ++seen_count_;
  scan_.Advance(chain_len_[id], ring_.size);
}

void PackedDriverQueue::TakeInOrderBatch(uint16_t last, uint32_t len) {
  // The chains not yet seen lie back to back from scan_ in the order they were published
  // (an in-order device returns them in that order): find `last` among them before taking
  // anything, so a descriptor naming no chain of the batch changes nothing.
  const uint32_t unseen = outstanding_ - seen_count_;
  RingPosition at = scan_;
  uint32_t skip = 0;
  for (; skip < unseen; ++skip) {
    const uint16_t id = id_at_slot_[at.index];
    if (id == last) break;
    at.Advance(chain_len_[id], ring_.size);
  }
  if (skip == unseen) {
    MarkBroken("used-id-out-of-order", "used id " + std::to_string(last) + " is none of the " +
                                           std::to_string(unseen) + " chains next in order");
  }
  const uint32_t last_len = CheckedLen(last, len);
  // The chains before it were used whole: the device reports no length for them.
  for (uint32_t i = 0; i < skip; ++i) {
    const uint16_t id = id_at_slot_[scan_.index];
    See(id, writable_len_[id]);
  }
  See(last, last_len);
}

uint16_t PackedDriverQueue::PrepareResume() {
  CheckUsable();
  Publish();
  Scan();
  std::vector<uint16_t> unreturned;
  unreturned.reserve(outstanding_ - seen_count_);
  for (uint32_t id = 0; id < ring_.size; ++id) {
    if (in_flight_[id]) unreturned.push_back(static_cast<uint16_t>(id));
  }
  std::sort(unreturned.begin(), unreturned.end(),
            [this](uint16_t a, uint16_t b) { return added_seq_[a] < added_seq_[b]; });
  // They fill exactly the slots from scan_ to avail_: every slot there belongs to a chain
  // not yet seen used, and each such chain has as many slots as descriptors.
  PackedDesc* ring = ring_.descs();
  RingPosition at = scan_;
  for (uint16_t id : unreturned) {
    for (const PackedDesc& saved : chain_descs_[id]) {
      PackedDesc* d = &ring[at.index];
      StorePackedDescBody(d, saved.addr, saved.len, id);
      StoreRelease(&d->flags, static_cast<uint16_t>(saved.flags | AvailBits(at.wrap)));
      id_at_slot_[at.index] = id;
      at.Advance(1, ring_.size);
    }
  }
  if (at != avail_) {
    // Cannot happen while the counts above hold; if it did, the ring is unusable.
    MarkBroken("resume-layout-mismatch", "the chains to resume do not end at the next free slot");
  }
  FullFence();
  return scan_.Encoded();
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
