#include "vring/driver_queue_pair.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "vring/net_header.h"
#include "vring/spin_wait.h"

namespace vring {

namespace {

SplitRingView RingAt(uint8_t* area, const RingAddresses& offsets, uint32_t size) {
  SplitRingView v;
  v.desc = area + offsets.desc;
  v.avail = area + offsets.avail;
  v.used = area + offsets.used;
  v.size = size;
  return v;
}

QueuePairLayout CheckedLayout(const std::shared_ptr<Mapping>& mapping, uint64_t offset,
                              const QueuePairConfig& config) {
  if (!mapping) throw Error(ErrorCode::kInvalidArgument, "queue pair needs a mapped region");
  QueuePairLayout layout = ComputeQueuePairLayout(config);
  if (offset % 64 != 0) throw Error(ErrorCode::kInvalidArgument, "queue pair offset must be 64-byte aligned");
  if (offset > mapping->size() || layout.total_bytes > mapping->size() - offset) {
    throw Error(ErrorCode::kRegionBounds, "the queue pair needs " + std::to_string(layout.total_bytes) +
                                              " bytes at offset " + std::to_string(offset) + " but the region has " +
                                              std::to_string(mapping->size()));
  }
  return layout;
}

std::optional<EventFd> AdoptCopy(int fd) {
  if (fd < 0) return std::nullopt;
  return EventFd::Adopt(DupFd(fd));
}

}  // namespace

DriverQueuePair::DriverQueuePair(std::shared_ptr<Mapping> mapping, uint64_t offset, uint64_t guest_base,
                                 const QueuePairConfig& config, int rx_kick_fd, int tx_kick_fd)
    : mapping_(std::move(mapping)),
      offset_(offset),
      guest_base_(guest_base),
      config_(config),
      layout_(CheckedLayout(mapping_, offset, config)),
      publish_slice_(PublishSliceBytes(config)),
      rx_(RingAt(mapping_->data() + offset, layout_.rx, config.queue_size), config.event_idx),
      tx_(RingAt(mapping_->data() + offset, layout_.tx, config.queue_size), config.event_idx),
      rx_kick_(AdoptCopy(rx_kick_fd)),
      tx_kick_(AdoptCopy(tx_kick_fd)) {
  if (guest_base + offset + layout_.total_bytes < guest_base) {
    throw Error(ErrorCode::kInvalidArgument, "guest address range wraps around 2^64");
  }
  // Transmit completions are reaped lazily on the next Send: no wakeup per message.
  tx_.DisableInterrupts();
  for (uint32_t i = 0; i < config.queue_size; ++i) PostReceiveBuffer();
  rx_.Publish();
}

void DriverQueuePair::Kick(std::optional<EventFd>& fd) {
  if (!fd) return;
  fd->Signal();
  ++stats_.notifications_sent;
}

void DriverQueuePair::PostReceiveBuffer() {
  const uint32_t bs = config_.buffer_size;
  rx_.AddChain(1, [&](uint32_t, uint16_t id) {
    return ChainBuffer{guest_base_ + offset_ + layout_.rx_buffers + uint64_t{id} * bs, bs, true};
  });
}

void DriverQueuePair::Publish(DriverQueue& queue, std::optional<EventFd>& kick) {
  queue.Publish();
  if (queue.NeedKick()) Kick(kick);
}

void DriverQueuePair::ReclaimTransmitted() {
  UsedChain used;
  while (tx_.PopUsed(&used)) {
  }
}

uint32_t DriverQueuePair::Send(const uint8_t* data, const uint32_t* lengths, uint32_t count) {
  for (uint32_t i = 0; i < count; ++i) {
    if (lengths[i] > config_.max_message) {
      throw Error(ErrorCode::kOversizedMessage, "message of " + std::to_string(lengths[i]) +
                                                    " bytes exceeds maxMessage " + std::to_string(config_.max_message));
    }
  }
  // Reclaim lazily: reading the used ring the device keeps writing costs a cache miss,
  // worth paying only when descriptors run short.
  if (tx_.num_free() < tx_.size() / 2) ReclaimTransmitted();
  const uint32_t bs = config_.buffer_size;
  const uint64_t buffers_addr = guest_base_ + offset_ + layout_.tx_buffers;
  const uint8_t* src = data;
  uint64_t bytes = 0;
  uint64_t unpublished = 0;  // bytes (headers included) in chains added since the last Publish
  uint32_t sent = 0;
  for (; sent < count; ++sent) {
    const uint32_t len = lengths[sent];
    const uint32_t n = BuffersForMessage(len, bs);
    if (n > tx_.num_free()) ReclaimTransmitted();
    if (n > tx_.num_free()) break;
    const uint64_t total = uint64_t{len} + kNetHeaderSize;
    tx_.AddChain(n, [&](uint32_t i, uint16_t id) {
      uint8_t* slot = At(layout_.tx_buffers + uint64_t{id} * bs);
      const uint64_t begin = uint64_t{i} * bs;  // position of this buffer in header+payload
      const uint32_t chunk = static_cast<uint32_t>(std::min<uint64_t>(bs, total - begin));
      uint32_t filled = 0;
      if (begin < kNetHeaderSize) {
        // A transmit header is all zero: no offloads, num_buffers 0 (VIRTIO 1.x §5.1.6.2).
        filled = static_cast<uint32_t>(kNetHeaderSize - begin);
        std::memset(slot, 0, filled);
      }
      if (chunk > filled) std::memcpy(slot + filled, src + (begin + filled - kNetHeaderSize), chunk - filled);
      return ChainBuffer{buffers_addr + uint64_t{id} * bs, chunk, false};
    });
    src += len;
    bytes += len;
    unpublished += total;
    if (unpublished >= publish_slice_) {
      Publish(tx_, tx_kick_);
      unpublished = 0;
    }
  }
  if (sent > 0) {
    Publish(tx_, tx_kick_);
    stats_.messages_sent += sent;
    stats_.bytes_sent += bytes;
  }
  return sent;
}

uint32_t DriverQueuePair::Receive(uint8_t* out, uint64_t out_capacity, uint32_t* lengths, uint32_t max_count) {
  if (out_capacity < config_.max_message) {
    throw Error(ErrorCode::kInvalidArgument, "receive buffer must hold at least maxMessage bytes");
  }
  const uint32_t bs = config_.buffer_size;
  uint32_t pending = rx_.UsedPending();
  uint32_t count = 0;
  uint64_t filled = 0;
  uint64_t reposted = 0;  // bytes of the buffers posted again since the last Publish
  while (count < max_count && pending > 0) {
    const UsedChain first = rx_.PeekUsed(0);
    if (first.len < kNetHeaderSize) {
      rx_.MarkBroken("shorter-than-header", "received buffer of " + std::to_string(first.len) +
                                                " bytes cannot hold the 12-byte net header");
    }
    uint16_t num_buffers = 1;
    if (config_.mergeable) {
      std::memcpy(&num_buffers, At(layout_.rx_buffers + uint64_t{first.head} * bs) + kNetHeaderNumBuffersOffset, 2);
      if (num_buffers == 0 || num_buffers > rx_.size()) {
        rx_.MarkBroken("bad-num-buffers", "num_buffers " + std::to_string(num_buffers) + " is out of range");
      }
    }
    // The device publishes a message's buffers together; if they are not all here yet,
    // leave the message for the next call.
    if (num_buffers > pending) pending = rx_.UsedPendingFresh();
    if (num_buffers > pending) break;
    peeked_.resize(num_buffers);
    peeked_[0] = first;
    uint64_t total = first.len - kNetHeaderSize;
    for (uint32_t j = 1; j < num_buffers; ++j) {
      peeked_[j] = rx_.PeekUsed(j);
      total += peeked_[j].len;
    }
    if (total > config_.max_message) {
      rx_.MarkBroken("message-too-large", "received message of " + std::to_string(total) +
                                              " bytes exceeds maxMessage " + std::to_string(config_.max_message));
    }
    if (total > out_capacity - filled) break;
    uint8_t* dst = out + filled;
    for (uint32_t j = 0; j < num_buffers; ++j) {
      UsedChain used;
      rx_.PopUsed(&used);
      // The device may rewrite the used ring at any time: only accept what was checked.
      if (used.head != peeked_[j].head || used.len != peeked_[j].len) {
        rx_.MarkBroken("used-ring-changed", "used entry changed while it was being read");
      }
      const uint32_t skip = j == 0 ? kNetHeaderSize : 0;
      const uint32_t n = used.len - skip;
      if (n > 0) std::memcpy(dst, At(layout_.rx_buffers + uint64_t{used.head} * bs) + skip, n);
      dst += n;
      PostReceiveBuffer();
    }
    lengths[count++] = static_cast<uint32_t>(total);
    filled += total;
    pending -= num_buffers;
    // Hand the emptied buffers back while the rest of the batch is still being copied.
    reposted += total + kNetHeaderSize;
    if (reposted >= publish_slice_) {
      Publish(rx_, rx_kick_);
      reposted = 0;
    }
  }
  if (count > 0) {
    Publish(rx_, rx_kick_);
    stats_.messages_received += count;
    stats_.bytes_received += filled;
  }
  return count;
}

bool DriverQueuePair::WaitReceivable(uint64_t budget_ns) {
  return SpinUntil(budget_ns, [&] { return rx_.UsedPending() > 0; });
}

bool DriverQueuePair::WaitSendable(uint64_t budget_ns, uint64_t next_message) {
  const uint32_t needed =
      BuffersForMessage(std::min<uint64_t>(next_message, config_.max_message), config_.buffer_size);
  return SpinUntil(budget_ns, [&] {
    if (tx_.num_free() >= needed) return true;
    // Resume once a quarter of what is in flight has completed (see DeviceQueuePair), and
    // only if that frees room for the next message: "some room" is not enough for a large
    // one, and the caller would go round Send and back here without sending anything.
    if (tx_.UsedPendingFresh() < std::max<uint32_t>(1, tx_.outstanding() / 4)) return false;
    ReclaimTransmitted();
    return tx_.num_free() >= needed;
  });
}

bool DriverQueuePair::ArmSend(uint64_t /*next_message*/) {
  // Wake once half of what is in flight has completed: one wakeup per half ring, not
  // per message.
  return tx_.EnableInterruptsDelayed(std::max<uint32_t>(1, tx_.outstanding() / 2));
}

}  // namespace vring
