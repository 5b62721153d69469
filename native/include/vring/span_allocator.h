// Contiguous spans of one byte area, handed out in FIFO order and given back in any order:
// the driver's transmit buffer area, where each message occupies one span so that one
// descriptor carries it and the device can read it where it lies.
//
// A span never wraps around the end of the area: when the space after the newest span is
// too small, the next one starts at offset 0 and the tail of the area stays unused until
// the spans before it are freed (a "bip buffer"). A span given back out of order is only
// reclaimed once every older span is given back too; its id is free again at once (the
// descriptor it names is reused by the queue). At most twice as many spans as ids are
// outstanding, given back or not: beyond that nothing more fits until the oldest is back.
#pragma once

#include <cstdint>
#include <vector>

namespace vring {

class SpanAllocator {
 public:
  // `ids` is the number of distinct span ids (the queue size); spans are aligned to `align`,
  // a power of two.
  SpanAllocator(uint64_t area_bytes, uint32_t ids, uint64_t align);

  struct Run {
    uint64_t at = 0;
    uint64_t bytes = 0;
  };

  // The largest run a span could occupy now (bytes 0 when none, or when no span fits the
  // bookkeeping).
  Run LargestFree() const;

  // Takes `bytes` (rounded up to the alignment) for span `id` at the first place it fits;
  // returns its offset, or -1 when it fits nowhere now. `id` must not be in use.
  int64_t Allocate(uint64_t bytes, uint16_t id);
  // The same, but only at `at`, which LargestFree() returned.
  int64_t AllocateAt(uint64_t at, uint64_t bytes, uint16_t id);

  // Gives span `id` back. False if `id` is not in use (nothing changes).
  bool Free(uint16_t id);

  bool empty() const { return count_ == 0; }
  uint32_t spans() const { return count_; }
  uint64_t area_bytes() const { return area_; }

 private:
  struct Span {
    uint64_t begin;
    uint64_t end;
    bool done;
  };
  // Where the next span may go: after the newest span, and (when the spans do not wrap yet)
  // at the start of the area, before the oldest.
  int Runs(Run out[2]) const;
  uint64_t Aligned(uint64_t bytes) const { return (bytes + align_ - 1) & ~(align_ - 1); }
  int64_t Take(uint64_t at, uint64_t bytes, uint16_t id);

  uint64_t area_;
  uint64_t align_;
  std::vector<Span> fifo_;          // ring of spans in allocation order
  std::vector<uint8_t> in_use_;     // per id: allocated and not given back
  std::vector<uint32_t> slot_of_;   // per id in use: its span's index in fifo_
  uint32_t first_ = 0;           // index of the oldest span in fifo_
  uint32_t count_ = 0;
};

}  // namespace vring
