#include "vring/packed_device_queue.h"

#include <limits>

namespace vring {

PackedDeviceQueue::PackedDeviceQueue(const PackedRingView& ring, const MemoryTable* memory, bool event_idx,
                                     uint16_t base)
    : ring_(ring), memory_(memory), event_idx_(event_idx), avail_(RingPosition::Decode(base)), used_(avail_) {
  if (!IsValidPackedQueueSize(ring.size)) {
    throw Error(ErrorCode::kInvalidArgument,
                "packed queue size must be between 1 and 32768, got " + std::to_string(ring.size));
  }
  if (!ring.desc || !ring.driver_event || !ring.device_event || !ring.aligned()) {
    throw Error(ErrorCode::kInvalidArgument, "virtqueue parts are missing or misaligned");
  }
  if (!memory) throw Error(ErrorCode::kInvalidArgument, "device queue needs a memory table");
  if (avail_.index >= ring.size) {
    throw Error(ErrorCode::kInvalidArgument, "ring base slot " + std::to_string(avail_.index) +
                                                 " is outside a packed queue of " + std::to_string(ring.size));
  }
  published_ = call_checked_ = used_.Linear(ring.size);
  chain_len_.assign(ring.size, 0);
  taken_start_.resize(ring.size);
  taken_id_.resize(ring.size);
  // Start from the state this end believes in: a device killed while polling leaves
  // DISABLE behind, and a driver that honours it would never kick this new end.
  StoreRelease(&ring_.device()->flags, event_flags_);
}

void PackedDeviceQueue::MarkBroken(const char* reason, const std::string& message) {
  broken_ = true;
  throw Error(ErrorCode::kBadRing, "driver wrote an invalid packed ring: " + message, 0, nullptr, reason);
}

uint32_t PackedDeviceQueue::AvailPending() {
  CheckUsable();
  return avail_seen_ != 0 ? avail_seen_ : AvailPendingFresh();
}

uint32_t PackedDeviceQueue::AvailPendingFresh() {
  CheckUsable();
  RingPosition at = avail_;
  at.Advance(avail_seen_, ring_.size);
  const PackedDesc* ring = ring_.descs();
  while (avail_seen_ < ring_.size && IsAvailable(LoadAcquire(&ring[at.index].flags), at.wrap)) {
    ++avail_seen_;
    at.Advance(1, ring_.size);
  }
  return avail_seen_;
}

void PackedDeviceQueue::AddSegment(uint64_t addr, uint32_t len, bool writable, Chain* out) {
  if (!writable && out->writable_bytes > 0) {
    MarkBroken("readable-after-writable", "device-readable descriptor follows a writable one");
  }
  if (len == 0) MarkBroken("zero-length-descriptor", "descriptor with zero length");
  uint8_t* host = memory_->TranslateGuest(addr, len);
  if (!host) {
    MarkBroken("buffer-out-of-bounds",
               "buffer [" + std::to_string(addr) + ", +" + std::to_string(len) + ") is not inside shared memory");
  }
  uint64_t& total = writable ? out->writable_bytes : out->readable_bytes;
  total += len;
  if (out->readable_bytes + out->writable_bytes > std::numeric_limits<uint32_t>::max()) {
    MarkBroken("chain-too-long", "chain length exceeds 4 GiB");
  }
  out->segments.push_back({host, len});
  if (!writable) out->num_readable = static_cast<uint32_t>(out->segments.size());
}

void PackedDeviceQueue::AddIndirect(const PackedDesc& d, Chain* out) {
  if (d.flags & kDescFlagNext) MarkBroken("indirect-with-next", "descriptor has both INDIRECT and NEXT");
  if (d.len == 0 || d.len % sizeof(PackedDesc) != 0) {
    MarkBroken("indirect-bad-length", "indirect table length " + std::to_string(d.len) + " is not a multiple of 16");
  }
  const uint32_t entries = d.len / sizeof(PackedDesc);
  if (entries > ring_.size) {
    MarkBroken("indirect-too-large", "indirect table of " + std::to_string(entries) + " entries exceeds queue size");
  }
  const uint8_t* raw = memory_->TranslateGuest(d.addr, d.len);
  if (!raw) MarkBroken("indirect-out-of-bounds", "indirect table is not inside shared memory");
  if (reinterpret_cast<uintptr_t>(raw) % alignof(PackedDesc) != 0) {
    MarkBroken("indirect-misaligned", "indirect table is not 8-byte aligned");
  }
  // A packed indirect table is used whole and in order: no links to follow, so no loops.
  const PackedDesc* table = reinterpret_cast<const PackedDesc*>(raw);
  for (uint32_t i = 0; i < entries; ++i) {
    const uint64_t addr = LoadRelaxed(&table[i].addr);
    const uint32_t len = LoadRelaxed(&table[i].len);
    const uint16_t flags = LoadRelaxed(&table[i].flags);
    if (flags & kDescFlagIndirect) MarkBroken("nested-indirect", "indirect table contains an INDIRECT descriptor");
    AddSegment(addr, len, flags & kDescFlagWrite, out);
  }
}

bool PackedDeviceQueue::Pop(Chain* out) {
  if (AvailPending() == 0) return false;
  const uint32_t q = ring_.size;
  const PackedDesc* ring = ring_.descs();
  out->num_readable = 0;
  out->readable_bytes = 0;
  out->writable_bytes = 0;
  out->segments.clear();

  RingPosition at = avail_;
  uint16_t id = 0;
  uint32_t count = 0;
  for (;;) {
    // A chain can occupy every slot once, never more.
    if (count == q) MarkBroken("chain-too-long", "descriptor chain is longer than the queue");
    const PackedDesc d = LoadPackedDesc(&ring[at.index]);
    if (!IsAvailable(d.flags, at.wrap)) {
      if (count == 0) {
        // Seen available before and withdrawn since: nothing to take, look again later.
        avail_seen_ = 0;
        return false;
      }
      MarkBroken("chain-not-available", "descriptor chain runs into slot " + std::to_string(at.index) +
                                            " that is not available");
    }
    ++count;
    at.Advance(1, q);
    id = d.id;  // the buffer id is the one in the chain's last descriptor
    if (d.flags & kDescFlagIndirect) {
      if (count != 1) MarkBroken("indirect-in-chain", "INDIRECT descriptor inside a chain");
      AddIndirect(d, out);
      break;
    }
    AddSegment(d.addr, d.len, d.flags & kDescFlagWrite, out);
    if (!(d.flags & kDescFlagNext)) break;
  }
  if (id >= q) MarkBroken("buffer-id-out-of-range", "buffer id " + std::to_string(id) + " >= queue size " + std::to_string(q));
  if (chain_len_[id] != 0) MarkBroken("buffer-id-in-use", "buffer id " + std::to_string(id) + " is already in use");
  chain_len_[id] = static_cast<uint16_t>(count);
  taken_start_[taken_next_] = avail_;
  taken_id_[taken_next_] = id;
  taken_next_ = (taken_next_ + 1) % q;
  out->head = id;
  avail_ = at;
  avail_seen_ = avail_seen_ > count ? avail_seen_ - count : 0;
  return true;
}

void PackedDeviceQueue::Unpop(uint32_t n) {
  if (n == 0) return;
  const uint32_t q = ring_.size;
  for (uint32_t i = 0; i < n; ++i) {
    taken_next_ = (taken_next_ + q - 1) % q;
    chain_len_[taken_id_[taken_next_]] = 0;
  }
  avail_ = taken_start_[taken_next_];
  avail_seen_ = 0;
}

void PackedDeviceQueue::PushUsed(uint16_t id, uint32_t len) {
  CheckUsable();
  if (id >= ring_.size || chain_len_[id] == 0) {
    throw Error(ErrorCode::kInvalidArgument, "buffer id " + std::to_string(id) + " was not taken");
  }
  PackedDesc* d = &ring_.descs()[used_.index];
  StoreRelaxed(&d->id, id);
  StoreRelaxed(&d->len, len);
  const uint16_t flags = UsedBits(used_.wrap);
  if (!used_pending_) {
    // The batch's first used descriptor is published last, by PublishUsed().
    used_pending_ = true;
    used_slot_ = used_.index;
    used_flags_ = flags;
  } else {
    StoreRelaxed(&d->flags, flags);
  }
  used_.Advance(chain_len_[id], ring_.size);
  chain_len_[id] = 0;
}

void PackedDeviceQueue::PublishUsed() {
  if (!used_pending_) return;
  used_pending_ = false;
  published_ = used_.Linear(ring_.size);
  StoreRelease(&ring_.descs()[used_slot_].flags, used_flags_);
}

bool PackedDeviceQueue::NeedCall() {
  FullFence();
  const uint32_t old_pos = call_checked_;
  const uint32_t new_pos = published_;
  call_checked_ = new_pos;
  if (old_pos == new_pos) return false;
  const uint16_t flags = LoadAcquire(&ring_.driver()->flags);
  if (event_idx_ && flags == kEventFlagsDesc) {
    return PackedNeedEvent(LoadRelaxed(&ring_.driver()->off_wrap), new_pos, old_pos, ring_.size);
  }
  return flags != kEventFlagsDisable;
}

void PackedDeviceQueue::DisableNotifications() {
  if (event_flags_ == kEventFlagsDisable) return;
  event_flags_ = kEventFlagsDisable;
  StoreRelease(&ring_.device()->flags, event_flags_);
}

bool PackedDeviceQueue::EnableNotificationsDelayed(uint32_t count) {
  CheckUsable();
  if (count > ring_.size) count = ring_.size;
  if (count == 0) count = 1;
  if (event_idx_) {
    // Slots from avail_ on fill in order, so the count-th further descriptor lands at or
    // before this position.
    RingPosition event = avail_;
    event.Advance(count - 1, ring_.size);
    StoreRelaxed(&ring_.device()->off_wrap, event.Encoded());
    if (event_flags_ != kEventFlagsDesc) {
      event_flags_ = kEventFlagsDesc;
      StoreRelease(&ring_.device()->flags, event_flags_);
    }
  } else if (event_flags_ != kEventFlagsEnable) {
    event_flags_ = kEventFlagsEnable;
    StoreRelease(&ring_.device()->flags, event_flags_);
  }
  FullFence();
  return AvailPendingFresh() >= count;
}

}  // namespace vring
