// The driver (frontend) end of a virtio-net queue pair living in the driver's own shared
// region: queue 0 receives, queue 1 transmits. Messages travel as a 12-byte
// virtio_net_hdr_v1 plus payload.
//
// Transmit: each message occupies one contiguous span of the transmit area (header and
// payload together) and one descriptor, so the device can read it where it lies.
// Receive: fixed-size buffers posted strictly in address order (buffer k, then k+1, ...,
// wrapping at the end), so a message the device spreads over several buffers (mergeable
// receive buffers, num_buffers in the header) lies contiguously unless it crosses the end
// of the area, and can be read in place. A buffer read in place is posted again only once
// released; later buffers wait for it, which is what holds the device back.
//
// Batch calls: one Send/Receive moves many messages and publishes each ring index once.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "vring/driver_virtqueue.h"
#include "vring/event_fd.h"
#include "vring/in_place.h"
#include "vring/port_stats.h"
#include "vring/queue_pair_layout.h"
#include "vring/shared_region.h"
#include "vring/span_allocator.h"

namespace vring {

class DriverQueuePair {
 public:
  // Lays the queue pair out at `offset` in `mapping` and posts every receive buffer.
  // `guest_base` is the address the region's first byte has in descriptors and ring
  // addresses (virtio-user uses its own virtual address). Kick fds are duplicated;
  // -1 means the device polls that queue and is never kicked.
  DriverQueuePair(std::shared_ptr<Mapping> mapping, uint64_t offset, uint64_t guest_base,
                  const QueuePairConfig& config, int rx_kick_fd, int tx_kick_fd);

  const QueuePairConfig& config() const { return config_; }
  // Ring addresses in the driver's address space, for the device (SET_VRING_ADDR).
  RingAddresses rx_addresses() const { return Addresses(layout_.rx); }
  RingAddresses tx_addresses() const { return Addresses(layout_.tx); }
  uint64_t guest_base() const { return guest_base_; }
  const QueuePairLayout& layout() const { return layout_; }

  // Queues messages `data[...]` of `lengths[i]` bytes (packed back to back). Returns how
  // many fit; the rest wait for ring space. Throws kOversizedMessage (nothing sent) if
  // any length exceeds max_message.
  uint32_t Send(const uint8_t* data, const uint32_t* lengths, uint32_t count);

  // Copies up to `max_count` received messages back to back into `out` (capacity
  // `out_capacity`, at least max_message) and their lengths into `lengths`.
  uint32_t Receive(uint8_t* out, uint64_t out_capacity, uint32_t* lengths, uint32_t max_count);

  // Like Receive, but a message of at least `in_place_min` payload bytes that lies
  // contiguously in the receive area is not copied: its location is returned (area 0) and
  // its buffers stay held until Release(). Other messages are copied back to back into
  // `scratch` (area kInScratch) and are not held.
  uint32_t ReceiveInPlace(MessageLocation* out, uint32_t max_count, uint8_t* scratch, uint64_t scratch_capacity,
                          uint64_t in_place_min);
  // Gives back the oldest `count` messages held by ReceiveInPlace (kInvalidArgument beyond).
  void Release(uint32_t count);
  uint32_t held() const { return held_messages_; }

  // Room for the next message's payload in the transmit area (area 1), as large as is
  // contiguous now, at least `min_payload`; false when there is none yet. Valid until the
  // next Send, ReserveSend or CommitSend.
  bool ReserveSend(uint64_t min_payload, SendReservation* out);
  // Sends the `payload` bytes written at the reservation as one message.
  void CommitSend(uint64_t payload);

  // The areas lent for reading and writing in place: 0 = receive buffers, 1 = transmit area.
  LentArea Area(uint32_t index) const;

  // Spin (up to budget_ns) until Receive/Send would make progress. `next_message` is the
  // size of the message waiting to go (0: unknown, any message).
  bool WaitReceivable(uint64_t budget_ns);
  bool WaitSendable(uint64_t budget_ns, uint64_t next_message = 0);

