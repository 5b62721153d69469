// The driver side of one packed virtqueue: it makes chains available in ring order and
// reads back the used descriptors that the (untrusted) device writes over them.
//
// Buffer ids, chain lengths and the free id list live in private memory, never read back
// from the ring. Each used descriptor is copied once when first seen, checked against what
// we handed out (id, outstanding, length), and from then on only the copy is used. Same
// interface as DriverQueue, so a queue pair can run on either.
//
// With VIRTIO_F_IN_ORDER the device may return a batch of chains with one used descriptor,
// written over the batch's first slot and naming the batch's last chain: every chain
// published before that one and not yet returned is complete too (read whole, or written
// whole: it counts its full writable length), and the next used descriptor is expected
// after the batch's slots.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "vring/driver_queue.h"
#include "vring/error.h"
#include "vring/packed_ring.h"

namespace vring {

class PackedDriverQueue {
  static constexpr uint16_t kWrapBits = kPackedDescFlagAvail | kPackedDescFlagUsed;

 public:
  // Takes over `ring` (reinitialised: zeroed, wrap counters 1) and lays out an empty queue.
  // `event_idx` selects descriptor-position event suppression (VIRTIO_RING_F_EVENT_IDX);
  // `in_order` accepts batched used descriptors (VIRTIO_F_IN_ORDER).
  PackedDriverQueue(const PackedRingView& ring, bool event_idx, bool in_order = false);

  uint32_t size() const { return ring_.size; }
  // Free descriptor slots.
  uint32_t num_free() const { return num_free_; }
  // The buffer id the next AddChain() uses, or -1 when no slot is free.
  int next_free() const { return num_free_ > 0 ? free_id_head_ : -1; }
  bool broken() const { return broken_; }

  // Writes a chain of `n` buffers into the next free slots (visible to the device after
  // Publish()). `fill(i, id)` returns buffer i; `id` is the chain's buffer id. Returns the
  // buffer id, or -1 when fewer than n slots are free.
  template <typename Fill>
  int AddChain(uint32_t n, Fill&& fill);

  // Makes the chains added since the last call visible with one release store.
  void Publish();
  // After Publish(): must the device be notified? Applies the device's event suppression.
  bool NeedKick();

  // Used chains seen and not yet consumed; reads the ring only when those are used up.
  uint32_t UsedPending();
  // The same, always looking for newly used descriptors.
  uint32_t UsedPendingFresh();
  // Takes the next used chain and frees its slots and id. False when none.
  bool PopUsed(UsedChain* out);
  // The used chain `ahead` places past the next one, without consuming it
  // (ahead < UsedPending()).
  UsedChain PeekUsed(uint32_t ahead);

  void DisableInterrupts();
  bool EnableInterrupts() { return EnableInterruptsDelayed(1); }
  // Asks for a notification no later than when `count` more chains are used (at least 1);
  // true if that many are pending already.
  bool EnableInterruptsDelayed(uint32_t count);

  uint32_t outstanding() const { return outstanding_; }
  // Next slot to fill and the next slot to read a used descriptor from, as ring bases.
  uint16_t avail_idx() const { return avail_.Encoded(); }
  uint16_t last_used_idx() const { return used_.Encoded(); }
  // Where a new device resumes (its vhost-user ring base): the first slot not yet seen used,
  // so it takes every chain the old device had not returned.
  uint16_t resume_base() const { return scan_.Encoded(); }
  // Call when the old device is gone, before a new one starts: takes the used descriptors
  // the old device left, then writes every chain it had not returned again, available and
  // in the order they were published, from resume_base() on. The old device overwrote some
  // of those slots with used descriptors (it writes them over the first slots it was
  // given, whatever order it returns chains in), so without this a new device would find
  // the slot at its base used, not available, and stop there. Returns resume_base().
  uint16_t PrepareResume();

  [[noreturn]] void MarkBroken(const char* reason, const std::string& message);

