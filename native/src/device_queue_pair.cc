#include "vring/device_queue_pair.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "vring/net_header.h"
#include "vring/spin_wait.h"

namespace vring {

namespace {

DeviceVirtqueue TranslatePackedRing(const MemoryTable& memory, const RingAddresses& a, const QueuePairConfig& config,
                                    uint16_t base) {
  if (!IsValidPackedQueueSize(config.queue_size)) {
    throw Error(ErrorCode::kInvalidArgument,
                "packed queue size must be between 1 and 32768, got " + std::to_string(config.queue_size));
  }
  PackedRingView v;
  v.size = config.queue_size;
  v.desc = memory.TranslateUser(a.desc, PackedDescRingBytes(config.queue_size));
  v.driver_event = memory.TranslateUser(a.avail, kEventSuppressBytes);
  v.device_event = memory.TranslateUser(a.used, kEventSuppressBytes);
  if (!v.desc || !v.driver_event || !v.device_event) {
    throw Error(ErrorCode::kRegionBounds, "a ring of the queue lies outside the shared memory regions");
  }
  if (!v.aligned()) throw Error(ErrorCode::kInvalidArgument, "ring addresses are misaligned");
  return DeviceVirtqueue(v, &memory, config.event_idx, base);
}

SplitRingView TranslateRing(const MemoryTable& memory, const RingAddresses& a, uint32_t size, bool event_idx) {
  if (!IsValidQueueSize(size)) {
    throw Error(ErrorCode::kInvalidArgument,
                "queue size must be a power of two between 1 and 32768, got " + std::to_string(size));
  }
  // Without EVENT_IDX the trailing event fields are not part of the ring (DPDK maps
  // 4 + 2Q and 4 + 8Q then).
  const uint64_t extra = event_idx ? 0 : 2;
  SplitRingView v;
  v.size = size;
  v.desc = memory.TranslateUser(a.desc, DescTableBytes(size));
  v.avail = memory.TranslateUser(a.avail, AvailRingBytes(size) - extra);
  v.used = memory.TranslateUser(a.used, UsedRingBytes(size) - extra);
  if (!v.desc || !v.avail || !v.used) {
    throw Error(ErrorCode::kRegionBounds, "a ring of the queue lies outside the shared memory regions");
  }
  if (!v.aligned()) throw Error(ErrorCode::kInvalidArgument, "ring addresses are misaligned");
  return v;
}

void CheckLengths(const uint32_t* lengths, uint32_t count, uint32_t max_message) {
  for (uint32_t i = 0; i < count; ++i) {
    if (lengths[i] > max_message) {
      throw Error(ErrorCode::kOversizedMessage, "message of " + std::to_string(lengths[i]) +
                                                    " bytes exceeds maxMessage " + std::to_string(max_message));
    }
  }
}

// Writes a byte stream across the writable segments of consecutive chains, counting
// what went into each chain (its used length).
class ScatterWriter {
 public:
  // `written` is the caller's, reused: one writer per message allocates nothing.
  ScatterWriter(std::vector<Chain>& chains, std::vector<uint32_t>& written) : chains_(chains), written_(written) {}

  void Write(const uint8_t* src, uint64_t n) {
    while (n > 0) {
      Chain& c = chains_[chain_];
      if (segment_ < c.num_readable) segment_ = c.num_readable;  // receive data never goes to readable parts
      if (segment_ >= c.segments.size()) {
        ++chain_;
        segment_ = 0;
        offset_ = 0;
        continue;
      }
      Segment& s = c.segments[segment_];
      const uint32_t room = s.len - offset_;
      const uint32_t take = static_cast<uint32_t>(std::min<uint64_t>(room, n));
      std::memcpy(s.data + offset_, src, take);
      src += take;
      n -= take;
      offset_ += take;
      written_[chain_] += take;
      if (offset_ == s.len) {
        ++segment_;
        offset_ = 0;
      }
    }
  }

  void Reset(uint32_t chains) {
    chain_ = 0;
    segment_ = 0;
    offset_ = 0;
    written_.assign(chains, 0);
  }
  uint32_t written(uint32_t chain) const { return written_[chain]; }