  // Ask for a notification (on our call eventfd) when messages arrive / ring space frees.
  // True means "already so": do not sleep.
  bool ArmReceive() { return rx_.EnableInterrupts(); }
  void DisarmReceive() { rx_.DisableInterrupts(); }
  // True when a message of `next_message` bytes fits now. Else asks to be woken once half of
  // what is in flight has completed, or at the first completion when 16 or fewer are (large
  // messages, which a device reading in place may hold).
  bool ArmSend(uint64_t next_message);
  void DisarmSend() { tx_.DisableInterrupts(); }

  bool broken() const { return rx_.broken() || tx_.broken(); }
  // Packed rings, once the old device is gone: lays each queue out for a new device and
  // returns the ring bases it resumes from (receive, transmit).
  std::pair<uint16_t, uint16_t> PrepareResume() { return {rx_.PrepareResume(), tx_.PrepareResume()}; }
  const PortStats& stats() const { return stats_; }

 private:
  RingAddresses Addresses(const RingAddresses& offsets) const {
    const uint64_t base = guest_base_ + offset_;
    return {base + offsets.desc, base + offsets.avail, base + offsets.used};
  }
  uint8_t* At(uint64_t offset) const { return mapping_->data() + offset_ + offset; }
  void Kick(std::optional<EventFd>& fd);
  // Publishes what was queued on `queue` and kicks the device if it asked.
  void Publish(DriverVirtqueue& queue, std::optional<EventFd>& kick);
  void ReclaimTransmitted();
  // Posts the next buffer in address order (it must be free).
  void PostReceiveBuffer();
  // Posts every freed buffer from the posting cursor on, in order.
  void PostFreedBuffers();
  // Checks the next message's used entries (peeked_, num_buffers); returns its payload size,
  // or -1 when not all its buffers are used yet.
  int64_t PeekMessage(uint32_t* pending);
  // Pops the peeked message's entries, checking they did not change.
  void PopPeeked(uint32_t num_buffers);
  uint32_t BufferOf(uint16_t desc) const { return buffer_of_desc_[desc]; }
  uint8_t* RxBuffer(uint32_t buffer) const { return At(layout_.rx_buffers + uint64_t{buffer} * config_.buffer_size); }
  // Where the message's payload lies contiguously in the receive area, or -1.
  int64_t ContiguousPayload(uint32_t num_buffers) const;
  // Takes a span and a descriptor for a message of `payload` bytes and copies it in.
  bool SendOne(const uint8_t* src, uint32_t payload);
  void AddSpan(uint16_t id, uint64_t at, uint64_t payload);

  std::shared_ptr<Mapping> mapping_;
  uint64_t offset_;
  uint64_t guest_base_;
  QueuePairConfig config_;
  QueuePairLayout layout_;
  uint64_t publish_slice_;  // PublishSliceBytes(config_)
  DriverVirtqueue rx_;
  DriverVirtqueue tx_;
  std::optional<EventFd> rx_kick_;
  std::optional<EventFd> tx_kick_;
  std::vector<UsedChain> peeked_;
  SpanAllocator tx_spans_;
  // Receive buffers: which buffer each descriptor holds, which buffers wait to be posted
  // again, and the next one to post.
  std::vector<uint32_t> buffer_of_desc_;
  std::vector<uint8_t> buffer_freed_;
  uint32_t post_cursor_ = 0;
  // Messages read in place and not released: per message its buffers, oldest first.
  std::vector<uint32_t> held_buffers_;  // ring
  std::vector<uint32_t> held_counts_;   // ring
  uint32_t held_first_buffer_ = 0, held_buffer_count_ = 0;
  uint32_t held_first_message_ = 0, held_messages_ = 0;
  struct {
    bool valid = false;
    uint64_t at = 0;
    uint64_t capacity = 0;
  } reservation_;
  PortStats stats_;
};

}  // namespace vring
