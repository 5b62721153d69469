// The driver side of one split virtqueue: it owns the descriptor table and avail ring,
// and consumes the used ring that the (untrusted) device writes.
//
// Chain links and the free list are kept in private memory, never read back from the
// shared descriptor table, so a device scribbling over the table cannot corrupt our
// bookkeeping. Every used entry is checked against what we actually handed out.
//
// With VIRTIO_F_IN_ORDER the device uses chains in the order they were made available, so
// descriptors are handed out in ring order (chain links x → x+1, wrapping), and the device
// may write one used entry for a batch: the id of the batch's last chain, with used->idx
// advanced by the batch's size. Every chain before it in avail order is then used too.
// Entries are resolved into a private copy as the device's index is read, so each shared
// entry is read once, and an id that is not among the chains the batch can cover breaks
// the queue.
#pragma once

#include <cstdint>
#include <vector>

#include "vring/error.h"
#include "vring/split_ring.h"

namespace vring {

struct ChainBuffer {
  uint64_t addr;
  uint32_t len;
  bool writable;
};

struct UsedChain {
  uint16_t head;
  uint32_t len;        // bytes the device says it wrote (already bounded by the chain's writable size)
  uint32_t chain_len;  // descriptors the chain occupied
};

class DriverQueue {
 public:
  // Takes over `ring` (which must be zeroed or stale memory: it is reinitialised) and
  // lays out an empty queue. `event_idx` selects VIRTIO_RING_F_EVENT_IDX suppression,
  // `in_order` VIRTIO_F_IN_ORDER (ring-order descriptors, batched used entries).
  DriverQueue(const SplitRingView& ring, bool event_idx, bool in_order = false);

  uint32_t size() const { return ring_.size; }
  uint32_t num_free() const { return num_free_; }
  // The descriptor the next AddChain() starts with, or -1 when none is free.
  int next_free() const { return num_free_ > 0 ? free_head_ : -1; }
  bool broken() const { return broken_; }

  // Writes a chain of `n` buffers and queues its head for the avail ring (visible to the
  // device after Publish()). `fill(i, id)` returns buffer i of the chain; `id` is the
  // descriptor it will occupy, which callers use to bind buffers to descriptors.
  // Returns the head id, or -1 when fewer than n descriptors are free.
  template <typename Fill>
  int AddChain(uint32_t n, Fill&& fill);

  // Makes queued heads visible: one release store of avail->idx for the whole batch.
  void Publish();

  // After Publish(): must the device be notified? Applies EVENT_IDX or NO_NOTIFY.
  bool NeedKick();

  // Heads the device has returned that we have not consumed. Checks the device's index
  // against what is outstanding (a bigger jump breaks the queue).
  // Reads the device's index only when what was seen last is consumed (see DeviceQueue).
  uint32_t UsedPending();
  // The same, always reading the device's index.
  uint32_t UsedPendingFresh();

  // Takes the next used entry, checks it, and frees its descriptors. False when none.
  bool PopUsed(UsedChain* out);

  // Notification control for used-ring progress ("interrupts").
  void DisableInterrupts();
  // Asks for a notification at the next used entry; true if entries are already pending
  // (then the caller must not sleep).
  bool EnableInterrupts();
  // Asks for a notification once `count` more entries are used (at least 1).
  bool EnableInterruptsDelayed(uint32_t count);

  uint32_t outstanding() const { return outstanding_; }
  uint16_t avail_idx() const { return avail_published_; }
  uint16_t last_used_idx() const { return last_used_; }

 // Marks the queue broken because of invalid peer data and throws kBadRing with `reason`
  // (a stable machine-readable name). Used by the layers above for payload-level checks.
  [[noreturn]] void MarkBroken(const char* reason, const std::string& message);

  // Reads the used entry `ahead` places past the next one, with PopUsed's checks, without
  // consuming it. Requires ahead < UsedPending().
  UsedChain PeekUsed(uint32_t ahead);

 private:
  UsedChain CheckedUsed(uint16_t used_index);
  // In order: resolves the device's entries up to `used` into resolved_used_.
  void ResolveInOrder(uint16_t used);
  void FreeChain(uint16_t head, uint32_t chain_len);
  void CheckUsable() const {
    if (broken_) throw Error(ErrorCode::kQueueBroken, "virtqueue is broken by earlier invalid data from the peer");
  }

  SplitRingView ring_;
  bool event_idx_;
  bool in_order_;
  bool broken_ = false;
  std::vector<uint16_t> next_;          // private chain links / free list
  std::vector<uint16_t> chain_len_;     // per head: descriptors in its chain; 0 = not allocated
  std::vector<uint8_t> in_flight_;      // per head: 1 = published to the device and not yet returned
  std::vector<uint16_t> avail_heads_;   // private copy of the heads we put in the avail ring
  std::vector<uint32_t> writable_len_;  // per head: bytes the device may write
  // In order: the used entry of each pending position, batches expanded (private copy).
  std::vector<UsedElem> resolved_used_;
  uint16_t resolved_ = 0;         // in order: positions before this are resolved
  uint16_t free_head_ = 0;
  uint16_t free_tail_ = 0;        // in order: freed chains join the free list here
  uint32_t num_free_ = 0;
  uint16_t avail_shadow_ = 0;     // next avail index we will fill
  uint16_t avail_published_ = 0;  // avail->idx as last published
  uint16_t kick_checked_ = 0;     // avail index at the previous NeedKick()
  uint16_t last_used_ = 0;        // next used index to consume
  uint16_t used_seen_ = 0;        // the device's used->idx as last read (validated)
  uint32_t outstanding_ = 0;      // published heads not yet returned
  uint16_t avail_flags_ = 0;      // our copy of avail->flags
};

template <typename Fill>
int DriverQueue::AddChain(uint32_t n, Fill&& fill) {
  CheckUsable();
  if (n == 0 || n > num_free_) return -1;
  const uint16_t head = free_head_;
  uint16_t id = head;
  uint32_t writable = 0;
  RingDesc* table = ring_.descs();
  for (uint32_t i = 0; i < n; ++i) {
    const ChainBuffer b = fill(i, id);
    const bool last = i + 1 == n;
    const uint16_t next = next_[id];
    RingDesc d;
    d.addr = b.addr;
    d.len = b.len;
    d.flags = static_cast<uint16_t>((b.writable ? kDescFlagWrite : 0) | (last ? 0 : kDescFlagNext));
    d.next = last ? 0 : next;
    StoreDesc(&table[id], d);
    if (b.writable) writable += b.len;
    if (!last) id = next;
  }
  free_head_ = next_[id];
  num_free_ -= n;
  chain_len_[head] = static_cast<uint16_t>(n);
  writable_len_[head] = writable;
  avail_heads_[avail_shadow_ & (ring_.size - 1)] = head;
  StoreRelaxed(ring_.avail_ring(avail_shadow_ & (ring_.size - 1)), head);
  ++avail_shadow_;
  return head;
}

}  // namespace vring
