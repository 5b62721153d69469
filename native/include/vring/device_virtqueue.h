// The device side of one virtqueue in either format: split (DeviceQueue) or packed
// (PackedDeviceQueue), chosen when the queue is made. The queue pair calls this; each call
// is one predictable branch to the format's own code.
#pragma once

#include <optional>
#include <string>

#include "vring/device_queue.h"
#include "vring/packed_device_queue.h"

namespace vring {

class DeviceVirtqueue {
 public:
  DeviceVirtqueue(const SplitRingView& ring, const MemoryTable* memory, bool event_idx, uint16_t base) {
    split_.emplace(ring, memory, event_idx, base);
  }
  DeviceVirtqueue(const PackedRingView& ring, const MemoryTable* memory, bool event_idx, uint16_t base) {
    packed_.emplace(ring, memory, event_idx, base);
  }

  bool packed() const { return packed_.has_value(); }
  uint32_t size() const { return packed_ ? packed_->size() : split_->size(); }
  bool broken() const { return packed_ ? packed_->broken() : split_->broken(); }
  // Split: chains pending. Packed: descriptors pending (a chain of n counts n).
  uint32_t AvailPending() { return packed_ ? packed_->AvailPending() : split_->AvailPending(); }
  uint32_t AvailPendingFresh() { return packed_ ? packed_->AvailPendingFresh() : split_->AvailPendingFresh(); }
  bool Pop(Chain* out) { return packed_ ? packed_->Pop(out) : split_->Pop(out); }
  void Unpop(uint32_t n) { packed_ ? packed_->Unpop(n) : split_->Unpop(n); }
  void PushUsed(uint16_t head, uint32_t len) { packed_ ? packed_->PushUsed(head, len) : split_->PushUsed(head, len); }
  void PublishUsed() { packed_ ? packed_->PublishUsed() : split_->PublishUsed(); }
  bool NeedCall() { return packed_ ? packed_->NeedCall() : split_->NeedCall(); }
  void DisableNotifications() { packed_ ? packed_->DisableNotifications() : split_->DisableNotifications(); }
  bool EnableNotifications() { return packed_ ? packed_->EnableNotifications() : split_->EnableNotifications(); }
  bool EnableNotificationsDelayed(uint32_t count) {
    return packed_ ? packed_->EnableNotificationsDelayed(count) : split_->EnableNotificationsDelayed(count);
  }
  // Split: the free-running avail index. Packed: slot | wrap counter << 15.
  uint16_t last_avail_idx() const { return packed_ ? packed_->last_avail_idx() : split_->last_avail_idx(); }
  // The in-flight record is kept for split rings only (its packed layout is not built):
  // a packed queue refuses one rather than run without the recovery it promises.
  uint32_t TrackInflight(InflightLog* log) {
    if (packed_) {
      throw Error(ErrorCode::kInvalidArgument, "an in-flight record is kept for split rings only");
    }
    return split_->TrackInflight(log);
  }
  [[noreturn]] void MarkBroken(const char* reason, const std::string& message) {
    if (packed_) packed_->MarkBroken(reason, message);
    split_->MarkBroken(reason, message);
  }

 private:
  std::optional<DeviceQueue> split_;
  std::optional<PackedDeviceQueue> packed_;
};

}  // namespace vring
