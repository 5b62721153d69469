#include "vring/span_allocator.h"

#include "vring/error.h"

namespace vring {

namespace {
constexpr uint8_t kFree = 0;
constexpr uint8_t kAllocated = 1;
constexpr uint8_t kGivenBack = 2;
}  // namespace

SpanAllocator::SpanAllocator(uint64_t area_bytes, uint32_t ids, uint64_t align)
    : area_(area_bytes), align_(align), fifo_(ids), in_use_(ids, kFree) {
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
  Run runs[2];
  const int n = Runs(runs);
  Run best;
  for (int i = 0; i < n; ++i) {
    if (runs[i].bytes > best.bytes) best = runs[i];
  }
  return best;
}

int64_t SpanAllocator::Take(uint64_t at, uint64_t bytes, uint16_t id) {
  if (id >= in_use_.size() || in_use_[id] != kFree || count_ == fifo_.size()) return -1;
  fifo_[(first_ + count_) % fifo_.size()] = Span{at, at + bytes, id};
  ++count_;
  in_use_[id] = kAllocated;
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
  if (id >= in_use_.size() || in_use_[id] != kAllocated) return false;
  in_use_[id] = kGivenBack;
  while (count_ > 0 && in_use_[fifo_[first_].id] == kGivenBack) {
    in_use_[fifo_[first_].id] = kFree;
    first_ = static_cast<uint32_t>((first_ + 1) % fifo_.size());
    --count_;
  }
  return true;
}

}  // namespace vring
