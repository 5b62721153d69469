// The driver (frontend) end of a virtio-net queue pair living in the driver's own shared
// region: queue 0 receives, queue 1 transmits. Messages travel as a 12-byte
// virtio_net_hdr_v1 plus payload, spread over fixed-size buffers (one per descriptor,
// buffer i belonging to descriptor i); received messages may span several buffers
// (mergeable receive buffers, num_buffers in the header).
//
// Batch calls: one Send/Receive moves many messages and publishes each ring index once.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "vring/driver_queue.h"
#include "vring/event_fd.h"
#include "vring/port_stats.h"
#include "vring/queue_pair_layout.h"
#include "vring/shared_region.h"

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

  // Spin (up to budget_ns) until Receive/Send would make progress. `next_message` is the
  // size of the message waiting to go (0: unknown, any message).
  bool WaitReceivable(uint64_t budget_ns);
  bool WaitSendable(uint64_t budget_ns, uint64_t next_message = 0);

  // Ask for a notification (on our call eventfd) when messages arrive / ring space frees.
  // True means "already so": do not sleep.
  bool ArmReceive() { return rx_.EnableInterrupts(); }
  void DisarmReceive() { rx_.DisableInterrupts(); }
  // Wakes once half of what is in flight completed, whatever `next_message` is: every
  // message needs at most a queue's worth of descriptors, and the device returns them all.
  bool ArmSend(uint64_t next_message);
  void DisarmSend() { tx_.DisableInterrupts(); }

  bool broken() const { return rx_.broken() || tx_.broken(); }
  const PortStats& stats() const { return stats_; }

 private:
  RingAddresses Addresses(const RingAddresses& offsets) const {
    const uint64_t base = guest_base_ + offset_;
    return {base + offsets.desc, base + offsets.avail, base + offsets.used};
  }
  uint8_t* At(uint64_t offset) const { return mapping_->data() + offset_ + offset; }
  void Kick(std::optional<EventFd>& fd);
  // Publishes what was queued on `queue` and kicks the device if it asked.
  void Publish(DriverQueue& queue, std::optional<EventFd>& kick);
  void ReclaimTransmitted();
  void PostReceiveBuffer();

  std::shared_ptr<Mapping> mapping_;
  uint64_t offset_;
  uint64_t guest_base_;
  QueuePairConfig config_;
  QueuePairLayout layout_;
  uint64_t publish_slice_;  // PublishSliceBytes(config_)
  DriverQueue rx_;
  DriverQueue tx_;
  std::optional<EventFd> rx_kick_;
  std::optional<EventFd> tx_kick_;
  std::vector<UsedChain> peeked_;
  PortStats stats_;
};

}  // namespace vring
