// The driver side of one virtqueue in either format: split (DriverQueue) or packed
// (PackedDriverQueue), chosen when the queue is made. The queue pair calls this; each call
// is one predictable branch to the format's own code.
#pragma once

#include <optional>
#include <string>
#include <utility>

#include "vring/driver_queue.h"
#include "vring/packed_driver_queue.h"

namespace vring {

class DriverVirtqueue {
 public:
  DriverVirtqueue(const SplitRingView& ring, bool event_idx, bool in_order) {
    split_.emplace(ring, event_idx, in_order);
  }
  DriverVirtqueue(const PackedRingView& ring, bool event_idx, bool in_order) {
    packed_.emplace(ring, event_idx, in_order);
  }

  bool packed() const { return packed_.has_value(); }
  uint32_t size() const { return packed_ ? packed_->size() : split_->size(); }
  uint32_t num_free() const { return packed_ ? packed_->num_free() : split_->num_free(); }
  int next_free() const { return packed_ ? packed_->next_free() : split_->next_free(); }
  bool broken() const { return packed_ ? packed_->broken() : split_->broken(); }
  template <typename Fill>
  int AddChain(uint32_t n, Fill&& fill) {
    return packed_ ? packed_->AddChain(n, std::forward<Fill>(fill)) : split_->AddChain(n, std::forward<Fill>(fill));
  }
  void Publish() { packed_ ? packed_->Publish() : split_->Publish(); }
  bool NeedKick() { return packed_ ? packed_->NeedKick() : split_->NeedKick(); }
  uint32_t UsedPending() { return packed_ ? packed_->UsedPending() : split_->UsedPending(); }
  uint32_t UsedPendingFresh() { return packed_ ? packed_->UsedPendingFresh() : split_->UsedPendingFresh(); }
  bool PopUsed(UsedChain* out) { return packed_ ? packed_->PopUsed(out) : split_->PopUsed(out); }
  UsedChain PeekUsed(uint32_t ahead) { return packed_ ? packed_->PeekUsed(ahead) : split_->PeekUsed(ahead); }
  void DisableInterrupts() { packed_ ? packed_->DisableInterrupts() : split_->DisableInterrupts(); }
  bool EnableInterrupts() { return packed_ ? packed_->EnableInterrupts() : split_->EnableInterrupts(); }
  bool EnableInterruptsDelayed(uint32_t count) {
    return packed_ ? packed_->EnableInterruptsDelayed(count) : split_->EnableInterruptsDelayed(count);
  }
  // Packed only: lays the ring out for a new device and returns the base it resumes from
  // (see PackedDriverQueue::PrepareResume). A split ring's device resumes from the used
  // index in shared memory instead.
  uint16_t PrepareResume() { return packed_ ? packed_->PrepareResume() : 0; }
  uint32_t outstanding() const { return packed_ ? packed_->outstanding() : split_->outstanding(); }
  [[noreturn]] void MarkBroken(const char* reason, const std::string& message) {
    if (packed_) packed_->MarkBroken(reason, message);
    split_->MarkBroken(reason, message);
  }

 private:
  std::optional<DriverQueue> split_;
  std::optional<PackedDriverQueue> packed_;
};

}  // namespace vring
