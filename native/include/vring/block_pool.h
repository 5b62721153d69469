// Large blocks of memory used again after they are given back: a receiver that copies each
// large message into a block of its own would otherwise fault in fresh pages for every
// message (allocators hand blocks this large straight from mmap and back to the kernel), which
// costs many times the copy itself. Blocks come in size classes, eight per power of two, so a
// block given back fits later requests of about the same size; at most `max_free_bytes` wait
// to be taken again, the rest are freed at once. Thread-safe: blocks may be given back from
// any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

namespace vring {

class BlockPool {
 public:
  explicit BlockPool(size_t max_free_bytes);
  ~BlockPool();
  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;

  struct Block {
    uint8_t* data = nullptr;
    // What the block really holds (its size class): pass it back to Give().
    size_t capacity = 0;
  };

  // A block of at least `bytes` (a free one of its size class if there is one). data is
  // nullptr when memory is exhausted.
  Block Take(size_t bytes);
  // Takes back a block Take() returned: kept for reuse, or freed when the pool is full.
  void Give(Block block);
  // Frees every block waiting to be taken.
  void Trim();

  size_t free_bytes() const;
  // The size class of a request of `bytes`: a multiple of 4 KiB, at most 1/8 above it.
  static size_t ClassOf(size_t bytes);

 private:
  struct SizeClass {
    size_t capacity;
    std::vector<uint8_t*> blocks;
  };
  std::vector<SizeClass>::iterator Find(size_t capacity);

  const size_t max_free_bytes_;
  mutable std::mutex mutex_;
  size_t free_bytes_ = 0;
  std::vector<SizeClass> classes_;
};

}  // namespace vring