 private:
  std::vector<Chain>& chains_;
  std::vector<uint32_t>& written_;
  uint32_t chain_ = 0;
  size_t segment_ = 0;
  uint32_t offset_ = 0;
};

}  // namespace

DeviceQueuePair::DeviceQueuePair(std::shared_ptr<const MemoryTable> memory, const RingAddresses& rx,
                                 const RingAddresses& tx, const QueuePairConfig& config, uint16_t rx_base,
                                 uint16_t tx_base, int rx_call_fd, int tx_call_fd)
    : memory_(std::move(memory)),
      config_(config),
      publish_slice_(PublishSliceBytes(config)),
      rx_(config.packed ? TranslatePackedRing(*memory_, rx, config, rx_base)
                        : DeviceVirtqueue(TranslateRing(*memory_, rx, config.queue_size, config.event_idx),
                                          memory_.get(), config.event_idx, rx_base)),
      tx_(config.packed ? TranslatePackedRing(*memory_, tx, config, tx_base)
                        : DeviceVirtqueue(TranslateRing(*memory_, tx, config.queue_size, config.event_idx),
                                          memory_.get(), config.event_idx, tx_base)),
      rx_call_(EventFd::AdoptCopyOf(rx_call_fd)),
      tx_call_(EventFd::AdoptCopyOf(tx_call_fd)),
      held_heads_(config.queue_size, 0) {
  // Bounded like the layout the driver uses; the device only needs the limits.
  CheckDeviceQueuePairConfig(config);
  chain_.segments.reserve(16);
}

void DeviceQueuePair::Call(std::optional<EventFd>& fd) {
  if (!fd) return;
  fd->Signal();
  ++stats_.notifications_sent;
}

void DeviceQueuePair::PublishUsed(DeviceVirtqueue& queue, std::optional<EventFd>& call) {
  queue.PublishUsed();
  if (queue.NeedCall()) Call(call);
}

uint32_t DeviceQueuePair::Receive(uint8_t* out, uint64_t out_capacity, uint32_t* lengths, uint32_t max_count) {
  if (out_capacity < config_.max_message) {
    throw Error(ErrorCode::kInvalidArgument, "receive buffer must hold at least maxMessage bytes");
  }
  uint32_t count = 0;
  uint64_t filled = 0;
  uint64_t returned = 0;  // bytes of the chains pushed to the used ring since the last publication
  while (count < max_count && tx_.Pop(&chain_)) {
    const uint64_t payload = CheckedPayload();
    if (payload > out_capacity - filled) {
      tx_.Unpop(1);
      break;
    }
    CopyPayload(out + filled);
    tx_.PushUsed(chain_.head, 0);
    lengths[count++] = static_cast<uint32_t>(payload);
    filled += payload;
    // Return the copied chains while the rest of the batch is still being copied, so the
    // driver can refill them meanwhile (see PublishSliceBytes).
    returned += chain_.readable_bytes;
    if (returned >= publish_slice_) {
      PublishUsed(tx_, tx_call_);
      returned = 0;
    }
  }
  if (count > 0) {
    PublishUsed(tx_, tx_call_);
    stats_.messages_received += count;
    stats_.bytes_received += filled;
  }
  return count;
}

uint64_t DeviceQueuePair::CheckedPayload() {
  if (chain_.readable_bytes < kNetHeaderSize) {
    tx_.MarkBroken("shorter-than-header", "transmitted chain of " + std::to_string(chain_.readable_bytes) +
                                              " bytes cannot hold the 12-byte net header");
  }
  const uint64_t payload = chain_.readable_bytes - kNetHeaderSize;
  if (payload > config_.max_message) {
    tx_.MarkBroken("message-too-large", "transmitted message of " + std::to_string(payload) +
                                            " bytes exceeds maxMessage " + std::to_string(config_.max_message));
  }
  return payload;
}

void DeviceQueuePair::CopyPayload(uint8_t* dst) const {
  uint64_t skip = kNetHeaderSize;
  for (uint32_t s = 0; s < chain_.num_readable; ++s) {
    const Segment& seg = chain_.segments[s];
    const uint64_t from = std::min<uint64_t>(skip, seg.len);
    skip -= from;
    const uint64_t n = seg.len - from;
    if (n > 0) std::memcpy(dst, seg.data + from, n);
    dst += n;
  }
}

const uint8_t* DeviceQueuePair::ContiguousPayload(uint64_t payload) const {
  uint64_t skip = kNetHeaderSize;
  const uint8_t* start = nullptr;
  const uint8_t* end = nullptr;  // where the payload's run of memory ends so far
  for (uint32_t s = 0; s < chain_.num_readable; ++s) {
    const Segment& seg = chain_.segments[s];
    const uint64_t from = std::min<uint64_t>(skip, seg.len);
    skip -= from;
    if (from == seg.len) continue;
    if (!start) {
      start = seg.data + from;
    } else if (seg.data != end) {
      return nullptr;  // the next segment lies elsewhere: not one run
    }
    end = seg.data + seg.len;
  }
  return start && static_cast<uint64_t>(end - start) == payload ? start : nullptr;
}

uint32_t DeviceQueuePair::ReceiveInPlace(MessageLocation* out, uint32_t max_count, uint8_t* scratch,
                                         uint64_t scratch_capacity, uint64_t in_place_min) {
  if (scratch_capacity < config_.max_message) {
    throw Error(ErrorCode::kInvalidArgument, "scratch buffer must hold at least maxMessage bytes");
  }
  const uint32_t qs = config_.queue_size;
  uint32_t count = 0;
  uint64_t filled = 0;
  uint64_t bytes = 0;
  bool returned = false;
  while (count < max_count && tx_.Pop(&chain_)) {
    const uint64_t payload = CheckedPayload();
    MessageLocation where;
    // Never more held than the queue has descriptors: a driver that publishes a head it has
    // not had back could otherwise make us overwrite what we hold (it is copied instead).
    // In order, a held chain would be returned after the copied ones that followed it.
    const uint8_t* run = payload > 0 && payload >= in_place_min && held_count_ < qs && !config_.in_order
                             ? ContiguousPayload(payload)
                             : nullptr;
    // Each segment was checked against one region; Locate checks that the whole run lies in
    // one, which two mappings that happen to be adjacent in our address space would not be.
    if (run && memory_->Locate(run, payload, &where.area, &where.offset)) {
      where.length = static_cast<uint32_t>(payload);
      held_heads_[(held_first_ + held_count_++) % qs] = chain_.head;
    } else {
      if (payload > scratch_capacity - filled) {
        tx_.Unpop(1);
        break;
      }
      CopyPayload(scratch + filled);
      tx_.PushUsed(chain_.head, 0);
      returned = true;
      where = MessageLocation{kInScratch, filled, static_cast<uint32_t>(payload)};
      filled += payload;
    }
    out[count++] = where;
    bytes += payload;
  }
  if (returned) PublishUsed(tx_, tx_call_);
  stats_.messages_received += count;
  stats_.bytes_received += bytes;
  return count;
}

void DeviceQueuePair::Release(uint32_t count) {
  if (count > held_count_) {
    throw Error(ErrorCode::kInvalidArgument, "released " + std::to_string(count) + " messages but " +
                                                 std::to_string(held_count_) + " are held");
  }
  const uint32_t qs = config_.queue_size;
  for (uint32_t i = 0; i < count; ++i) {
    tx_.PushUsed(held_heads_[held_first_], 0);
    held_first_ = (held_first_ + 1) % qs;
    --held_count_;
  }
  if (count > 0) PublishUsed(tx_, tx_call_);
}

LentArea DeviceQueuePair::Area(uint32_t index) const {
  if (index >= memory_->region_count()) {
    throw Error(ErrorCode::kInvalidArgument, "no memory region " + std::to_string(index));
  }
  const MemoryRegion& r = memory_->region(index);
  return {r.host, r.size, memory_->mapping(index)};
}

DeviceQueuePair::Placement DeviceQueuePair::PlaceMessage(const ByteSpan* parts, uint32_t part_count,
                                                         uint64_t len) {
  const uint64_t total = len + kNetHeaderSize;
  uint32_t taken = 0;
  uint64_t capacity = 0;
  while (capacity < total) {
    if (taken == chains_.size()) chains_.emplace_back();
    if (!rx_.Pop(&chains_[taken])) {
      rx_.Unpop(taken);
      return Placement::kNoBuffers;
    }
    if (chains_[taken].writable_bytes == 0) {
      rx_.MarkBroken("receive-buffer-not-writable", "receive chain has no device-writable buffer");
    }
    capacity += chains_[taken].writable_bytes;
    ++taken;
    if (!config_.mergeable) break;
  }
  if (capacity < total) {
    // Without mergeable buffers a message must fit one chain; like a NIC, drop it.
    rx_.Unpop(taken);
    ++stats_.dropped;
    return Placement::kDropped;
  }
  uint8_t header[kNetHeaderSize] = {};
  const uint16_t num_buffers = static_cast<uint16_t>(config_.mergeable ? taken : 1);
  std::memcpy(header + kNetHeaderNumBuffersOffset, &num_buffers, 2);
  ScatterWriter writer(chains_, written_);
  writer.Reset(taken);
  writer.Write(header, kNetHeaderSize);
  for (uint32_t p = 0; p < part_count; ++p) writer.Write(parts[p].data, parts[p].size);
  for (uint32_t j = 0; j < taken; ++j) rx_.PushUsed(chains_[j].head, writer.written(j));
  return Placement::kPlaced;
}

uint32_t DeviceQueuePair::Send(const uint8_t* data, const uint32_t* lengths, uint32_t count) {
  CheckLengths(lengths, count, config_.max_message);
  const uint8_t* src = data;
  uint64_t bytes = 0;
  uint64_t unpublished = 0;  // bytes (headers included) in used entries not yet published
  uint32_t delivered = 0;
  uint32_t i = 0;
  for (; i < count; ++i) {
    const uint32_t len = lengths[i];
    const ByteSpan part{src, len};
    const Placement placed = PlaceMessage(&part, 1, len);
    if (placed == Placement::kNoBuffers) break;
    src += len;
    if (placed == Placement::kDropped) continue;
    bytes += len;
    ++delivered;
    // Whole messages only: the driver takes a message's buffers once all of them are used.
    unpublished += uint64_t{len} + kNetHeaderSize;
    if (unpublished >= publish_slice_) {
      PublishUsed(rx_, rx_call_);
      unpublished = 0;
    }
  }
  if (delivered > 0) {
    PublishUsed(rx_, rx_call_);
    stats_.messages_sent += delivered;
    stats_.bytes_sent += bytes;
  }
  // Dropped messages count as handled: the caller must not resend them.
  return i;
}

bool DeviceQueuePair::SendJoined(const ByteSpan* parts, uint32_t part_count) {
  uint64_t len = 0;
  for (uint32_t p = 0; p < part_count; ++p) len += parts[p].size;
  if (len > config_.max_message) {
    throw Error(ErrorCode::kOversizedMessage,
                "message of " + std::to_string(len) + " bytes exceeds maxMessage " + std::to_string(config_.max_message));
  }
  const Placement placed = PlaceMessage(parts, part_count, len);
  if (placed == Placement::kNoBuffers) return false;
  if (placed == Placement::kPlaced) {
    PublishUsed(rx_, rx_call_);
    stats_.messages_sent += 1;
    stats_.bytes_sent += len;
  }
  return true;
}

bool DeviceQueuePair::WaitReceivable(uint64_t budget_ns) {
  return SpinUntil(budget_ns, [&] { return tx_.AvailPending() > 0; });
}

uint32_t DeviceQueuePair::BuffersNeeded(uint64_t next_message) const {
  if (!config_.mergeable) return 1;
  return BuffersForMessage(std::min<uint64_t>(next_message, config_.max_message), config_.buffer_size);
}

bool DeviceQueuePair::WaitSendable(uint64_t budget_ns, uint64_t next_message) {
  // Resume once an eighth of the ring is free again, not at the first buffer: refilling one
  // slot at a time makes both sides fight over the same cache lines per message. And never
  // before the next message fits: Send would take the posted chains, find too few, put them
  // back and return nothing, and the caller would spin through that at full speed, reading
  // descriptors the driver is writing, until the driver posted enough.
  const uint32_t enough = std::min<uint32_t>(
      rx_.size(), std::max<uint32_t>({1, rx_.size() / 8, BuffersNeeded(next_message)}));
  return SpinUntil(budget_ns, [&] { return rx_.AvailPendingFresh() >= enough; });
}

bool DeviceQueuePair::ArmSend(uint64_t next_message) {
  return rx_.EnableNotificationsDelayed(BuffersNeeded(next_message));
}

uint32_t DeviceQueuePair::TrackInflight(std::shared_ptr<Mapping> record, uint64_t rx_offset, uint64_t tx_offset) {
  if (inflight_record_) throw Error(ErrorCode::kInvalidArgument, "in-flight record already attached");
  if (!record) throw Error(ErrorCode::kInvalidArgument, "in-flight record is missing");
  const uint64_t bytes = InflightQueueBytes(config_.queue_size);
  for (uint64_t offset : {rx_offset, tx_offset}) {
    if (offset > record->size() || record->size() - offset < bytes) {
      throw Error(ErrorCode::kInvalidArgument, "in-flight record at offset " + std::to_string(offset) +
                                                   " does not fit its mapping of " + std::to_string(record->size()) +
                                                   " bytes");
    }
  }
  inflight_record_ = std::move(record);
  rx_inflight_.emplace(inflight_record_->data() + rx_offset, config_.queue_size);
  tx_inflight_.emplace(inflight_record_->data() + tx_offset, config_.queue_size);
  return rx_.TrackInflight(&*rx_inflight_) + tx_.TrackInflight(&*tx_inflight_);
}

}  // namespace vring
