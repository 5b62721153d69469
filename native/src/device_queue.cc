#include "vring/device_queue.h"

#include <algorithm>
#include <limits>

namespace vring {

DeviceQueue::DeviceQueue(const SplitRingView& ring, const MemoryTable* memory, bool event_idx, uint16_t base)
    : ring_(ring),
      memory_(memory),
      event_idx_(event_idx),
      last_avail_(base),
      avail_seen_(base),
      used_shadow_(base),
      used_published_(base),
      call_checked_(base) {
  if (!IsValidQueueSize(ring.size)) {
    throw Error(ErrorCode::kInvalidArgument,
                "queue size must be a power of two between 1 and 32768, got " + std::to_string(ring.size));
  }
  if (!ring.desc || !ring.avail || !ring.used || !ring.aligned()) {
    throw Error(ErrorCode::kInvalidArgument, "virtqueue parts are missing or misaligned");
  }
  if (!memory) throw Error(ErrorCode::kInvalidArgument, "device queue needs a memory table");
  // The device-written fields start in the state this end believes in: a device that was
  // killed (or stopped) while polling leaves NO_NOTIFY set, and a driver that honours it
  // would never kick this new end.
  StoreRelaxed(ring_.used_flags(), used_flags_);
  if (event_idx_) StoreRelaxed(ring_.avail_event(), last_avail_);
}

void DeviceQueue::MarkBroken(const char* reason, const std::string& message) {
  broken_ = true;
  throw Error(ErrorCode::kBadRing, "driver wrote an invalid ring: " + message, 0, nullptr, reason);
}

uint32_t DeviceQueue::AvailPending() {
  CheckUsable();
  const uint16_t seen = static_cast<uint16_t>(avail_seen_ - last_avail_);
  if (resubmit_next_ < resubmit_.size()) return ResubmitLeft() + seen;
  return seen != 0 ? seen : AvailPendingFresh();
}

uint32_t DeviceQueue::AvailPendingFresh() {
  CheckUsable();
  const uint16_t avail = LoadAcquire(ring_.avail_idx());
  const uint16_t pending = static_cast<uint16_t>(avail - last_avail_);
  if (pending > ring_.size) {
    MarkBroken("avail-index-jump", "avail index moved by " + std::to_string(pending) + " on a queue of " +
                                  std::to_string(ring_.size));
  }
  avail_seen_ = avail;
  return pending + ResubmitLeft();
}

void DeviceQueue::AddSegment(const RingDesc& d, Chain* out) {
  const bool writable = d.flags & kDescFlagWrite;
  if (!writable && out->writable_bytes > 0) {
    MarkBroken("readable-after-writable", "device-readable descriptor follows a writable one");
  }
  if (d.len == 0) MarkBroken("zero-length-descriptor", "descriptor with zero length");
  uint8_t* host = memory_->TranslateGuest(d.addr, d.len);
  if (!host) {
    MarkBroken("buffer-out-of-bounds", "buffer [" + std::to_string(d.addr) + ", +" + std::to_string(d.len) +
                                      ") is not inside shared memory");
  }
  uint64_t& total = writable ? out->writable_bytes : out->readable_bytes;
  total += d.len;
  if (out->readable_bytes + out->writable_bytes > std::numeric_limits<uint32_t>::max()) {
    MarkBroken("chain-too-long", "chain length exceeds 4 GiB");
  }
  out->segments.push_back({host, d.len});
  if (!writable) out->num_readable = static_cast<uint32_t>(out->segments.size());
}

bool DeviceQueue::Pop(Chain* out) {
  if (AvailPending() == 0) return false;
  const uint32_t q = ring_.size;
  if (resubmit_next_ < resubmit_.size()) {
    ReadChain(resubmit_[resubmit_next_], out);
    ++resubmit_next_;
    inflight_->Taken(out->head);
    return true;
  }
  const uint16_t head = LoadRelaxed(ring_.avail_ring(last_avail_ & (q - 1)));
  if (head >= q) MarkBroken("head-out-of-range", "avail head " + std::to_string(head) + " >= queue size " + std::to_string(q));
  ReadChain(head, out);
  ++last_avail_;
  if (inflight_) {
    inflight_->Taken(head);
    // Once a queue's worth has come from the avail ring, Unpop() can no longer reach back
    // into the resubmitted heads.
    if (!resubmit_.empty() && static_cast<uint16_t>(last_avail_ - avail_resumed_) >= q) {
      resubmit_.clear();
      resubmit_next_ = 0;
    }
  }
  return true;
}

void DeviceQueue::Unpop(uint32_t n) {
  // Pops come from the resubmitted heads first, then from the avail ring: undo the avail
  // ring's first.
  uint32_t from_avail = n;
  if (!resubmit_.empty()) {
    from_avail = std::min<uint32_t>(n, static_cast<uint16_t>(last_avail_ - avail_resumed_));
    resubmit_next_ -= std::min<size_t>(n - from_avail, resubmit_next_);
  }
  last_avail_ = static_cast<uint16_t>(last_avail_ - from_avail);
}

uint32_t DeviceQueue::TrackInflight(InflightLog* log) {
  CheckUsable();
  const uint16_t used = LoadAcquire(ring_.used_idx());
  try {
    resubmit_ = log->Recover(used);
  } catch (const Error&) {
    broken_ = true;
    throw;
  }
  inflight_ = log;
  resubmit_next_ = 0;
  // Everything before `used` was returned, the resubmitted heads were taken after it.
  last_avail_ = static_cast<uint16_t>(used + resubmit_.size());
  avail_seen_ = last_avail_;
  avail_resumed_ = last_avail_;
  used_shadow_ = used_published_ = call_checked_ = used;
  if (event_idx_) StoreRelaxed(ring_.avail_event(), last_avail_);
  return static_cast<uint32_t>(resubmit_.size());
}

void DeviceQueue::ReadChain(uint16_t head, Chain* out) {
  const uint32_t q = ring_.size;
  out->head = head;
  out->num_readable = 0;
  out->readable_bytes = 0;
  out->writable_bytes = 0;
  out->segments.clear();

  const RingDesc* table = ring_.descs();
  uint16_t idx = head;
  for (uint32_t count = 1;; ++count) {
    // A chain visits each descriptor at most once, so more than q steps means a loop.
    if (count > q) MarkBroken("descriptor-loop", "descriptor chain is longer than the queue (loop?)");
    const RingDesc d = LoadDesc(&table[idx]);
    if (d.flags & kDescFlagIndirect) {
      if (d.flags & kDescFlagNext) MarkBroken("indirect-with-next", "descriptor has both INDIRECT and NEXT");
      if (d.len == 0 || d.len % sizeof(RingDesc) != 0) {
        MarkBroken("indirect-bad-length", "indirect table length " + std::to_string(d.len) + " is not a multiple of 16");
      }
      const uint32_t entries = d.len / sizeof(RingDesc);
      if (entries > q) {
        MarkBroken("indirect-too-large", "indirect table of " + std::to_string(entries) + " entries exceeds queue size");
      }
      const uint8_t* raw = memory_->TranslateGuest(d.addr, d.len);
      if (!raw) MarkBroken("indirect-out-of-bounds", "indirect table is not inside shared memory");
      const RingDesc* itable = reinterpret_cast<const RingDesc*>(raw);
      if (reinterpret_cast<uintptr_t>(raw) % alignof(RingDesc) != 0) {
        MarkBroken("indirect-misaligned", "indirect table is not 8-byte aligned");
      }
      uint32_t i = 0;
      for (uint32_t icount = 1;; ++icount) {
        if (icount > entries) MarkBroken("descriptor-loop", "indirect chain is longer than its table (loop?)");
        const RingDesc id = LoadDesc(&itable[i]);
        if (id.flags & kDescFlagIndirect) MarkBroken("nested-indirect", "indirect table contains an INDIRECT descriptor");
        AddSegment(id, out);
        if (!(id.flags & kDescFlagNext)) break;
        if (id.next >= entries) {
          MarkBroken("next-out-of-range", "indirect next " + std::to_string(id.next) + " >= table size " +
                                         std::to_string(entries));
        }
        i = id.next;
      }
      break;  // INDIRECT ends the chain (it cannot carry NEXT)
    }
    AddSegment(d, out);
    if (!(d.flags & kDescFlagNext)) break;
    if (d.next >= q) MarkBroken("next-out-of-range", "next " + std::to_string(d.next) + " >= queue size " + std::to_string(q));
    idx = d.next;
  }
}

void DeviceQueue::PushUsed(uint16_t head, uint32_t len) {
  CheckUsable();
  UsedElem* elem = ring_.used_ring(used_shadow_ & (ring_.size - 1));
  StoreRelaxed(&elem->id, static_cast<uint32_t>(head));
  StoreRelaxed(&elem->len, len);
  ++used_shadow_;
  if (inflight_) inflight_->Used(head);
}

void DeviceQueue::PublishUsed() {
  if (used_shadow_ == used_published_) return;
  used_published_ = used_shadow_;
  if (inflight_) inflight_->BeforePublish();
  StoreRelease(ring_.used_idx(), used_published_);
  if (inflight_) inflight_->AfterPublish(used_published_);
}

bool DeviceQueue::NeedCall() {
  FullFence();
  const uint16_t old_idx = call_checked_;
  const uint16_t new_idx = used_published_;
  call_checked_ = new_idx;
  if (old_idx == new_idx) return false;
  if (event_idx_) return NeedEvent(LoadRelaxed(ring_.used_event()), new_idx, old_idx);
  return !(LoadRelaxed(ring_.avail_flags()) & kAvailFlagNoInterrupt);
}

void DeviceQueue::DisableNotifications() {
  if (event_idx_) {
    StoreRelaxed(ring_.avail_event(), static_cast<uint16_t>(last_avail_ + 0x8000));
  } else if (!(used_flags_ & kUsedFlagNoNotify)) {
    used_flags_ |= kUsedFlagNoNotify;
    StoreRelaxed(ring_.used_flags(), used_flags_);
  }
}

bool DeviceQueue::EnableNotificationsDelayed(uint32_t count) {
  CheckUsable();
  // More than a queue's worth can never be pending at once.
  if (count > ring_.size) count = ring_.size;
  if (count == 0) count = 1;
  if (event_idx_) {
    StoreRelaxed(ring_.avail_event(), static_cast<uint16_t>(last_avail_ + count - 1));
  } else if (used_flags_ & kUsedFlagNoNotify) {
    used_flags_ &= static_cast<uint16_t>(~kUsedFlagNoNotify);
    StoreRelaxed(ring_.used_flags(), used_flags_);
  }
  FullFence();
  return AvailPendingFresh() >= count;
}

}  // namespace vring

