// The in-flight record of one split virtqueue (vhost-user INFLIGHT_SHMFD): a region of a
// memfd the front-end keeps across back-end restarts, in which the device marks every chain
// it has taken from the avail ring and not yet returned through the used ring. A device that
// starts on a record left by a killed one takes those chains again, in the order they were
// first taken, before anything new (docs/architecture.md#in-flight-recovery).
//
// The layout is the one the vhost-user spec defines for split rings (and DPDK and
// libvhost-user use): a 16-byte queue header, then one 16-byte state per descriptor, the
// whole rounded up to 64 bytes.
//
// The front-end can write the record as it likes: it is read only when a device starts,
// each field copied once and checked before use, and a record that cannot be right breaks
// the queue with kBadRing instead of steering us outside it.
#pragma once

#include <cstdint>
#include <vector>

namespace vring {

struct InflightDescState {
  uint8_t inflight;  // 1 while the chain headed here is taken and not used
  uint8_t padding[5];
  uint16_t next;     // links the heads of the last used batch, from last_batch_head
  uint64_t counter;  // order in which heads were taken
};
static_assert(sizeof(InflightDescState) == 16, "in-flight descriptor state is 16 bytes on the wire");

struct InflightQueueHeader {
  uint64_t features;
  uint16_t version;          // 0: never used; 1: this layout
  uint16_t desc_num;         // the queue size the record was made for
  uint16_t last_batch_head;  // first head of the last batch made used
  uint16_t used_idx;         // used->idx once that batch's states were cleared
};
static_assert(sizeof(InflightQueueHeader) == 16, "in-flight queue header is 16 bytes on the wire");

inline constexpr uint16_t kInflightVersion = 1;

// Bytes of one queue's record for a queue of `queue_size` descriptors (64-byte aligned).
inline constexpr uint64_t InflightQueueBytes(uint32_t queue_size) {
  return (sizeof(InflightQueueHeader) + uint64_t{sizeof(InflightDescState)} * queue_size + 63) / 64 * 64;
}

class InflightLog {
 public:
  // `record` points to InflightQueueBytes(queue_size) bytes of the mapped in-flight region
  // (the caller checked the range); it must stay mapped as long as this log.
  InflightLog(uint8_t* record, uint32_t queue_size);

  // Reads the record a previous device left, given the used index in the ring now. Returns
  // the heads still in flight, oldest first, and clears what the last published batch had
  // left marked. A record never used is initialised instead. Throws kBadRing with a reason
  // when the record contradicts itself or the queue.
  std::vector<uint16_t> Recover(uint16_t ring_used_idx);

  // The chain headed by `head` was taken from the avail ring (or taken again).
  void Taken(uint16_t head);
  // The chain headed by `head` joins the batch the next used index publishes.
  void Used(uint16_t head);
  // Before the used index store: names the batch, so a device killed right after the store
  // can tell which heads it returned.
  void BeforePublish();
  // After the used index store of `used_idx`: the batch's heads are no longer in flight.
  void AfterPublish(uint16_t used_idx);

 private:
  InflightQueueHeader* header() const { return reinterpret_cast<InflightQueueHeader*>(record_); }
  InflightDescState* desc(uint16_t i) const {
    return reinterpret_cast<InflightDescState*>(record_ + sizeof(InflightQueueHeader)) + i;
  }

  uint8_t* record_;
  uint32_t queue_size_;
  uint64_t counter_ = 0;
  std::vector<uint16_t> batch_;  // heads made used since the last publish, in order
};

}  // namespace vring
