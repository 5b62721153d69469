// The device side of one split virtqueue: it reads chains the (untrusted) driver made
// available and returns them through the used ring.
//
// Everything read from shared memory is hostile until checked: avail index jumps, head
// and next indices, loops, lengths, address ranges, indirect tables. The first violation
// marks the queue broken and throws kBadRing; later calls throw kQueueBroken. Nothing
// is ever read or written outside the memory table's regions. Each check and its reason:
// docs/architecture.md, "What a peer may never do to us".
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "vring/error.h"
#include "vring/inflight_log.h"
#include "vring/memory_table.h"
#include "vring/split_ring.h"

namespace vring {

struct Segment {
  uint8_t* data;  // host pointer, already range-checked
  uint32_t len;
};

// One descriptor chain, flattened: device-readable segments first, then writable ones.
struct Chain {
  uint16_t head = 0;
  uint32_t num_readable = 0;  // segments[0, num_readable) are readable
  uint64_t readable_bytes = 0;
  uint64_t writable_bytes = 0;
  std::vector<Segment> segments;
};

class DeviceQueue {
 public:
  // `ring` holds host pointers to the three parts (already translated and range-checked
  // by the caller). `base` is the first avail index to process (vhost-user SET_VRING_BASE).
  DeviceQueue(const SplitRingView& ring, const MemoryTable* memory, bool event_idx, uint16_t base);

  uint32_t size() const { return ring_.size; }
  bool broken() const { return broken_; }

  // Chains made available and not yet taken. A jump larger than the queue breaks it.
  // Reads the driver's index only when what was seen last is used up: re-reading a line the
  // driver keeps writing costs a cross-core cache miss per message.
  uint32_t AvailPending();
  // The same, always reading the driver's index: for decisions that must not miss a chain
  // published since (re-checking after asking for a kick, waiting for a threshold).
  uint32_t AvailPendingFresh();

  // Takes the next available chain into `out`. False when none is pending.
  bool Pop(Chain* out);

  // Puts back the last `n` chains taken with Pop() (they were not used).
  void Unpop(uint32_t n);

  // Keeps an in-flight record in `log` from now on (vhost-user INFLIGHT_SHMFD), before the
  // first Pop(). What a previous device left in flight there is taken again first, in the
  // order it was first taken; the avail ring resumes after it. Returns how many chains that
  // is. Throws kBadRing (the queue is then broken) for a record that cannot be right.
  uint32_t TrackInflight(InflightLog* log);

  // Records that `head` was used with `len` bytes written; visible after PublishUsed().
  void PushUsed(uint16_t head, uint32_t len);
  void PublishUsed();

  // After PublishUsed(): must the driver be notified? Applies EVENT_IDX or NO_INTERRUPT.
  bool NeedCall();

  // Kick suppression: while we are actively polling the queue the driver need not kick.
  void DisableNotifications();
  // Asks for a kick on the next available chain; true if chains are already pending.
  bool EnableNotifications() { return EnableNotificationsDelayed(1); }
  // Asks for a kick once `count` chains are available (EVENT_IDX; without it the driver kicks
  // on every publish); true if that many are already pending.
  bool EnableNotificationsDelayed(uint32_t count);

  uint16_t last_avail_idx() const { return last_avail_; }

  // Marks the queue broken because of invalid peer data and throws kBadRing with `reason`.
  [[noreturn]] void MarkBroken(const char* reason, const std::string& message);

 private:
  void CheckUsable() const {
    if (broken_) throw Error(ErrorCode::kQueueBroken, "virtqueue is broken by earlier invalid data from the peer");
  }
  // Appends one buffer descriptor's segment to `out`, enforcing order and ranges.
  void AddSegment(const RingDesc& d, Chain* out);
  // Reads and checks the chain headed by `head` into `out`.
  void ReadChain(uint16_t head, Chain* out);
  uint32_t ResubmitLeft() const { return static_cast<uint32_t>(resubmit_.size() - resubmit_next_); }

  SplitRingView ring_;
  const MemoryTable* memory_;
  bool event_idx_;
  bool broken_ = false;
  uint16_t last_avail_;
  uint16_t avail_seen_;  // the driver's avail->idx as last read (validated)
  uint16_t used_shadow_;
  uint16_t used_published_;
  uint16_t call_checked_;
  uint16_t used_flags_ = 0;
  // In-flight tracking (null when not negotiated): the record, the heads a previous device
  // left in flight (taken again before the avail ring), and where the avail ring resumed.
  InflightLog* inflight_ = nullptr;
  std::vector<uint16_t> resubmit_;
  size_t resubmit_next_ = 0;
  uint16_t avail_resumed_ = 0;
};

}  // namespace vring
