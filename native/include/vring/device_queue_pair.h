// The device (backend) end of a virtio-net queue pair that lives in the driver's memory:
// it takes messages from the driver's transmit queue (1) and writes messages into the
// receive buffers the driver posted on queue 0 (several per message when mergeable
// receive buffers are negotiated). All access goes through the memory table's checks.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "vring/device_virtqueue.h"
#include "vring/event_fd.h"
#include "vring/in_place.h"
#include "vring/inflight_log.h"
#include "vring/memory_table.h"
#include "vring/port_stats.h"
#include "vring/queue_pair_layout.h"

namespace vring {

// Bytes to send, where they lie.
struct ByteSpan {
  const uint8_t* data;
  uint64_t size;
};

class DeviceQueuePair {
 public:
  // Ring addresses are in the driver's ring (user) address space; each ring must lie
  // wholly inside one region of `memory`. Bases are the first avail index of each queue
  // (vhost-user SET_VRING_BASE). Call fds are duplicated; -1 = the driver polls.
  DeviceQueuePair(std::shared_ptr<const MemoryTable> memory, const RingAddresses& rx, const RingAddresses& tx,
                  const QueuePairConfig& config, uint16_t rx_base, uint16_t tx_base, int rx_call_fd,
                  int tx_call_fd);

  const QueuePairConfig& config() const { return config_; }

  // Copies up to `max_count` messages the driver transmitted into `out` (capacity at
  // least max_message), back to back, lengths into `lengths`.
  uint32_t Receive(uint8_t* out, uint64_t out_capacity, uint32_t* lengths, uint32_t max_count);

  // Like Receive, but a message of at least `in_place_min` payload bytes whose payload lies
  // in one run of the driver's memory is not copied: its location is returned (the area is
  // the index of the region holding it) and its chain stays unused until Release(), so the
  // driver cannot reuse the memory meanwhile. Other messages are copied back to back into
  // `scratch` (area kInScratch) and returned to the driver at once.
  uint32_t ReceiveInPlace(MessageLocation* out, uint32_t max_count, uint8_t* scratch, uint64_t scratch_capacity,
                          uint64_t in_place_min);
  // Returns the oldest `count` chains held by ReceiveInPlace to the driver.
  void Release(uint32_t count);
  uint32_t held() const { return held_count_; }

  // The areas lent for reading in place: one per region of the driver's memory.
  LentArea Area(uint32_t index) const;
  uint32_t area_count() const { return static_cast<uint32_t>(memory_->region_count()); }

  // Writes messages into the driver's receive buffers. Returns how many were delivered;
  // the rest wait for the driver to post buffers. Throws kOversizedMessage (nothing sent)
  // if a length exceeds max_message.
  uint32_t Send(const uint8_t* data, const uint32_t* lengths, uint32_t count);

  // Writes one message made of `parts`, in order, into the driver's receive buffers: each
  // part copied once, straight from where it lies (a frame another driver transmitted,
  // say, behind a header of the caller's). False when the driver has not posted buffers
  // enough yet; true once it is delivered (or dropped, like Send). Throws
  // kOversizedMessage (nothing sent) beyond max_message.
  bool SendJoined(const ByteSpan* parts, uint32_t part_count);

  bool WaitReceivable(uint64_t budget_ns);
  // Spins until the driver has posted receive buffers for a message of `next_message` bytes
  // (0: unknown, any message), and at least an eighth of the ring.
  bool WaitSendable(uint64_t budget_ns, uint64_t next_message = 0);

  // Ask for a kick when the driver transmits / posts receive buffers. True = already so.
  bool ArmReceive() { return tx_.EnableNotifications(); }
  void DisarmReceive() { tx_.DisableNotifications(); }
  // `next_message` is the size of the message waiting to go: the wakeup comes once the
  // driver has posted enough buffers for it, so a sender never spins on too few.
  bool ArmSend(uint64_t next_message);
  void DisarmSend() { rx_.DisableNotifications(); }

  // Keeps the in-flight record of each queue in `record` (vhost-user INFLIGHT_SHMFD), at
  // byte offsets `rx_offset` and `tx_offset`, from before the first message on; chains a
  // killed device left in flight there are taken again first. Returns how many that is
  // (both queues). Throws kInvalidArgument for a range outside the mapping and kBadRing for
  // a record that cannot be right.
  uint32_t TrackInflight(std::shared_ptr<Mapping> record, uint64_t rx_offset, uint64_t tx_offset);

  bool broken() const { return rx_.broken() || tx_.broken(); }
  uint16_t rx_last_avail() const { return rx_.last_avail_idx(); }
  uint16_t tx_last_avail() const { return tx_.last_avail_idx(); }
  const PortStats& stats() const { return stats_; }

 private:
  void Call(std::optional<EventFd>& fd);
  // Receive buffers a message of `next_message` bytes takes (0: any message, one buffer).
  uint32_t BuffersNeeded(uint64_t next_message) const;
  enum class Placement { kPlaced, kDropped, kNoBuffers };
  // Writes one message of `len` bytes made of `parts` behind its net header into as many
  // receive chains as it takes; unpublished. kNoBuffers: nothing taken, try again later.
  Placement PlaceMessage(const ByteSpan* parts, uint32_t part_count, uint64_t len);
  // Checks the popped chain (chain_) and returns its payload size.
  uint64_t CheckedPayload();
  // Copies the popped chain's payload to `dst`.
  void CopyPayload(uint8_t* dst) const;
  // Where the popped chain's `payload` bytes lie as one run of memory, or nullptr.
  const uint8_t* ContiguousPayload(uint64_t payload) const;
  // Publishes the used entries pushed on `queue` and calls the driver if it asked.
  void PublishUsed(DeviceVirtqueue& queue, std::optional<EventFd>& call);

  std::shared_ptr<const MemoryTable> memory_;
  // Declared before the queues, which point into them.
  std::shared_ptr<Mapping> inflight_record_;
  std::optional<InflightLog> rx_inflight_;
  std::optional<InflightLog> tx_inflight_;
  QueuePairConfig config_;
  uint64_t publish_slice_;  // PublishSliceBytes(config_)
  DeviceVirtqueue rx_;
  DeviceVirtqueue tx_;
  std::optional<EventFd> rx_call_;
  std::optional<EventFd> tx_call_;
  // Chains read in place and not released, oldest first (a ring of queue-size entries).
  std::vector<uint16_t> held_heads_;
  uint32_t held_first_ = 0, held_count_ = 0;
  Chain chain_;                // scratch for Receive
  std::vector<Chain> chains_;  // scratch for Send (one message may take many receive chains)
  std::vector<uint32_t> written_;  // scratch for Send: bytes written into each of those chains
  PortStats stats_;
};

}  // namespace vring
