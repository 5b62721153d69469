#include "vring/driver_queue_pair.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "vring/net_header.h"
#include "vring/spin_wait.h"

namespace vring {

namespace {

DriverVirtqueue QueueAt(uint8_t* area, const RingAddresses& offsets, const QueuePairConfig& config) {
  if (config.packed) {
    PackedRingView v;
    v.desc = area + offsets.desc;
    v.driver_event = area + offsets.avail;
    v.device_event = area + offsets.used;
    v.size = config.queue_size;
    return DriverVirtqueue(v, config.event_idx, config.in_order);
  }
  SplitRingView v;
  v.desc = area + offsets.desc;
  v.avail = area + offsets.avail;
  v.used = area + offsets.used;
  v.size = config.queue_size;
  return DriverVirtqueue(v, config.event_idx, config.in_order);
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

// Spans of the transmit area start on 16-byte boundaries: the area (a power-of-two number of
// buffers of a multiple of 8 bytes) is a multiple of 16, so the largest message always fits.
constexpr uint64_t kSpanAlign = 16;

}  // namespace

DriverQueuePair::DriverQueuePair(std::shared_ptr<Mapping> mapping, uint64_t offset, uint64_t guest_base,
                                 const QueuePairConfig& config, int rx_kick_fd, int tx_kick_fd)
    : mapping_(std::move(mapping)),
      offset_(offset),
      guest_base_(guest_base),
      config_(config),
      layout_(CheckedLayout(mapping_, offset, config)),
      publish_slice_(PublishSliceBytes(config)),
      rx_(QueueAt(mapping_->data() + offset, layout_.rx, config)),
      tx_(QueueAt(mapping_->data() + offset, layout_.tx, config)),
      rx_kick_(EventFd::AdoptCopyOf(rx_kick_fd)),
      tx_kick_(EventFd::AdoptCopyOf(tx_kick_fd)),
      tx_spans_(uint64_t{config.queue_size} * config.buffer_size, config.queue_size, kSpanAlign),
      buffer_of_desc_(config.queue_size, 0),
      buffer_freed_(config.queue_size, 0),
      held_buffers_(config.queue_size, 0),
      held_counts_(config.queue_size, 0) {
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
  const uint32_t buffer = post_cursor_;
  const int id = rx_.AddChain(1, [&](uint32_t, uint16_t) {
    return ChainBuffer{guest_base_ + offset_ + layout_.rx_buffers + uint64_t{buffer} * bs, bs, true};
  });
  // Never fails: a buffer is posted only after its descriptor came back.
  buffer_of_desc_[static_cast<uint16_t>(id)] = buffer;
  buffer_freed_[buffer] = 0;
  post_cursor_ = (post_cursor_ + 1) & (config_.queue_size - 1);
}

void DriverQueuePair::PostFreedBuffers() {
  while (buffer_freed_[post_cursor_] && rx_.num_free() > 0) PostReceiveBuffer();
}

void DriverQueuePair::Publish(DriverVirtqueue& queue, std::optional<EventFd>& kick) {
  queue.Publish();
  if (queue.NeedKick()) Kick(kick);
}

void DriverQueuePair::ReclaimTransmitted() {
  UsedChain used;
  while (tx_.PopUsed(&used)) tx_spans_.Free(used.head);
}

void DriverQueuePair::AddSpan(uint16_t id, uint64_t at, uint64_t payload) {
  // A transmit header is all zero: no offloads, num_buffers 0 (VIRTIO 1.x §5.1.6.2).
  std::memset(At(layout_.tx_buffers + at), 0, kNetHeaderSize);
  const uint64_t addr = guest_base_ + offset_ + layout_.tx_buffers + at;
  const int head = tx_.AddChain(1, [&](uint32_t, uint16_t) {
    return ChainBuffer{addr, static_cast<uint32_t>(kNetHeaderSize + payload), false};
  });
  (void)head;  // == id: the span was taken for the descriptor AddChain starts with
  (void)id;
}

bool DriverQueuePair::SendOne(const uint8_t* src, uint32_t payload) {
  const uint64_t total = uint64_t{payload} + kNetHeaderSize;
  int id = tx_.next_free();
  int64_t at = id < 0 ? -1 : tx_spans_.Allocate(total, static_cast<uint16_t>(id));
  if (at < 0) {
    ReclaimTransmitted();
    id = tx_.next_free();
    at = id < 0 ? -1 : tx_spans_.Allocate(total, static_cast<uint16_t>(id));
    if (at < 0) return false;
  }
  if (payload > 0) std::memcpy(At(layout_.tx_buffers + static_cast<uint64_t>(at) + kNetHeaderSize), src, payload);
  AddSpan(static_cast<uint16_t>(id), static_cast<uint64_t>(at), payload);
  return true;
}

uint32_t DriverQueuePair::Send(const uint8_t* data, const uint32_t* lengths, uint32_t count) {
  for (uint32_t i = 0; i < count; ++i) {
    if (lengths[i] > config_.max_message) {
      throw Error(ErrorCode::kOversizedMessage, "message of " + std::to_string(lengths[i]) +
                                                    " bytes exceeds maxMessage " + std::to_string(config_.max_message));
    }
  }
  reservation_.valid = false;
  // Reclaim lazily: reading the used ring the device keeps writing costs a cache miss,
  // worth paying only when descriptors run short.
  if (tx_.num_free() < tx_.size() / 2) ReclaimTransmitted();
  const uint8_t* src = data;
  uint64_t bytes = 0;
  uint64_t unpublished = 0;  // bytes (headers included) in chains added since the last Publish
  uint32_t sent = 0;
  for (; sent < count; ++sent) {
    const uint32_t len = lengths[sent];
    if (!SendOne(src, len)) break;
    src += len;
    bytes += len;
    unpublished += uint64_t{len} + kNetHeaderSize;
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

bool DriverQueuePair::ReserveSend(uint64_t min_payload, SendReservation* out) {
  reservation_.valid = false;
  const uint64_t need = min_payload + kNetHeaderSize;
  if (tx_.num_free() == 0 || tx_spans_.LargestFree().bytes < need) ReclaimTransmitted();
  const SpanAllocator::Run run = tx_spans_.LargestFree();
  if (tx_.num_free() == 0 || run.bytes < need) return false;
  const uint64_t capacity = std::min<uint64_t>(run.bytes - kNetHeaderSize, config_.max_message);
  reservation_ = {true, run.at, capacity};
  *out = SendReservation{1, run.at + kNetHeaderSize, capacity};
  return true;
}

void DriverQueuePair::CommitSend(uint64_t payload) {
  if (!reservation_.valid) throw Error(ErrorCode::kInvalidArgument, "no reservation to commit (send again)");
  if (payload > reservation_.capacity) {
    throw Error(ErrorCode::kInvalidArgument, "committed " + std::to_string(payload) +
                                                 " bytes beyond the reservation of " +
                                                 std::to_string(reservation_.capacity));
  }
  reservation_.valid = false;
  const int id = tx_.next_free();
  if (id < 0 || tx_spans_.AllocateAt(reservation_.at, payload + kNetHeaderSize, static_cast<uint16_t>(id)) < 0) {
    throw Error(ErrorCode::kInvalidArgument, "the reservation is no longer valid");
  }
  AddSpan(static_cast<uint16_t>(id), reservation_.at, payload);
  Publish(tx_, tx_kick_);
  ++stats_.messages_sent;
  stats_.bytes_sent += payload;
}

LentArea DriverQueuePair::Area(uint32_t index) const {
  const uint64_t bytes = uint64_t{config_.queue_size} * config_.buffer_size;
  if (index == 0) return {At(layout_.rx_buffers), bytes, mapping_};
  if (index == 1) return {At(layout_.tx_buffers), bytes, mapping_};
  throw Error(ErrorCode::kInvalidArgument, "a driver lends areas 0 (receive) and 1 (transmit)");
}

int64_t DriverQueuePair::PeekMessage(uint32_t* pending) {
  const UsedChain first = rx_.PeekUsed(0);
  if (first.len < kNetHeaderSize) {
    rx_.MarkBroken("shorter-than-header", "received buffer of " + std::to_string(first.len) +
                                              " bytes cannot hold the 12-byte net header");
  }
  uint16_t num_buffers = 1;
  if (config_.mergeable) {
    std::memcpy(&num_buffers, RxBuffer(BufferOf(first.head)) + kNetHeaderNumBuffersOffset, 2);
    if (num_buffers == 0 || num_buffers > rx_.size()) {
      rx_.MarkBroken("bad-num-buffers", "num_buffers " + std::to_string(num_buffers) + " is out of range");
    }
  }
  // The device publishes a message's buffers together; if they are not all here yet,
  // leave the message for the next call.
  if (num_buffers > *pending) *pending = rx_.UsedPendingFresh();
  if (num_buffers > *pending) return -1;
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
  return static_cast<int64_t>(total);
}

void DriverQueuePair::PopPeeked(uint32_t num_buffers) {
  for (uint32_t j = 0; j < num_buffers; ++j) {
    UsedChain used;
    rx_.PopUsed(&used);
    // The device may rewrite the used ring at any time: only accept what was checked.
    if (used.head != peeked_[j].head || used.len != peeked_[j].len) {
      rx_.MarkBroken("used-ring-changed", "used entry changed while it was being read");
    }
  }
}

int64_t DriverQueuePair::ContiguousPayload(uint32_t num_buffers) const {
  const uint32_t bs = config_.buffer_size;
  const uint32_t first = BufferOf(peeked_[0].head);
  for (uint32_t j = 0; j < num_buffers; ++j) {
    if (BufferOf(peeked_[j].head) != first + j) return -1;
    // Every buffer but the last must be full for the payload to run on into the next.
    if (j + 1 < num_buffers && peeked_[j].len != bs) return -1;
  }
  return static_cast<int64_t>(uint64_t{first} * bs + kNetHeaderSize);
}

uint32_t DriverQueuePair::Receive(uint8_t* out, uint64_t out_capacity, uint32_t* lengths, uint32_t max_count) {
  if (out_capacity < config_.max_message) {
    throw Error(ErrorCode::kInvalidArgument, "receive buffer must hold at least maxMessage bytes");
  }
  uint32_t pending = rx_.UsedPending();
  uint32_t count = 0;
  uint64_t filled = 0;
  uint64_t reposted = 0;  // bytes of the buffers posted again since the last Publish
  while (count < max_count && pending > 0) {
    const int64_t size = PeekMessage(&pending);
    if (size < 0) break;
    const uint64_t total = static_cast<uint64_t>(size);
    if (total > out_capacity - filled) break;
    const uint32_t num_buffers = static_cast<uint32_t>(peeked_.size());
    PopPeeked(num_buffers);
    uint8_t* dst = out + filled;
    for (uint32_t j = 0; j < num_buffers; ++j) {
      const uint32_t skip = j == 0 ? kNetHeaderSize : 0;
      const uint32_t n = peeked_[j].len - skip;
      const uint32_t buffer = BufferOf(peeked_[j].head);
      if (n > 0) std::memcpy(dst, RxBuffer(buffer) + skip, n);
      dst += n;
      buffer_freed_[buffer] = 1;
    }
    PostFreedBuffers();
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

uint32_t DriverQueuePair::ReceiveInPlace(MessageLocation* out, uint32_t max_count, uint8_t* scratch,
                                         uint64_t scratch_capacity, uint64_t in_place_min) {
  if (scratch_capacity < config_.max_message) {
    throw Error(ErrorCode::kInvalidArgument, "scratch buffer must hold at least maxMessage bytes");
  }
  const uint32_t qs = config_.queue_size;
  uint32_t pending = rx_.UsedPending();
  uint32_t count = 0;
  uint64_t filled = 0;
  uint64_t bytes = 0;
  bool freed = false;
  while (count < max_count && pending > 0) {
    const int64_t size = PeekMessage(&pending);
    if (size < 0) break;
    const uint64_t total = static_cast<uint64_t>(size);
    const uint32_t num_buffers = static_cast<uint32_t>(peeked_.size());
    const int64_t at = total >= in_place_min ? ContiguousPayload(num_buffers) : -1;
    if (at < 0 && total > scratch_capacity - filled) break;
    PopPeeked(num_buffers);
    if (at >= 0) {
      out[count] = MessageLocation{0, static_cast<uint64_t>(at), static_cast<uint32_t>(total)};
      for (uint32_t j = 0; j < num_buffers; ++j) {
        held_buffers_[(held_first_buffer_ + held_buffer_count_++) & (qs - 1)] = BufferOf(peeked_[j].head);
      }
      held_counts_[(held_first_message_ + held_messages_++) & (qs - 1)] = num_buffers;
    } else {
      uint8_t* dst = scratch + filled;
      for (uint32_t j = 0; j < num_buffers; ++j) {
        const uint32_t skip = j == 0 ? kNetHeaderSize : 0;
        const uint32_t n = peeked_[j].len - skip;
        const uint32_t buffer = BufferOf(peeked_[j].head);
        if (n > 0) std::memcpy(dst, RxBuffer(buffer) + skip, n);
        dst += n;
        buffer_freed_[buffer] = 1;
      }
      freed = true;
      out[count] = MessageLocation{kInScratch, filled, static_cast<uint32_t>(total)};
      filled += total;
    }
    ++count;
    bytes += total;
    pending -= num_buffers;
  }
  if (freed) {
    PostFreedBuffers();
    Publish(rx_, rx_kick_);
  }
  stats_.messages_received += count;
  stats_.bytes_received += bytes;
  return count;
}

void DriverQueuePair::Release(uint32_t count) {
  if (count > held_messages_) {
    throw Error(ErrorCode::kInvalidArgument, "released " + std::to_string(count) + " messages but " +
                                                 std::to_string(held_messages_) + " are held");
  }
  const uint32_t qs = config_.queue_size;
  for (uint32_t m = 0; m < count; ++m) {
    const uint32_t n = held_counts_[held_first_message_];
    held_first_message_ = (held_first_message_ + 1) & (qs - 1);
    --held_messages_;
    for (uint32_t j = 0; j < n; ++j) {
      buffer_freed_[held_buffers_[held_first_buffer_]] = 1;
      held_first_buffer_ = (held_first_buffer_ + 1) & (qs - 1);
      --held_buffer_count_;
    }
  }
  if (count > 0) {
    PostFreedBuffers();
    Publish(rx_, rx_kick_);
  }
}

bool DriverQueuePair::WaitReceivable(uint64_t budget_ns) {
  return SpinUntil(budget_ns, [&] { return rx_.UsedPending() > 0; });
}

bool DriverQueuePair::WaitSendable(uint64_t budget_ns, uint64_t next_message) {
  const uint64_t needed = std::min<uint64_t>(next_message, config_.max_message) + kNetHeaderSize;
  const auto fits = [&] { return tx_.num_free() > 0 && tx_spans_.LargestFree().bytes >= needed; };
  return SpinUntil(budget_ns, [&] {
    if (fits()) return true;
    // Resume once a quarter of what is in flight has completed (see DeviceQueuePair), and
    // only if that frees room for the next message: "some room" is not enough for a large
    // one, and the caller would go round Send and back here without sending anything.
    if (tx_.UsedPendingFresh() < std::max<uint32_t>(1, tx_.outstanding() / 4)) return false;
    ReclaimTransmitted();
    return fits();
  });
}

bool DriverQueuePair::ArmSend(uint64_t next_message) {
  const uint64_t needed = std::min<uint64_t>(next_message, config_.max_message) + kNetHeaderSize;
  ReclaimTransmitted();
  if (tx_.num_free() > 0 && tx_spans_.LargestFree().bytes >= needed) return true;
  // Wake once half of what is in flight has completed: one wakeup per half ring, not per
  // message. But with few messages in flight (large ones), at the first: a device reading
  // in place may hold most of them until its application releases them, and a threshold it
  // never reaches would leave this side asleep with room to send.
  const uint32_t outstanding = tx_.outstanding();
  return tx_.EnableInterruptsDelayed(outstanding <= 16 ? 1 : outstanding / 2);
}

}  // namespace vring