 private:
  void CheckUsable() const {
    if (broken_) throw Error(ErrorCode::kQueueBroken, "virtqueue is broken by earlier invalid data from the peer");
  }
  // Copies and checks used descriptors from scan_ on into seen_.
  void Scan();
  // In-order: `last` (checked as outstanding) ends a batch that starts at scan_.
  void TakeInOrderBatch(uint16_t last, uint32_t len);
  // Records a used chain, after its checks, and moves scan_ past its slots.
  void See(uint16_t id, uint32_t len);
  // The length a used descriptor reports for chain `id`, checked against its writable size.
  uint32_t CheckedLen(uint16_t id, uint32_t reported);

  PackedRingView ring_;
  bool event_idx_;
  bool in_order_;
  bool broken_ = false;
  std::vector<uint16_t> next_free_id_;  // private free list of buffer ids
  std::vector<uint16_t> chain_len_;     // per id: slots its chain occupies; 0 = free id
  std::vector<uint32_t> writable_len_;  // per id: bytes the device may write
  std::vector<uint8_t> in_flight_;      // per id: published and not yet seen used
  std::vector<uint64_t> added_seq_;     // per id: when AddChain() took it (publication order)
  std::vector<std::vector<PackedDesc>> chain_descs_;  // per id: its descriptors as written, flags without wrap bits
  std::vector<uint16_t> id_at_slot_;    // per slot: the id of the chain we last wrote there
  uint64_t next_seq_ = 0;
  std::vector<uint16_t> unpublished_;   // ids added since the last Publish()
  std::vector<UsedChain> seen_;         // ring of checked used chains, oldest first
  uint32_t seen_first_ = 0, seen_count_ = 0;
  uint16_t free_id_head_ = 0;
  uint32_t num_free_ = 0;
  RingPosition avail_;          // next slot to fill
  RingPosition published_;      // avail_ as of the last Publish()
  uint32_t kick_checked_ = 0;   // published_ (linear) at the previous NeedKick()
  bool head_pending_ = false;   // the first unpublished chain's head flags are not yet stored
  uint16_t head_slot_ = 0;
  uint16_t head_flags_ = 0;
  RingPosition used_;           // first slot of the next used chain to consume
  RingPosition scan_;           // first slot not yet seen used
  uint32_t outstanding_ = 0;    // published chains not yet consumed
  uint16_t event_flags_ = kEventFlagsEnable;  // our copy of the driver event flags
};

template <typename Fill>
int PackedDriverQueue::AddChain(uint32_t n, Fill&& fill) {
  CheckUsable();
  if (n == 0 || n > num_free_) return -1;
  const uint16_t id = free_id_head_;
  free_id_head_ = next_free_id_[id];
  uint32_t writable = 0;
  PackedDesc* ring = ring_.descs();
  RingPosition at = avail_;
  std::vector<PackedDesc>& saved = chain_descs_[id];
  saved.clear();  // keeps its capacity: no allocation once the ring has run a while
  for (uint32_t i = 0; i < n; ++i) {
    const ChainBuffer b = fill(i, id);
    const bool last = i + 1 == n;
    const uint16_t flags = static_cast<uint16_t>((b.writable ? kDescFlagWrite : 0) | (last ? 0 : kDescFlagNext) |
                                                 AvailBits(at.wrap));
    PackedDesc* d = &ring[at.index];
    StorePackedDescBody(d, b.addr, b.len, id);
    saved.push_back(PackedDesc{b.addr, b.len, id, static_cast<uint16_t>(flags & ~kWrapBits)});
    id_at_slot_[at.index] = id;
    if (i == 0 && !head_pending_) {
      // The batch's first head is stored by Publish(), after everything else.
      head_pending_ = true;
      head_slot_ = at.index;
      head_flags_ = flags;
    } else {
      // Either behind this chain's head or behind the batch's unpublished first head: the
      // device reads in ring order, so it cannot reach this slot before Publish().
      StoreRelaxed(&d->flags, flags);
    }
    if (b.writable) writable += b.len;
    at.Advance(1, ring_.size);
  }
  avail_ = at;
  num_free_ -= n;
  chain_len_[id] = static_cast<uint16_t>(n);
  writable_len_[id] = writable;
  added_seq_[id] = next_seq_++;
  unpublished_.push_back(id);
  return id;
}

}  // namespace vring
