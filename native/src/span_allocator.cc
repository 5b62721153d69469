#include "vring/span_allocator.h"

#include "vring/error.h"

namespace vring {

SpanAllocator::SpanAllocator(uint64_t area_bytes, uint32_t ids, uint64_t align)
    : area_(area_bytes), align_(align), fifo_(2 * uint64_t{ids}), in_use_(ids, 0), slot_of_(ids, 0) {
  if (ids == 0 || align == 0 || (align & (align - 1)) != 0) {
    throw Error(ErrorCode::kInvalidArgument, "span allocator needs ids and a power-of-two alignment");
  }
}

int SpanAllocator::Runs(Run out[2]) const {
  if (count_ == 0) {
    out[0] = {0, area_};
    return 1;
  }
  const Span& oldest = fifo_[first_];
  const Span& newest = fifo_[(first_ + count_ - 1) % fifo_.size()];
  if (newest.begin >= oldest.begin) {
    // Not wrapped: free after the newest span, and before the oldest.
    out[0] = {newest.end, area_ - newest.end};
    out[1] = {0, oldest.begin};
    return 2;
  }
  out[0] = {newest.end, oldest.begin - newest.end};
  return 1;
}

SpanAllocator::Run SpanAllocator::LargestFree() const {
  Run best;
  if (count_ == fifo_.size()) return best;
  Run runs[2];
  const int n = Runs(runs);
  for (int i = 0; i < n; ++i) {
    if (runs[i].bytes > best.bytes) best = runs[i];
  }
  return best;
}

int64_t SpanAllocator::Take(uint64_t at, uint64_t bytes, uint16_t id) {
  if (id >= in_use_.size() || in_use_[id] || count_ == fifo_.size()) return -1;
  const uint32_t slot = static_cast<uint32_t>((first_ + count_) % fifo_.size());
  fifo_[slot] = Span{at, at + bytes, false};
  ++count_;
  in_use_[id] = 1;
  slot_of_[id] = slot;
  return static_cast<int64_t>(at);
}

int64_t SpanAllocator::Allocate(uint64_t bytes, uint16_t id) {
  const uint64_t need = Aligned(bytes == 0 ? 1 : bytes);
  Run runs[2];
  const int n = Runs(runs);
  for (int i = 0; i < n; ++i) {
    if (runs[i].bytes >= need) return Take(runs[i].at, need, id);
  }
  return -1;
}

int64_t SpanAllocator::AllocateAt(uint64_t at, uint64_t bytes, uint16_t id) {
  const uint64_t need = Aligned(bytes == 0 ? 1 : bytes);
  Run runs[2];
  const int n = Runs(runs);
  for (int i = 0; i < n; ++i) {
    if (runs[i].at == at && runs[i].bytes >= need) return Take(at, need, id);
  }
  return -1;
}

bool SpanAllocator::Free(uint16_t id) {
  if (id >= in_use_.size() || !in_use_[id]) return false;
  in_use_[id] = 0;
  fifo_[slot_of_[id]].done = true;
  while (count_ > 0 && fifo_[first_].done) {
    first_ = static_cast<uint32_t>((first_ + 1) % fifo_.size());
    --count_;
  }
  return true;
}

}  // namespace vring
